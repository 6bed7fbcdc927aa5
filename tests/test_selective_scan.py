"""Selective scan: every path (chunked CPU, Triton launchers under the interpreter) against the float64 reference."""
import pytest
import torch

from mmssm.kernels import selective_scan
from mmssm.kernels.common.interpreter import vectorize_interpreter_scans
from mmssm.kernels.selective_scan.launchers import ScanTiles, selective_scan_bwd_triton, selective_scan_fwd_triton
from mmssm.kernels.selective_scan.naive import selective_scan_ref
from mmssm.kernels.selective_scan.op import selective_scan_flop_count
from mmssm.kernels.testing import assert_close, poisoned_empty

vectorize_interpreter_scans()

NAMES = ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias', 'initial_state')


def make_inputs(batch, channels, states, length, groups, dtype=torch.float32, grouped=True, z=False,
                skip=True, bias=True, initial=False, return_states=False, softplus=True):
    """Random inputs as a dict (None for absent ones); A < 0, and delta (+ bias) > 0 when no softplus follows."""
    bc_shape = (batch, groups, states, length) if grouped else (batch, states, length)
    inputs = dict(
        u=torch.randn(batch, channels, length),
        delta=torch.randn(batch, channels, length) * 0.5 - 1.0 if softplus else torch.rand(batch, channels, length),
        A=-torch.exp(torch.randn(channels, states) * 0.5),
        B=torch.randn(bc_shape),
        C=None if return_states else torch.randn(bc_shape),
        D=torch.randn(channels) if skip and not return_states else None,
        z=torch.randn(batch, channels, length) if z and not return_states else None,
        delta_bias=(torch.randn(channels) * 0.5 if softplus else torch.rand(channels) * 0.1) if bias else None,
        initial_state=torch.randn(batch, channels, states) if initial else None)
    return {name: None if t is None else t.to(dtype) for name, t in inputs.items()}


def reference(inputs, softplus, return_states, grad_out, grad_last):
    """float64 reference outputs (out, last_state) and gradients of every present input."""
    leaves = {k: None if t is None else t.double().requires_grad_() for k, t in inputs.items()}
    out, last = selective_scan_ref(**leaves, delta_softplus=softplus, return_last_state=True,
                                   return_states=return_states)
    present = [k for k, t in leaves.items() if t is not None]
    grads = torch.autograd.grad((out * grad_out.double()).sum() + (last * grad_last.double()).sum(),
                                [leaves[k] for k in present])
    return out.detach(), last.detach(), dict(zip(present, grads))


def check_grads(actual, expected, dtype):
    for name, grad in zip(NAMES, actual):
        if name in expected:
            assert grad is not None, f'missing gradient of {name}'
            assert_close(grad, expected[name], dtype, name=f'grad {name}')
        else:
            assert grad is None, f'gradient of absent input {name}'


# (batch, D, N, L, G, options): odd sizes, every mode at least once
CASES = [
    (2, 8, 4, 63, 2, dict(z=True, initial=True)),
    (1, 4, 1, 1, 1, dict(grouped=False, skip=False, bias=False)),
    (2, 4, 16, 7, 1, dict(grouped=False, z=True)),
    (1, 8, 1, 197, 4, dict(initial=True)),
    (2, 4, 4, 63, 4, dict(return_states=True, initial=True)),
    (1, 6, 16, 45, 2, dict(z=True, initial=True, bias=False)),  # two 32-step chunks at N=16
]
SOFTPLUS = [True, False, True, True, True, False]


def _grad_targets(inputs, return_states, length, last_shape):
    batch, channels = inputs['u'].shape[:2]
    states = inputs['A'].shape[1]
    out_shape = (batch, channels, states, length) if return_states else (batch, channels, length)
    return torch.randn(out_shape), torch.randn(last_shape)


