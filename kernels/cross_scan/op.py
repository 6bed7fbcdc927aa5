"""Public route ops: validation, dispatch, autograd.

``cross_scan`` is one PyTorch strided copy per route on every device (a Triton version measured 0.4-0.7x of them on
an H100); ``cross_merge`` runs a Triton kernel on CUDA (2x the strided PyTorch composition on an H100,
docs/benchmarks.md) and the strided composition, summed in fp32, on CPU and for fp64. ``cross_scan`` and
``cross_merge`` are each other's adjoint: the backward of one is the other.
"""
import torch
from torch.utils.flop_counter import register_flop_formula

from .naive import ROUTES
from .routes import route_codes
from .torch_path import cross_merge_torch, cross_scan_torch

ROUTE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _uses_triton(tensor):
    return tensor.is_cuda and tensor.dtype != torch.float64


def _merge_impl(y, height, width, codes):
    if _uses_triton(y):  # the Triton merge sums in fp32
        from .triton_kernels import cross_merge_triton
        return cross_merge_triton(y.contiguous(), height, width, codes, torch.empty)
    return cross_merge_torch(y, height, width, codes)


@torch.library.custom_op('mmssm::cross_scan', mutates_args=())
def _cross_scan_op(x: torch.Tensor, codes: list[int]) -> torch.Tensor:
    return cross_scan_torch(x, codes)


@torch.library.custom_op('mmssm::cross_merge', mutates_args=())
def _cross_merge_op(y: torch.Tensor, height: int, width: int, codes: list[int]) -> torch.Tensor:
    return _merge_impl(y, height, width, codes)


@_cross_scan_op.register_fake
def _(x, codes):
    batch, channels, height, width = x.shape
    return x.new_empty(batch, len(codes), channels, height * width)


@_cross_merge_op.register_fake
def _(y, height, width, codes):
    return y.new_empty(y.shape[0], y.shape[2], height, width)


def _scan_setup(ctx, inputs, output):
    x, ctx.codes = inputs
    ctx.height, ctx.width = x.shape[2:]


def _scan_backward(ctx, grad):
    return torch.ops.mmssm.cross_merge(grad, ctx.height, ctx.width, ctx.codes), None


def _merge_setup(ctx, inputs, output):
    _, _, _, ctx.codes = inputs


def _merge_backward(ctx, grad):
    return torch.ops.mmssm.cross_scan(grad, ctx.codes), None, None, None


_cross_scan_op.register_autograd(_scan_backward, setup_context=_scan_setup)
_cross_merge_op.register_autograd(_merge_backward, setup_context=_merge_setup)


@register_flop_formula(torch.ops.mmssm.cross_merge)
def _cross_merge_flop(y_shape, height, width, codes, out_shape=None, **kwargs):
    batch, num_routes, channels, length = y_shape
    return (num_routes - 1) * batch * channels * length  # additions


def _check_dtype(name, tensor):
    if tensor.dtype not in ROUTE_DTYPES:
        raise TypeError(f'{name} must be float16/bfloat16/float32/float64, got {tensor.dtype}')


def cross_scan(x, routes=ROUTES):
    """Read a map along K routes: x (batch, C, H, W) -> (batch, K, C, H*W), route k in the order of routes[k].

    routes: 1, 2 or 4 distinct names from ROUTES = ('h', 'v', 'h_flip', 'v_flip') in any order.
    """
    codes = route_codes(routes)
    if x.dim() != 4:
        raise ValueError(f'x must be (batch, C, H, W), got shape {tuple(x.shape)}')
    _check_dtype('x', x)
    return torch.ops.mmssm.cross_scan(x, codes)


def cross_merge(y, height, width, routes=ROUTES):
    """Sum K route sequences back onto the map: y (batch, K, C, H*W) -> (batch, C, H, W).

    Route k of y is in the order of routes[k]; the sum runs in fp32 and is returned in y's dtype.
    """
    codes = route_codes(routes)
    if y.dim() != 4 or y.shape[1] != len(codes) or y.shape[3] != height * width:
        raise ValueError(f'y must be (batch, K={len(codes)}, C, H*W={height * width}), got shape {tuple(y.shape)}')
    _check_dtype('y', y)
    return torch.ops.mmssm.cross_merge(y, height, width, codes)
