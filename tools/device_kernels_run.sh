#!/usr/bin/env bash
# Issue 3's kernel numbers in one device call of at most 10 minutes (docs/benchmarks.md, "Next device run"):
#   bash tools/device_kernels_run.sh        # from the repository root; results under $OUT (default /tmp/mmssm_out)
# 1. the bare scan against float64 at every model shape, then its launcher times;
# 2. the public ops against the official kernel and the separate ops, the SS2D core's correctness at VMamba-T/B
#    stages, the SS2D launcher sweep and the per-kernel profile (CUDA-graph replays);
# 3. the bare scan's tile sweep, with what time is left.
# Each step has its own time limit, so that a slow one leaves the logs of the others (7 files come back).
set -uo pipefail
OUT=${OUT:-/tmp/mmssm_out}
mkdir -p "$OUT"
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/mmssm_triton_cache}
{
    nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
    python -c 'import sys, torch, triton; print(sys.version.split()[0], torch.__version__, triton.__version__)'
    git log --oneline -1 2>/dev/null || true
} > "$OUT/check.log" 2>&1
timeout 140 python tools/check_kernels_device.py --skip-long --skip-int64 --skip-torch \
    --out "$OUT/check.json" >> "$OUT/check.log" 2>&1
echo "check exit $?" >> "$OUT/check.log"
timeout 330 python tools/benchmark_kernels.py --check --sections scan,ss2d,sweep,profile --graphs \
    --out "$OUT" > "$OUT/bench.log" 2>&1
echo "benchmark exit $?" >> "$OUT/bench.log"
timeout 110 python tools/check_kernels_device.py --tune sweep --skip-correctness --skip-int64 --skip-torch \
    --out "$OUT/tune.json" > "$OUT/tune.log" 2>&1
echo "tune exit $?" >> "$OUT/tune.log"
