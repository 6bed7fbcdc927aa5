"""Fused SS2D core (Triton under the interpreter) and the CPU composition against the float64 reference."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mmssm.kernels import ROUTES, ss2d_scan
from mmssm.kernels.common.interpreter import vectorize_interpreter_scans
from mmssm.kernels.cross_scan import route_codes
from mmssm.kernels.ss2d import ss2d_flop_count, ss2d_scan_fused, ss2d_scan_ref
from mmssm.kernels.cross_scan.naive import cross_merge_ref, cross_scan_ref
from mmssm.kernels.ss2d.launchers import (MIN_PROGRAMS_PER_SM, dot_rank, route_ordered_bc, route_parts,
                                          ss2d_bwd_triton, ss2d_fwd_triton, write_pixel_ordered_bc)
from mmssm.kernels.testing import assert_close, poisoned_empty

vectorize_interpreter_scans()

ROUTES_BY_K = {1: ('v_flip',), 2: ('h_flip', 'v'), 4: ROUTES}
NAMES = ('x', 'x_proj_weight', 'dt_projs_weight', 'dt_projs_bias', 'A_logs', 'Ds')


def make_inputs(num_routes, num_states, rank=3, batch=2, channels=6, height=5, width=7):
    """float64 SS2D inputs with VMamba-like scales (A_logs = log(1..N)-ish, dt around softplus(-2..0))."""
    x = torch.randn(batch, channels, height, width, dtype=torch.float64)
    x_proj_weight = torch.randn(num_routes, rank + 2 * num_states, channels, dtype=torch.float64) * 0.5
    dt_projs_weight = torch.randn(num_routes, channels, rank, dtype=torch.float64) * 0.5
    dt_projs_bias = torch.rand(num_routes, channels, dtype=torch.float64) * 2 - 2
    A_logs = torch.log(torch.rand(num_routes * channels, num_states, dtype=torch.float64) * 3 + 0.5)
    Ds = torch.randn(num_routes * channels, dtype=torch.float64)
    return [x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds]


def reference(inputs, routes, grad_y):
    """float64 output and gradients of every input."""
    inputs = [t.detach().double().requires_grad_() for t in inputs]
    y = ss2d_scan_ref(*inputs, routes=routes)
    return y, torch.autograd.grad(y, inputs, grad_y.double())


def check_all(y, grads, y_ref, grads_ref, dtype):
    assert_close(y, y_ref, dtype, name='y')
    for name, grad, grad_ref in zip(NAMES, grads, grads_ref):
        assert_close(grad, grad_ref, dtype, name=f'grad {name}')


@pytest.mark.parametrize('num_states', [1, 4])
@pytest.mark.parametrize('num_routes', [1, 2, 4])
@pytest.mark.parametrize('block_l', [16, None])  # 16: three chunks of 35 steps, the last one partial; None: 8 or fewer
def test_fused_matches_reference(num_states, num_routes, block_l):
    routes = ROUTES_BY_K[num_routes]
    inputs = make_inputs(num_routes, num_states)
    grad_y = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    y_ref, grads_ref = reference(inputs, routes, grad_y)
    leaves = [t.float().requires_grad_() for t in inputs]
    y = ss2d_scan_fused(*leaves, routes=routes, block_l=block_l)
    check_all(y, torch.autograd.grad(y, leaves, grad_y.float()), y_ref, grads_ref, torch.float32)


@pytest.mark.parametrize('size', [(1, 9), (6, 1)])
def test_fused_thin_maps(size):
    inputs = make_inputs(4, 1, height=size[0], width=size[1])
    grad_y = torch.randn(2, 6, *size, dtype=torch.float64)
    y_ref, grads_ref = reference(inputs, ROUTES, grad_y)
    leaves = [t.float().requires_grad_() for t in inputs]
    y = ss2d_scan_fused(*leaves, block_l=16)
    check_all(y, torch.autograd.grad(y, leaves, grad_y.float()), y_ref, grads_ref, torch.float32)


def test_fused_many_channel_blocks():
    """40 channels: two blocks of 32 lanes, the second one partly masked; B and C gradients summed over blocks."""
    inputs = make_inputs(4, 1, channels=40, height=3, width=5)
    grad_y = torch.randn(2, 40, 3, 5, dtype=torch.float64)
    y_ref, grads_ref = reference(inputs, ROUTES, grad_y)
    leaves = [t.float().requires_grad_() for t in inputs]
    y = ss2d_scan_fused(*leaves)
    check_all(y, torch.autograd.grad(y, leaves, grad_y.float()), y_ref, grads_ref, torch.float32)


@pytest.mark.parametrize('size', [(5, 7), (12, 3)])
def test_inference_forward_matches_reference(size):
    """Without autograd the forward saves no chunk states."""
    inputs = make_inputs(2, 1, batch=1, channels=4, height=size[0], width=size[1])
    y_ref = ss2d_scan_ref(*inputs, routes=('h_flip', 'v'))
    with torch.no_grad():
        y = ss2d_scan_fused(*[t.float() for t in inputs], routes=('h_flip', 'v'))
    assert_close(y, y_ref, torch.float32, name='y')


@pytest.mark.parametrize('dtype, rank', [(torch.float32, 20), (torch.float16, 20), (torch.float16, 3)])
def test_fused_with_dot_rank_matches_reference(dtype, rank):
    """The delta of two 8-step chunks from one tl.dot (R = 20 padded to 32), x in fp32 or fp16; 20 of the 32 lanes'
    channels. 5 x 7 = 35 steps make 5 chunks, so the last pair's second chunk lies past the end. With and without
    autograd. R = 3 with 16-bit x: the forward's dot (R padded to 16), the backward's rank loop (delta not saved)."""
    inputs = make_inputs(4, 1, rank=rank, batch=1, channels=20)
    inputs[0] = inputs[0].to(dtype).double()  # the reference sees the rounded input
    assert dot_rank(20, 1, 20) == 32 and dot_rank(3, 1, 20, min_rank=1) == 16
    grad_y = torch.randn(1, 20, 5, 7, dtype=torch.float64)
    y_ref, grads_ref = reference(inputs, ROUTES, grad_y)
    leaves = [inputs[0].to(dtype).requires_grad_()] + [t.float().requires_grad_() for t in inputs[1:]]
    with torch.no_grad():
        assert_close(ss2d_scan_fused(*leaves, out_dtype=torch.float32), y_ref, dtype, name='y without autograd')
    y = ss2d_scan_fused(*leaves, out_dtype=torch.float32)
    check_all(y, torch.autograd.grad(y, leaves, grad_y.float()), y_ref, grads_ref, dtype)


@pytest.mark.parametrize('channels, height, width, limit',
                         [(160, 2048, 2048, '2\\*\\*31'), (2, 1, 2 ** 15, '2\\*\\*15')])
def test_launcher_refuses_maps_beyond_its_index_arithmetic(channels, height, width, limit):
    """Offsets inside one image are int32 (H*W*K*D = 2**22 * 4 * 160 > 2**31 overflows them) and a route's line
    wraps are counted in fp32 (sides below 2**15): a larger map gets a clear error, not wrong results."""
    x = torch.empty(1, channels, height, width, device='meta')
    params = [torch.empty(s, device='meta') for s in ((4, 12, channels), (4, channels, 10), (4, channels),
                                                      (4 * channels, 1), (4 * channels,))]
    with pytest.raises(ValueError, match=limit):
        ss2d_fwd_triton(x, *params, [0, 1, 2, 3], torch.float32, False)


def check_poisoned_launchers(num_states, rank, channels, **launch):
    """The fp32 launchers, forward then backward, in 16-step chunks on a 5x7 map with every output allocated
    NaN-filled, against the float64 reference; returns the forward's (states, deltas). ``launch``: overrides of
    both (``save_delta`` of the forward only)."""
    routes = ROUTES_BY_K[4]
    inputs = make_inputs(4, num_states, rank=rank, channels=channels)
    grad_y = torch.randn(2, channels, 5, 7, dtype=torch.float64)
    y_ref, grads_ref = reference(inputs, routes, grad_y)
    codes = route_codes(routes)
    fp32 = [t.float() for t in inputs]
    y, x_dbl, states, deltas = ss2d_fwd_triton(*fp32, codes, torch.float32, True, empty=poisoned_empty, block_l=16,
                                               **launch)
    backward_launch = {key: value for key, value in launch.items() if key != 'save_delta'}
    grads = ss2d_bwd_triton(grad_y.float(), fp32[0], x_dbl, states, deltas, *fp32[1:], codes, empty=poisoned_empty,
                            block_l=16, **backward_launch)
    check_all(y, grads, y_ref, grads_ref, torch.float32)
    return states, deltas


@pytest.mark.parametrize('save_delta', [True, False])
@pytest.mark.parametrize('num_states, parts, rank, channels', [(1, 1, 3, 6), (1, 2, 3, 6), (4, 4, 3, 6),
                                                             (1, 2, 20, 20), (1, 4, 8, 20)])
def test_launchers_write_every_output(num_states, parts, rank, channels, save_delta):
    """Every output allocated NaN-filled: an element a kernel forgot to write fails the comparison. ``parts``: the
    programs scan 4, 2 or 1 routes one after the other, adding into the same output. R = 20 takes the tl.dot
    delta over pairs of 16-step chunks: 35 steps make 3 chunks, the second pair's second chunk past the end. The
    backward reads the forward's delta (``save_delta``) or forms it again. R = 8: no padding of the dt weight for
    the backward's matmul."""
    _, deltas = check_poisoned_launchers(num_states, rank, channels, parts=parts, save_delta=save_delta)
    assert deltas.shape == ((2, 35, 4, channels) if save_delta else (0,))


