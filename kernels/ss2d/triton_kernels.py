"""Fused SS2D core in Triton: every route's selective scan, no route copy and no full-size delta tensor.

The kernels read the map in pixel-major (channels-last) memory, (batch, H*W, D): a route step of any reading order
(row-major, column-major, forward or reversed) is a row of D contiguous channels, so no route needs a transposed
copy. x_dbl, the routes' projections (dt-rank slice, B, C) of every pixel, is (batch, H*W, K*(R+2N)) in the same
pixel order. One program per (block of channels, batch) walks the K routes one after the other. Per chunk of route
steps it loads x and x_dbl at the chunk's pixels, forms delta = dt_projs_weight @ dt-slice + bias and softplus in
registers, scans, and adds the chunk's output into the pixel-major output at the same pixels (the first route
writes, the later ones accumulate), which is the merge of the routes.

A route is a 2-bit code: bit 0 column-major, bit 1 reversed (``cross_scan.routes``); the kernels take the K codes
packed in one integer argument, route k in bits 2k and 2k+1 (no device tensor: CUDA-graph capture safe).
"""
import triton
import triton.language as tl

from ..common.triton_scan import combine_next_decay, pick, scan_chunk, sigmoid, softplus


@triton.jit
def _route_pixels(route_codes, k, step, length, height, width):
    """Row-major pixel index of route k's steps ``step`` (reversed routes read from the end)."""
    code = (route_codes >> (2 * k)) & 3
    position = tl.where((code & 2) != 0, length - 1 - step, step)
    return tl.where((code & 1) != 0, (position % height) * width + position // height, position)


@triton.jit
def _route_tile(x_image, map_offsets, xdbl_route, row_stride, dtw_row_ptr, bias, A, pixel, step_mask, num_states,
                d_mask, n, n_mask, RANK: tl.constexpr, RANK_UNROLL: tl.constexpr):
    """Load one chunk of route steps (at ``pixel``; ``map_offsets`` (BLOCK_D, BLOCK_L) of those pixels' channels in
    the pixel-major map) and form its scan inputs in fp32.

    delta = dt_projs_weight @ dt-slice + bias is a rank-1 update per dt rank (no tl.dot: R is small).
    Returns u (BLOCK_D, BLOCK_L), B and C (BLOCK_N, BLOCK_L), delta before softplus, dt, decay and drive
    (BLOCK_D, BLOCK_N, BLOCK_L).
    """
    u = tl.load(x_image + map_offsets, mask=d_mask[:, None] & step_mask[None, :], other=0.0).to(tl.float32)
    xdbl_pixels = xdbl_route + pixel * row_stride  # (BLOCK_L,) pointers to the route's R + 2N columns
    bc_mask = n_mask[:, None] & step_mask[None, :]
    B = tl.load(xdbl_pixels[None, :] + (RANK + n)[:, None], mask=bc_mask, other=0.0).to(tl.float32)
    C = tl.load(xdbl_pixels[None, :] + (RANK + num_states + n)[:, None], mask=bc_mask, other=0.0).to(tl.float32)
    delta = tl.zeros(u.shape, dtype=tl.float32) + bias[:, None]
    for rank_start in range(0, RANK, RANK_UNROLL):  # unrolled by RANK_UNROLL: loads in flight, bounded registers
        for offset in tl.static_range(RANK_UNROLL):
            rank_index = rank_start + offset
            w_col = tl.load(dtw_row_ptr + rank_index, mask=d_mask & (rank_index < RANK), other=0.0)
            dt_row = tl.load(xdbl_pixels + rank_index, mask=step_mask & (rank_index < RANK), other=0.0)
            delta += w_col.to(tl.float32)[:, None] * dt_row.to(tl.float32)[None, :]
    dt = softplus(delta)
    decay = tl.exp(dt[:, None, :] * A[:, :, None])
    drive = (dt * u)[:, None, :] * B[None, :, :]
    return u, B, C, delta, dt, decay, drive


@triton.jit
def _route_params(dtw_ptr, dtb_ptr, alog_ptr, ds_ptr, k, channels, num_states, d, d_mask, n, n_mask,
                  RANK: tl.constexpr):
    """Route k's dt_projs_weight rows (pointer), bias, A = -exp(A_log) (BLOCK_D, BLOCK_N) and D, in fp32."""
    row = k * channels + d
    bias = tl.load(dtb_ptr + row, mask=d_mask, other=0.0).to(tl.float32)
    a_log = tl.load(alog_ptr + row[:, None] * num_states + n[None, :], mask=d_mask[:, None] & n_mask[None, :],
                    other=float('-inf')).to(tl.float32)
    skip = tl.load(ds_ptr + row, mask=d_mask, other=0.0).to(tl.float32)
    return dtw_ptr + row * RANK, bias, -tl.exp(a_log), skip


@triton.jit
def _route_bases(xdbl_ptr, states_ptr, batch, k, length, channels, num_routes, num_states, num_chunks,
                 RANK: tl.constexpr):
    """Route k's columns of this image's x_dbl (pixel stride K*(R+2N)) and its chunk states (chunks, D, N)."""
    rows = RANK + 2 * num_states
    xdbl_route = xdbl_ptr + batch.to(tl.int64) * length * num_routes * rows + k * rows
    state_route = states_ptr + (batch * num_routes + k).to(tl.int64) * num_chunks * channels * num_states
    return xdbl_route, state_route


@triton.jit
def ss2d_fwd_kernel(x_ptr, xdbl_ptr, route_codes, dtw_ptr, dtb_ptr, alog_ptr, ds_ptr, y_ptr, states_ptr,
                    channels, height, width, num_routes, num_states, num_chunks, RANK: tl.constexpr,
                    RANK_UNROLL: tl.constexpr, SAVE_STATES: tl.constexpr, BLOCK_D: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    """y (batch, H*W, D) pixel-major: the sum of the routes' outputs, accumulated in y's dtype."""
    pid_d, batch = tl.program_id(0), tl.program_id(1)
    length = height * width
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n, j = tl.arange(0, BLOCK_N), tl.arange(0, BLOCK_L)
    d_mask, n_mask = d < channels, n < num_states
    image = batch.to(tl.int64) * length * channels
    x_image, y_image = x_ptr + image, y_ptr + image
    row_stride = num_routes * (RANK + 2 * num_states)
    state_tile = d[:, None] * num_states + n[None, :]  # one contiguous (BLOCK_D, BLOCK_N) tile per chunk
    for k in range(num_routes):
        dtw_row_ptr, bias, A, skip = _route_params(dtw_ptr, dtb_ptr, alog_ptr, ds_ptr, k, channels, num_states,
                                                   d, d_mask, n, n_mask, RANK)
        xdbl_route, state_route = _route_bases(xdbl_ptr, states_ptr, batch, k, length, channels, num_routes,
                                               num_states, num_chunks, RANK)
        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        for chunk in range(num_chunks):
            if SAVE_STATES:  # state entering the chunk, for the backward
                tl.store(state_route + chunk * channels * num_states + state_tile, h,
                         mask=d_mask[:, None] & n_mask[None, :])
            step = chunk * BLOCK_L + j
            step_mask = step < length
            pixel = _route_pixels(route_codes, k, step, length, height, width)
            map_offsets = pixel[None, :] * channels + d[:, None]  # (BLOCK_D, BLOCK_L) in the pixel-major maps
            u, _, C, _, _, decay, drive = _route_tile(x_image, map_offsets, xdbl_route, row_stride, dtw_row_ptr,
                                                      bias, A, pixel, step_mask, num_states, d_mask, n, n_mask, RANK,
                                                      RANK_UNROLL)
            decay_cum, state_from_zero = scan_chunk(decay, drive, 2)
            states = decay_cum * h[:, :, None] + state_from_zero  # (BLOCK_D, BLOCK_N, BLOCK_L)
            h = pick(states, j[None, None, :], BLOCK_L - 1, 2)
            y = tl.sum(states * C[None, :, :], axis=1) + skip[:, None] * u
            mask = d_mask[:, None] & step_mask[None, :]
            y_ptrs = y_image + map_offsets
            y += tl.load(y_ptrs, mask=mask & (k > 0), other=0.0).to(tl.float32)
            tl.store(y_ptrs, y.to(y_ptr.dtype.element_ty), mask=mask)
        tl.debug_barrier()  # a later route reads back what other threads of this program wrote


@triton.jit
def ss2d_bwd_kernel(x_ptr, xdbl_ptr, route_codes, dtw_ptr, dtb_ptr, alog_ptr, ds_ptr, states_ptr, dy_ptr, dx_ptr,
                    grad_delta_ptr, part_bc_ptr, part_alog_ptr, part_ds_ptr, part_dtb_ptr,
                    channels, height, width, num_routes, num_states, num_chunks, RANK: tl.constexpr,
                    RANK_UNROLL: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    """Reverse pass per route, chunks from the end; recomputes each chunk's states from the saved chunk state.

    Everything per pixel is pixel-major like x. Writes dx (batch, H*W, D) fp32 (the scans' part, summed over the
    routes), the gradient of delta before softplus (batch, H*W, K, D) (the launcher turns it into the dt
    up-projection's gradients with matmuls), per-channel-block partial gradients of B and C
    (batch, blocks, H*W, K, 2N), and per-batch partials of A_logs, Ds and dt_projs_bias.
    """
    pid_d, batch = tl.program_id(0), tl.program_id(1)
    num_blocks = tl.num_programs(0)
    length = height * width
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n, j = tl.arange(0, BLOCK_N), tl.arange(0, BLOCK_L)
    d_mask, n_mask = d < channels, n < num_states
    dn_mask = d_mask[:, None] & n_mask[None, :]
    image = batch.to(tl.int64) * length * channels
    x_image, dy_image, dx_image = x_ptr + image, dy_ptr + image, dx_ptr + image
    row_stride = num_routes * (RANK + 2 * num_states)
    state_tile = d[:, None] * num_states + n[None, :]  # one contiguous (BLOCK_D, BLOCK_N) tile per chunk
    for k in range(num_routes):
        dtw_row_ptr, bias, A, skip = _route_params(dtw_ptr, dtb_ptr, alog_ptr, ds_ptr, k, channels, num_states,
                                                   d, d_mask, n, n_mask, RANK)
        xdbl_route, state_route = _route_bases(xdbl_ptr, states_ptr, batch, k, length, channels, num_routes,
                                               num_states, num_chunks, RANK)
        grad_delta_route = grad_delta_ptr + image * num_routes + k * channels  # pixel stride K*D
        part_route = (part_bc_ptr + (batch * num_blocks + pid_d).to(tl.int64) * length * num_routes * 2 * num_states
                      + k * 2 * num_states)  # pixel stride K*2N
        carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # a_{t+1} * dh_{t+1} at the chunk's end
        grad_a = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        grad_skip = tl.zeros((BLOCK_D,), dtype=tl.float32)
        grad_bias = tl.zeros((BLOCK_D,), dtype=tl.float32)
        for chunk_from_end in range(num_chunks):
            chunk = num_chunks - 1 - chunk_from_end
            h0 = tl.load(state_route + chunk * channels * num_states + state_tile, mask=dn_mask, other=0.0)
            step = chunk * BLOCK_L + j
            step_mask = step < length
            pixel = _route_pixels(route_codes, k, step, length, height, width)
            map_offsets = pixel[None, :] * channels + d[:, None]  # (BLOCK_D, BLOCK_L) in the pixel-major maps
            u, B, C, delta, dt, decay, drive = _route_tile(x_image, map_offsets, xdbl_route, row_stride, dtw_row_ptr,
                                                           bias, A, pixel, step_mask, num_states, d_mask, n, n_mask,
                                                           RANK, RANK_UNROLL)
            mask = d_mask[:, None] & step_mask[None, :]
            dy = tl.load(dy_image + map_offsets, mask=mask, other=0.0).to(tl.float32)
            decay_cum, state_from_zero = scan_chunk(decay, drive, 2)
            states = decay_cum * h0[:, :, None] + state_from_zero  # h_t, (BLOCK_D, BLOCK_N, BLOCK_L)
            carried = states - drive  # a_t * h_{t-1}
            # dh_t = C_t dy_t + a_{t+1} dh_{t+1}, scanned from the chunk's end
            excl, _, acc = tl.associative_scan((tl.full(decay.shape, 1.0, tl.float32), decay,
                                                C[None, :, :] * dy[:, None, :]), 2, combine_next_decay,
                                               reverse=True)
            grad_h = acc + excl * carry[:, :, None]
            carry = pick(decay * grad_h, j[None, None, :], 0, 2)
            grad_h_B = tl.sum(grad_h * B[None, :, :], axis=1)  # (BLOCK_D, BLOCK_L)
            grad_dt = tl.sum(grad_h * carried * A[:, :, None], axis=1) + grad_h_B * u
            grad_delta = grad_dt * sigmoid(delta)
            grad_a += tl.sum(grad_h * carried * dt[:, None, :], axis=2)
            grad_skip += tl.sum(dy * u, axis=1)
            grad_bias += tl.sum(grad_delta, axis=1)
            grad_u = dt * grad_h_B + skip[:, None] * dy
            grad_u += tl.load(dx_image + map_offsets, mask=mask & (k > 0), other=0.0)
            tl.store(dx_image + map_offsets, grad_u, mask=mask)
            tl.store(grad_delta_route + pixel[None, :] * (num_routes * channels) + d[:, None],
                     grad_delta.to(grad_delta_ptr.dtype.element_ty), mask=mask)
            grad_B = tl.sum(grad_h * (dt * u)[:, None, :], axis=0)  # (BLOCK_N, BLOCK_L)
            grad_C = tl.sum(states * dy[:, None, :], axis=0)
            bc_mask = n_mask[:, None] & step_mask[None, :]
            part_pixels = part_route + pixel[None, :] * (num_routes * 2 * num_states)
            tl.store(part_pixels + n[:, None], grad_B, mask=bc_mask)
            tl.store(part_pixels + (num_states + n)[:, None], grad_C, mask=bc_mask)
        row = (batch * num_routes + k) * channels + d
        tl.store(part_alog_ptr + row[:, None] * num_states + n[None, :], grad_a * A, mask=dn_mask)
        tl.store(part_ds_ptr + row, grad_skip, mask=d_mask)
        tl.store(part_dtb_ptr + row, grad_bias, mask=d_mask)
        tl.debug_barrier()  # a later route reads back dx written by other threads of this program
