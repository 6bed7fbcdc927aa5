"""Check the Triton selective scan against the float64 reference at real model shapes, then time it.

Run from the repository root on a CUDA machine (no OpenMMLab needed):
    python tools/check_kernels_device.py [--out results.json] [--skip-int64] [--tune]
``TRITON_INTERPRET=1 python tools/check_kernels_device.py --smoke`` runs the correctness part at tiny sizes on the
CPU through the Triton interpreter.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kernels.selective_scan.chunked import selective_scan_chunked_bwd, selective_scan_chunked_fwd  # noqa: E402
from kernels.selective_scan.launchers import (BWD_TILE, FWD_TILE, selective_scan_bwd_triton,  # noqa: E402
                                              selective_scan_fwd_triton)
from kernels.selective_scan.naive import selective_scan_ref  # noqa: E402
from kernels.testing import rel_rms_error, RTOL  # noqa: E402

NAMES = ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias', 'initial_state')
# name: (channels, L, N, G, with z)
SHAPES = {
    'vmamba_t_s1': (384, 3136, 1, 4, False),
    'vmamba_t_s2': (768, 784, 1, 4, False),
    'vmamba_t_s3': (1536, 196, 1, 4, False),
    'vmamba_t_s4': (3072, 49, 1, 4, False),
    'vim_s': (768, 197, 16, 1, True),
    'groupmamba_t_s1': (64, 3136, 1, 4, False),
}


def make_inputs(batch, channels, length, states, groups, with_z, dtype, device, return_states=False, initial=False):
    def rand(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, device=device) * scale + shift).to(dtype)
    bc_shape = (batch, groups, states, length) if groups > 1 else (batch, states, length)
    return dict(
        u=rand(batch, channels, length), delta=rand(batch, channels, length, scale=0.5, shift=-1.0),
        A=-torch.exp(torch.randn(channels, states, device=device) * 0.5), B=rand(*bc_shape),
        C=None if return_states else rand(*bc_shape),
        D=None if return_states else torch.randn(channels, device=device),
        z=rand(batch, channels, length) if with_z and not return_states else None,
        delta_bias=torch.randn(channels, device=device) * 0.5,
        initial_state=torch.randn(batch, channels, states, device=device) if initial else None)


def reference(inputs, return_states, grad_out, grad_last):
    leaves = {k: None if t is None else t.double().requires_grad_() for k, t in inputs.items()}
    out, last = selective_scan_ref(**leaves, delta_softplus=True, return_last_state=True, return_states=return_states)
    present = [k for k, t in leaves.items() if t is not None]
    grads = torch.autograd.grad((out * grad_out.double()).sum() + (last * grad_last.double()).sum(),
                                [leaves[k] for k in present])
    return out.detach(), last.detach(), dict(zip(present, grads))


def check(name, inputs, dtype, return_states=False, out_dtype=None):
    """Triton fwd + bwd against the float64 reference; returns {tensor: relative RMS error} and pass/fail."""
    out_dtype = out_dtype or dtype
    u, A = inputs['u'], inputs['A']
    batch, channels, length = u.shape
    out_shape = (batch, channels, A.shape[1], length) if return_states else u.shape
    grad_out = torch.randn(out_shape, device=u.device)
    grad_last = torch.randn(batch, channels, A.shape[1], device=u.device)
    ref_out, ref_last, ref_grads = reference(inputs, return_states, grad_out.to(out_dtype), grad_last.to(out_dtype))
    args = list(inputs.values())
    out, last, ckpt = selective_scan_fwd_triton(*args, True, return_states, out_dtype, True)
    grads = selective_scan_bwd_triton(grad_out.to(out_dtype), grad_last.to(out_dtype), *args, ckpt, True,
                                      return_states)
    errors = {'out': (out, ref_out), 'last_state': (last, ref_last)}
    errors.update({f'grad_{k}': (g, ref_grads[k]) for k, g in zip(NAMES, grads) if k in ref_grads})
    report = {}
    ok = True
    for key, (actual, expected) in errors.items():
        finite = bool((torch.isfinite(actual) | ~torch.isfinite(expected)).all())
        err = rel_rms_error(actual, expected)
        passed = finite and err <= RTOL[dtype]
        ok &= passed
        report[key] = f'{err:.2e}' + ('' if passed else ' FAIL') + ('' if finite else ' NONFINITE')
    print(f'[check] {name} {str(dtype)[6:]} -> {"ok" if ok else "FAIL"} {report}', flush=True)
    return {'ok': ok, 'errors': report}


def check_int64(device, batch=2, channels=1024, length=(1 << 20) + 1000):
    """batch * D * L > 2**31 elements: compare the last channels with the chunked path on those channels alone."""
    inputs = make_inputs(batch, channels, length, 1, 1, False, torch.float16, device)
    args = list(inputs.values())
    out, last, ckpt = selective_scan_fwd_triton(*args, True, False, torch.float16, True)
    grad_out = torch.ones_like(out)
    grads = selective_scan_bwd_triton(grad_out, None, *args, ckpt, True, False)
    tail = slice(channels - 2, channels)
    sliced = {k: None if t is None else t for k, t in inputs.items()}
    sliced.update(u=inputs['u'][-1:, tail], delta=inputs['delta'][-1:, tail], A=inputs['A'][tail],
                  B=inputs['B'][-1:], C=inputs['C'][-1:], D=inputs['D'][tail], delta_bias=inputs['delta_bias'][tail])
    sliced = {k: None if t is None else t.double() for k, t in sliced.items()}
    scan_inputs = [sliced[name] for name in NAMES[:-1]]  # no initial state
    ref, _ = selective_scan_chunked_fwd(*scan_inputs, True, None, False, torch.float64)
    ref_grads = selective_scan_chunked_bwd(torch.ones_like(ref), None, *scan_inputs, True, None, False)
    report = {'out': rel_rms_error(out[-1:, tail], ref), 'grad_u': rel_rms_error(grads[0][-1:, tail], ref_grads[0]),
              'grad_delta': rel_rms_error(grads[1][-1:, tail], ref_grads[1])}
    ok = all(v <= RTOL[torch.float16] for v in report.values())
    print(f'[check] int64 offsets ({batch * channels * length} elements) -> {"ok" if ok else "FAIL"} {report}',
          flush=True)
    return {'ok': ok, 'errors': report, 'elements': batch * channels * length}


def correctness(device, smoke):
    results = {}
    scale = (lambda shape: (8, min(shape[1], 40), *shape[2:])) if smoke else (lambda shape: shape)
    batch = 1 if smoke else 8
    for name, shape in SHAPES.items():
        channels, length, states, groups, with_z = scale(shape)
        for dtype in (torch.float32, torch.bfloat16):
            inputs = make_inputs(batch, channels, length, states, groups, with_z, dtype, device, initial=True)
            results[f'{name}_{str(dtype)[6:]}'] = check(name, inputs, dtype)
    inputs = make_inputs(batch, 16 if smoke else 192, 197, 16, 1, False, torch.bfloat16, device, return_states=True)
    results['return_states_bf16'] = check('return_states', inputs, torch.bfloat16, return_states=True)
    long_length = 300 if smoke else 16384
    inputs = make_inputs(2, 64 if not smoke else 2, long_length, 16, 1, True, torch.float16, device)
    results['long_fp16_fp32out'] = check(f'L={long_length} N=16 fp16 in, fp32 out', inputs, torch.float16,
                                         out_dtype=torch.float32)
    results['long_fp16'] = check(f'L={long_length} N=16 fp16', inputs, torch.float16)
    return results


def min_bytes(batch, channels, length, states, groups, with_z, dtype):
    """Minimal HBM bytes of the bare forward: read u, delta (, z), B, C; write y."""
    item = torch.empty(0, dtype=dtype).element_size()
    per_token = (3 + with_z) * batch * channels * length * item
    return per_token + 2 * batch * groups * states * length * item


def timings(device, tune):
    from triton.testing import do_bench
    results = {}
    batch = 128
    big = torch.empty(1 << 28, dtype=torch.float32, device=device)
    copy_ms = do_bench(lambda: big.clone())
    copy_gbs = 2 * big.numel() * 4 / copy_ms / 1e6
    print(f'[time] device-to-device copy {copy_gbs:.0f} GB/s', flush=True)
    results['copy_GBps'] = copy_gbs
    del big
    for name, (channels, length, states, groups, with_z) in SHAPES.items():
        for dtype in (torch.float32, torch.bfloat16):
            inputs = make_inputs(batch, channels, length, states, groups, with_z, dtype, device)
            args = list(inputs.values())
            grad_out = torch.randn_like(inputs['u'])
            configs = [(FWD_TILE, 4, BWD_TILE, 4)]
            if tune and dtype == torch.bfloat16:
                configs += [(FWD_TILE * 2, 4, BWD_TILE // 2, 4), (FWD_TILE * 4, 8, BWD_TILE * 2, 8)]
            row = {}
            for fwd_tile, fwd_warps, bwd_tile, bwd_warps in configs:
                def fwd():
                    return selective_scan_fwd_triton(*args, True, False, dtype, False, tile=fwd_tile,
                                                     num_warps=fwd_warps)

                def fwd_bwd():
                    _, _, ckpt = selective_scan_fwd_triton(*args, True, False, dtype, True, tile=fwd_tile,
                                                           num_warps=fwd_warps)
                    return selective_scan_bwd_triton(grad_out, None, *args, ckpt, True, False, tile=bwd_tile,
                                                     num_warps=bwd_warps)
                key = f'fwd{fwd_tile}w{fwd_warps}_bwd{bwd_tile}w{bwd_warps}'
                fwd_ms, total_ms = do_bench(fwd), do_bench(fwd_bwd)
                row[key] = {'fwd_ms': fwd_ms, 'fwd_bwd_ms': total_ms}
            best_fwd = min(v['fwd_ms'] for v in row.values())
            best_total = min(v['fwd_bwd_ms'] for v in row.values())
            gbs = min_bytes(batch, channels, length, states, groups, with_z, dtype) / best_fwd / 1e6
            torch_fwd = do_bench(lambda: selective_scan_chunked_fwd(*args[:8], True, None, False, dtype), rep=20)
            torch_total = do_bench(lambda: selective_scan_chunked_bwd(grad_out, None, *args[:8], True, None, False),
                                   rep=20) + torch_fwd
            results[f'{name}_{str(dtype)[6:]}'] = dict(configs=row, triton_fwd_ms=best_fwd,
                                                       triton_fwd_bwd_ms=best_total, fwd_GBps=gbs,
                                                       torch_fwd_ms=torch_fwd, torch_fwd_bwd_ms=torch_total)
            print(f'[time] {name:16s} {str(dtype)[6:]:8s} triton fwd {best_fwd:.3f} ms ({gbs:.0f} GB/s, '
                  f'{100 * gbs / copy_gbs:.0f}% of copy), fwd+bwd {best_total:.3f} ms | torch chunked fwd '
                  f'{torch_fwd:.3f} ms, fwd+bwd {torch_total:.3f} ms | {row}', flush=True)
            del inputs, args, grad_out
            torch.cuda.empty_cache()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out', default=os.path.join(os.environ.get('OUT', '.'), 'selective_scan_device.json'))
    parser.add_argument('--smoke', action='store_true', help='tiny correctness run on the CPU (Triton interpreter)')
    parser.add_argument('--skip-correctness', action='store_true', help='only the int64 check and the timings')
    parser.add_argument('--skip-int64', action='store_true')
    parser.add_argument('--tune', action='store_true', help='time a few tile / warp settings per shape')
    args = parser.parse_args()
    torch.manual_seed(0)
    device = 'cpu' if args.smoke else 'cuda'
    if args.smoke:
        from kernels.common.interpreter import vectorize_interpreter_scans
        vectorize_interpreter_scans()
    start = time.time()
    results = {'device': 'cpu (interpreter)' if args.smoke else torch.cuda.get_device_name()}
    if not args.skip_correctness:
        results['correctness'] = correctness(device, args.smoke)
    if not args.smoke:
        if not args.skip_int64:
            try:
                results['int64'] = check_int64(device)
            except torch.cuda.OutOfMemoryError as error:
                results['int64'] = {'ok': None, 'error': str(error)}
                print(f'[check] int64 offsets skipped: {error}', flush=True)
            torch.cuda.empty_cache()
        results['timings'] = timings(device, args.tune)
    results['seconds'] = time.time() - start
    with open(args.out, 'w') as f:
        json.dump(results, f, indent=1)
    print(f'wrote {args.out} in {results["seconds"]:.0f} s')


if __name__ == '__main__':
    main()