@pytest.mark.parametrize('num_states, rank, channels, bwd_block_l', [(1, 20, 20, 4), (4, 3, 6, 8)])
def test_backward_chunks_shorter_than_the_forward(num_states, rank, channels, bwd_block_l):
    """A forward of 16-step chunks saves the state entering every ``bwd_block_l`` steps (NaN-poisoned: each must be
    written, the last chunk's past the end not) for a backward of shorter chunks; one that does not divide fails."""
    states, _ = check_poisoned_launchers(num_states, rank, channels, parts=2, bwd_block_l=bwd_block_l)
    assert states.shape == (2, 4, -(-35 // bwd_block_l), num_states, channels)
    fp32 = [t.float() for t in make_inputs(4, num_states, rank=rank, channels=channels)]
    with pytest.raises(ValueError, match='must divide'):
        ss2d_fwd_triton(*fp32, route_codes(ROUTES_BY_K[4]), torch.float32, True, block_l=8, bwd_block_l=16)


@pytest.mark.parametrize('num_routes, size, num_states, block_l', [(4, (5, 7), 1, 8), (2, (1, 9), 2, 16),
                                                                   (1, (6, 3), 1, 4)])
def test_route_ordered_bc_and_back(num_routes, size, num_states, block_l):
    """The kernels' B and C: each route's columns of x_dbl in its reading order (the cross-scan of those columns),
    zeros past L in rows padded for chunk pairs (NaN-poisoned allocation); their gradients' way back sums the
    route-ordered partials over the channel blocks into grad x_dbl at the pixels (each route's cross-merge), reading
    no padding (NaN there)."""
    routes, (height, width), rank = ROUTES_BY_K[num_routes], size, 3
    batch, length, rows = 2, height * width, rank + 2 * num_states
    codes = route_codes(routes)
    x_dbl = torch.randn(batch, length, num_routes * rows)
    bc = route_ordered_bc(x_dbl, codes, height, width, rank, num_states, block_l, empty=poisoned_empty)
    assert bc.shape[-1] % 64 == 0 and bc.shape[-1] % (2 * block_l) == 0 and bc.shape[-1] >= length
    columns = x_dbl.view(batch, height, width, num_routes, rows)[..., rank:].permute(0, 3, 4, 1, 2)  # (b, K, 2N, H, W)
    for k, route in enumerate(routes):
        assert torch.equal(bc[:, k, :, :length], cross_scan_ref(columns[:, k], routes=(route,))[:, 0]), route
    assert torch.equal(bc[..., length:], torch.zeros_like(bc[..., length:]))
    part_bc = torch.randn(batch, 3, num_routes, 2 * num_states, bc.shape[-1])
    part_bc[..., length:] = float('nan')
    grad_xdbl = poisoned_empty(batch * length, num_routes, rows)
    write_pixel_ordered_bc(part_bc, grad_xdbl, codes, height, width, rank, num_states)
    summed = part_bc.sum(1)[..., :length]  # (batch, K, 2N, L)
    for k, route in enumerate(routes):
        expected = cross_merge_ref(summed[:, k:k + 1], height, width, routes=(route,))  # (batch, 2N, H, W)
        assert_close(grad_xdbl[:, k, rank:], expected.permute(0, 2, 3, 1).reshape(batch * length, 2 * num_states),
                     torch.float32, name=route)


def test_route_parts_follow_the_device_and_refuse_non_divisors():
    """Fewest parts giving MIN_PROGRAMS_PER_SM programs per SM (132 SMs for the interpreter); a bad choice fails."""
    cpu = torch.device('cpu')
    target = MIN_PROGRAMS_PER_SM * 132
    assert route_parts(4, target, cpu) == 1
    assert route_parts(4, target // 2, cpu) == 2
    assert route_parts(4, 1, cpu) == 4
    assert route_parts(1, 1, cpu) == 1
    with pytest.raises(ValueError, match='divide'):
        route_parts(4, 1, cpu, parts=3)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('out_dtype', [None, torch.float32])
def test_fused_low_precision_inputs(dtype, out_dtype):
    """x in fp16/bf16 with fp32 parameters (autocast style); math in fp32, output in the chosen dtype."""
    inputs = make_inputs(4, 1)
    inputs[0] = inputs[0].to(dtype).double()  # the reference sees the rounded input
    grad_y = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    y_ref, grads_ref = reference(inputs, ROUTES, grad_y)
    leaves = [inputs[0].to(dtype).requires_grad_()] + [t.float().requires_grad_() for t in inputs[1:]]
    y = ss2d_scan_fused(*leaves, out_dtype=out_dtype, block_l=16)
    assert y.dtype == (out_dtype or dtype)
    grads = torch.autograd.grad(y, leaves, grad_y.to(y.dtype))
    assert [g.dtype for g in grads] == [t.dtype for t in leaves]
    check_all(y, grads, y_ref, grads_ref, dtype)


@pytest.mark.parametrize('num_routes', [2, 4])
def test_public_op_on_cpu_matches_reference(num_routes):
    """CPU tensors take the composition of the unfused public ops (no Triton)."""
    routes = ROUTES_BY_K[num_routes]
    inputs = make_inputs(num_routes, 4)
    grad_y = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    y_ref, grads_ref = reference(inputs, routes, grad_y)
    leaves = [t.float().requires_grad_() for t in inputs]
    y = ss2d_scan(*leaves, routes=routes)
    check_all(y, torch.autograd.grad(y, leaves, grad_y.float()), y_ref, grads_ref, torch.float32)


def test_fused_traces_under_compile_fullgraph():
    leaves = [t.float().requires_grad_() for t in make_inputs(2, 1)]
    compiled = torch.compile(lambda *a: ss2d_scan_fused(*a, routes=('h', 'v_flip')), fullgraph=True,
                             backend='aot_eager')
    y = compiled(*leaves)
    torch.testing.assert_close(y, ss2d_scan_fused(*leaves, routes=('h', 'v_flip')))
    y.sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in leaves)


def test_flops_are_counted():
    inputs = [t.float() for t in make_inputs(4, 1)]
    with FlopCounterMode(display=False) as counter:
        ss2d_scan_fused(*inputs)
    assert counter.get_total_flops() == ss2d_flop_count(2, 6, 35, 4, 3, 1) > 0


def test_bad_arguments_raise():
    inputs = [t.float() for t in make_inputs(4, 1)]
    with pytest.raises(ValueError, match='dt_projs_weight must have shape'):
        ss2d_scan(*inputs, routes=('h', 'v'))
    with pytest.raises(ValueError, match='unknown routes'):
        ss2d_scan(*inputs, routes=('h', 'v', 'h_flip', 'diag'))
    with pytest.raises(ValueError, match='batch, D, H, W'):
        ss2d_scan(inputs[0].flatten(2), *inputs[1:])
    bad_bias = [*inputs[:3], inputs[3][:, :4], *inputs[4:]]
    with pytest.raises(ValueError, match='dt_projs_bias'):
        ss2d_scan(*bad_bias)
    with pytest.raises(TypeError, match='x'):
        ss2d_scan(inputs[0].to(torch.int32), *inputs[1:])
    with pytest.raises(ValueError, match='block_l'):
        ss2d_scan_fused(*inputs, block_l=24)


@pytest.mark.parametrize('channels_last', [False, True])
def test_fake_kernels_match_real_outputs(channels_last):
    """torch.compile trusts the fake kernels' shapes, dtypes and strides (a channels-last x in VMamba)."""
    x, *params = [t.float() for t in make_inputs(4, 1)]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    codes = [0, 1, 2, 3]
    args = (x, *params, codes, torch.float32, True, None)
    torch.library.opcheck(torch.ops.mmssm.ss2d_fwd.default, args, test_utils='test_faketensor')
    y, x_dbl, states, deltas = torch.ops.mmssm.ss2d_fwd(*args)
    grad_args = (torch.randn_like(y), x, x_dbl, states, deltas, *params, codes, None)
    torch.library.opcheck(torch.ops.mmssm.ss2d_bwd.default, grad_args, test_utils='test_faketensor')
