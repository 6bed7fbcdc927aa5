"""Fused SS2D core in Triton: every route's selective scan, no route copy and no full-size delta tensor.

The kernels read the map in pixel-major (channels-last) memory, (batch, H*W, D): a route step of any reading order
(row-major, column-major, forward or reversed) is a row of D contiguous channels, so no route needs a transposed
copy. x_dbl, the routes' projections (dt-rank slice, B, C) of every pixel, is (batch, H*W, K*(R+2N)) in the same
pixel order. One program per (block of channels, route, image) walks its route in chunks of BLOCK_L steps: it loads
x and the dt slice of x_dbl at the chunk's pixels, forms delta = dt_projs_weight @ dt-slice + bias and softplus in
registers, scans, and adds the route's output into y at the pixels it read: the merge. A program takes one route or
several, one after the other (K / parts); the launcher sums the parts.

Tiles are (BLOCK_L steps, BLOCK_N states, BLOCK_D channels) with the channels last: a warp's lanes hold 32
channels and every lane holds all the chunk's steps of its channels, so the scans along the steps run inside each
thread (no shuffles) and a step's load or store is a row of contiguous channels.

A route is a 2-bit code: bit 0 column-major, bit 1 reversed (``cross_scan.routes``); the kernels take the K codes
packed in one integer argument, route k in bits 2k and 2k+1 (no device tensor: CUDA-graph capture safe).

B and C, one value per step shared by the channels, are read from a route-ordered copy of their x_dbl columns,
(batch, K, 2N, Lp) with each route's steps in its reading order (``route_bc_kernel``): a chunk's B (or C) is one
vector load, where reading them at the route's pixels of x_dbl made every lane place and load each step itself (a
third of the forward's instructions). The backward writes their gradients in the same order and
``pixel_bc_kernel`` puts them back at the pixels, summed over the channel blocks.
"""
import triton
import triton.language as tl

from ..common.triton_scan import LOG2_E, pick, reverse_scan_next_decay, scan_chunk, softplus, softplus_slope


