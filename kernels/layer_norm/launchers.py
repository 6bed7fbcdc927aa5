"""Argument checks and the launchers of the channel-first LayerNorm kernels (layout, tile, partial sums)."""
import torch

from ..common.launch import (FLOAT_DTYPES, cdiv, check_devices, check_dtype, check_shape, next_power_of_2,
                             triton_runs_on)

MAX_CHANNELS = 2048  # one tile holds every channel of BLOCK_P pixels; wider maps take the PyTorch path
DEFAULT_TILE = 4096  # elements per program (H100 sweep, docs/benchmarks.md)


def check_layer_norm_2d_args(x, weight, bias):
    """Raise a clear error on wrong shapes, dtypes or mixed devices; return (batch, C, H, W)."""
    if x.dim() != 4:
        raise ValueError(f'x must be (batch, C, H, W), got shape {tuple(x.shape)}')
    channels = x.shape[1]
    check_shape('weight', weight, (channels,))
    check_shape('bias', bias, (channels,))
    for name, tensor in dict(x=x, weight=weight, bias=bias).items():
        check_dtype(name, tensor, FLOAT_DTYPES + (torch.float64,))
    check_devices(x=x, weight=weight, bias=bias)
    return tuple(x.shape)


def pixel_strides(x):
    """(stride between channels, stride between pixels) when x is NCHW or channels-last memory, else None."""
    batch, channels, height, width = x.shape
    if x.is_contiguous():
        return height * width, 1
    if x.is_contiguous(memory_format=torch.channels_last):
        return 1, channels
    return None


def triton_supports(x, weight):
    """Whether the Triton kernels take these (checked) arguments: no float64, 1 <= C <= MAX_CHANNELS, not empty."""
    return x.dtype != torch.float64 and weight.dtype != torch.float64 and 0 < x.shape[1] <= MAX_CHANNELS \
        and x.numel() > 0


def _check_triton_call(x, weight):
    if not triton_runs_on(x):
        raise RuntimeError(f'the LayerNorm2d kernels need CUDA tensors (or TRITON_INTERPRET=1), got {x.device}')
    if not triton_supports(x, weight):
        raise ValueError(f'the LayerNorm2d kernels take 1 to {MAX_CHANNELS} channels, non-empty maps and no '
                         f'float64; got shape {tuple(x.shape)}, {x.dtype}, weight {weight.dtype}')


def block_sizes(channels, tile=None, num_warps=None):
    """(BLOCK_C, BLOCK_P, warps): every channel of at least 8 pixels (NCHW rows of >= 16 bytes), 4 warps up to
    4,096 elements (H100 sweep, docs/benchmarks.md: 1.3x faster than 8 warps at C = 96), 16 at most (``ptxas -v``
    for sm_90: 32-element threads spill in the backward at C = 768)."""
    block_c = next_power_of_2(channels)
    block_p = max(8, (tile or DEFAULT_TILE) // block_c)
    return block_c, block_p, num_warps or min(16, max(4, block_c * block_p // 1024))


def _as_pixel_layout(x):
    """x itself when it is NCHW or channels-last memory, else an NCHW copy; with its (channel, pixel) strides."""
    strides = pixel_strides(x)
    if strides is None:
        x = x.contiguous()
        strides = pixel_strides(x)
    return x, strides


def _empty_like_layout(x, dtype, empty, channels_last=None):
    """An uninitialised tensor shaped like x from ``empty``: channels-last memory if ``channels_last``, NCHW if
    False, x's layout (NCHW unless x is channels-last) if None."""
    batch, channels, height, width = x.shape
    if channels_last is None:
        channels_last = not x.is_contiguous()
    if not channels_last:
        return empty(batch, channels, height, width, dtype=dtype, device=x.device)
    return empty(batch, height, width, channels, dtype=dtype, device=x.device).permute(0, 3, 1, 2)  # (b, C, H, W)


def layer_norm_2d_fwd_triton(x, weight, bias, eps, out_dtype, save_stats, empty=torch.empty, tile=None,
                             num_warps=None):
    """Forward launcher: (y in channels-last memory, mean (batch, H*W) fp32, rstd (batch, H*W) fp32).

    The statistics are empty tensors unless ``save_stats`` (kept for the backward). ``empty`` allocates the outputs
    (tests poison them with NaN); ``tile`` (elements per program) and ``num_warps`` override the launch shape.
    """
    batch, channels, height, width = x.shape  # checked by the public functions
    _check_triton_call(x, weight)
    x, (stride_c, stride_p) = _as_pixel_layout(x)
    length = height * width
    block_c, block_p, num_warps = block_sizes(channels, tile, num_warps)
    y = _empty_like_layout(x, out_dtype, empty, channels_last=True)
    stats_shape = (batch, length) if save_stats else (0,)
    mean, rstd = (empty(*stats_shape, dtype=torch.float32, device=x.device) for _ in range(2))
    from .triton_kernels import layer_norm_2d_fwd_kernel
    layer_norm_2d_fwd_kernel[(cdiv(length, block_p), batch)](
        x, weight, bias, y, mean, rstd, channels, length, stride_c, stride_p, 1, channels, eps, SAVE_STATS=save_stats,
        BLOCK_C=block_c, BLOCK_P=block_p, num_warps=num_warps)
    return y, mean, rstd


def layer_norm_2d_bwd_triton(grad_y, x, weight, mean, rstd, empty=torch.empty, tile=None, num_warps=None):
    """Backward launcher: (grad_x in x's memory format and dtype, grad_weight, grad_bias in weight's dtype);
    ``grad_y`` is read in channels-last memory (the forward's output layout; anything else is copied to it)."""
    batch, channels, height, width = x.shape
    check_shape('grad_y', grad_y, x.shape)
    _check_triton_call(x, weight)
    x, (stride_c, stride_p) = _as_pixel_layout(x)
    if pixel_strides(grad_y) != (1, channels):
        grad_y = _empty_like_layout(x, grad_y.dtype, torch.empty, channels_last=True).copy_(grad_y)
    length = height * width
    check_shape('mean', mean, (batch, length))
    check_shape('rstd', rstd, (batch, length))
    block_c, block_p, num_warps = block_sizes(channels, tile, num_warps)
    num_blocks = cdiv(length, block_p)
    grad_x = _empty_like_layout(x, x.dtype, empty)
    part = empty(batch * num_blocks, 2, channels, dtype=torch.float32, device=x.device)  # weight, bias partials
    from .triton_kernels import layer_norm_2d_bwd_kernel
    layer_norm_2d_bwd_kernel[(num_blocks, batch)](
        x, weight, mean, rstd, grad_y, grad_x, part, channels, length, stride_c, stride_p, 1, channels,
        BLOCK_C=block_c, BLOCK_P=block_p, num_warps=num_warps)
    # one reduction per gradient: a custom op's outputs may not alias one another
    return grad_x, part[:, 0].sum(0).to(weight.dtype), part[:, 1].sum(0).to(weight.dtype)
