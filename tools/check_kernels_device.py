"""Check the Triton selective scan against the float64 reference at real model shapes, then time it.

Run from the repository root on a CUDA machine (no OpenMMLab needed):
    python tools/check_kernels_device.py [--out results.json] [--skip-int64] [--tune [sweep|prefetch]]
``TRITON_INTERPRET=1 python tools/check_kernels_device.py --smoke`` runs the correctness part at tiny sizes on the
CPU through the Triton interpreter.
"""
import argparse
import dataclasses
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kernels.selective_scan.chunked import selective_scan_chunked_bwd, selective_scan_chunked_fwd  # noqa: E402
from kernels.selective_scan.launchers import (ScanTiles, default_tiles, selective_scan_bwd_triton,  # noqa: E402
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


def check(label, batch, channels, length, states, groups, with_z, dtype, device, return_states=False,
          out_dtype=None, reference_free=False):
    """Triton fwd + bwd against the float64 reference; returns {tensor: relative RMS error} and pass/fail.

    ``reference_free`` only runs the Triton launchers (to compile them).
    """
    out_dtype = out_dtype or dtype
    inputs = make_inputs(batch, channels, length, states, groups, with_z, dtype, device, return_states, initial=True)
    out_shape = (batch, channels, states, length) if return_states else (batch, channels, length)
    grad_out = torch.randn(out_shape, device=device)
    grad_last = torch.randn(batch, channels, states, device=device)
    args = list(inputs.values())
    out, last, ckpt = selective_scan_fwd_triton(*args, True, return_states, out_dtype, True)
    grads = selective_scan_bwd_triton(grad_out.to(out_dtype), grad_last.to(out_dtype), *args, ckpt, True,
                                      return_states)
    if reference_free:
        return None
    ref_out, ref_last, ref_grads = reference(inputs, return_states, grad_out.to(out_dtype), grad_last.to(out_dtype))
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
    print(f'[check] {label} {str(dtype)[6:]} -> {"ok" if ok else "FAIL"} {report}', flush=True)
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


def correctness_cases(smoke, with_long=True):
    """(key, check arguments without the device) at the model shapes (batch 8), or tiny ones with ``smoke``."""
    scale = (lambda shape: (8, min(shape[1], 40), *shape[2:])) if smoke else (lambda shape: shape)
    batch = 1 if smoke else 8
    cases = []
    for name, shape in SHAPES.items():
        channels, length, states, groups, with_z = scale(shape)
        for dtype in (torch.float32, torch.bfloat16):
            cases.append((f'{name}_{str(dtype)[6:]}', (name, batch, channels, length, states, groups, with_z, dtype)))
    cases.append(('return_states_bf16', ('return_states', batch, 16 if smoke else 192, 197, 16, 1, False,
                                         torch.bfloat16, True)))
    if not with_long:
        return cases
    long_length = 300 if smoke else 16384
    long_case = (f'L={long_length} N=16 fp16', 2, 2 if smoke else 64, long_length, 16, 1, True, torch.float16)
    cases.append(('long_fp16_fp32out', (*long_case, False, torch.float32)))
    cases.append(('long_fp16', long_case))
    return cases


def correctness(device, smoke, with_long):
    return {key: check(*args[:8], device, *args[8:]) for key, args in correctness_cases(smoke, with_long)}


def min_bytes(batch, channels, length, states, groups, with_z, dtype):
    """Minimal HBM bytes of the bare forward: read u, delta (, z), B, C; write y."""
    item = torch.empty(0, dtype=dtype).element_size()
    per_token = (3 + with_z) * batch * channels * length * item
    return per_token + 2 * batch * groups * states * length * item


def candidate_tiles(num_states, length, dtype, tune):
    """The tuned launch shape, and with ``tune`` 'prefetch' the same with prefetching switched, with 'sweep' a sweep
    of chunk lengths x forward / backward tiles and warps."""
    default = default_tiles(num_states, length, dtype)
    if tune == 'prefetch':
        return [default, dataclasses.replace(default, prefetch=not default.prefetch)]
    if not tune:
        return [default]
    # (BLOCK_D, warps) per chunk length: with rows aligned to 8 steps (bf16 vectors), 8-step chunks keep each
    # channel's steps inside one thread (no shuffles in the scans); the i-th forward is paired with the i-th backward
    # setting, each kernel is timed on its own
    # (many states also: 32-step chunks, and 16-channel forward / 4-channel backward blocks, fewer registers a thread)
    chunks = (8, 16, 32, 64) if num_states == 1 else (8, 16, 32)
    fwd, bwd = ((32, 1), (64, 2), (64, 4)), ((32, 1), (64, 2), (16, 1))
    if num_states > 1:
        fwd, bwd = fwd + ((16, 1), ), bwd + ((4, 1), )
    shapes = [(c, fd, fw, bd, bw) for c in chunks for (fd, fw), (bd, bw) in zip(fwd, bwd)]
    if num_states == 1:  # 128-step chunks over 16 lanes: a warp scans 2 sequences where 64-step chunks scan 4, so
        # GroupMamba-T's 8,192 sequences (64 channels x batch 128) fill twice the warps (15 an SM at 64 steps)
        shapes += [(128, 8, 4, 2, 1), (128, 4, 2, 4, 2)]
    # prefetching as the tuned tiles do (on for one state, off for many)
    swept = [ScanTiles(c, c, c * fd, fw, c * bd, bw, default.prefetch) for c, fd, fw, bd, bw in shapes]
    # the tuned forward with a backward of 8-step chunks (each thread's steps inside it: no shuffles in its scans and
    # flips, 16 or 32 channels a warp: fewer dB, dC partials; the forward saves 8x the checkpoints)
    swept += [dataclasses.replace(default, bwd_chunk=8, bwd_tile=8 * channels, bwd_warps=1) for channels in (16, 32)
              if default.chunk > 8]
    # the tuned tiles with the backward capped at 128 registers (stage 3: 166 -> 128 without spills, Vim-S 168 -> 128
    # with 14 spilled outside its state loop; tools/kernel_code_stats.py)
    swept.append(dataclasses.replace(default, bwd_registers=128))
    return [default] + swept


def run_once(name, dtype, tiles, batch, device, with_backward=True):
    """One forward (+ backward) at a model shape: compiles the kernels of this launch shape (warm-up)."""
    channels, length, states, groups, with_z = SHAPES[name]
    args = list(make_inputs(batch, channels, length, states, groups, with_z, dtype, device).values())
    selective_scan_fwd_triton(*args, True, False, dtype, False, tiles=tiles)
    out, _, ckpt = selective_scan_fwd_triton(*args, True, False, dtype, True, tiles=tiles)
    if with_backward:
        selective_scan_bwd_triton(torch.ones_like(out), None, *args, ckpt, True, False, tiles=tiles)


def _compile_job(job):
    kind, payload = job
    torch.manual_seed(0)
    if kind == 'check':
        _, label, _, *shape = payload  # (key, label, batch, channels, length, states, groups, with_z, dtype, ...)
        check(label, 1, *shape[:6], 'cuda', *shape[6:], reference_free=True)
    else:
        run_once(*payload, batch=1, device='cuda')
    torch.cuda.synchronize()
    return job[0]


def compile_in_parallel(jobs, workers):
    """Fill Triton's disk cache from ``workers`` processes at batch 1, so the main process only loads kernels."""
    import multiprocessing
    start = time.time()
    try:
        with multiprocessing.get_context('spawn').Pool(workers) as pool:
            pool.map(_compile_job, jobs, chunksize=1)
    except Exception as error:  # the run goes on: the main process compiles what is missing
        print(f'[compile] parallel warm-up failed ({error!r}); compiling on first use instead', flush=True)
        return
    print(f'[compile] {len(jobs)} launches compiled in {time.time() - start:.0f} s', flush=True)


def timings(device, tune, with_torch):
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
        for dtype in (torch.bfloat16,) if tune == 'sweep' else (torch.float32, torch.bfloat16):
            inputs = make_inputs(batch, channels, length, states, groups, with_z, dtype, device)
            args = list(inputs.values())
            grad_out = torch.randn_like(inputs['u'])
            row = {}
            for tiles in candidate_tiles(states, length, dtype, tune):
                def fwd():
                    return selective_scan_fwd_triton(*args, True, False, dtype, False, tiles=tiles)

                def fwd_saving():
                    return selective_scan_fwd_triton(*args, True, False, dtype, True, tiles=tiles)
                ckpt = fwd_saving()[2]

                def bwd():
                    return selective_scan_bwd_triton(grad_out, None, *args, ckpt, True, False, tiles=tiles)
                row[str(tiles)] = {'fwd_ms': do_bench(fwd, warmup=5, rep=25),
                                   'fwd_saving_ms': do_bench(fwd_saving, warmup=5, rep=25),
                                   'bwd_ms': do_bench(bwd, warmup=5, rep=25),
                                   'chunk': f'{tiles.chunk}/{tiles.bwd_chunk or tiles.chunk}'}
            best_fwd_key = min(row, key=lambda k: row[k]['fwd_ms'])
            best_fwd = row[best_fwd_key]['fwd_ms']
            by_chunk = {}
            for key, v in row.items():  # fwd+bwd: best forward-with-checkpoints + best backward of one pair of
                # chunk lengths (forward / backward: the checkpoints' spacing)
                best = by_chunk.setdefault(v['chunk'], [float('inf'), float('inf')])
                best[0], best[1] = min(best[0], v['fwd_saving_ms']), min(best[1], v['bwd_ms'])
            best_chunk = min(by_chunk, key=lambda c: sum(by_chunk[c]))
            best_total = sum(by_chunk[best_chunk])
            gbs = min_bytes(batch, channels, length, states, groups, with_z, dtype) / best_fwd / 1e6
            entry = dict(configs=row, triton_fwd_ms=best_fwd, best_fwd=best_fwd_key, triton_fwd_bwd_ms=best_total,
                         best_chunk=best_chunk, fwd_GBps=gbs)
            line = (f'[time] {name:16s} {str(dtype)[6:]:8s} triton fwd {best_fwd:.3f} ms ({gbs:.0f} GB/s, '
                    f'{100 * gbs / copy_gbs:.0f}% of copy; {best_fwd_key}), fwd+bwd {best_total:.3f} ms '
                    f'(chunk {best_chunk})')
            if with_torch:
                entry['torch_fwd_ms'] = do_bench(
                    lambda: selective_scan_chunked_fwd(*args[:8], True, None, False, dtype), rep=20)
                entry['torch_fwd_bwd_ms'] = entry['torch_fwd_ms'] + do_bench(
                    lambda: selective_scan_chunked_bwd(grad_out, None, *args[:8], True, None, False), rep=20)
                line += f' | torch chunked fwd {entry["torch_fwd_ms"]:.3f} ms, fwd+bwd {entry["torch_fwd_bwd_ms"]:.3f}'
            results[f'{name}_{str(dtype)[6:]}'] = entry
            print(line, flush=True)
            if tune:
                for key, v in row.items():
                    print(f'    {key}: fwd {v["fwd_ms"]:.3f} fwd+ckpt {v["fwd_saving_ms"]:.3f} bwd {v["bwd_ms"]:.3f}',
                          flush=True)
            del inputs, args, grad_out
            torch.cuda.empty_cache()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out', default=os.path.join(os.environ.get('OUT', '.'), 'selective_scan_device.json'))
    parser.add_argument('--smoke', action='store_true', help='tiny correctness run on the CPU (Triton interpreter)')
    parser.add_argument('--skip-correctness', action='store_true', help='only the int64 check and the timings')
    parser.add_argument('--skip-int64', action='store_true')
    parser.add_argument('--skip-long', action='store_true', help='no correctness check at L = 16384')
    parser.add_argument('--tune', nargs='?', const='sweep', choices=('sweep', 'prefetch'),
                        help='time a sweep of launch shapes per shape (bf16), or the default tiles with and without '
                             'prefetching (fp32 and bf16)')
    parser.add_argument('--skip-torch', action='store_true', help='do not time the chunked PyTorch path')
    parser.add_argument('--compile-workers', type=int, default=0, help='compile every kernel first in N processes')
    args = parser.parse_args()
    torch.manual_seed(0)
    device = 'cpu' if args.smoke else 'cuda'
    if args.smoke:
        from kernels.common.interpreter import vectorize_interpreter_scans
        vectorize_interpreter_scans()
    start = time.time()
    results = {'device': 'cpu (interpreter)' if args.smoke else torch.cuda.get_device_name()}
    if args.compile_workers and not args.smoke:
        jobs = [] if args.skip_correctness else [('check', (key, *case))
                                                 for key, case in correctness_cases(False, not args.skip_long)]
        for name, shape in SHAPES.items():
            for dtype in (torch.bfloat16,) if args.tune == 'sweep' else (torch.float32, torch.bfloat16):
                tiles = candidate_tiles(shape[2], shape[1], dtype, args.tune)
                jobs += [('time', (name, dtype, launch)) for launch in tiles]
        compile_in_parallel(jobs, args.compile_workers)
    if not args.skip_correctness:
        results['correctness'] = correctness(device, args.smoke, not args.skip_long)
    if not args.smoke:
        if not args.skip_int64:
            try:
                results['int64'] = check_int64(device)
            except torch.cuda.OutOfMemoryError as error:
                results['int64'] = {'ok': None, 'error': str(error)}
                print(f'[check] int64 offsets skipped: {error}', flush=True)
            torch.cuda.empty_cache()
        results['timings'] = timings(device, args.tune, not args.skip_torch)
    results['seconds'] = time.time() - start
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(results, f, indent=1)
    print(f'wrote {args.out} in {results["seconds"]:.0f} s')


if __name__ == '__main__':
    main()