@pytest.mark.parametrize('case,softplus', list(zip(CASES, SOFTPLUS)) + [((1, 4, 4, 785, 2, dict(z=True)), True)])
def test_cpu_path_matches_reference(case, softplus):
    batch, channels, states, length, groups, options = case
    return_states = options.get('return_states', False)
    inputs = make_inputs(batch, channels, states, length, groups, softplus=softplus, **options)
    grad_out, grad_last = _grad_targets(inputs, return_states, length, (batch, channels, states))
    expected_out, expected_last, expected_grads = reference(inputs, softplus, return_states, grad_out, grad_last)
    leaves = {k: None if t is None else t.clone().requires_grad_() for k, t in inputs.items()}
    out, last = selective_scan(**leaves, delta_softplus=softplus, return_last_state=True,
                               return_states=return_states)
    assert 'SelectiveScanFunction' in type(out.grad_fn).__name__  # the fast path, not autograd through the loop
    assert_close(out, expected_out, torch.float32)
    assert_close(last, expected_last, torch.float32, name='last_state')
    ((out * grad_out).sum() + (last * grad_last).sum()).backward()
    check_grads([None if t is None else t.grad for t in leaves.values()], expected_grads, torch.float32)


def _poisoned(shape, dtype, device):
    return poisoned_empty(*shape, dtype=dtype, device=device)


def run_triton(inputs, softplus, return_states, out_dtype, grad_out, grad_last, tiles=None):
    """Both launchers on CPU tensors under the interpreter, every output allocated NaN-poisoned."""
    args = list(inputs.values())
    out, last, checkpoints = selective_scan_fwd_triton(*args, softplus, return_states, out_dtype, True,
                                                       empty=_poisoned, tiles=tiles)
    grads = selective_scan_bwd_triton(grad_out.to(out_dtype), grad_last.to(out_dtype), *args, checkpoints, softplus,
                                      return_states, empty=_poisoned, tiles=tiles)
    return out, last, grads


@pytest.mark.parametrize('case,softplus', list(zip(CASES, SOFTPLUS)))
def test_triton_launchers_match_reference(case, softplus):
    batch, channels, states, length, groups, options = case
    return_states = options.get('return_states', False)
    inputs = make_inputs(batch, channels, states, length, groups, softplus=softplus, **options)
    grad_out, grad_last = _grad_targets(inputs, return_states, length, (batch, channels, states))
    expected_out, expected_last, expected_grads = reference(inputs, softplus, return_states, grad_out, grad_last)
    out, last, grads = run_triton(inputs, softplus, return_states, torch.float32, grad_out, grad_last)
    assert_close(out, expected_out, torch.float32)
    assert_close(last, expected_last, torch.float32, name='last_state')
    check_grads(grads, expected_grads, torch.float32)


# several chunks per sequence (the state and gradient carried across chunks), with other BLOCK_D in the backward;
# with and without the next chunk's loads issued ahead (prefetch); a backward of 4-step chunks inside the forward's
# 16 (the forward saves the states entering them), under a register cap (on the GPU; the interpreter takes the
# launch option and ignores it)
SMALL_TILES = [ScanTiles(chunk=16, whole_sequence=16, fwd_tile=64, fwd_warps=1, bwd_tile=32, bwd_warps=1,
                         prefetch=prefetch) for prefetch in (False, True)]
SMALL_TILES.append(ScanTiles(chunk=16, whole_sequence=16, fwd_tile=64, fwd_warps=1, bwd_tile=32, bwd_warps=1,
                             prefetch=True, bwd_chunk=4, bwd_registers=96))


@pytest.mark.parametrize('case', [
    (1, 8, 1, 75, 2, dict(initial=True)), (2, 4, 3, 40, 1, dict(z=True, initial=True)),
    (1, 4, 2, 36, 2, dict(return_states=True)),  # rows aligned to 4 steps (vector loads and stores)
    (2, 8, 1, 196, 4, dict(initial=True)),  # VMamba-T stage 3's L = 14 * 14, aligned to 4
    (2, 8, 16, 45, 1, dict(grouped=False, z=True, initial=True)),  # Vim's N, L not a multiple of the chunk
    (1, 8, 5, 21, 2, dict(z=True, initial=True))])  # masked states (BLOCK_N 8), groups
