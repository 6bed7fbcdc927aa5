"""Triton route merge: gather K route copies of a (batch, C, H, W) map and sum them in fp32.

A route is coded as an int: bit 0 set = column-major reading, bit 1 set = reversed (see ``routes.route_codes``).
The kernel takes the codes at compile time (one constexpr per route) and moves (H, W) patches, transposed in shared
memory for column-major routes, so every load and store is coalesced.
"""
import triton
import triton.language as tl

from ..common.launch import cdiv, next_power_of_2, triton_runs_on


@triton.jit
def _route_tile_offsets(hh, ww, CODE: tl.constexpr, height, width):
    """Route steps of a (BLOCK_H, BLOCK_W) patch, laid out so that consecutive steps run along the last axis.

    Row-major routes return (BLOCK_H, BLOCK_W) steps; column-major ones (BLOCK_W, BLOCK_H) steps, for the patch
    transposed (the transpose goes through shared memory, so stores and loads stay coalesced).
    """
    if (CODE & 1) != 0:
        step = ww[:, None] * height + hh[None, :]
        mask = (ww[:, None] < width) & (hh[None, :] < height)
    else:
        step = hh[:, None] * width + ww[None, :]
        mask = (hh[:, None] < height) & (ww[None, :] < width)
    if (CODE & 2) != 0:
        step = height * width - 1 - step
    return step, mask


@triton.jit
def _load_route(y_ptr, batch, channel, c_mask, hh, ww, channels, height, width, K: tl.constexpr,
                CODE: tl.constexpr, NUM_ROUTES: tl.constexpr):
    """The patch of route K (coded CODE) of y (batch, K, C, H*W), as a row-major fp32 (BLOCK_C, BLOCK_H, BLOCK_W)."""
    step, step_mask = _route_tile_offsets(hh, ww, CODE, height, width)
    y_rows = ((batch * NUM_ROUTES + K) * channels + channel).to(tl.int64) * (height * width)
    tile = tl.load(y_ptr + y_rows[:, None, None] + step[None, :, :], mask=c_mask & step_mask[None, :, :])
    if (CODE & 1) != 0:
        tile = tl.permute(tile, (0, 2, 1))  # (BLOCK_C, BLOCK_H, BLOCK_W): back to row-major
    return tile.to(tl.float32)


@triton.jit
def cross_merge_kernel(y_ptr, out_ptr, channels, height, width, CODE0: tl.constexpr, CODE1: tl.constexpr,
                       CODE2: tl.constexpr, CODE3: tl.constexpr, NUM_ROUTES: tl.constexpr, BLOCK_C: tl.constexpr,
                       BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """y (batch, K, C, H*W) route order -> out (batch, C, H, W), the fp32 sum over routes; one program per
    (patch, channel block, batch)."""
    pid_patch, pid_c, batch = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    patches_w = tl.cdiv(width, BLOCK_W)
    hh = (pid_patch // patches_w) * BLOCK_H + tl.arange(0, BLOCK_H)
    ww = (pid_patch % patches_w) * BLOCK_W + tl.arange(0, BLOCK_W)
    channel = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = channel[:, None, None] < channels
    total = _load_route(y_ptr, batch, channel, c_mask, hh, ww, channels, height, width, 0, CODE0, NUM_ROUTES)
    if NUM_ROUTES > 1:
        total += _load_route(y_ptr, batch, channel, c_mask, hh, ww, channels, height, width, 1, CODE1, NUM_ROUTES)
    if NUM_ROUTES > 2:
        total += _load_route(y_ptr, batch, channel, c_mask, hh, ww, channels, height, width, 2, CODE2, NUM_ROUTES)
    if NUM_ROUTES > 3:
        total += _load_route(y_ptr, batch, channel, c_mask, hh, ww, channels, height, width, 3, CODE3, NUM_ROUTES)
    mask = c_mask & (hh[None, :, None] < height) & (ww[None, None, :] < width)
    rows = (batch * channels + channel).to(tl.int64) * (height * width)
    tl.store(out_ptr + rows[:, None, None] + (hh[:, None] * width + ww[None, :])[None, :, :],
             total.to(out_ptr.dtype.element_ty), mask=mask)


def route_code_args(codes):
    """The compile-time route arguments of the kernel: CODE0..CODE3 (unused ones 0) and NUM_ROUTES."""
    if not 1 <= len(codes) <= 4:
        raise ValueError(f'the route kernel takes 1 to 4 routes, got {len(codes)}')
    padded = list(codes) + [0] * (4 - len(codes))
    return dict(CODE0=padded[0], CODE1=padded[1], CODE2=padded[2], CODE3=padded[3], NUM_ROUTES=len(codes))


def _grid_and_blocks(batch, channels, height, width):
    block_h, block_w = min(32, next_power_of_2(height)), min(32, next_power_of_2(width))
    block_c = min(next_power_of_2(channels), max(1, 2048 // (block_h * block_w)))
    grid = (cdiv(height, block_h) * cdiv(width, block_w), cdiv(channels, block_c), batch)
    return grid, dict(BLOCK_C=block_c, BLOCK_H=block_h, BLOCK_W=block_w)


def _check_triton_device(tensor):
    if not triton_runs_on(tensor):
        raise RuntimeError(f'the Triton route merge needs CUDA tensors (or TRITON_INTERPRET=1), got {tensor.device}')


def cross_merge_triton(y, height, width, codes, empty):
    """Launcher: y (batch, K, C, H*W) contiguous in route order -> (batch, C, H, W), summed in fp32."""
    _check_triton_device(y)
    batch, _, channels, _ = y.shape
    out = empty(batch, channels, height, width, dtype=y.dtype, device=y.device)
    grid, blocks = _grid_and_blocks(batch, channels, height, width)
    cross_merge_kernel[grid](y, out, channels, height, width, **route_code_args(codes), **blocks)
    return out
