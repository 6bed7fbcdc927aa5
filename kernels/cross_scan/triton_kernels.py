"""Triton route kernels: read a (batch, C, H, W) map once and write K route copies, or gather K copies and sum.

A route is coded as an int: bit 0 set = column-major reading, bit 1 set = reversed (see ``routes.route_codes``).
The codes live in a small int32 tensor, so any subset and order of routes runs the same compiled kernel.
"""
import triton
import triton.language as tl

from ..common.launch import triton_runs_on


@triton.jit
def route_position(step, code, height, width):
    """Natural (row-major) position visited at ``step`` of the route ``code``."""
    length = height * width
    read = tl.where((code & 2) != 0, length - 1 - step, step)
    # column-major reading: step = col * H + row -> position row * W + col
    return tl.where((code & 1) != 0, (read % height) * width + read // height, read)


@triton.jit
def route_step(position, code, height, width):
    """Inverse of :func:`route_position`: the step of route ``code`` at natural ``position``."""
    length = height * width
    read = tl.where((code & 1) != 0, (position % width) * height + position // width, position)
    return tl.where((code & 2) != 0, length - 1 - read, read)


@triton.jit
def cross_scan_kernel(x_ptr, codes_ptr, out_ptr, channels, height, width, num_routes,
                      BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr):
    """x (batch, C, L) natural order -> out (batch, K, C, L) route order; one program per (L, C) tile."""
    pid_l, pid_c, batch = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    length = height * width
    position = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    channel = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (channel[:, None] < channels) & (position[None, :] < length)
    x_offsets = (batch * channels + channel[:, None]).to(tl.int64) * length + position[None, :]
    x = tl.load(x_ptr + x_offsets, mask=mask)
    for k in range(num_routes):
        step = route_step(position, tl.load(codes_ptr + k), height, width)
        row = (batch * num_routes + k) * channels + channel[:, None]
        tl.store(out_ptr + row.to(tl.int64) * length + step[None, :], x, mask=mask)


@triton.jit
def cross_merge_kernel(y_ptr, codes_ptr, out_ptr, channels, height, width, num_routes,
                       BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr):
    """y (batch, K, C, L) route order -> out (batch, C, L) natural order, the fp32 sum over routes."""
    pid_l, pid_c, batch = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    length = height * width
    position = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    channel = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (channel[:, None] < channels) & (position[None, :] < length)
    total = tl.zeros((BLOCK_C, BLOCK_L), dtype=tl.float32)
    for k in range(num_routes):
        step = route_step(position, tl.load(codes_ptr + k), height, width)
        row = (batch * num_routes + k) * channels + channel[:, None]
        total += tl.load(y_ptr + row.to(tl.int64) * length + step[None, :], mask=mask).to(tl.float32)
    out_offsets = (batch * channels + channel[:, None]).to(tl.int64) * length + position[None, :]
    tl.store(out_ptr + out_offsets, total.to(out_ptr.dtype.element_ty), mask=mask)


def _blocks(channels, length):
    block_l = min(triton.next_power_of_2(length), 256)
    block_c = min(triton.next_power_of_2(channels), max(1, 2048 // block_l))
    return block_c, block_l


def _check_triton_device(tensor):
    if not triton_runs_on(tensor):
        raise RuntimeError(f'the Triton route kernels need CUDA tensors (or TRITON_INTERPRET=1), got {tensor.device}')


def cross_scan_triton(x, codes, empty):
    """Launcher: x (batch, C, H, W) contiguous, codes int32 (K,) on x's device -> (batch, K, C, H*W)."""
    _check_triton_device(x)
    batch, channels, height, width = x.shape
    length, num_routes = height * width, codes.numel()
    out = empty(batch, num_routes, channels, length, dtype=x.dtype, device=x.device)
    block_c, block_l = _blocks(channels, length)
    grid = (triton.cdiv(length, block_l), triton.cdiv(channels, block_c), batch)
    cross_scan_kernel[grid](x, codes, out, channels, height, width, num_routes, BLOCK_C=block_c, BLOCK_L=block_l)
    return out


def cross_merge_triton(y, height, width, codes, empty):
    """Launcher: y (batch, K, C, H*W) contiguous in route order -> (batch, C, H, W), summed in fp32."""
    _check_triton_device(y)
    batch, num_routes, channels, length = y.shape
    out = empty(batch, channels, height, width, dtype=y.dtype, device=y.device)
    block_c, block_l = _blocks(channels, length)
    grid = (triton.cdiv(length, block_l), triton.cdiv(channels, block_c), batch)
    cross_merge_kernel[grid](y, codes, out, channels, height, width, num_routes, BLOCK_C=block_c, BLOCK_L=block_l)
    return out
