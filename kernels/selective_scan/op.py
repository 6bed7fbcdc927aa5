"""Public selective-scan op.

Layers: ``mmssm::selective_scan_fwd`` / ``mmssm::selective_scan_bwd`` torch.library custom ops (fake kernels for
torch.compile, FLOP formulas for FlopCounterMode) that dispatch CUDA tensors to the Triton launchers and CPU (or
float64) tensors to the chunked PyTorch path -> a small autograd Function -> :func:`selective_scan`. The Function
calls the custom ops only under a tracer (``common.launch.traced``); plain eager calls run their functions directly.
``MMSSM_SCAN_IMPL=ref`` in the environment forces the naive reference everywhere (debugging).
"""
import os
from typing import Optional

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from ..common.launch import cdiv, traced
from .chunked import selective_scan_chunked_bwd, selective_scan_chunked_fwd
from .launchers import check_selective_scan_args, checkpoint_steps, selective_scan_bwd_triton, selective_scan_fwd_triton
from .naive import selective_scan_ref

NUM_GRADS = 9  # u, delta, A, B, C, D, z, delta_bias, initial_state


def _uses_triton(u):
    return u.is_cuda and u.dtype != torch.float64


def _selective_scan_fwd_eager(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Optional[Tensor],
                              D: Optional[Tensor], z: Optional[Tensor], delta_bias: Optional[Tensor],
                              initial_state: Optional[Tensor], delta_softplus: bool, return_states: bool,
                              out_dtype: torch.dtype, save_checkpoints: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(out, last_state, checkpoints): checkpoints are empty unless the Triton path keeps them for its backward."""
    if _uses_triton(u):
        return selective_scan_fwd_triton(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus,
                                         return_states, out_dtype, save_checkpoints)
    out, last_state = selective_scan_chunked_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
                                                 return_states, out_dtype)
    return out, last_state, u.new_empty(0, dtype=torch.float32)


selective_scan_fwd = torch.library.custom_op('mmssm::selective_scan_fwd', mutates_args=())(_selective_scan_fwd_eager)


@selective_scan_fwd.register_fake
def _selective_scan_fwd_fake(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, return_states,
                             out_dtype, save_checkpoints):
    batch, channels, length = u.shape
    num_states = A.shape[1]
    out_shape = (batch, channels, num_states, length) if return_states else (batch, channels, length)
    checkpoint_shape = (0, )
    if save_checkpoints and _uses_triton(u):
        checkpoint_shape = (batch, cdiv(length, checkpoint_steps(num_states, length, u.dtype)), channels, num_states)
    return (u.new_empty(out_shape, dtype=out_dtype), u.new_empty((batch, channels, num_states), dtype=out_dtype),
            u.new_empty(checkpoint_shape, dtype=torch.float32))


def _selective_scan_bwd_eager(grad_out: Tensor, grad_last_state: Optional[Tensor], u: Tensor, delta: Tensor,
                              A: Tensor, B: Tensor, C: Optional[Tensor], D: Optional[Tensor], z: Optional[Tensor],
                              delta_bias: Optional[Tensor], initial_state: Optional[Tensor], checkpoints: Tensor,
                              delta_softplus: bool, return_states: bool) -> list[Tensor]:
    """Gradients of (u, delta, A, B, C, D, z, delta_bias, initial_state); an empty tensor stands for an absent input."""
    if _uses_triton(u):
        grads = selective_scan_bwd_triton(grad_out, grad_last_state, u, delta, A, B, C, D, z, delta_bias,
                                          initial_state, checkpoints, delta_softplus, return_states)
    else:
        grads = selective_scan_chunked_bwd(grad_out, grad_last_state, u, delta, A, B, C, D, z, delta_bias,
                                           delta_softplus, initial_state, return_states)
    return [u.new_empty(0) if grad is None else grad for grad in grads]


selective_scan_bwd = torch.library.custom_op('mmssm::selective_scan_bwd', mutates_args=())(_selective_scan_bwd_eager)


@selective_scan_bwd.register_fake
def _selective_scan_bwd_fake(grad_out, grad_last_state, u, delta, A, B, C, D, z, delta_bias, initial_state,
                             checkpoints, delta_softplus, return_states):
    inputs = (u, delta, A, B, C, D, z, delta_bias, initial_state)
    return [u.new_empty(0) if t is None else t.new_empty(t.shape) for t in inputs]  # contiguous, as the launchers


def selective_scan_flop_count(batch, channels, length, num_states, with_D=True, with_z=False, with_C=True):
    """FLOPs of one forward, counted like the official ``flops_selective_scan_fn``.

    9 * batch * D * N * L for the scan (per state and step: dt * A, exp, dt * B * u (2), the a * h + b update (2),
    C * h and the sum over N (2); 7 without C, when the states are returned), + batch * D * L for the D skip term,
    + batch * D * L for the z gate.
    """
    flops = (9 if with_C else 7) * batch * channels * num_states * length
    if with_D:
        flops += batch * channels * length
    if with_z:
        flops += batch * channels * length
    return flops


@register_flop_formula(torch.ops.mmssm.selective_scan_fwd)
def _selective_scan_fwd_flops(u_shape, delta_shape, A_shape, B_shape, C_shape, D_shape, z_shape, *args,
                              out_shape=None, **kwargs):
    batch, channels, length = u_shape
    return selective_scan_flop_count(batch, channels, length, A_shape[1], D_shape is not None, z_shape is not None,
                                     C_shape is not None)


@register_flop_formula(torch.ops.mmssm.selective_scan_bwd)
def _selective_scan_bwd_flops(grad_out_shape, grad_last_shape, u_shape, delta_shape, A_shape, B_shape, C_shape,
                              D_shape, z_shape, *args, out_shape=None, **kwargs):
    """Twice the forward: the backward recomputes the forward scan and runs a reverse scan of the same size."""
    batch, channels, length = u_shape
    return 2 * selective_scan_flop_count(batch, channels, length, A_shape[1], D_shape is not None,
                                         z_shape is not None, C_shape is not None)


class SelectiveScanFunction(torch.autograd.Function):
    """Saves the inputs (and the Triton path's state checkpoints); the backward is one custom-op call."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, return_states, out_dtype,
                save_checkpoints):
        fwd_op = torch.ops.mmssm.selective_scan_fwd if traced() else _selective_scan_fwd_eager
        out, last_state, checkpoints = fwd_op(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus,
                                              return_states, out_dtype, save_checkpoints)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, initial_state, checkpoints)
        ctx.delta_softplus, ctx.return_states = delta_softplus, return_states
        ctx.set_materialize_grads(False)
        return out, last_state

    @staticmethod
    def backward(ctx, grad_out, grad_last_state):
        *inputs, checkpoints = ctx.saved_tensors
        u, A = inputs[0], inputs[2]
        if grad_out is None:
            batch, channels, length = u.shape
            shape = (batch, channels, A.shape[1], length) if ctx.return_states else u.shape
            grad_out = u.new_zeros(shape, dtype=torch.float32)
        bwd_op = torch.ops.mmssm.selective_scan_bwd if traced() else _selective_scan_bwd_eager
        grads = bwd_op(grad_out, grad_last_state, *inputs, checkpoints, ctx.delta_softplus, ctx.return_states)
        grads = [None if t is None else grad for grad, t in zip(grads, inputs)]
        return (*grads, None, None, None, None)


