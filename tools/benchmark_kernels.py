"""Time the scan kernels against the vectorised PyTorch path and the device's copy bandwidth, in one run.

Run from the repository root on a CUDA machine (no OpenMMLab needed):
    python tools/benchmark_kernels.py [--batch 128] [--check] [--graphs] [--out DIR]
        [--sections routes,scan,ss2d,group,norm,profile,sweep,sweep_norm,host]
Prints a markdown table and writes it (and the raw numbers as JSON) to ``--out`` (default: $OUT or .).
"Bandwidth" is the op's minimal HBM bytes / its time, as a fraction of the measured device-to-device copy.
"""
import argparse
import itertools
import json
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kernels as K  # noqa: E402
from kernels.cross_scan.naive import cross_merge_ref, cross_scan_ref  # noqa: E402
from kernels.selective_scan.chunked import selective_scan_chunked_bwd, selective_scan_chunked_fwd  # noqa: E402
from kernels.ss2d import ss2d_scan_ref  # noqa: E402
from tools.check_kernels_device import SHAPES  # noqa: E402
from kernels.testing import rel_rms_error  # noqa: E402

# bare selective scan: the shapes of tools/check_kernels_device.py, (channels, L, N, G, with z), by display name
SCAN_NAMES = {**{f'vmamba_t_s{i}': f'VMamba-T stage {i}' for i in range(1, 5)}, 'vim_s': 'Vim-S',
              'groupmamba_t_s1': 'GroupMamba-T stage 1'}
SCAN_SHAPES = {SCAN_NAMES[name]: shape for name, shape in SHAPES.items()}
# SS2D core at VMamba-T (v2: ssm_ratio 1, d_state 1, K = 4): name -> (D, H = W, dt rank = ceil(D / 16))
SS2D_SHAPES = {f'VMamba-T stage {i + 1}': (dim, size, math.ceil(dim / 16))
               for i, (dim, size) in enumerate([(96, 56), (192, 28), (384, 14), (768, 7)])}
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}
# channel-first LayerNorm at the VMamba-T block widths: name -> (C, H = W)
NORM_SHAPES = {f'VMamba-T stage {i + 1}': (dim, size) for i, (dim, size) in enumerate([(96, 56), (192, 28), (384, 14),
                                                                                        (768, 7)])}


def median_ms(fn, warmup=3, reps=15):
    """Median wall time of ``fn`` on the current stream, measured with CUDA events after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def graphed(fn, warmup=3):
    """``fn`` captured in a CUDA graph after ``warmup`` calls on a side stream: a replay runs the same kernels with no
    Python or launch work on the host, so its time is the GPU's."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def fwd_bwd(fn, leaves, grad):
    """A closure running fn(*leaves) and the gradients of every leaf for the output gradient ``grad``."""
    return lambda: torch.autograd.grad(fn(*leaves), leaves, grad)


def copy_bandwidth(device):
    """Device-to-device copy of 1 GiB: bytes read + written per second."""
    src = torch.empty(1 << 28, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src))
    return 2 * src.numel() * 4 / ms / 1e6  # GB/s


