"""Argument checks and the launchers of the fused SS2D kernels (projection matmuls, allocation, grid, reductions)."""
import torch

from ..common.launch import (cdiv, check_devices, check_dtype, check_shape, multiprocessor_count, next_power_of_2,
                             triton_runs_on)

SS2D_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
RANK_UNROLL = 8  # dt ranks handled per unrolled step of the kernels' rank loops
# delta = dt_projs_weight @ dt slice, with tl.dot from these dt ranks on, with a rank loop below (H200 sweeps of
# session 10, docs/benchmarks.md): the forward of 16-bit inputs at every rank (the dot took VMamba-T's bf16 stage-2
# forward from 0.759 to 0.454 ms), of fp32 inputs from R = 8 on (their tf32x3 dot: stage 2, R = 12, training
# launchers 2.337 -> 2.275 ms; stage 1, R = 6, 3.879 -> 3.929), a backward that forms delta again (not saved) from
# R = 16 on (the dot took the bf16 stage-1 backward from 1.885 to 3.096 ms)
FWD_DOT_MIN_RANK = {2: 1, 4: 8}  # by element size
BWD_DOT_MIN_RANK = 16
FP32_DOT = 'tf32x3'  # fp32 inputs' tl.dot precision: three tf32 products (fp32's accuracy on tensor cores)
# the training forward stores delta for the backward from this dt rank on (then no dt up-projection there: 168
# instead of 245 registers at stage 4); VMamba-T stage 1 (R = 6) trains faster forming it again, R >= 12 faster saved
SAVE_DELTA_MIN_RANK = 8
# caps on a thread's registers (ptxas's .maxnreg) by the inputs' element size, kernel and the values of a chunk each
# lane holds (steps x states): unconstrained, ptxas took up to 225 in the 16-bit backward at 8 steps x 1 state (9
# single-warp programs an SM) and 168 in the forward; the 16-bit caps are the registers of session 10's timed
# kernels (168: 12 programs an SM, 128: 16), all without spills in the chunk loops (tools/kernel_code_stats.py,
# Triton 3.6 and 3.8; the backward also at 128); the fp32 forward has none (its tf32x3 dots take 204-233 registers
# at stages 3-4; capped at 168 it spilled in the loop with Triton 3.8)
MAX_REGISTERS = {2: {'fwd': {8: 128}, 'bwd': {8: 168, 4: 112}},
                 4: {'fwd': {}, 'bwd': {8: 168, 4: 112}}}
MIN_PROGRAMS_PER_SM = 24  # single-warp programs per SM the scans need (H100 sweep, docs/benchmarks.md)


def check_ss2d_args(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, num_routes):
    """Raise a clear error on wrong shapes, dtypes or mixed devices; return (batch, D, H, W, R, N)."""
    if x.dim() != 4:
        raise ValueError(f'x must be (batch, D, H, W), got shape {tuple(x.shape)}')
    batch, channels, height, width = x.shape
    if dt_projs_weight.dim() != 3:
        raise ValueError(f'dt_projs_weight must be (K, D, R), got shape {tuple(dt_projs_weight.shape)}')
    rank = dt_projs_weight.shape[2]
    check_shape('dt_projs_weight', dt_projs_weight, (num_routes, channels, rank))
    if A_logs.dim() != 2:
        raise ValueError(f'A_logs must be (K*D, N), got shape {tuple(A_logs.shape)}')
    num_states = A_logs.shape[1]
    check_shape('A_logs', A_logs, (num_routes * channels, num_states))
    check_shape('x_proj_weight', x_proj_weight, (num_routes, rank + 2 * num_states, channels))
    check_shape('dt_projs_bias', dt_projs_bias, (num_routes, channels))
    check_shape('Ds', Ds, (num_routes * channels,))
    named = dict(x=x, x_proj_weight=x_proj_weight, dt_projs_weight=dt_projs_weight, dt_projs_bias=dt_projs_bias,
                 A_logs=A_logs, Ds=Ds)
    for name, tensor in named.items():
        check_dtype(name, tensor, SS2D_DTYPES + (torch.float64,))
    check_devices(**named)
    return batch, channels, height, width, rank, num_states