def selective_scan(u, delta, A, B, C=None, D=None, z=None, delta_bias=None, delta_softplus=False,
                   initial_state=None, return_last_state=False, return_states=False, out_dtype=None):
    """Selective scan (Mamba-1 / S6) over the last axis, differentiable in every floating input.

    Args:
        u, delta: (batch, D, L). A: (D, N). B, C: (batch, G, N, L) or (batch, N, L), G divides D.
        D, delta_bias: (D,). z: (batch, D, L), gates the output by silu(z). initial_state: (batch, D, N).
        return_states: return all hidden states (batch, D, N, L) instead of y (C, D and z must be None).
        out_dtype: dtype of the output (default: u.dtype); math is fp32 (fp64 for fp64 inputs).

    Returns:
        y (batch, D, L) or states (batch, D, N, L); with return_last_state, a tuple (out, last_state (batch, D, N)).
    """
    check_selective_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state, return_states)
    if os.environ.get('MMSSM_SCAN_IMPL', '') == 'ref':
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
                                  return_last_state, return_states, out_dtype)
    inputs = (u, delta, A, B, C, D, z, delta_bias, initial_state)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    out, last_state = SelectiveScanFunction.apply(*inputs, delta_softplus, return_states, out_dtype or u.dtype,
                                                  needs_grad)
    return (out, last_state) if return_last_state else out
