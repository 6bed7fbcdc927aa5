"""Throughput of mmpretrain classifiers built from mmssm configs, beside timm baselines in the same run.

    python tools/benchmark.py CONFIG [CONFIG ...] [--timm swin_tiny_patch4_window7_224 ...] [--batch-size 128]
        [--img-size 224] [--amp] [--compile] [--compile-mode MODE] [--profile] [--inference-only]

For each model: inference img/s (forward, no grad), training img/s (forward + backward + AdamW step) and the peak
memory of each (--inference-only skips training, e.g. for large inputs). With --amp both run under fp16 autocast
(training with a GradScaler). --profile adds, for the first config, the GPU time of one inference batch and one
training step by kernel category (scans, LayerNorm, GEMMs, copies, ...) against the wall time, and the host time
to enqueue the step (when it approaches the wall time, the step is bound by Python / launch overhead). --compile
wraps every model in ``torch.compile`` (what ``compile=True`` in an mmengine config does to the training step);
--compile-mode passes a mode (``reduce-overhead`` replays CUDA graphs, which removes the host launch time).
"""
import argparse
import logging
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCAN_KERNEL_MARKERS = ('selective_scan', 'ss2d', 'cross_scan', 'cross_merge', '_scan_')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Benchmark classifiers from mmssm configs beside timm models')
    parser.add_argument('configs', nargs='*', help='mmpretrain configs of mmssm models')
    parser.add_argument('--timm', nargs='*', default=[], help='timm model names to run in the same process')
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--amp', action='store_true', help='fp16 autocast (training with a GradScaler)')
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--profile', action='store_true', help='profile inference and training of the first config')
    parser.add_argument('--inference-only', action='store_true', help='no training step')
    parser.add_argument('--compile', action='store_true', help='torch.compile every model (inductor)')
    parser.add_argument('--compile-mode', default=None,
                        help="torch.compile mode, e.g. 'reduce-overhead' (CUDA graphs); implies --compile")
    return parser.parse_args(argv)


