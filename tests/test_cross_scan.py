"""Route ops: the Triton merge (interpreter) and the public ops against the naive reference, forward and backward."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mmssm.kernels import ROUTES, cross_merge, cross_scan
from mmssm.kernels.cross_scan import cross_merge_ref, cross_scan_ref, route_codes
from mmssm.kernels.cross_scan.triton_kernels import cross_merge_triton
from mmssm.kernels.testing import assert_close, poisoned_empty

ROUTE_SETS = [('h',), ('v_flip',), ('v', 'h'), ('h_flip', 'v_flip'), ROUTES, ('v_flip', 'h', 'v', 'h_flip')]
SIZES = [(7, 5), (1, 9), (6, 1), (35, 3)]  # 35 rows: two patches of 32
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize('routes', ROUTE_SETS)
@pytest.mark.parametrize('size', SIZES)
@pytest.mark.parametrize('dtype', DTYPES)
def test_triton_cross_merge_matches_reference(routes, size, dtype):
    height, width = size
    y = torch.randn(2, len(routes), 3, height * width, dtype=torch.float64)
    out = cross_merge_triton(y.to(dtype), height, width, route_codes(routes), poisoned_empty)
    assert out.dtype == dtype
    assert_close(out, cross_merge_ref(y.to(dtype).double(), height, width, routes), dtype)


@pytest.mark.parametrize('routes', [ROUTES, ('h_flip', 'v')])
def test_triton_merge_is_adjoint_of_scan(routes):
    """<scan(x), g> == <x, merge(g)>: the backward of each op is the other op."""
    x, g = torch.randn(2, 4, 7, 5, dtype=torch.float64), torch.randn(2, len(routes), 4, 35, dtype=torch.float64)
    codes = route_codes(routes)
    lhs = (cross_scan_ref(x, routes) * g).sum()
    rhs = (x * cross_merge_triton(g.float(), 7, 5, codes, poisoned_empty).double()).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('routes', ROUTE_SETS)
@pytest.mark.parametrize('dtype', DTYPES)
def test_public_ops_match_reference(routes, dtype):
    x = torch.randn(2, 3, 7, 5).to(dtype)
    torch.testing.assert_close(cross_scan(x, routes), cross_scan_ref(x, routes), rtol=0, atol=0)
    y = torch.randn(2, len(routes), 3, 35, dtype=torch.float64)
    assert_close(cross_merge(y.to(dtype), 7, 5, routes), cross_merge_ref(y, 7, 5, routes), dtype)


@pytest.mark.parametrize('routes', [ROUTES, ('v',), ('h_flip', 'v_flip')])
def test_public_ops_gradients(routes):
    x = torch.randn(2, 3, 7, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, len(routes), 3, 35, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: cross_scan(t, routes), (x,))
    assert torch.autograd.gradcheck(lambda t: cross_merge(t, 7, 5, routes), (y,))
    assert torch.autograd.gradcheck(lambda t: cross_merge(t, 1, 9, routes), (y[..., :9].detach().requires_grad_(),))


def test_compile_fullgraph_traces_both_ops():
    x = torch.randn(2, 3, 7, 5, requires_grad=True)

    def round_trip(t):
        return cross_merge(cross_scan(t, ('h', 'v_flip')) * 2.0, 7, 5, ('h', 'v_flip'))

    compiled = torch.compile(round_trip, fullgraph=True, backend='aot_eager')
    out = compiled(x)
    torch.testing.assert_close(out, round_trip(x))
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 4.0))


def test_merge_flops_are_counted():
    y = torch.randn(2, 4, 3, 35)
    with FlopCounterMode(display=False) as counter:
        cross_merge(y, 7, 5)
    assert counter.get_total_flops() == 3 * 2 * 3 * 35


@pytest.mark.parametrize('routes, error', [(('h', 'diag'), ValueError), (('h', 'v', 'h_flip'), ValueError),
                                           (('h', 'h'), ValueError)])
def test_bad_routes_raise(routes, error):
    with pytest.raises(error, match='route'):
        cross_scan(torch.randn(1, 2, 3, 3), routes)


def test_bad_shapes_and_dtypes_raise():
    with pytest.raises(ValueError, match='batch, C, H, W'):
        cross_scan(torch.randn(2, 3, 9))
    with pytest.raises(ValueError, match='K=4'):
        cross_merge(torch.randn(2, 2, 3, 9), 3, 3)
    with pytest.raises(ValueError, match='H\\*W=12'):
        cross_merge(torch.randn(2, 4, 3, 9), 3, 4)
    with pytest.raises(TypeError, match='float'):
        cross_scan(torch.ones(1, 2, 3, 3, dtype=torch.int64))