class TorchScan(torch.autograd.Function):
    """The chunked PyTorch selective scan (the CPU path) with its analytic backward, on any device."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias):
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
        return selective_scan_chunked_fwd(u, delta, A, B, C, D, z, delta_bias, True, None, False, u.dtype)[0]

    @staticmethod
    def backward(ctx, grad):
        grads = selective_scan_chunked_bwd(grad, None, *ctx.saved_tensors, True, None, False)
        return grads[:8]


def torch_scan(u, delta, A, B, C=None, D=None, z=None, delta_bias=None, delta_softplus=True, out_dtype=None):
    assert delta_softplus and out_dtype in (None, u.dtype)
    return TorchScan.apply(u, delta, A, B, C, D, z, delta_bias)


class Table:
    """Rows of the markdown report."""

    HEADER = ('op', 'shape', 'dtype', 'fwd ms', 'fwd+bwd ms', 'fwd % of copy', 'fwd+bwd % of copy',
              'baseline', 'baseline fwd ms', 'baseline fwd+bwd ms', 'speed-up fwd', 'speed-up fwd+bwd')

    def __init__(self, copy_gbs):
        self.copy_gbs, self.rows, self.records = copy_gbs, [], []

    def add(self, op, shape, dtype, ms, bytes_, baseline, base_ms):
        """ms / base_ms: (fwd, fwd+bwd) times (None where not measured); bytes_: minimal (fwd, fwd+bwd) bytes."""
        def pct(t, b):
            return '' if t is None or b is None else f'{100 * b / t / 1e6 / self.copy_gbs:.0f}%'

        def fmt(t):
            return '' if t is None else f'{t:.3f}'

        def ratio(a, b):
            return '' if a is None or b is None else f'{b / a:.2f}x'
        row = (op, shape, dtype, fmt(ms[0]), fmt(ms[1]), pct(ms[0], bytes_[0]), pct(ms[1], bytes_[1]), baseline,
               fmt(base_ms[0]), fmt(base_ms[1]), ratio(ms[0], base_ms[0]), ratio(ms[1], base_ms[1]))
        self.rows.append(row)
        self.records.append(dict(zip(self.HEADER, row)))
        print('| ' + ' | '.join(row) + ' |', flush=True)

    def markdown(self):
        lines = ['| ' + ' | '.join(self.HEADER) + ' |', '|' + '---|' * len(self.HEADER)]
        return '\n'.join(lines + ['| ' + ' | '.join(row) + ' |' for row in self.rows])


def bench_routes(table, batch, device):
    """cross_scan / cross_merge (K = 4) at VMamba-T stage 1 against the naive PyTorch reference."""
    for name, dtype in DTYPES.items():
        x = torch.randn(batch, 96, 56, 56, device=device, dtype=dtype)
        y = torch.randn(batch, 4, 96, 56 * 56, device=device, dtype=dtype)
        nbytes = 5 * x.numel() * x.element_size()  # read 1 map, write 4 (or the reverse)
        table.add('cross_scan', '96x56x56, K=4', name, (median_ms(lambda: K.cross_scan(x)), None), (nbytes, None),
                  'naive PyTorch', (median_ms(lambda: cross_scan_ref(x)), None))
        table.add('cross_merge', '96x56x56, K=4', name, (median_ms(lambda: K.cross_merge(y, 56, 56)), None),
                  (nbytes, None), 'naive PyTorch', (median_ms(lambda: cross_merge_ref(y, 56, 56)), None))


def scan_inputs(batch, channels, length, states, groups, with_z, dtype, device):
    """Selective-scan inputs in ``dtype`` (A, D, delta_bias fp32 like model parameters), all leaves."""
    def rand(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, device=device) * scale + shift).to(dtype).requires_grad_()
    return dict(u=rand(batch, channels, length), delta=rand(batch, channels, length, scale=0.5, shift=-1.0),
                A=(-torch.exp(torch.randn(channels, states, device=device) * 0.5)).requires_grad_(),
                B=rand(batch, groups, states, length), C=rand(batch, groups, states, length),
                D=torch.randn(channels, device=device).requires_grad_(),
                z=rand(batch, channels, length) if with_z else None,
                delta_bias=(torch.randn(channels, device=device) * 0.5).requires_grad_())


def bench_scan(table, batch, device, graphs=False):
    """The bare selective scan (delta_softplus, D, delta_bias) through the public op vs the chunked PyTorch path;
    with ``graphs``, the public op is timed as CUDA-graph replays (GPU time, no host work; the PyTorch path stays
    eager)."""
    for shape_name, (channels, length, states, groups, with_z) in SCAN_SHAPES.items():
        for name, dtype in DTYPES.items():
            inputs = scan_inputs(batch, channels, length, states, groups, with_z, dtype, device)
            leaves = [t for t in inputs.values() if t is not None]
            grad = torch.randn(batch, channels, length, device=device, dtype=dtype)
            item = grad.element_size()
            tokens = batch * channels * length * item
            bc = 2 * batch * groups * states * length * item
            fwd_bytes = (3 + with_z) * tokens + bc  # read u, delta (, z), B, C; write y
            bwd_bytes = (5 + 2 * with_z) * tokens + 2 * bc  # read u, delta, (z,) dy, B, C; write du, ddelta (, dz)
            ms, base = [], []
            for scan, out in ((K.selective_scan, ms), (torch_scan, base)):
                def run(*args, scan=scan):
                    return scan(**dict(zip([k for k, t in inputs.items() if t is not None], args)),
                                delta_softplus=True)
                replay = graphed if graphs and scan is K.selective_scan else (lambda f: f)
                with torch.no_grad():
                    out.append(median_ms(replay(lambda: run(*leaves))))
                out.append(median_ms(replay(fwd_bwd(run, leaves, grad))))
            shape = f'{channels}x{length}, N={states}, G={groups}' + (', z' if with_z else '')
            timing = ' (CUDA graphs)' if graphs else ''
            table.add(f'selective_scan {shape_name}{timing}', shape, name, ms, (fwd_bytes, fwd_bytes + bwd_bytes),
                      'chunked PyTorch', base)
            del inputs, leaves, grad
            torch.cuda.empty_cache()


def ss2d_inputs(batch, channels, size, rank, dtype, device, num_states=1, num_routes=4):
    """SS2D core inputs: x in ``dtype`` and channels-last memory (what the depthwise conv gives in VMamba),
    parameters fp32 (autocast style), VMamba-like initial scales."""
    x = torch.randn(batch, channels, size, size, device=device).to(dtype, memory_format=torch.channels_last)
    return [x,
            torch.randn(num_routes, rank + 2 * num_states, channels, device=device) * channels ** -0.5,
            torch.randn(num_routes, channels, rank, device=device) * rank ** -0.5,
            torch.rand(num_routes, channels, device=device) * 4 - 6,  # softplus(bias) in dt's usual range
            torch.log(torch.arange(1, num_states + 1, device=device, dtype=torch.float32)).repeat(
                num_routes * channels, 1),
            torch.ones(num_routes * channels, device=device)]


def separate_ops(*args):
    """The SS2D core as separate ops: Triton cross_scan, cuBLAS projections, Triton selective scan, merge."""
    return ss2d_scan_ref(*args, scan=K.selective_scan, scan_routes=K.cross_scan, merge_routes=K.cross_merge)


def torch_ops(*args):
    """The SS2D core on the PyTorch paths: naive routes, chunked selective scan."""
    return ss2d_scan_ref(*args, scan=torch_scan, scan_routes=cross_scan_ref, merge_routes=cross_merge_ref)


def bench_ss2d(table, batch, device, graphs=False):
    """Fused SS2D core vs the separate ops and the PyTorch path; with ``graphs``, the fused core and the separate ops
    are timed as CUDA-graph replays (GPU time, no host work; the PyTorch path stays eager)."""
    for shape_name, (channels, size, rank) in SS2D_SHAPES.items():
        for name, dtype in DTYPES.items():
            leaves = [t.requires_grad_() for t in ss2d_inputs(batch, channels, size, rank, dtype, device)]
            grad = torch.randn_like(leaves[0])
            map_bytes = leaves[0].numel() * leaves[0].element_size()
            results = {}
            for label, fn in (('fused', K.ss2d_scan), ('separate', separate_ops), ('torch', torch_ops)):
                replay = graphed if graphs and label != 'torch' else (lambda f: f)
                with torch.no_grad():
                    fwd = median_ms(replay(lambda: fn(*leaves)))
                results[label] = (fwd, median_ms(replay(fwd_bwd(fn, leaves, grad))))
            shape = f'D={channels}, {size}x{size}, R={rank}, N=1, K=4'
            nbytes = (2 * map_bytes, 5 * map_bytes)  # fwd: read x, write y; bwd: read x, dy, write dx
            timing = ' (CUDA graphs)' if graphs else ''
            for baseline, label in (('separate ops' + timing, 'separate'), ('PyTorch path', 'torch')):
                table.add(f'ss2d_scan {shape_name}{timing}', shape, name, results['fused'], nbytes, baseline,
                          results[label])
            table.add(f'ss2d separate ops {shape_name}{timing}', shape, name, results['separate'], nbytes,
                      'PyTorch path', results['torch'])
            del leaves, grad
            torch.cuda.empty_cache()


def bench_group(table, batch, device, channels=64, size=56):
    """GroupMamba's scan (4 groups of C/4 channels, one route each) vs one 4-route SS2D core over all C channels.

    GroupMamba-T stage 1 (C=64, 56x56, ssm_ratio 1, N=1), bf16 maps; the paper reports its grouped design at 1.4x
    the throughput of a 4-route scan (1125 vs 803 img/s for the whole model).
    """
    rank = math.ceil(channels // 4 / 16)
    groups = [[t.requires_grad_() for t in ss2d_inputs(batch, channels // 4, size, rank, torch.bfloat16, device,
                                                         num_routes=1)] for _ in K.ROUTES]
    whole = [t.requires_grad_() for t in ss2d_inputs(batch, channels, size, math.ceil(channels / 16),
                                                      torch.bfloat16, device)]

    def grouped(*leaves):
        return torch.cat([K.ss2d_scan(*leaves[6 * g:6 * g + 6], routes=(route,)) for g, route in
                          enumerate(K.ROUTES)], dim=1)  # (batch, C, H, W)
    runs = {}
    for label, fn, leaves in (('grouped', grouped, sum(groups, [])), ('4-route', K.ss2d_scan, whole)):
        grad = torch.randn(batch, channels, size, size, device=device, dtype=torch.bfloat16)
        with torch.no_grad():
            forward_ms = median_ms(lambda: fn(*leaves))
        runs[label] = (forward_ms, median_ms(fwd_bwd(fn, leaves, grad)))
    map_bytes = batch * channels * size * size * 2
    table.add('GroupMamba scan (4 groups x 1 route)', f'C={channels}, {size}x{size}, N=1', 'bf16', runs['grouped'],
              (2 * map_bytes, 5 * map_bytes), 'SS2D core, 4 routes over C', runs['4-route'])


def norm_inputs(batch, channels, size, device):
    """An fp16 NCHW map (offset, as after a residual sum) and fp32 LayerNorm parameters, all leaves."""
    x = (torch.randn(batch, channels, size, size, device=device) * 2 + 1).half().requires_grad_()
    weight, bias = (torch.randn(channels, device=device).requires_grad_() for _ in range(2))
    return x, weight, bias


def autocast_layer_norm(x, weight, bias):
    """What LayerNorm2d ran before the kernel: F.layer_norm on the channels-last view under fp16 autocast."""
    with torch.autocast('cuda', dtype=torch.float16):
        return torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), weight.shape, weight, bias).permute(0, 3, 1, 2)


def bench_norm(table, batch, device):
    """LayerNorm2d kernel (NCHW fp16 in and out) vs PyTorch's LayerNorm on channels-last memory: under autocast
    (fp32 output, what the model ran before) and in plain fp16 (PyTorch's fastest)."""
    for shape_name, (channels, size) in NORM_SHAPES.items():
        leaves = norm_inputs(batch, channels, size, device)
        last = [leaves[0].detach().contiguous(memory_format=torch.channels_last).requires_grad_(), *leaves[1:]]
        runs = {}
        for label, fn, args in (
                ('ours', lambda *a: K.layer_norm_2d(*a, out_dtype=torch.float16), leaves),
                ('autocast', autocast_layer_norm, last),
                ('fp16', lambda x, w, b: torch.nn.functional.layer_norm(
                    x.permute(0, 2, 3, 1), w.shape, w.half(), b.half()).permute(0, 3, 1, 2), last)):
            out = fn(*args)
            grad = torch.randn_like(out)
            with torch.no_grad():
                forward_ms = median_ms(lambda: fn(*args))
            runs[label] = (forward_ms, median_ms(fwd_bwd(fn, args, grad)))
        elements = leaves[0].numel()
        nbytes = (4 * elements, 10 * elements)  # fwd: read x, write y (fp16); + bwd: read x, dy, write dx
        shape = f'C={channels}, {size}x{size}, NCHW'
        table.add(f'layer_norm_2d {shape_name}', shape, 'fp16', runs['ours'], nbytes, 'LN channels-last, autocast',
                  runs['autocast'])
        table.add(f'layer_norm_2d {shape_name}', shape, 'fp16', runs['ours'], nbytes, 'LN channels-last, fp16',
                  runs['fp16'])
        del leaves, last
        torch.cuda.empty_cache()


def sweep_norm(batch, device, configs=((2048, 4), (2048, 8), (4096, 4), (4096, 8), (4096, 16), (8192, 8),
                                        (8192, 16))):
    """The LayerNorm2d launchers (fp16 NCHW) with non-default (elements per program, num_warps)."""
    from kernels.layer_norm.launchers import layer_norm_2d_bwd_triton, layer_norm_2d_fwd_triton
    rows = []
    for shape_name, (channels, size) in NORM_SHAPES.items():
        x, weight, bias = (t.detach() for t in norm_inputs(batch, channels, size, device))
        grad = torch.randn_like(x)
        for tile, warps in configs:
            launch = dict(tile=tile, num_warps=warps)
            _, mean, rstd = layer_norm_2d_fwd_triton(x, weight, bias, 1e-5, x.dtype, True, **launch)
            fwd = median_ms(lambda: layer_norm_2d_fwd_triton(x, weight, bias, 1e-5, x.dtype, False, **launch))
            bwd = median_ms(lambda: layer_norm_2d_bwd_triton(grad, x, weight, mean, rstd, **launch))
            rows.append(dict(shape=shape_name, tile=tile, num_warps=warps, fwd_ms=fwd, bwd_ms=bwd))
            print(f'[sweep] layer_norm_2d {shape_name} fp16 tile={tile} warps={warps}: fwd {fwd:.3f} ms, '
                  f'bwd {bwd:.3f} ms', flush=True)
    return rows


# (session 10's sweeps settled the forward's dot ranks and fp32's 'tf32x3' dots; ``dot_min_rank`` and ``fp32_dot``
# remain launch overrides)
SS2D_VARIANTS = {'bf16': ({}, {'save_delta': False}, {'save_delta': True}, {'max_registers': 128}, {'bwd_block_l': 4},
                          {'bwd_block_l': 4, 'max_registers': 80}),
                 'fp32': ({}, {'save_delta': False}, {'max_registers': 128}, {'bwd_block_l': 4})}
FORWARD_ONLY, BACKWARD_ONLY = ('save_delta', 'dot_min_rank'), ('max_registers',)  # overrides of one launcher


def sweep_ss2d(batch, device, variants=SS2D_VARIANTS):
    """The fused SS2D launchers (every VMamba-T stage; CUDA-graph replays) with the tuned launch and with overrides
    of it: delta saved by the training forward or formed again in the backward, the backward's registers capped
    lower (more programs resident, ptxas's schedule with fewer values in flight), 4-step backward chunks (half the
    registers of 8) (also ``parts``: 1, 2 or 4 route parts, programs scanning 4, 2 or 1 routes in turn;
    ``dot_min_rank``, ``fp32_dot``). Times the inference forward, the training forward (saving chunk states) and
    the backward."""
    from kernels.ss2d.launchers import ss2d_bwd_triton, ss2d_fwd_triton
    codes = [0, 1, 2, 3]
    rows = []
    for (shape_name, (channels, size, rank)), name in itertools.product(SS2D_SHAPES.items(), variants):
        x, *params = ss2d_inputs(batch, channels, size, rank, DTYPES[name], device)
        grad = torch.randn_like(x)
        for overrides in variants[name]:
            forward_overrides = {key: value for key, value in overrides.items() if key not in BACKWARD_ONLY}
            backward_overrides = {key: value for key, value in overrides.items() if key not in FORWARD_ONLY}
            _, x_dbl, states, deltas = ss2d_fwd_triton(x, *params, codes, x.dtype, True, **forward_overrides)
            fwd = median_ms(graphed(lambda: ss2d_fwd_triton(x, *params, codes, x.dtype, False, **forward_overrides)))
            train = median_ms(graphed(lambda: ss2d_fwd_triton(x, *params, codes, x.dtype, True, **forward_overrides)))
            bwd = median_ms(graphed(lambda: ss2d_bwd_triton(grad, x, x_dbl, states, deltas, *params, codes,
                                                            **backward_overrides)))
            rows.append(dict(shape=shape_name, dtype=name, fwd_ms=fwd, train_fwd_ms=train, bwd_ms=bwd, **overrides))
            print(f'[sweep] ss2d {shape_name} {name} {overrides or "tuned"}: fwd {fwd:.3f} ms, training fwd '
                  f'{train:.3f}, bwd {bwd:.3f}, training sum {train + bwd:.3f}', flush=True)
    return rows


def kernel_times(label, step):
    """GPU time of every kernel of one call of ``step`` (after one warm-up call), printed and returned as rows."""
    from torch.profiler import ProfilerActivity, profile
    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    kernels = [e for e in prof.key_averages() if e.device_type.name == 'CUDA' and e.self_device_time_total > 0]
    total = sum(e.self_device_time_total for e in kernels) / 1e3
    print(f'[profile] {label}: {total:.3f} ms of GPU kernels', flush=True)
    rows = []
    for e in sorted(kernels, key=lambda e: -e.self_device_time_total):
        ms = e.self_device_time_total / 1e3
        rows.append(dict(call=label, kernel=e.key, count=e.count, ms=ms))
        print(f'[profile]   {ms:7.3f} ms x{e.count} {e.key[:100]}', flush=True)
    return rows


def profile_kernels(batch, device):
    """GPU time by kernel of one forward + backward of the public SS2D op (each VMamba-T stage) and of the bare
    selective scan (every shape), fp32 and bf16."""
    rows = []
    for (shape_name, (channels, size, rank)), (name, dtype) in itertools.product(SS2D_SHAPES.items(),
                                                                                DTYPES.items()):
        leaves = [t.requires_grad_() for t in ss2d_inputs(batch, channels, size, rank, dtype, device)]
        rows += kernel_times(f'ss2d {shape_name} {name} fwd+bwd', fwd_bwd(K.ss2d_scan, leaves,
                                                                          torch.randn_like(leaves[0])))
    for (shape_name, (channels, length, states, groups, with_z)), (name, dtype) in itertools.product(
            SCAN_SHAPES.items(), DTYPES.items()):
        inputs = {k: t for k, t in scan_inputs(batch, channels, length, states, groups, with_z, dtype,
                                               device).items() if t is not None}
        grad = torch.randn(batch, channels, length, device=device, dtype=dtype)

        def run(*args, names=tuple(inputs)):
            return K.selective_scan(**dict(zip(names, args)), delta_softplus=True)
        rows += kernel_times(f'selective_scan {shape_name} {name} fwd+bwd', fwd_bwd(run, list(inputs.values()), grad))
    return rows


def host_cost(device, calls=200, reps=5):
    """Host time per call of the public ops (forward + backward) on maps so small that the GPU waits for the host:
    what one VSS block's SS2D core and LayerNorm2d add to an eager training step's Python and launch time."""
    x = torch.randn(1, 96, 4, 4, device=device).to(memory_format=torch.channels_last).requires_grad_()
    params = [t.requires_grad_() for t in ss2d_inputs(1, 96, 4, 6, torch.float32, device)[1:]]
    weight, bias = (torch.randn(96, device=device, requires_grad=True) for _ in range(2))
    cases = {'ss2d_scan': lambda: K.ss2d_scan(x, *params), 'layer_norm_2d': lambda: K.layer_norm_2d(x, weight, bias),
             'x * 2 (one autograd op)': lambda: x * 2}
    rows = []
    for name, fn in cases.items():
        for mode in ('forward', 'forward+backward'):
            def call():
                if mode == 'forward':
                    with torch.no_grad():
                        return fn()
                y = fn()
                return y.backward(torch.ones_like(y))
            best = float('inf')
            for _ in range(reps + 1):  # the first repetition warms up (compiles the kernels)
                torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(calls):
                    call()
                torch.cuda.synchronize()
                best = min(best, (time.perf_counter() - start) / calls * 1e6)
            rows.append(dict(op=name, mode=mode, us_per_call=best))
            print(f'[host] {name} {mode}: {best:.0f} us per call', flush=True)
    return rows


def _report_errors(errors, key, label, names, got, ref):
    """Store and print the relative RMS errors of ``got`` against the float64 ``ref``, one per name."""
    errors[key] = {n: rel_rms_error(a, b) for n, a, b in zip(names, got, ref)}
    print(f'[check] {key} {label}: ' + ', '.join(f'{n} {e:.1e}' for n, e in errors[key].items()), flush=True)


# extra --check shapes: VMamba-B stages 3-4 (ssm_ratio 2: D = 1024, 2048; dt rank 32, 64)
CHECK_SS2D_SHAPES = {**SS2D_SHAPES, 'VMamba-B stage 3': (1024, 14, 32), 'VMamba-B stage 4': (2048, 7, 64)}


def check_ss2d(device):
    """Fused SS2D core vs the float64 reference (batch 2), output and every gradient, x in fp32 and in bf16 (the
    reference sees the rounded input)."""
    errors = {}
    for shape_name, (channels, size, rank) in CHECK_SS2D_SHAPES.items():
        for dtype_name, dtype in DTYPES.items():
            inputs = ss2d_inputs(2, channels, size, rank, dtype, device)
            grad = torch.randn(inputs[0].shape, device=device)
            leaves64 = [t.double().requires_grad_() for t in inputs]
            y64 = ss2d_scan_ref(*leaves64, scan=torch_scan)
            ref = [y64, *torch.autograd.grad(y64, leaves64, grad.double())]
            leaves = [t.requires_grad_() for t in inputs]
            y = K.ss2d_scan(*leaves, out_dtype=torch.float32)
            got = [y, *torch.autograd.grad(y, leaves, grad)]
            names = ('y', 'x', 'x_proj_weight', 'dt_projs_weight', 'dt_projs_bias', 'A_logs', 'Ds')
            _report_errors(errors, f'ss2d {shape_name} {dtype_name}', f'{dtype_name} vs fp64', names, got, ref)
    return errors


def check_layer_norm(device):
    """LayerNorm2d kernels vs float64 at the VMamba-T widths (batch 16), both input layouts, y and every gradient."""
    errors = {}
    for shape_name, (channels, size) in NORM_SHAPES.items():
        for memory_format in (torch.contiguous_format, torch.channels_last):
            x, weight, bias = norm_inputs(16, channels, size, device)
            x = x.detach().contiguous(memory_format=memory_format).requires_grad_()
            grad = torch.randn_like(x)
            leaves64 = [t.detach().double().requires_grad_() for t in (x, weight, bias)]
            y64 = K.layer_norm.layer_norm_2d_ref(*leaves64)
            ref = [y64, *torch.autograd.grad(y64, leaves64, grad.double())]
            y = K.layer_norm_2d(x, weight, bias, out_dtype=torch.float32)
            got = [y, *torch.autograd.grad(y, (x, weight, bias), grad.float())]
            layout = 'NCHW' if memory_format == torch.contiguous_format else 'NHWC'
            _report_errors(errors, f'layer_norm_2d {shape_name} {layout}', 'fp16 in, fp32 out vs fp64',
                           ('y', 'x', 'weight', 'bias'), got, ref)
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--sections', default='routes,scan,ss2d,group,norm,profile,sweep,sweep_norm,host')
    parser.add_argument('--check', action='store_true',
                        help='check the fused SS2D core and LayerNorm2d against float64 first')
    parser.add_argument('--graphs', action='store_true',
                        help='time the selective scan, the fused SS2D core and its separate ops as CUDA-graph '
                             'replays (GPU time)')
    parser.add_argument('--out', default=os.environ.get('OUT', '.'))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit('benchmark_kernels.py needs a CUDA device')
    torch.manual_seed(0)
    device = torch.device('cuda')
    sections = args.sections.split(',')
    report = {'device': torch.cuda.get_device_name(), 'torch': torch.__version__, 'batch': args.batch,
              'command': 'python ' + ' '.join(sys.argv)}
    import triton
    report['triton'] = triton.__version__
    if args.check:
        report['check'] = {**check_ss2d(device), **check_layer_norm(device)}
    copy_gbs = copy_bandwidth(device)
    report['copy_GBps'] = copy_gbs
    print(f'device {report["device"]}, torch {report["torch"]}, triton {report["triton"]}, batch {args.batch}, '
          f'device-to-device copy {copy_gbs:.0f} GB/s', flush=True)
    table = Table(copy_gbs)
    print('| ' + ' | '.join(Table.HEADER) + ' |', flush=True)
    for section, bench in (('routes', bench_routes), ('scan', lambda *a: bench_scan(*a, graphs=args.graphs)),
                           ('ss2d', lambda *a: bench_ss2d(*a, graphs=args.graphs)), ('group', bench_group),
                           ('norm', bench_norm)):
        if section in sections:
            bench(table, args.batch, device)
    report['rows'] = table.records
    if 'profile' in sections:
        report['profile'] = profile_kernels(args.batch, device)
    if 'host' in sections:
        report['host'] = host_cost(device)
    report['sweep'] = ((sweep_ss2d(args.batch, device) if 'sweep' in sections else [])
                       + (sweep_norm(args.batch, device) if 'sweep_norm' in sections else []))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'benchmark_kernels.json'), 'w') as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, 'benchmark_kernels.md'), 'w') as f:
        f.write(f'{report["device"]}, torch {report["torch"]}, triton {report["triton"]}, batch {args.batch}, '
                f'copy {copy_gbs:.0f} GB/s\n\n{table.markdown()}\n')


if __name__ == '__main__':
    main()
