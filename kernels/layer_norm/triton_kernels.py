"""Triton kernels of the channel-first LayerNorm (memory formats as strides: x and y may differ).

One program normalises BLOCK_P pixels of one image: a (BLOCK_C, BLOCK_P) tile holding every channel (BLOCK_C is
C padded to a power of two), statistics in fp32 reduced over the channel axis. On NCHW memory the pixel axis is
the contiguous one, on channels-last memory the channel axis; Triton specialises a stride of 1, so both layouts
get vectorised accesses, and reading one layout while writing the other is a transpose for free. The backward
writes the per-program sums of the weight and bias gradients (no atomics).
"""
import triton
import triton.language as tl


@triton.jit
def _tile(channels, length, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    """(channel index, pixel index, mask (BLOCK_C, BLOCK_P)) of this program's tile."""
    chan = tl.arange(0, BLOCK_C)
    pix = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    return chan, pix, (chan < channels)[:, None] & (pix < length)[None, :]


@triton.jit
def layer_norm_2d_fwd_kernel(x_ptr, weight_ptr, bias_ptr, y_ptr, mean_ptr, rstd_ptr, channels, length,
                             stride_c, stride_p, y_stride_c, y_stride_p, eps, SAVE_STATS: tl.constexpr,
                             BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    image = tl.program_id(1).to(tl.int64)
    chan, pix, mask = _tile(channels, length, BLOCK_C, BLOCK_P)
    start = image * channels * length
    x = tl.load(x_ptr + start + chan[:, None] * stride_c + pix[None, :] * stride_p, mask=mask,
                other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / channels
    centred = tl.where(mask, x - mean[None, :], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=0) / channels + eps)
    weight = tl.load(weight_ptr + chan, mask=chan < channels, other=0.0).to(tl.float32)
    bias = tl.load(bias_ptr + chan, mask=chan < channels, other=0.0).to(tl.float32)
    y = centred * rstd[None, :] * weight[:, None] + bias[:, None]
    tl.store(y_ptr + start + chan[:, None] * y_stride_c + pix[None, :] * y_stride_p, y.to(y_ptr.dtype.element_ty),
             mask=mask)
    if SAVE_STATS:
        tl.store(mean_ptr + image * length + pix, mean, mask=pix < length)
        tl.store(rstd_ptr + image * length + pix, rstd, mask=pix < length)


@triton.jit
def layer_norm_2d_bwd_kernel(x_ptr, weight_ptr, mean_ptr, rstd_ptr, grad_y_ptr, grad_x_ptr, part_ptr, channels,
                             length, stride_c, stride_p, y_stride_c, y_stride_p, BLOCK_C: tl.constexpr,
                             BLOCK_P: tl.constexpr):
    """grad x, and the program's partial weight and bias gradients in part (programs, 2, C)."""
    image = tl.program_id(1).to(tl.int64)
    chan, pix, mask = _tile(channels, length, BLOCK_C, BLOCK_P)
    start = image * channels * length
    offsets = chan[:, None] * stride_c + pix[None, :] * stride_p  # x and grad_x
    x = tl.load(x_ptr + start + offsets, mask=mask, other=0.0).to(tl.float32)
    grad_y = tl.load(grad_y_ptr + start + chan[:, None] * y_stride_c + pix[None, :] * y_stride_p, mask=mask,
                     other=0.0).to(tl.float32)
    mean = tl.load(mean_ptr + image * length + pix, mask=pix < length, other=0.0)
    rstd = tl.load(rstd_ptr + image * length + pix, mask=pix < length, other=0.0)
    weight = tl.load(weight_ptr + chan, mask=chan < channels, other=0.0).to(tl.float32)
    normed = tl.where(mask, (x - mean[None, :]) * rstd[None, :], 0.0)
    grad_normed = grad_y * weight[:, None]
    # d x = rstd * (g - mean_c(g) - x_hat * mean_c(g * x_hat)), g the gradient reaching x_hat
    mean_grad = tl.sum(grad_normed, axis=0) / channels
    mean_grad_normed = tl.sum(grad_normed * normed, axis=0) / channels
    grad_x = (grad_normed - mean_grad[None, :] - normed * mean_grad_normed[None, :]) * rstd[None, :]
    tl.store(grad_x_ptr + start + offsets, grad_x.to(grad_x_ptr.dtype.element_ty), mask=mask)
    part = (image * tl.num_programs(0) + tl.program_id(0)) * 2 * channels
    tl.store(part_ptr + part + chan, tl.sum(grad_y * normed, axis=1), mask=chan < channels)
    tl.store(part_ptr + part + channels + chan, tl.sum(grad_y, axis=1), mask=chan < channels)