class LogitsOnly(torch.nn.Module):
    """(B, 3, H, W) -> logits for an mmpretrain ImageClassifier or a timm model."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.is_mm = hasattr(model, 'extract_feat')

    def forward(self, images):
        if self.is_mm:
            return self.model.head(self.model.extract_feat(images))
        return self.model(images)


def build_from_config(path):
    from mmssm import compat
    compat.apply()
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    import mmpretrain.models  # noqa: F401 - registers the mmpretrain modules
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(path)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel(logging.WARNING)  # no per-parameter init report
    model.init_weights()
    return LogitsOnly(model), cfg.model.head.num_classes


def build_timm(name, img_size):
    import timm
    size_arg = {} if img_size == 224 else dict(img_size=img_size)  # ViTs interpolate their position embedding
    return LogitsOnly(timm.create_model(name, **size_arg)), 1000


def sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def measure(step, device, warmup, iters):
    """Median seconds of ``step`` and the peak memory (GiB) it reached."""
    for _ in range(warmup):
        step()
    sync(device)
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith('cuda') else float('nan')
    return sorted(times)[len(times) // 2], peak


def benchmark(model, num_classes, args):
    device = args.device
    model = model.to(device)
    if args.compile or args.compile_mode:
        model = torch.compile(model, mode=args.compile_mode)  # compiled at the first warm-up call of each mode
    images = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
    labels = torch.randint(0, num_classes, (args.batch_size, ), device=device)
    autocast = torch.autocast(device_type=device.split(':')[0], dtype=torch.float16, enabled=args.amp)

    model.eval()

    @torch.no_grad()
    def infer():
        with autocast:
            model(images)

    infer_s, infer_mem = measure(infer, device, args.warmup, args.iters)

    def infer_eval():  # the profile runs after training: back to eval mode (no drop path) for inference
        model.eval()
        infer()

    result = dict(infer=args.batch_size / infer_s, infer_mem=infer_mem, train=float('nan'), train_mem=float('nan'),
                  infer_step=infer_eval, step=None)
    if args.inference_only:
        return result

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.split(':')[0], enabled=args.amp)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    train_s, train_mem = measure(train_step, device, args.warmup, args.iters)

    def train_mode_step():  # for the profile, which runs the inference step (eval mode) first
        model.train()
        train_step()

    result.update(train=args.batch_size / train_s, train_mem=train_mem, step=train_mode_step)
    return result


# GPU kernels by what they do (first match wins), for the profile's breakdown of a step
KERNEL_CATEGORIES = (
    ('scan kernels (SS2D, selective scan, routes)', SCAN_KERNEL_MARKERS),
    ('LayerNorm', ('layer_norm', 'LayerNorm')),
    ('GEMM (projections, MLP)', ('gemm', 'Gemm', 'cutlass', 'xmma', 'cublas', 'Kernel2', 'nvjet')),
    ('convolution', ('conv', 'Conv', 'cudnn', 'depthwise', 'winograd', 'implicit')),
    ('optimizer', ('multi_tensor', 'foreach', 'adam', 'Adam')),
    ('layout copies and casts', ('copy', 'Copy')),
    ('reductions', ('reduce', 'Reduce')),
    ('elementwise (activations, residual adds)', ('elementwise', 'Elementwise')),
)


def kernel_category(name):
    return next((label for label, markers in KERNEL_CATEGORIES if any(m in name for m in markers)), 'other')


def profile_step(step, device, what):
    """One call of ``step`` under the profiler: GPU time by kernel category and the top kernels, against the wall
    time and the host time to enqueue it."""
    from torch.profiler import ProfilerActivity, profile
    host_ms = []
    for _ in range(3):
        sync(device)
        start = time.perf_counter()
        step()
        host_ms.append((time.perf_counter() - start) * 1e3)  # until the last launch returns (or a sync inside)
    sync(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        step()
        sync(device)
        wall_ms = (time.perf_counter() - start) * 1e3
    averages = prof.key_averages()
    kernels = [e for e in averages if e.device_type.name == 'CUDA' and e.self_device_time_total > 0
               and not getattr(e, 'is_user_annotation', False) and not e.key.startswith('Optimizer.')]  # spans
    total = sum(e.self_device_time_total for e in kernels) or 1.0
    print(f'\nprofile of one {what}: {total / 1e3:.2f} ms of GPU kernels in {wall_ms:.1f} ms of wall time '
          f'(under the profiler); {sorted(host_ms)[1]:.1f} ms of host time to enqueue it (without the profiler)')
    by_category = {}
    for e in kernels:
        by_category.setdefault(kernel_category(e.key), []).append(e)
    print('| share | ms | kernels launched | category |\n|---|---|---|---|')
    for label, events in sorted(by_category.items(), key=lambda kv: -sum(e.self_device_time_total for e in kv[1])):
        ms = sum(e.self_device_time_total for e in events) / 1e3
        print(f'| {100 * ms * 1e3 / total:.1f}% | {ms:.2f} | {sum(e.count for e in events)} | {label} |')
    print('top kernels:')
    for e in sorted(kernels, key=lambda e: -e.self_device_time_total)[:15]:
        print(f'  {100 * e.self_device_time_total / total:5.1f}%  {e.self_device_time_total / 1e3:8.2f} ms  '
              f'x{e.count:<4d} {e.key[:90]}')
    profile_host(step, what)


def profile_host(step, what, rows=25):
    """One call of ``step`` under the CPU profiler: the host time by op (aten ops, autograd Functions and their
    backward nodes, kernel launches), self time, the most expensive first."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) / 1e3
    launches = sum(e.count for e in events if e.key in ('cudaLaunchKernel', 'cuLaunchKernel', 'cuLaunchKernelEx',
                                                          'cudaLaunchKernelExC'))
    print(f'\nhost profile of one {what}: {total:.1f} ms of self CPU time (under the profiler), {launches} kernel '
          f'launches through the CUDA runtime/driver API')
    print('| share | self ms | calls | op |\n|---|---|---|---|')
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:rows]:
        ms = e.self_cpu_time_total / 1e3
        print(f'| {100 * ms / total:.1f}% | {ms:.2f} | {e.count} | {e.key[:80]} |')


def main(argv=None):
    args = parse_args(argv)
    torch.backends.cudnn.benchmark = True
    models = [(os.path.basename(c), lambda c=c: build_from_config(c)) for c in args.configs]
    models += [(f'timm {n}', lambda n=n: build_timm(n, args.img_size)) for n in args.timm]
    print(f'device {torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"}, torch '
          f'{torch.__version__}, batch {args.batch_size}, {args.img_size}x{args.img_size}, amp={args.amp}')
    print('| model | inference img/s | peak GiB | training img/s | peak GiB |\n|---|---|---|---|---|')
    for name, build in models:
        model, num_classes = build()
        result = benchmark(model, num_classes, args)
        print(f"| {name} | {result['infer']:.0f} | {result['infer_mem']:.1f} | {result['train']:.0f} | "
              f"{result['train_mem']:.1f} |", flush=True)
        if args.profile and name == models[0][0] and args.device.startswith('cuda'):
            profile_step(result['infer_step'], args.device, 'inference batch')
            if result['step'] is not None:
                profile_step(result['step'], args.device, 'training step')
        del model, result
        if args.device.startswith('cuda'):
            torch.cuda.empty_cache()


if __name__ == '__main__':
    main()
