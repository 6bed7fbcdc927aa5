#!/usr/bin/env bash
# Sets up everything mmssm needs, idempotently: a virtual environment with torch, mmcv 2.1.0 built WITH its
# compiled ops (cached as a wheel), the OpenMMLab releases that work together, and mmssm itself (editable).
# A second run reuses what is there. Prints the environment's python on its last line.
#   MMSSM_VENV   where the environment lives   (default: ~/.cache/mmssm/venv)
#   MMSSM_CACHE  where built wheels are kept   (default: ~/.cache/mmssm)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MMSSM_CACHE:-$HOME/.cache/mmssm}
VENV=${MMSSM_VENV:-$CACHE/venv}
TORCH_SPEC=${MMSSM_TORCH:-"torch==2.14.1 torchvision==0.29.1"}
MMCV_VERSION=2.1.0
PY=$VENV/bin/python
log() { echo "[mmssm install] $*" >&2; }

mkdir -p "$CACHE/wheels"
if [ ! -x "$PY" ]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
fi
pip_install() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }

if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
  log "installing $TORCH_SPEC"
  pip_install $TORCH_SPEC
fi
pip_install -r "$ROOT/requirements/build.txt"

mmcv_ok() { "$PY" - <<'PY' 2>/dev/null
import torch, mmcv
from mmcv.ops import nms
assert mmcv.__version__ == '2.1.0', mmcv.__version__
boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
_, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
assert keep.tolist() == [0, 2], keep
PY
}

if ! mmcv_ok; then
  TORCH_TAG=$("$PY" -c "import sys, torch; print(f'torch{torch.__version__.split(\"+\")[0]}-py{sys.version_info[0]}{sys.version_info[1]}')")
  WHEEL_DIR=$CACHE/wheels/mmcv-$MMCV_VERSION-$TORCH_TAG
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    log "building mmcv $MMCV_VERSION with compiled ops for $TORCH_TAG (about 25 minutes on 2 cores, once)"
    SRC=$(mktemp -d)
    pip_install mmengine==0.10.7 opencv-python-headless
    "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$SRC" "mmcv==$MMCV_VERSION"
    tar -xzf "$SRC"/mmcv-$MMCV_VERSION.tar.gz -C "$SRC"
    # torch >= 2.14 headers need C++20; mmcv 2.1.0 hard-codes -std=c++17.
    sed -i 's/c++17/c++20/g' "$SRC/mmcv-$MMCV_VERSION/setup.py"
    mkdir -p "$WHEEL_DIR.partial"
    # Build isolation would build against a different torch and silently drop the ops: build in this env.
    (cd "$SRC/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$WHEEL_DIR.partial" .)
    rm -rf "$WHEEL_DIR" && mv "$WHEEL_DIR.partial" "$WHEEL_DIR"
    rm -rf "$SRC"
  fi
  pip_install --force-reinstall --no-deps "$WHEEL_DIR"/mmcv-*.whl
  if ! mmcv_ok; then
    log "ERROR: mmcv installed from $WHEEL_DIR but mmcv.ops.nms does not run (no compiled ops?)." \
        "Delete that folder and run this script again to rebuild it."
    exit 1
  fi
fi

pip_install -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/mmpretrain.txt" \
  -r "$ROOT/requirements/mmdet.txt" -r "$ROOT/requirements/mmseg.txt" -r "$ROOT/requirements/tests.txt"
pip_install --no-deps --no-build-isolation -e "$ROOT"
mmcv_ok || { log "ERROR: installing the requirements replaced the working mmcv"; exit 1; }
log "ready: $PY"
echo "$PY"
