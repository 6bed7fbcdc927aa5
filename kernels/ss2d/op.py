"""Public fused SS2D core.

Layers: ``mmssm::ss2d_fwd`` / ``mmssm::ss2d_bwd`` torch.library custom ops (fake kernels for torch.compile, FLOP
formulas) running the fused Triton launchers -> a small autograd Function (custom ops only under a tracer,
``common.launch.traced``) -> :func:`ss2d_scan_fused`.
:func:`ss2d_scan` dispatches: CUDA tensors take the fused op, CPU (and float64) tensors the composition of the
unfused public ops (cross_scan, projections, selective_scan, cross_merge), which is :func:`ss2d_scan_ref` run on them.
``MMSSM_SS2D_IMPL=separate`` in the environment makes CUDA tensors take that composition too (A/B timing), and
``MMSSM_SCAN_IMPL=ref`` (debugging) as well, where the selective scan inside it is then the naive reference.
"""
import os
from typing import Optional

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from ..common.launch import cdiv, traced
from ..cross_scan import cross_merge, cross_scan
from ..cross_scan.naive import ROUTES
from ..cross_scan.routes import route_codes
from ..selective_scan import selective_scan
from ..selective_scan.op import selective_scan_flop_count
from .launchers import (backward_chunk, channels_last_view, check_ss2d_args, saves_delta, ss2d_bwd_triton,
                        ss2d_fwd_triton)
from .naive import ss2d_scan_ref


