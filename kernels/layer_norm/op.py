"""Public channel-first LayerNorm: normalise the channels of every pixel of a (batch, C, H, W) map.

Layers: ``mmssm::layer_norm_2d_fwd`` / ``mmssm::layer_norm_2d_bwd`` torch.library custom ops (fake kernels for
torch.compile) running the Triton launchers -> a small autograd Function (custom ops only under a tracer,
``common.launch.traced``) -> :func:`layer_norm_2d`, which takes
the Triton path for CUDA tensors (NCHW or channels-last input, C <= 2048) and the PyTorch one otherwise
(:func:`layer_norm_2d_fused` is the Triton path alone, for tests under TRITON_INTERPRET=1).
``MMSSM_NORM_IMPL=torch`` in the environment forces the PyTorch path (A/B timing, debugging).
"""
import os
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common.launch import traced
from .launchers import (check_layer_norm_2d_args, layer_norm_2d_bwd_triton, layer_norm_2d_fwd_triton,
                        triton_supports)


def _layer_norm_2d_fwd_eager(x: Tensor, weight: Tensor, bias: Tensor, eps: float, out_dtype: torch.dtype,
                             save_stats: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(y, mean, rstd): the per-pixel statistics are kept for the backward."""
    return layer_norm_2d_fwd_triton(x, weight, bias, eps, out_dtype, save_stats)


layer_norm_2d_fwd = torch.library.custom_op('mmssm::layer_norm_2d_fwd', mutates_args=())(_layer_norm_2d_fwd_eager)


@layer_norm_2d_fwd.register_fake
def _layer_norm_2d_fwd_fake(x, weight, bias, eps, out_dtype, save_stats):
    batch, _, height, width = x.shape
    stats_shape = (batch, height * width) if save_stats else (0,)
    y = x.new_empty(batch, height, width, x.shape[1], dtype=out_dtype).permute(0, 3, 1, 2)  # channels-last memory
    return y, x.new_empty(stats_shape, dtype=torch.float32), x.new_empty(stats_shape, dtype=torch.float32)


def _layer_norm_2d_bwd_eager(grad_y: Tensor, x: Tensor, weight: Tensor, mean: Tensor,
                             rstd: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of (x, weight, bias)."""
    return layer_norm_2d_bwd_triton(grad_y, x, weight, mean, rstd)


layer_norm_2d_bwd = torch.library.custom_op('mmssm::layer_norm_2d_bwd', mutates_args=())(_layer_norm_2d_bwd_eager)


@layer_norm_2d_bwd.register_fake
def _layer_norm_2d_bwd_fake(grad_y, x, weight, mean, rstd):
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):  # NCHW, as the launcher
        grad_x = x.new_empty(x.shape)
    else:
        grad_x = torch.empty_like(x, memory_format=torch.channels_last)
    return grad_x, weight.new_empty(weight.shape), weight.new_empty(weight.shape)


class LayerNorm2dFunction(torch.autograd.Function):
    """Saves x, the weight and the per-pixel statistics; the backward is one custom-op call."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, out_dtype, save_stats):
        fwd_op = torch.ops.mmssm.layer_norm_2d_fwd if traced() else _layer_norm_2d_fwd_eager
        y, mean, rstd = fwd_op(x, weight, bias, eps, out_dtype, save_stats)
        ctx.save_for_backward(x, weight, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, mean, rstd = ctx.saved_tensors
        bwd_op = torch.ops.mmssm.layer_norm_2d_bwd if traced() else _layer_norm_2d_bwd_eager
        grad_x, grad_weight, grad_bias = bwd_op(grad_y, x, weight, mean, rstd)
        return grad_x, grad_weight, grad_bias, None, None, None


def layer_norm_2d_torch(x, weight, bias, eps, out_dtype):
    """The PyTorch path: ``F.layer_norm`` on the channels-last view (a copy unless x is channels-last memory)."""
    pixels = x.permute(0, 2, 3, 1)  # (batch, H, W, C)
    y = F.layer_norm(pixels, pixels.shape[-1:], weight, bias, eps)
    return y.permute(0, 3, 1, 2).to(out_dtype)  # (batch, C, H, W)


def _apply_fused(x, weight, bias, eps, out_dtype):
    """LayerNorm2dFunction on checked arguments; the statistics are kept when autograd will need them."""
    save_stats = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or bias.requires_grad)
    return LayerNorm2dFunction.apply(x, weight, bias, eps, out_dtype or x.dtype, save_stats)


def layer_norm_2d_fused(x, weight, bias, eps=1e-5, out_dtype=None):
    """The Triton path (CUDA, or CPU under TRITON_INTERPRET=1); arguments as :func:`layer_norm_2d`."""
    check_layer_norm_2d_args(x, weight, bias)
    return _apply_fused(x, weight, bias, eps, out_dtype)


def layer_norm_2d(x, weight, bias, eps=1e-5, out_dtype=None):
    """LayerNorm over the channels of each pixel, statistics in fp32 (or float64).

    Args:
        x: (batch, C, H, W), NCHW or channels-last memory. weight, bias: (C,).
        out_dtype: the output dtype (default x.dtype): e.g. the autocast dtype when the output only feeds a
            projection that would cast it anyway.

    Returns:
        (batch, C, H, W) in channels-last memory, the layout of per-pixel Linear layers (the Triton path reads NCHW
        input and writes channels-last output in one pass).
    """
    check_layer_norm_2d_args(x, weight, bias)
    if x.is_cuda and triton_supports(x, weight) and os.environ.get('MMSSM_NORM_IMPL') != 'torch':
        return _apply_fused(x, weight, bias, eps, out_dtype)
    return layer_norm_2d_torch(x, weight, bias, eps, out_dtype or x.dtype)