@pytest.mark.parametrize('tiles', SMALL_TILES, ids=['loads_in_turn', 'prefetch', 'short_backward_chunks'])
def test_triton_carries_across_chunks(case, tiles):
    batch, channels, states, length, groups, options = case
    return_states = options.get('return_states', False)
    inputs = make_inputs(batch, channels, states, length, groups, **options)
    grad_out, grad_last = _grad_targets(inputs, return_states, length, (batch, channels, states))
    expected_out, expected_last, expected_grads = reference(inputs, True, return_states, grad_out, grad_last)
    out, last, grads = run_triton(inputs, True, return_states, torch.float32, grad_out, grad_last, tiles)
    assert_close(out, expected_out, torch.float32)
    assert_close(last, expected_last, torch.float32, name='last_state')
    check_grads(grads, expected_grads, torch.float32)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('path', ['cpu', 'triton'])
@pytest.mark.parametrize('out_dtype', [None, torch.float32])
def test_half_inputs(dtype, path, out_dtype):
    batch, channels, states, length, groups = 1, 4, 4, 63, 2
    inputs = make_inputs(batch, channels, states, length, groups, dtype=dtype, z=True, initial=True)
    grad_out, grad_last = _grad_targets(inputs, False, length, (batch, channels, states))
    expected_out, expected_last, expected_grads = reference(inputs, True, False, grad_out, grad_last)
    if path == 'triton':
        out, last, grads = run_triton(inputs, True, False, out_dtype or dtype, grad_out, grad_last)
    else:
        leaves = {k: None if t is None else t.clone().requires_grad_() for k, t in inputs.items()}
        out, last = selective_scan(**leaves, delta_softplus=True, return_last_state=True,
                                   out_dtype=out_dtype)
        ((out * grad_out.to(out.dtype)).sum() + (last * grad_last.to(out.dtype)).sum()).backward()
        grads = [None if t is None else t.grad for t in leaves.values()]
    assert out.dtype == (out_dtype or dtype) and last.dtype == out.dtype
    assert all(g is None or g.dtype == dtype for g in grads)
    assert_close(out, expected_out, dtype)
    assert_close(last, expected_last, dtype, name='last_state')
    check_grads(grads, expected_grads, dtype)


def test_long_half_sequence_stays_finite():
    batch, channels, states, length = 1, 2, 16, 16384
    inputs = make_inputs(batch, channels, states, length, 1, dtype=torch.float16, grouped=False, z=True)
    expected = selective_scan_ref(**inputs, delta_softplus=True, out_dtype=torch.float64)
    leaves = {k: None if t is None else t.clone().requires_grad_() for k, t in inputs.items()}
    out = selective_scan(**leaves, delta_softplus=True)
    assert_close(out, expected, torch.float16)
    out.float().square().sum().backward()
    for name, leaf in leaves.items():
        if leaf is not None:
            assert torch.isfinite(leaf.grad).all(), f'non-finite gradient of {name}'


def test_reference_gradcheck():
    inputs = make_inputs(1, 4, 3, 5, 2, dtype=torch.float64, z=True, initial=True)
    present = {name: t.requires_grad_() for name, t in inputs.items() if t is not None}

    def scan(*tensors):
        return selective_scan_ref(**dict(zip(present, tensors)), delta_softplus=True, return_last_state=True)

    assert torch.autograd.gradcheck(scan, tuple(present.values()))


def test_ref_environment_variable_forces_reference(monkeypatch):
    inputs = make_inputs(1, 4, 2, 9, 1, z=True)
    inputs['u'].requires_grad_()
    monkeypatch.setenv('MMSSM_SCAN_IMPL', 'ref')
    forced = selective_scan(**inputs, delta_softplus=True)
    monkeypatch.delenv('MMSSM_SCAN_IMPL')
    fast = selective_scan(**inputs, delta_softplus=True)
    assert 'SelectiveScanFunction' not in type(forced.grad_fn).__name__
    assert 'SelectiveScanFunction' in type(fast.grad_fn).__name__
    assert_close(fast, forced.detach(), torch.float32)