def _ss2d_fwd_eager(x: Tensor, x_proj_weight: Tensor, dt_projs_weight: Tensor, dt_projs_bias: Tensor, A_logs: Tensor,
                    Ds: Tensor, codes: list[int], out_dtype: torch.dtype, save_states: bool,
                    block_l: Optional[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(y, x_dbl, states, deltas): x_dbl, the chunk states and delta are kept for the backward."""
    return ss2d_fwd_triton(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, codes, out_dtype,
                           save_states, block_l=block_l)


ss2d_fwd = torch.library.custom_op('mmssm::ss2d_fwd', mutates_args=())(_ss2d_fwd_eager)


@ss2d_fwd.register_fake
def _ss2d_fwd_fake(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, codes, out_dtype, save_states,
                   block_l):
    batch, channels, height, width = x.shape
    num_routes, rows, _ = x_proj_weight.shape
    num_states, length = A_logs.shape[1], height * width
    chunk = backward_chunk(channels, num_states, block_l)
    states_shape = (batch, num_routes, cdiv(length, chunk), num_states, channels) if save_states else (0,)
    deltas_shape = (batch, length, num_routes, channels) if save_states and saves_delta(rows - 2 * num_states) else (0,)
    y = channels_last_view(x.new_empty(batch, length, channels, dtype=out_dtype), height, width)
    return (y, x.new_empty(batch, length, num_routes * rows), x.new_empty(states_shape, dtype=torch.float32),
            x.new_empty(deltas_shape))


def _ss2d_bwd_eager(grad_y: Tensor, x: Tensor, x_dbl: Tensor, states: Tensor, deltas: Tensor, x_proj_weight: Tensor,
                    dt_projs_weight: Tensor, dt_projs_bias: Tensor, A_logs: Tensor, Ds: Tensor, codes: list[int],
                    block_l: Optional[int]) -> list[Tensor]:
    """Gradients of (x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)."""
    return list(ss2d_bwd_triton(grad_y, x, x_dbl, states, deltas, x_proj_weight, dt_projs_weight, dt_projs_bias,
                                A_logs, Ds, codes, block_l=block_l))


ss2d_bwd = torch.library.custom_op('mmssm::ss2d_bwd', mutates_args=())(_ss2d_bwd_eager)


@ss2d_bwd.register_fake
def _ss2d_bwd_fake(grad_y, x, x_dbl, states, deltas, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds,
                   codes, block_l):
    # like the launcher's results: grad x in channels-last memory, the parameters' gradients contiguous
    batch, channels, height, width = x.shape
    grad_x = channels_last_view(x.new_empty(batch, height * width, channels), height, width)
    return [grad_x] + [t.new_empty(t.shape) for t in (x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)]


def ss2d_flop_count(batch, channels, length, num_routes, rank, num_states):
    """FLOPs of one forward: projections (2 K (R+2N) D per pixel), dt up-projection, the scans, the merge."""
    projections = 2 * batch * length * num_routes * (rank + 2 * num_states) * channels
    dt_up = 2 * batch * num_routes * channels * length * rank
    scans = selective_scan_flop_count(batch, num_routes * channels, length, num_states)
    return projections + dt_up + scans + (num_routes - 1) * batch * channels * length


@register_flop_formula(torch.ops.mmssm.ss2d_fwd)
def _ss2d_fwd_flops(x_shape, x_proj_shape, dt_w_shape, *args, out_shape=None, **kwargs):
    batch, channels, height, width = x_shape
    num_routes, rows, _ = x_proj_shape
    rank = dt_w_shape[2]
    return ss2d_flop_count(batch, channels, height * width, num_routes, rank, (rows - rank) // 2)


@register_flop_formula(torch.ops.mmssm.ss2d_bwd)
def _ss2d_bwd_flops(grad_y_shape, x_shape, x_dbl_shape, states_shape, deltas_shape, x_proj_shape, dt_w_shape,
                    *args, out_shape=None, **kwargs):
    """Twice the forward: a recomputed forward plus a reverse pass of the same size."""
    return 2 * _ss2d_fwd_flops(x_shape, x_proj_shape, dt_w_shape)


class SS2DFunction(torch.autograd.Function):
    """Saves the inputs, x_dbl, the chunk states and delta; the backward is one custom-op call."""

    @staticmethod
    def forward(ctx, x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, codes, out_dtype, save_states,
                block_l):
        fwd_op = torch.ops.mmssm.ss2d_fwd if traced() else _ss2d_fwd_eager
        y, x_dbl, states, deltas = fwd_op(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, codes,
                                          out_dtype, save_states, block_l)
        ctx.save_for_backward(x, x_dbl, states, deltas, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)
        ctx.codes, ctx.block_l = codes, block_l
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, x_dbl, states, deltas, *weights = ctx.saved_tensors
        bwd_op = torch.ops.mmssm.ss2d_bwd if traced() else _ss2d_bwd_eager
        grads = bwd_op(grad_y, x, x_dbl, states, deltas, *weights, ctx.codes, ctx.block_l)
        return (*grads, None, None, None, None)


def _apply_fused(inputs, codes, out_dtype, block_l):
    """SS2DFunction on checked arguments; chunk states are kept when autograd will need them."""
    save_states = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    return SS2DFunction.apply(*inputs, codes, out_dtype or inputs[0].dtype, save_states, block_l)


def ss2d_scan_fused(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, routes=ROUTES, out_dtype=None,
                    block_l=None):
    """The fused Triton SS2D core (CUDA, or CPU under TRITON_INTERPRET=1); arguments as :func:`ss2d_scan`.

    ``block_l`` (steps per chunk, a power of two) is for tests; by default it follows N.
    """
    codes = route_codes(routes)
    check_ss2d_args(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, len(codes))
    if block_l is not None and (block_l < 1 or block_l & (block_l - 1)):
        raise ValueError(f'block_l must be a power of two, got {block_l}')
    return _apply_fused((x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds), codes, out_dtype, block_l)


def ss2d_scan(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, routes=ROUTES, out_dtype=None):
    """SS2D core: scan a feature map along K routes with per-route projections and sum the routes back.

    Args:
        x: (batch, D, H, W), the activated features in their natural layout.
        x_proj_weight: (K, R + 2N, D) per-route projection to dt (R), B (N), C (N).
        dt_projs_weight: (K, D, R) low-rank dt up-projection. dt_projs_bias: (K, D), softplus applied inside.
        A_logs: (K*D, N), A = -exp(A_logs). Ds: (K*D,). routes: K names from ``mmssm.kernels.ROUTES``.
        out_dtype: output dtype (default x.dtype); math is fp32.

    Returns:
        (batch, D, H, W): the sum over routes of each route's scan output mapped back to row-major positions
        (channels-last memory from the fused CUDA kernels, which read x fastest in channels-last memory too).
    """
    codes = route_codes(routes)
    check_ss2d_args(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, len(codes))
    composed = os.environ.get('MMSSM_SS2D_IMPL') == 'separate' or os.environ.get('MMSSM_SCAN_IMPL') == 'ref'
    if x.is_cuda and x.dtype != torch.float64 and not composed:
        return _apply_fused((x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds), codes, out_dtype, None)
    return ss2d_scan_ref(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, routes, out_dtype,
                         scan=selective_scan, scan_routes=cross_scan, merge_routes=cross_merge)