def block_sizes(channels, num_states, block_l=None, block_d=None, num_warps=None):
    """(BLOCK_D, BLOCK_N, BLOCK_L, warps): programs scan BLOCK_D channels x BLOCK_N states in chunks of BLOCK_L steps.

    A warp's 32 lanes take 32 channels and every lane holds the chunk's BLOCK_L x BLOCK_N values of its channel:
    8 steps at N = 1, fewer steps as N grows (BLOCK_L * BLOCK_N <= 16 values per lane). Maps of at most 16 channels
    (GroupMamba's single-route groups) take 8 channels x 16 steps: twice the programs (H100 sweep,
    docs/benchmarks.md).
    """
    block_n = next_power_of_2(num_states)
    num_warps = num_warps or 1
    narrow = channels <= 16 and block_n == 1
    block_l = block_l or (16 if narrow else max(1, min(8, 16 // block_n)))
    block_d = block_d or (8 if narrow else min(next_power_of_2(channels), 32 * num_warps))
    return block_d, block_n, block_l, num_warps


def backward_chunk(channels, num_states, block_l=None, bwd_block_l=None):
    """Steps per chunk of the backward, which the training forward saves a state for: ``bwd_block_l``, else
    ``block_l``, else the forward's tuned chunk. Shorter backward chunks hold fewer values a thread (at VMamba's
    stage 3: 96 registers at 4 steps, 168 at 8), the forward keeps its chunk (and its tl.dot delta)."""
    return bwd_block_l or block_sizes(channels, num_states, block_l)[2]


def register_cap(kernel, element_size, block_l, block_n):
    """The register cap of ``kernel`` ('fwd' or 'bwd') for inputs of ``element_size`` bytes at its chunk tile
    (``MAX_REGISTERS``; None: ptxas's choice)."""
    return MAX_REGISTERS.get(element_size, {}).get(kernel, {}).get(block_l * block_n)


def dot_rank(rank, num_states, channels, block_l=None, min_rank=BWD_DOT_MIN_RANK):
    """R padded for the ``tl.dot`` dt up-projection (0: a rank-1 update per rank instead).

    From ``min_rank`` on, the kernels form the delta of two chunks (2 * 8 steps: tl.dot's 16 rows) with tensor cores:
    per element they load one dt value where the rank loop loads R (docs/benchmarks.md).
    """
    wide_enough = channels > 16 and num_states == 1 and (block_l or 8) >= 8
    return max(16, next_power_of_2(rank)) if rank >= min_rank and wide_enough else 0


def saves_delta(rank):
    """Whether the training forward keeps delta for the backward (``SAVE_DELTA_MIN_RANK``)."""
    return rank >= SAVE_DELTA_MIN_RANK


def route_parts(num_routes, programs_per_part, device, parts=None):
    """How many groups of routes (a divisor of K) run side by side, each program scanning K / parts routes in turn.

    The fewest parts (less merging: the launcher sums the parts) that still give every SM
    ``MIN_PROGRAMS_PER_SM`` single-warp programs to hide the scans' memory latency.
    """
    if parts is not None:
        if parts < 1 or num_routes % parts:
            raise ValueError(f'parts must divide the {num_routes} routes, got {parts}')
        return parts
    target = MIN_PROGRAMS_PER_SM * multiprocessor_count(device)
    return next(p for p in range(1, num_routes + 1) if num_routes % p == 0 and
                (programs_per_part * p >= target or p == num_routes))


def sum_parts(parts, out_dtype, empty=torch.empty, block=4096, num_warps=8):
    """(P, ...) -> (...) in ``out_dtype``: the parts summed in fp32 by one memory-bound kernel (torch's sum over the
    leading axis ran at about 60% of the copy bandwidth here: 0.31 of 3.23 ms of VMamba-T stage 1's SS2D core)."""
    if parts.shape[0] == 1:
        return parts[0].to(out_dtype)  # a view when the dtypes agree
    out = empty(*parts.shape[1:], dtype=out_dtype, device=parts.device)
    numel = out.numel()
    from .triton_kernels import sum_parts_kernel
    sum_parts_kernel[(cdiv(numel, block),)](parts, out, numel, PARTS=parts.shape[0], BLOCK=block,
                                            num_warps=num_warps)
    return out


BC_STEPS = 64  # steps per program of the B, C reordering kernels (their fp32 line wraps are checked to 64 steps)


def padded_length(length, block_l):
    """Lp: the route-ordered B, C rows' length, L rounded up to a multiple of BC_STEPS and of the kernels' chunk
    pairs (2 * block_l): aligned vector loads, and every chunk the kernels walk, the one past the end of an odd
    count included, reads inside the rows without a mask."""
    multiple = max(BC_STEPS, 2 * block_l)
    return cdiv(length, multiple) * multiple


def route_ordered_bc(x_dbl, codes, height, width, rank, num_states, block_l, empty=torch.empty):
    """(batch, K, 2N, Lp) in x_dbl's dtype: each route's B and C columns of x_dbl (batch, H*W, K*(R+2N)) with its
    steps in its reading order, zeros from step L on (``triton_kernels.route_bc_kernel``); Lp for chunks of
    ``block_l`` steps (:func:`padded_length`)."""
    batch, length = x_dbl.shape[:2]
    length_pad = padded_length(length, block_l)
    bc = empty(batch, len(codes), 2 * num_states, length_pad, dtype=x_dbl.dtype, device=x_dbl.device)
    from .triton_kernels import route_bc_kernel
    route_bc_kernel[(length_pad // BC_STEPS, len(codes), batch)](
        x_dbl, bc, pack_codes(codes), height, width, length_pad, len(codes), num_states, RANK=rank,
        BLOCK_C=next_power_of_2(2 * num_states), BLOCK_S=BC_STEPS, num_warps=1)
    return bc


def write_pixel_ordered_bc(part_bc, grad_xdbl, codes, height, width, rank, num_states):
    """The inverse of :func:`route_ordered_bc` for gradients: route-ordered partials (batch, blocks, K, 2N, Lp) fp32,
    summed over the blocks, written into the B and C columns of ``grad_xdbl`` (batch*H*W, K, R+2N) at the routes'
    pixels (``triton_kernels.pixel_bc_kernel``; the dt columns are left as they are)."""
    batch, num_blocks, num_routes, _, length_pad = part_bc.shape
    from .triton_kernels import pixel_bc_kernel
    pixel_bc_kernel[(cdiv(height * width, BC_STEPS), num_routes, batch)](
        part_bc, grad_xdbl, pack_codes(codes), height, width, length_pad, num_routes, num_states, num_blocks,
        RANK=rank, BLOCK_C=next_power_of_2(2 * num_states), BLOCK_S=BC_STEPS, num_warps=1)


def pack_codes(codes):
    """The K route codes (2 bits each) as one int, route k in bits 2k and 2k+1, as the kernels read them."""
    return sum(code << (2 * k) for k, code in enumerate(codes))


def pixel_major(x):
    """(batch, D, H, W) -> (batch, H*W, D) contiguous: a free view of channels-last memory, else one copy."""
    batch, channels, height, width = x.shape
    return x.permute(0, 2, 3, 1).contiguous().view(batch, height * width, channels)


def channels_last_view(pixels, height, width):
    """(batch, H*W, D) pixel-major -> the same memory as a (batch, D, H, W) tensor (channels-last strides)."""
    batch, _, channels = pixels.shape
    return pixels.view(batch, height, width, channels).permute(0, 3, 1, 2)


def _dims(x, dt_projs_weight, A_logs):
    """(batch, D, H, W, R, N) of arguments checked by :func:`check_ss2d_args` (the public functions check them once;
    the launchers run on every call of a training step and do not check again)."""
    return (*x.shape, dt_projs_weight.shape[2], A_logs.shape[1])


def _check_triton_call(x, num_routes, rows):
    """The kernels run on CUDA (or the interpreter), index within one image in int32 and count a route's line wraps
    in fp32 (``triton_kernels._route_pixels``)."""
    batch, channels, height, width = x.shape
    if max(height, width) >= 2 ** 15:
        raise ValueError(f'the fused SS2D kernels take maps of sides below 2**15 pixels, got H={height}, W={width}')
    if height * width * num_routes * max(channels, rows) >= 2 ** 31:
        raise ValueError(f'the fused SS2D kernels index one image of H*W*K*max(D, R+2N) < 2**31 elements, got '
                         f'H={height}, W={width}, K={num_routes}, D={channels}, R+2N={rows}')
    if not triton_runs_on(x):
        raise RuntimeError(f'the fused SS2D kernels need CUDA tensors (or TRITON_INTERPRET=1), got {x.device}')


def ss2d_fwd_triton(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, codes, out_dtype, save_states,
                    empty=torch.empty, block_l=None, block_d=None, num_warps=None, parts=None,
                    dot_min_rank=None, fp32_dot=FP32_DOT, save_delta=None, bwd_block_l=None, max_registers=None):
    """Forward launcher: returns (y (batch, D, H, W) in channels-last memory, x_dbl (batch, H*W, K*(R+2N)),
    states and deltas, each an empty tensor unless saved).

    ``codes``: the K route codes (list of ints). x_dbl holds every pixel's projections, route by route.
    ``states`` (batch, K, chunks, N, D) fp32 holds the state entering each chunk of the backward (kept for it when
    ``save_states``; :func:`backward_chunk` steps, ``bwd_block_l`` if given, dividing the forward's chunk).
    ``block_l``, ``block_d``, ``num_warps``, ``parts``, ``dot_min_rank`` (the dt rank from which delta comes from
    tl.dot; default by dtype) and ``fp32_dot`` (its precision for fp32 inputs) override the tuned launch. With
    ``save_states`` and ``save_delta`` (default: :func:`saves_delta`), ``deltas`` (batch, H*W, K, D) in x's dtype
    holds delta before softplus, which the backward then reads instead of forming it again. ``max_registers``
    overrides :func:`register_cap`.
    """
    num_routes = len(codes)
    batch, channels, height, width, rank, num_states = _dims(x, dt_projs_weight, A_logs)
    rows = rank + 2 * num_states
    _check_triton_call(x, num_routes, rows)
    length, device = height * width, x.device
    state_steps = backward_chunk(channels, num_states, block_l, bwd_block_l)
    block_d, block_n, block_l, num_warps = block_sizes(channels, num_states, block_l, block_d, num_warps)
    if block_l % state_steps:
        raise ValueError(f'the backward\'s chunk ({state_steps} steps) must divide the forward\'s ({block_l})')
    num_chunks = cdiv(length, block_l)
    pixels = pixel_major(x)  # (batch, L, D)
    weight = x_proj_weight.view(num_routes * rows, channels).to(x.dtype)  # (K*(R+2N), D)
    x_dbl = torch.matmul(pixels, weight.t())  # (batch, L, K*(R+2N))
    num_blocks = cdiv(channels, block_d)
    parts = route_parts(num_routes, num_blocks * batch, device, parts)
    y_parts = empty(parts, batch, length, channels, dtype=out_dtype, device=device)
    states_shape = (batch, num_routes, cdiv(length, state_steps), num_states, channels) if save_states else (0,)
    states = empty(*states_shape, dtype=torch.float32, device=device)
    save_delta = save_states and (saves_delta(rank) if save_delta is None else save_delta)
    deltas = empty(*((batch, length, num_routes, channels) if save_delta else (0,)), dtype=x.dtype, device=device)
    rank_dot = dot_rank(rank, num_states, channels, block_l, dot_min_rank or FWD_DOT_MIN_RANK[x.element_size()])
    bc = route_ordered_bc(x_dbl, codes, height, width, rank, num_states, block_l, empty)
    from .triton_kernels import ss2d_fwd_kernel
    ss2d_fwd_kernel[(num_blocks, parts, batch)](
        pixels, x_dbl, bc, pack_codes(codes), dt_projs_weight.contiguous(), dt_projs_bias.contiguous(),
        A_logs.contiguous(), Ds.contiguous(), y_parts, states, deltas, channels, height, width, bc.shape[-1],
        num_routes, num_states, num_chunks, RANK=rank, RANK_UNROLL=RANK_UNROLL, RANK_DOT=rank_dot, FP32_DOT=fp32_dot,
        SAVE_STATES=save_states, SAVE_DELTA=save_delta, BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_L=block_l,
        STATE_STEPS=state_steps, num_warps=num_warps,
        maxnreg=max_registers or register_cap('fwd', x.element_size(), block_l, block_n))
    y = sum_parts(y_parts, out_dtype, empty)  # the merge: (batch, L, D)
    return channels_last_view(y, height, width), x_dbl, states, deltas


def ss2d_bwd_triton(grad_y, x, x_dbl, states, deltas, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds,
                    codes, empty=torch.empty, block_l=None, block_d=None, num_warps=None, parts=None,
                    dot_min_rank=BWD_DOT_MIN_RANK, fp32_dot=FP32_DOT, bwd_block_l=None, max_registers=None):
    """Backward launcher: gradients of (x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds); grad x in
    channels-last memory.

    ``x_dbl``, ``states`` and ``deltas`` come from :func:`ss2d_fwd_triton` with ``save_states=True`` and the same
    launch overrides (its chunk: :func:`backward_chunk`); with an empty ``deltas`` the backward forms delta again
    (the rank loop, or tl.dot from ``dot_min_rank`` on: the forward's sums up to their fp32 order).
    ``max_registers`` overrides :func:`register_cap`.
    """
    num_routes = len(codes)
    batch, channels, height, width, rank, num_states = _dims(x, dt_projs_weight, A_logs)
    rows = rank + 2 * num_states
    _check_triton_call(x, num_routes, rows)
    length, device = height * width, x.device
    block_l = backward_chunk(channels, num_states, block_l, bwd_block_l)
    block_d, block_n, block_l, num_warps = block_sizes(channels, num_states, block_l, block_d, num_warps)
    num_chunks, num_blocks = cdiv(length, block_l), cdiv(channels, block_d)
    check_shape('grad_y', grad_y, x.shape)
    check_shape('states', states, (batch, num_routes, num_chunks, num_states, channels))
    saved_delta = deltas.numel() > 0
    if saved_delta:
        check_shape('deltas', deltas, (batch, length, num_routes, channels))
    pixels, grad_pixels = pixel_major(x), pixel_major(grad_y)  # (batch, L, D)
    parts = route_parts(num_routes, num_blocks * batch, device, parts)
    grad_parts = empty(parts, batch, length, channels, dtype=x.dtype, device=device)  # the scans' part of grad x
    # d loss / d (delta before softplus) per pixel and route; half inputs keep it in half like autocast
    grad_delta = empty(batch, length, num_routes, channels, dtype=x.dtype, device=device)
    bc = route_ordered_bc(x_dbl, codes, height, width, rank, num_states, block_l, empty)  # (batch, K, 2N, Lp)
    # per-channel-block partial gradients of B and C, route-ordered like bc
    part_bc = empty(batch, num_blocks, num_routes, 2 * num_states, bc.shape[-1], dtype=torch.float32, device=device)
    # per-image partial gradients of A_logs (N columns), Ds and dt_projs_bias (one column each), summed below
    part_params = empty(batch, num_routes * channels, num_states + 2, dtype=torch.float32, device=device)
    from .triton_kernels import ss2d_bwd_kernel
    ss2d_bwd_kernel[(num_blocks, parts, batch)](
        pixels, x_dbl, bc, pack_codes(codes), dt_projs_weight.contiguous(), dt_projs_bias.contiguous(),
        A_logs.contiguous(), Ds.contiguous(), states, deltas, grad_pixels, grad_parts, grad_delta, part_bc,
        part_params, channels, height, width, bc.shape[-1], num_routes, num_states, num_chunks, RANK=rank,
        RANK_UNROLL=RANK_UNROLL, FP32_DOT=fp32_dot, SAVED_DELTA=saved_delta,
        RANK_DOT=0 if saved_delta else dot_rank(rank, num_states, channels, block_l, dot_min_rank),
        BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_L=block_l, num_warps=num_warps,
        maxnreg=max_registers or register_cap('bwd', x.element_size(), block_l, block_n))
    # delta = dt_projs_weight @ (each route's dt slice of x_dbl) + bias: the dt slice's gradient as one batched
    # matmul over the routes on a strided view, R padded to 8 (rows of R = 6 or 12 took cuBLAS's slow unaligned
    # kernels: 0.21 of 3.2 ms at VMamba-T stage 1); the weight's as one split-K GEMM over every route pair (a
    # batched matmul with a batch*L reduction and (D, R) outputs gets too few programs: 9.8 of 62 ms of a VMamba-T step)
    grad_delta = grad_delta.view(batch * length, num_routes * channels)
    weight_padded = dt_projs_weight.to(x.dtype)  # (K, D, R rounded up to a multiple of 8)
    if rank % 8:
        weight_padded = torch.nn.functional.pad(weight_padded, (0, -rank % 8))
    grad_low = torch.bmm(grad_delta.view(batch * length, num_routes, channels).transpose(0, 1),
                         weight_padded)[:, :, :rank]  # (K, batch*L, R)
    x_dbl_rows = x_dbl.view(batch * length, num_routes * rows)
    grad_dtw = torch.matmul(grad_delta.t(), x_dbl_rows)  # (K*D, K*(R+2N)), every route pair
    grad_dtw = grad_dtw.view(num_routes, channels, num_routes, rows).diagonal(dim1=0, dim2=2)  # (D, R+2N, K)
    grad_xdbl = empty(batch * length, num_routes, rows, dtype=x.dtype, device=device)  # like x_dbl
    grad_xdbl[:, :, :rank] = grad_low.transpose(0, 1)
    write_pixel_ordered_bc(part_bc, grad_xdbl, codes, height, width, rank, num_states)  # B, C columns
    grad_xdbl = grad_xdbl.view(batch * length, num_routes * rows)
    weight = x_proj_weight.view(num_routes * rows, channels).to(x.dtype)  # (K*(R+2N), D)
    grad_scan = sum_parts(grad_parts, x.dtype, empty)  # (batch, L, D)
    grad_scan.view(batch * length, channels).addmm_(grad_xdbl, weight)  # + the projections' part
    grad_proj = torch.matmul(grad_xdbl.t(), pixels.view(batch * length, channels))  # (K*(R+2N), D)
    grad_params = part_params.sum(0)  # (K*D, N + 2): A_logs, Ds, dt_projs_bias
    return (channels_last_view(grad_scan, height, width),  # one reduction per gradient below: no aliased outputs
            grad_proj.view_as(x_proj_weight).to(x_proj_weight.dtype),
            grad_dtw[:, :rank].permute(2, 0, 1).contiguous().to(dt_projs_weight.dtype),
            grad_params[:, num_states + 1].reshape(dt_projs_bias.shape).to(dt_projs_bias.dtype, copy=True),
            grad_params[:, :num_states].to(A_logs.dtype, copy=True),
            grad_params[:, num_states].to(Ds.dtype, copy=True))