def test_flop_counter_counts_the_scan():
    from torch.utils.flop_counter import FlopCounterMode
    batch, channels, states, length = 2, 8, 4, 33
    inputs = make_inputs(batch, channels, states, length, 2, z=True)
    with FlopCounterMode(display=False) as counter:
        selective_scan(**inputs, delta_softplus=True)
    assert counter.get_total_flops() == 9 * batch * channels * states * length + 2 * batch * channels * length
    assert selective_scan_flop_count(batch, channels, length, states, with_D=False) == 9 * batch * channels * \
        states * length


def test_torch_compile_fullgraph():
    channels, states, length = 4, 2, 11

    class TinyMixer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.A = torch.nn.Parameter(-torch.rand(channels, states))
            self.proj = torch.nn.Linear(channels, channels + 2 * states)

        def forward(self, x):  # x: (batch, D, L)
            delta, B, C = self.proj(x.transpose(1, 2)).transpose(1, 2).split([channels, states, states], dim=1)
            return selective_scan(x, delta, self.A, B, C, delta_softplus=True)

    model, x = TinyMixer(), torch.randn(2, channels, length)
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager')
    out = compiled(x)
    assert_close(out, model(x).detach(), torch.float32)
    out.sum().backward()
    assert model.A.grad is not None and torch.isfinite(model.A.grad).all()


def test_fake_kernels_match_real_outputs():
    """torch.compile trusts the fake kernels' shapes, dtypes and strides, also for non-contiguous inputs."""
    inputs = make_inputs(2, 4, 3, 9, 2, z=True)
    inputs['delta'] = inputs['delta'].transpose(1, 2).contiguous().transpose(1, 2)  # (batch, D, L), L-major memory
    args = [inputs.get(name) for name in ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias')]
    fwd_args = (*args, None, True, False, torch.float32, True)
    torch.library.opcheck(torch.ops.mmssm.selective_scan_fwd.default, fwd_args, test_utils='test_faketensor')
    out, _, checkpoints = torch.ops.mmssm.selective_scan_fwd(*fwd_args)
    bwd_args = (torch.randn_like(out), None, *args, None, checkpoints, True, False)
    torch.library.opcheck(torch.ops.mmssm.selective_scan_bwd.default, bwd_args, test_utils='test_faketensor')


def test_clear_errors(monkeypatch):
    inputs = make_inputs(2, 4, 3, 5, 2)
    bad = [
        (dict(u=inputs['u'][0]), ValueError, 'u must be'),
        (dict(A=inputs['A'][:2]), ValueError, 'A must be'),
        (dict(B=inputs['B'][:, :, :2]), ValueError, 'B must have shape'),
        (dict(B=torch.randn(2, 3, 3, 5), C=torch.randn(2, 3, 3, 5)), ValueError, 'must divide D'),
        (dict(z=torch.randn(2, 4, 6)), ValueError, 'z must have shape'),
        (dict(C=None), ValueError, 'C is required'),
        (dict(delta=inputs['delta'].int()), TypeError, 'delta must have a dtype'),
        (dict(D=inputs['D'].to('meta')), ValueError, 'one device'),
    ]
    for change, error, message in bad:
        with pytest.raises(error, match=message):
            selective_scan(**{**inputs, **change})
    with pytest.raises(ValueError, match='C, D and z must be None'):
        selective_scan(**inputs, return_states=True)
    monkeypatch.setenv('TRITON_INTERPRET', '0')
    with pytest.raises(RuntimeError, match='needs CUDA tensors'):
        selective_scan_fwd_triton(*inputs.values(), False, False, torch.float32, False)