@triton.jit
def _route_pixels(route_codes, k, chunk, length, height, width, BLOCK_L: tl.constexpr):
    """Row-major pixel indices (BLOCK_L,) of route k's steps chunk*BLOCK_L + j (reversed routes read from the end).

    A route reads lines (rows of W pixels 1 apart for row-major routes, columns of H pixels W apart for
    column-major ones), the lines W or 1 apart: one integer division per chunk places its first step in its line,
    and each step's wraps into the next lines are counted in fp32 (floor((offset + 1/2) / line): checked exact for
    every line below 2**15 pixels and offsets up to 64 past its ends; the launchers refuse longer lines). The same
    few operations for every route, no second formula to select from.
    """
    code = (route_codes >> (2 * k)) & 3
    column_major = (code & 1) != 0
    line = tl.where(column_major, height, width)  # pixels per line
    along = tl.where(column_major, width, 1)  # memory stride of a step along a line
    across = tl.where(column_major, 1, width)  # ... and of a line
    sign = 1 - (code & 2)  # +1 forward, -1 reversed
    first = chunk * BLOCK_L
    base = tl.where((code & 2) != 0, length - 1 - first, first)  # position of the chunk's first step
    in_line = base % line + sign * tl.arange(0, BLOCK_L)  # (BLOCK_L,) offsets in the first step's line, unwrapped
    inverse = 1.0 / line
    wraps = tl.floor(in_line.to(tl.float32) * inverse + 0.5 * inverse).to(tl.int32)
    return in_line * along + wraps * (across - line * along) + (base // line) * across


@triton.jit
def _chunk_offsets(route_codes, k, chunk, length, height, width, channels, d, d_mask, BLOCK_L: tl.constexpr):
    """Route k's chunk: step mask and pixels (BLOCK_L,), their channels' offsets in the pixel-major maps and mask
    (BLOCK_L, BLOCK_D)."""
    step_mask = chunk * BLOCK_L + tl.arange(0, BLOCK_L) < length
    pixel = _route_pixels(route_codes, k, chunk, length, height, width, BLOCK_L)
    return step_mask, pixel, pixel[:, None] * channels + d[None, :], step_mask[:, None] & d_mask[None, :]


@triton.jit
def _route_inputs(x_image, map_offsets, mask, bc_route, chunk, length_pad, num_states, n, n_mask,
                  BLOCK_L: tl.constexpr):
    """A chunk's u (BLOCK_L, BLOCK_D) and B, C (BLOCK_L, BLOCK_N, 1) in fp32; ``bc_route`` points to the route's
    (2N, Lp) rows of the route-ordered B and C."""
    u = tl.load(x_image + map_offsets, mask=mask, other=0.0).to(tl.float32)
    B, C = _route_bc(bc_route, chunk, length_pad, num_states, n, n_mask, BLOCK_L)
    return u, B, C


@triton.jit
def _route_bc(bc_route, chunk, length_pad, num_states, n, n_mask, BLOCK_L: tl.constexpr):
    """A chunk's B and C (BLOCK_L, BLOCK_N, 1) in fp32 from the route's rows: the rows are zero past L and long
    enough for every chunk the kernels walk, so no step mask (vector loads; Lp a multiple of 16)."""
    bc_ptrs = (bc_route + chunk * BLOCK_L + tl.arange(0, BLOCK_L)[:, None] + n[None, :] * length_pad)[:, :, None]
    bc_mask = n_mask[None, :, None]
    B = tl.load(bc_ptrs, mask=bc_mask, other=0.0).to(tl.float32)
    C = tl.load(bc_ptrs + num_states * length_pad, mask=bc_mask, other=0.0).to(tl.float32)
    return B, C


@triton.jit
def _rank_loop_delta(xdbl_pixels, dtw_rows, bias, step_mask, d_mask, RANK: tl.constexpr, RANK_UNROLL: tl.constexpr):
    """A chunk's delta before softplus (BLOCK_L, BLOCK_D) = dt_projs_weight @ dt-slice + bias, in fp32, as one
    rank-1 update per dt rank (small R)."""
    delta = tl.zeros((step_mask.shape[0], d_mask.shape[0]), dtype=tl.float32) + bias[None, :]
    for rank_start in range(0, RANK, RANK_UNROLL):  # unrolled by RANK_UNROLL: loads in flight, few registers
        for offset in tl.static_range(RANK_UNROLL):
            rank_index = rank_start + offset
            w_col = tl.load(dtw_rows + rank_index, mask=d_mask & (rank_index < RANK), other=0.0)
            dt_row = tl.load(xdbl_pixels + rank_index, mask=step_mask & (rank_index < RANK), other=0.0)
            delta += dt_row.to(tl.float32)[:, None] * w_col.to(tl.float32)[None, :]
    return delta


@triton.jit
def _dot_delta_pair(route_codes, k, pair, length, height, width, xdbl_route, row_stride, dtw_tile, bias,
                    RANK: tl.constexpr, RANK_DOT: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
                    FP32_DOT: tl.constexpr):
    """delta before softplus of chunks 2*pair and 2*pair + 1, each (BLOCK_L, BLOCK_D) in fp32, from one ``tl.dot``
    of their (2*BLOCK_L, RANK_DOT) dt slice with ``dtw_tile`` (RANK_DOT, BLOCK_D) in x's dtype (R >= 16: one
    dt value loaded per element where the rank loop loads R; 2*BLOCK_L >= 16 rows as tl.dot needs). FP32_DOT: the
    precision of fp32 dots ('ieee', or 'tf32x3': three tf32 tensor-core products, about fp32's accuracy)."""
    steps = pair * 2 * BLOCK_L + tl.arange(0, 2 * BLOCK_L)
    pixel = _route_pixels(route_codes, k, pair, length, height, width, 2 * BLOCK_L)
    r = tl.arange(0, RANK_DOT)
    dt_low = tl.load(xdbl_route + pixel[:, None] * row_stride + r[None, :],
                     mask=(steps < length)[:, None] & (r < RANK)[None, :], other=0.0)  # (2*BLOCK_L, RANK_DOT)
    delta = tl.zeros((2 * BLOCK_L, BLOCK_D), dtype=tl.float32) + bias[None, :]
    if dt_low.dtype == tl.float32:
        delta = tl.dot(dt_low, dtw_tile, delta, input_precision=FP32_DOT)
    else:
        delta = tl.dot(dt_low, dtw_tile, delta)
    halves = tl.permute(tl.reshape(delta, (2, BLOCK_L, BLOCK_D)), (1, 2, 0))  # (BLOCK_L, BLOCK_D, 2)
    return tl.split(halves)


@triton.jit
def _scan_terms(delta, u, B, A_log2, APPROX_LOG: tl.constexpr):
    """dt = softplus(delta) (BLOCK_L, BLOCK_D); decay = exp(dt A) = exp2(dt A log2(e)) from ``A_log2`` = A log2(e)
    (BLOCK_N, BLOCK_D), and drive = dt u B (BLOCK_L, BLOCK_N, BLOCK_D). APPROX_LOG: softplus's log approximated
    (16-bit x)."""
    dt = softplus(delta, APPROX_LOG)
    return dt, tl.exp2(dt[:, None, :] * A_log2[None, :, :]), (dt * u)[:, None, :] * B


@triton.jit
def _route_params(dtw_ptr, dtb_ptr, alog_ptr, ds_ptr, k, channels, num_states, d, d_mask, n, n_mask, x_dtype,
                  RANK: tl.constexpr, RANK_DOT: tl.constexpr):
    """Route k's dt_projs_weight rows (pointers) and, with RANK_DOT, its (RANK_DOT, BLOCK_D) tile in x's dtype (else
    a placeholder), bias, A = -exp(A_log) (BLOCK_N, BLOCK_D) and D, in fp32."""
    row = k * channels + d
    if RANK_DOT > 0:
        r = tl.arange(0, RANK_DOT)
        dtw_tile = tl.load(dtw_ptr + row[None, :] * RANK + r[:, None], mask=(r < RANK)[:, None] & d_mask[None, :],
                           other=0.0).to(x_dtype)
    else:
        dtw_tile = d
    bias = tl.load(dtb_ptr + row, mask=d_mask, other=0.0).to(tl.float32)
    a_log = tl.load(alog_ptr + row[None, :] * num_states + n[:, None], mask=n_mask[:, None] & d_mask[None, :],
                    other=float('-inf')).to(tl.float32)
    skip = tl.load(ds_ptr + row, mask=d_mask, other=0.0).to(tl.float32)
    return dtw_ptr + row * RANK, dtw_tile, bias, -tl.exp(a_log), skip


@triton.jit
def _route_bc_rows(bc_ptr, batch, k, num_routes, num_states, length_pad):
    """Route k's (2N, Lp) rows of a route-ordered (batch, K, 2N, Lp) tensor of this image."""
    return bc_ptr + (batch * num_routes + k).to(tl.int64) * 2 * num_states * length_pad


@triton.jit
def _route_bases(xdbl_ptr, bc_ptr, states_ptr, batch, k, length, length_pad, channels, num_routes, num_states,
                 num_saved, RANK: tl.constexpr):
    """Route k's columns of this image's x_dbl (pixel stride K*(R+2N)), its route-ordered B and C rows (2N, Lp) and
    its saved chunk states (num_saved, N, D)."""
    rows = RANK + 2 * num_states
    xdbl_route = xdbl_ptr + batch.to(tl.int64) * length * num_routes * rows + k * rows
    state_route = states_ptr + (batch * num_routes + k).to(tl.int64) * num_saved * num_states * channels
    return xdbl_route, _route_bc_rows(bc_ptr, batch, k, num_routes, num_states, length_pad), state_route


@triton.jit
def _pair_delta(route_codes, k, group, length, height, width, xdbl_route, row_stride, dtw_tile, bias,
                RANK: tl.constexpr, RANK_DOT: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
                FP32_DOT: tl.constexpr):
    """With RANK_DOT, :func:`_dot_delta_pair` of chunk group ``group``; else placeholders (the rank loop forms each
    chunk's delta)."""
    if RANK_DOT > 0:
        first, second = _dot_delta_pair(route_codes, k, group, length, height, width, xdbl_route, row_stride,
                                        dtw_tile, bias, RANK, RANK_DOT, BLOCK_L, BLOCK_D, FP32_DOT)
    else:
        first, second = bias, bias
    return first, second


@triton.jit
def ss2d_fwd_kernel(x_ptr, xdbl_ptr, bc_ptr, route_codes, dtw_ptr, dtb_ptr, alog_ptr, ds_ptr, y_ptr, states_ptr,
                    delta_ptr, channels, height, width, length_pad, num_routes, num_states, num_chunks,
                    RANK: tl.constexpr, RANK_UNROLL: tl.constexpr, RANK_DOT: tl.constexpr, FP32_DOT: tl.constexpr,
                    SAVE_STATES: tl.constexpr, SAVE_DELTA: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_L: tl.constexpr, STATE_STEPS: tl.constexpr):
    """The sum of part p's routes' outputs, pixel-major, into y (parts, batch, H*W, D) (the launcher sums the parts).

    Part p (program axis 1) scans routes p*K/parts .. (p+1)*K/parts - 1 one after the other; the first writes y, the
    later ones add to it. Chunks go in groups of one, or of two with RANK_DOT (one tl.dot forms both chunks' delta).
    SAVE_STATES: the state entering every STATE_STEPS steps (the backward's chunk, dividing BLOCK_L) goes to
    states (batch, K, cdiv(H*W, STATE_STEPS), N, D). SAVE_DELTA: delta before softplus goes to (batch, H*W, K, D)
    in delta's dtype, for the backward.
    """
    pid_d, part, batch = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    routes_per_part = num_routes // tl.num_programs(1)
    length = height * width
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n, j = tl.arange(0, BLOCK_N), tl.arange(0, BLOCK_L)
    d_mask, n_mask = d < channels, n < num_states
    nd_mask = n_mask[:, None] & d_mask[None, :]
    image = batch.to(tl.int64) * length * channels
    x_image = x_ptr + image
    y_image = y_ptr + part.to(tl.int64) * tl.num_programs(2) * length * channels + image
    row_stride = num_routes * (RANK + 2 * num_states)
    state_tile = n[:, None] * channels + d[None, :]  # one contiguous (BLOCK_N, BLOCK_D) tile per chunk
    GROUP: tl.constexpr = 2 if RANK_DOT > 0 else 1  # chunks per group
    SAVES: tl.constexpr = BLOCK_L // STATE_STEPS  # states saved per chunk
    num_saved = tl.cdiv(length, STATE_STEPS)
    for route in range(routes_per_part):
        k = part * routes_per_part + route
        dtw_rows, dtw_tile, bias, A, skip = _route_params(dtw_ptr, dtb_ptr, alog_ptr, ds_ptr, k, channels, num_states,
                                                          d, d_mask, n, n_mask, x_ptr.dtype.element_ty, RANK, RANK_DOT)
        xdbl_route, bc_route, state_route = _route_bases(xdbl_ptr, bc_ptr, states_ptr, batch, k, length, length_pad,
                                                         channels, num_routes, num_states, num_saved, RANK)
        h = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
        for group in range(tl.cdiv(num_chunks, GROUP)):
            first, second = _pair_delta(route_codes, k, group, length, height, width, xdbl_route, row_stride,
                                        dtw_tile, bias, RANK, RANK_DOT, BLOCK_L, BLOCK_D, FP32_DOT)
            for half in tl.range(0, GROUP, loop_unroll_factor=1):  # a loop, not unrolled: half the live registers
                chunk = group * GROUP + half
                if SAVE_STATES:  # state entering the chunk, for the backward
                    tl.store(state_route + chunk * SAVES * num_states * channels + state_tile, h,
                             mask=nd_mask & (chunk < num_chunks))
                step_mask, pixel, map_offsets, mask = _chunk_offsets(route_codes, k, chunk, length, height, width,
                                                                     channels, d, d_mask, BLOCK_L)
                xdbl_pixels = xdbl_route + pixel * row_stride  # (BLOCK_L,)
                if RANK_DOT > 0:
                    delta = tl.where(half == 0, first, second)
                else:
                    delta = _rank_loop_delta(xdbl_pixels, dtw_rows, bias, step_mask, d_mask, RANK, RANK_UNROLL)
                if SAVE_DELTA:
                    tl.store(delta_ptr + image * num_routes + k * channels + pixel[:, None] * (num_routes * channels)
                             + d[None, :], delta.to(delta_ptr.dtype.element_ty), mask=mask)
                y_ptrs = y_image + map_offsets
                y = tl.load(y_ptrs, mask=mask & (route > 0), other=0.0).to(tl.float32)  # earlier routes' sum
                u, B, C = _route_inputs(x_image, map_offsets, mask, bc_route, chunk, length_pad, num_states, n, n_mask,
                                        BLOCK_L)
                _, decay, drive = _scan_terms(delta, u, B, A * LOG2_E, x_ptr.dtype.element_ty.primitive_bitwidth < 32)
                decay_cum, state_from_zero = scan_chunk(decay, drive, 0)
                states = decay_cum * h[None, :, :] + state_from_zero  # (BLOCK_L, BLOCK_N, BLOCK_D)
                if SAVE_STATES:  # the states entering the backward's later chunks inside this one
                    for sub in tl.static_range(1, SAVES):
                        saved = chunk * SAVES + sub
                        tl.store(state_route + saved * num_states * channels + state_tile,
                                 pick(states, j[:, None, None], sub * STATE_STEPS - 1, 0),
                                 mask=nd_mask & (saved < num_saved))
                h = pick(states, j[:, None, None], BLOCK_L - 1, 0)
                y += tl.sum(states * C, axis=1) + skip[None, :] * u
                tl.store(y_ptrs, y.to(y_ptr.dtype.element_ty), mask=mask)
        tl.debug_barrier()  # the next route reads back y, maybe written by other threads of the program


@triton.jit
def ss2d_bwd_kernel(x_ptr, xdbl_ptr, bc_ptr, route_codes, dtw_ptr, dtb_ptr, alog_ptr, ds_ptr, states_ptr, delta_ptr,
                    dy_ptr, dx_ptr, grad_delta_ptr, part_bc_ptr, part_params_ptr, channels, height, width, length_pad,
                    num_routes, num_states, num_chunks, RANK: tl.constexpr, RANK_UNROLL: tl.constexpr,
                    RANK_DOT: tl.constexpr, FP32_DOT: tl.constexpr, SAVED_DELTA: tl.constexpr, BLOCK_D: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    """Reverse pass of part p's routes (as in the forward), chunk groups from the end; recomputes each chunk's
    states from the saved chunk state; with SAVED_DELTA reads the forward's delta (batch, H*W, K, D) (RANK_DOT 0
    then: no dt weights needed), else forms it again, with tl.dot or the rank loop as RANK_DOT says (the forward's
    sums up to their fp32 order).

    Everything per pixel is pixel-major like x. Writes the part's routes' sum of dx (the scans' part) into dx
    (parts, batch, H*W, D) in dx's dtype (the launcher sums the parts and adds the projections' part), the gradient
    of delta before softplus (batch, H*W, K, D) (the launcher turns it into the dt up-projection's gradients with
    matmuls), per-channel-block partial gradients of B and C route-ordered like bc (batch, blocks, K, 2N, Lp), and
    per-image partials of A_logs, Ds and dt_projs_bias in the columns of part_params (batch, K*D, N + 2).
    """
    pid_d, part, batch = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    routes_per_part = num_routes // tl.num_programs(1)
    num_blocks = tl.num_programs(0)
    length = height * width
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n, j = tl.arange(0, BLOCK_N), tl.arange(0, BLOCK_L)
    d_mask, n_mask = d < channels, n < num_states
    nd_mask = n_mask[:, None] & d_mask[None, :]
    image = batch.to(tl.int64) * length * channels
    x_image, dy_image = x_ptr + image, dy_ptr + image
    dx_image = dx_ptr + part.to(tl.int64) * tl.num_programs(2) * length * channels + image
    row_stride = num_routes * (RANK + 2 * num_states)
    state_tile = n[:, None] * channels + d[None, :]  # one contiguous (BLOCK_N, BLOCK_D) tile per chunk
    GROUP: tl.constexpr = 2 if RANK_DOT > 0 else 1  # chunks per group, as in the forward
    num_groups = tl.cdiv(num_chunks, GROUP)
    for route in range(routes_per_part):
        k = part * routes_per_part + route
        dtw_rows, dtw_tile, bias, A, skip = _route_params(dtw_ptr, dtb_ptr, alog_ptr, ds_ptr, k, channels, num_states,
                                                          d, d_mask, n, n_mask, x_ptr.dtype.element_ty, RANK, RANK_DOT)
        xdbl_route, bc_route, state_route = _route_bases(xdbl_ptr, bc_ptr, states_ptr, batch, k, length, length_pad,
                                                         channels, num_routes, num_states, num_chunks, RANK)
        grad_delta_route = grad_delta_ptr + image * num_routes + k * channels  # pixel stride K*D
        delta_route = delta_ptr + image * num_routes + k * channels  # the same layout
        # this channel block's partial B, C gradients: route-ordered rows (2N, Lp) like bc_route's
        part_route = _route_bc_rows(part_bc_ptr, batch * num_blocks + pid_d, k, num_routes, num_states, length_pad)
        carry = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)  # a_{t+1} * dh_{t+1} at the chunk's end
        # the parameter gradients' terms, kept per step and summed once after the route: a sum per chunk ran in the
        # grad_delta store's layout, steps across lanes (48 of the 8-step chunk's 128 shuffles, 854 -> 750
        # instructions; within the register cap)
        grad_a = tl.zeros((BLOCK_L, BLOCK_N, BLOCK_D), dtype=tl.float32)
        grad_skip = tl.zeros((BLOCK_L, BLOCK_D), dtype=tl.float32)
        grad_bias = tl.zeros((BLOCK_L, BLOCK_D), dtype=tl.float32)
        for group_from_end in range(num_groups):
            group = num_groups - 1 - group_from_end
            first, second = _pair_delta(route_codes, k, group, length, height, width, xdbl_route, row_stride,
                                        dtw_tile, bias, RANK, RANK_DOT, BLOCK_L, BLOCK_D, FP32_DOT)
            for half_from_end in tl.range(0, GROUP, loop_unroll_factor=1):  # as in the forward
                chunk = group * GROUP + GROUP - 1 - half_from_end
                h0 = tl.load(state_route + chunk * num_states * channels + state_tile,
                             mask=nd_mask & (chunk < num_chunks), other=0.0)
                step_mask, pixel, map_offsets, mask = _chunk_offsets(route_codes, k, chunk, length, height, width,
                                                                     channels, d, d_mask, BLOCK_L)
                xdbl_pixels = xdbl_route + pixel * row_stride  # (BLOCK_L,)
                route_offsets = pixel[:, None] * (num_routes * channels) + d[None, :]  # in (H*W, K, D) maps
                if SAVED_DELTA:
                    delta = tl.load(delta_route + route_offsets, mask=mask, other=0.0).to(tl.float32)
                elif RANK_DOT > 0:
                    delta = tl.where(half_from_end == 0, second, first)
                else:
                    delta = _rank_loop_delta(xdbl_pixels, dtw_rows, bias, step_mask, d_mask, RANK, RANK_UNROLL)
                dx_ptrs = dx_image + map_offsets
                grad_u = tl.load(dx_ptrs, mask=mask & (route > 0), other=0.0).to(tl.float32)  # earlier routes' sum
                u, B, C = _route_inputs(x_image, map_offsets, mask, bc_route, chunk, length_pad, num_states, n, n_mask,
                                        BLOCK_L)
                dt, decay, drive = _scan_terms(delta, u, B, A * LOG2_E, x_ptr.dtype.element_ty.primitive_bitwidth < 32)
                dy = tl.load(dy_image + map_offsets, mask=mask, other=0.0).to(tl.float32)
                decay_cum, state_from_zero = scan_chunk(decay, drive, 0)
                states = decay_cum * h0[None, :, :] + state_from_zero  # h_t, (BLOCK_L, BLOCK_N, BLOCK_D)
                carried = states - drive  # a_t * h_{t-1}
                # dh_t = C_t dy_t + a_{t+1} dh_{t+1}, scanned from the chunk's end
                excl, acc = reverse_scan_next_decay(decay, C * dy[:, None, :], 0)
                grad_h = acc + excl * carry[None, :, :]
                carry = pick(decay * grad_h, j[:, None, None], 0, 0)
                grad_h_B = tl.sum(grad_h * B, axis=1)  # (BLOCK_L, BLOCK_D)
                grad_dt = tl.sum(grad_h * carried * A[None, :, :], axis=1) + grad_h_B * u
                grad_delta = grad_dt * softplus_slope(delta, dt)
                grad_a += grad_h * carried * dt[:, None, :]
                grad_skip += dy * u
                grad_bias += grad_delta
                grad_u += dt * grad_h_B + skip[None, :] * dy
                tl.store(dx_ptrs, grad_u.to(dx_ptr.dtype.element_ty), mask=mask)
                tl.store(grad_delta_route + route_offsets, grad_delta.to(grad_delta_ptr.dtype.element_ty), mask=mask)
                grad_B = tl.sum(grad_h * (dt * u)[:, None, :], axis=2)  # (BLOCK_L, BLOCK_N)
                grad_C = tl.sum(states * dy[:, None, :], axis=2)
                # (BLOCK_L, BLOCK_N), no step mask: past L into the rows' padding, which pixel_bc_kernel skips
                part_steps = part_route + (chunk * BLOCK_L + j)[:, None] + n[None, :] * length_pad
                tl.store(part_steps, grad_B, mask=n_mask[None, :])
                tl.store(part_steps + num_states * length_pad, grad_C, mask=n_mask[None, :])
        params_row = part_params_ptr + ((batch * num_routes + k) * channels + d) * (num_states + 2)  # (BLOCK_D,)
        tl.store(params_row[None, :] + n[:, None], tl.sum(grad_a, axis=0) * A, mask=nd_mask)
        tl.store(params_row + num_states, tl.sum(grad_skip, axis=0), mask=d_mask)
        tl.store(params_row + num_states + 1, tl.sum(grad_bias, axis=0), mask=d_mask)
        tl.debug_barrier()  # the next route reads back dx, maybe written by other threads of the program


@triton.jit
def _bc_columns_at_route(xdbl_ptr, route_codes, batch, k, block, height, width, num_routes, num_states, c,
                         RANK: tl.constexpr, BLOCK_S: tl.constexpr):
    """Pointers (BLOCK_C, BLOCK_S) to the B and C columns ``c`` of route k in a (batch, H*W, K*(R+2N)) tensor like
    x_dbl, at the pixels of the route's steps block*BLOCK_S + s."""
    length = height * width
    rows = RANK + 2 * num_states
    image = xdbl_ptr + batch.to(tl.int64) * length * num_routes * rows + k * rows + RANK
    pixel = _route_pixels(route_codes, k, block, length, height, width, BLOCK_S)
    return image + pixel[None, :] * (num_routes * rows) + c[:, None]


@triton.jit
def route_bc_kernel(xdbl_ptr, bc_ptr, route_codes, height, width, length_pad, num_routes, num_states,
                    RANK: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """bc (batch, K, 2N, Lp) = route k's B and C columns of x_dbl (batch, H*W, K*(R+2N)) in its reading order:
    bc[b, k, c, s] = x_dbl[b, pixel of route k's step s, k*(R+2N) + R + c], zeros from s = L on; one program per
    (BLOCK_S of the Lp steps, route, image)."""
    block, k, batch = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    steps = block * BLOCK_S + tl.arange(0, BLOCK_S)
    c = tl.arange(0, BLOCK_C)
    rows_mask = (c < 2 * num_states)[:, None]  # (BLOCK_C, 1)
    values = tl.load(_bc_columns_at_route(xdbl_ptr, route_codes, batch, k, block, height, width, num_routes,
                                          num_states, c, RANK, BLOCK_S),
                     mask=rows_mask & (steps < height * width)[None, :], other=0.0)  # (BLOCK_C, BLOCK_S)
    bc_route = _route_bc_rows(bc_ptr, batch, k, num_routes, num_states, length_pad)
    tl.store(bc_route + c[:, None] * length_pad + steps[None, :], values, mask=rows_mask)


@triton.jit
def pixel_bc_kernel(part_ptr, grad_xdbl_ptr, route_codes, height, width, length_pad, num_routes, num_states,
                    num_blocks, RANK: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """The inverse of :func:`route_bc_kernel` for the backward's partial B, C gradients (batch, blocks, K, 2N, Lp)
    fp32: summed over the channel blocks (fp32) into the B and C columns of grad_xdbl (batch, H*W, K*(R+2N)) at the
    routes' pixels, in grad_xdbl's dtype."""
    block, k, batch = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    steps = block * BLOCK_S + tl.arange(0, BLOCK_S)
    c = tl.arange(0, BLOCK_C)
    mask = (steps < height * width)[None, :] & (c < 2 * num_states)[:, None]  # (BLOCK_C, BLOCK_S)
    route_rows = c[:, None] * length_pad + steps[None, :]
    total = tl.zeros((BLOCK_C, BLOCK_S), dtype=tl.float32)
    for channel_block in range(num_blocks):  # part (batch, blocks, K, ...) viewed as (batch * blocks, K, ...)
        part_route = _route_bc_rows(part_ptr, batch * num_blocks + channel_block, k, num_routes, num_states, length_pad)
        total += tl.load(part_route + route_rows, mask=mask, other=0.0)
    tl.store(_bc_columns_at_route(grad_xdbl_ptr, route_codes, batch, k, block, height, width, num_routes, num_states,
                                  c, RANK, BLOCK_S), total.to(grad_xdbl_ptr.dtype.element_ty), mask=mask)


@triton.jit
def sum_parts_kernel(parts_ptr, out_ptr, numel, PARTS: tl.constexpr, BLOCK: tl.constexpr):
    """out (numel,) = the sum of the PARTS stacked tensors (PARTS, numel) in fp32, stored in out's dtype."""
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < numel
    total = tl.zeros((BLOCK,), dtype=tl.float32)
    for part in tl.static_range(PARTS):  # every part's load in flight at once
        total += tl.load(parts_ptr + part * numel + offsets, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + offsets, total.to(out_ptr.dtype.element_ty), mask=mask)
