"""Fused SS2D core in Triton: every route's selective scan, no route copy and no full-size delta tensor.

A route is a row-major or column-major reading of the map, forward or reversed. The launchers provide the map in
each reading order that the routes use (the natural (batch, D, H*W) layout, plus one transposed copy when a route is
column-major), so a route step always advances by one element in its source and every access is coalesced.
One program per (batch, block of channels) walks the K routes one after the other. Per chunk of route steps it
loads x and the route's projections x_dbl = (dt-rank slice, B, C), forms delta = dt_projs_weight @ dt-slice + bias
and softplus in registers, scans, and adds the chunk's output into the partial sum of its reading order.

Each route is described by an int32 word: bit 0 column-major, bit 1 reversed, bit 2 accumulate (an earlier route
of the same reading order has written the partial sum already), bits 3+ the partial-sum slot.
"""
import triton
import triton.language as tl

from ..common.triton_scan import combine_next_decay, pick, scan_chunk, sigmoid, softplus


@triton.jit
def _route_word(routes_ptr, k):
    """(column-major, reversed, accumulate, slot) of route k."""
    word = tl.load(routes_ptr + k)
    return (word & 1) != 0, (word & 2) != 0, (word & 4) != 0, word >> 3


@triton.jit
def _route_tile(xdbl_base, x_rows, dtw_row_ptr, bias, A, position, step_mask, length, num_states, d_mask, n,
                n_mask, RANK: tl.constexpr, RANK_UNROLL: tl.constexpr):
    """Load one chunk of route steps (``position`` in the route's reading order) and form its scan inputs in fp32.

    delta = dt_projs_weight @ dt-slice + bias is a rank-1 update per dt rank (no tl.dot: R is small).
    Returns u (BLOCK_D, BLOCK_L), B and C (BLOCK_N, BLOCK_L), delta before softplus, dt, decay and drive
    (BLOCK_D, BLOCK_N, BLOCK_L).
    """
    u = tl.load(x_rows + position[None, :], mask=d_mask[:, None] & step_mask[None, :], other=0.0).to(tl.float32)
    bc_mask = n_mask[:, None] & step_mask[None, :]
    B = tl.load(xdbl_base + (RANK + n)[:, None] * length + position[None, :], mask=bc_mask, other=0.0).to(tl.float32)
    C = tl.load(xdbl_base + (RANK + num_states + n)[:, None] * length + position[None, :],
                mask=bc_mask, other=0.0).to(tl.float32)
    delta = tl.zeros(u.shape, dtype=tl.float32) + bias[:, None]
    for rank_start in range(0, RANK, RANK_UNROLL):  # unrolled by RANK_UNROLL: loads in flight, bounded registers
        for offset in tl.static_range(RANK_UNROLL):
            rank_index = rank_start + offset
            w_col = tl.load(dtw_row_ptr + rank_index, mask=d_mask & (rank_index < RANK), other=0.0)
            dt_row = tl.load(xdbl_base + rank_index * length + position, mask=step_mask & (rank_index < RANK),
                             other=0.0)
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
def ss2d_fwd_kernel(x_ptr, xcm_ptr, xdbl_ptr, routes_ptr, dtw_ptr, dtb_ptr, alog_ptr, ds_ptr, y_ptr, states_ptr,
                    channels, length, num_routes, num_slots, num_states, num_chunks, RANK: tl.constexpr,
                    RANK_UNROLL: tl.constexpr, SAVE_STATES: tl.constexpr, BLOCK_D: tl.constexpr,
                    BLOCK_N: tl.constexpr,
                    BLOCK_L: tl.constexpr):
    """y (batch, slots, D, L): per reading order, the sum of its routes' outputs, accumulated in y's dtype."""
    batch, pid_d = tl.program_id(0), tl.program_id(1)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n, j = tl.arange(0, BLOCK_N), tl.arange(0, BLOCK_L)
    d_mask, n_mask = d < channels, n < num_states
    map_rows = (batch * channels + d[:, None]).to(tl.int64) * length
    for k in range(num_routes):
        column_major, reverse, accumulate, slot = _route_word(routes_ptr, k)
        if column_major:  # the route reads the transposed copy
            x_rows = xcm_ptr + map_rows
        else:
            x_rows = x_ptr + map_rows
        y_rows = y_ptr + ((batch * num_slots + slot) * channels + d[:, None]).to(tl.int64) * length
        dtw_row_ptr, bias, A, skip = _route_params(dtw_ptr, dtb_ptr, alog_ptr, ds_ptr, k, channels, num_states,
                                                   d, d_mask, n, n_mask, RANK)
        xdbl_base = xdbl_ptr + (batch * num_routes + k).to(tl.int64) * (RANK + 2 * num_states) * length
        state_row = ((batch * num_routes + k) * channels + d[:, None]).to(tl.int64) * num_states + n[None, :]
        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        for chunk in range(num_chunks):
            if SAVE_STATES:  # state entering the chunk, for the backward
                tl.store(states_ptr + state_row * num_chunks + chunk, h, mask=d_mask[:, None] & n_mask[None, :])
            step = chunk * BLOCK_L + j
            step_mask = step < length
            position = tl.where(reverse, length - 1 - step, step)
            u, _, C, _, _, decay, drive = _route_tile(xdbl_base, x_rows, dtw_row_ptr, bias, A, position, step_mask,
                                                      length, num_states, d_mask, n, n_mask, RANK, RANK_UNROLL)
            decay_cum, state_from_zero = scan_chunk(decay, drive, 2)
            states = decay_cum * h[:, :, None] + state_from_zero  # (BLOCK_D, BLOCK_N, BLOCK_L)
            h = pick(states, j[None, None, :], BLOCK_L - 1, 2)
            y = tl.sum(states * C[None, :, :], axis=1) + skip[:, None] * u
            mask = d_mask[:, None] & step_mask[None, :]
            y += tl.load(y_rows + position[None, :], mask=mask & accumulate, other=0.0).to(tl.float32)
            tl.store(y_rows + position[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)
        tl.debug_barrier()  # a later route reads back what other threads of this program wrote


@triton.jit
def ss2d_bwd_kernel(x_ptr, xcm_ptr, xdbl_ptr, routes_ptr, dtw_ptr, dtb_ptr, alog_ptr, ds_ptr, states_ptr, dy_ptr,
                    dycm_ptr, dx_ptr, grad_delta_ptr, part_bc_ptr, part_alog_ptr, part_ds_ptr, part_dtb_ptr,
                    channels, length, num_routes, num_slots, num_states, num_chunks, RANK: tl.constexpr,
                    RANK_UNROLL: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    """Reverse pass per route, chunks from the end; recomputes each chunk's states from the saved chunk state.

    Writes dx (batch, slots, D, L) fp32 per reading order (scan part only), the gradient of delta before softplus
    (batch, K, D, L) in each route's reading order (the launcher turns it into the dt up-projection's gradients with
    matmuls), per-channel-block partial gradients of B and C (batch, K, blocks, 2N, L), and per-batch partials of
    A_logs, Ds and dt_projs_bias.
    """
    batch, pid_d = tl.program_id(0), tl.program_id(1)
    num_blocks = tl.num_programs(1)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n, j = tl.arange(0, BLOCK_N), tl.arange(0, BLOCK_L)
    d_mask, n_mask = d < channels, n < num_states
    dn_mask = d_mask[:, None] & n_mask[None, :]
    map_rows = (batch * channels + d[:, None]).to(tl.int64) * length
    for k in range(num_routes):
        column_major, reverse, accumulate, slot = _route_word(routes_ptr, k)
        if column_major:  # the route reads the transposed copies
            x_rows = xcm_ptr + map_rows
            dy_rows = dycm_ptr + map_rows
        else:
            x_rows = x_ptr + map_rows
            dy_rows = dy_ptr + map_rows
        dx_rows = dx_ptr + ((batch * num_slots + slot) * channels + d[:, None]).to(tl.int64) * length
        grad_delta_rows = grad_delta_ptr + ((batch * num_routes + k) * channels + d[:, None]).to(tl.int64) * length
        dtw_row_ptr, bias, A, skip = _route_params(dtw_ptr, dtb_ptr, alog_ptr, ds_ptr, k, channels, num_states,
                                                   d, d_mask, n, n_mask, RANK)
        xdbl_base = xdbl_ptr + (batch * num_routes + k).to(tl.int64) * (RANK + 2 * num_states) * length
        part_base = part_bc_ptr + ((batch * num_routes + k) * num_blocks + pid_d).to(tl.int64) * 2 * num_states * length
        state_row = ((batch * num_routes + k) * channels + d[:, None]).to(tl.int64) * num_states + n[None, :]
        carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # a_{t+1} * dh_{t+1} at the chunk's end
        grad_a = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        grad_skip = tl.zeros((BLOCK_D,), dtype=tl.float32)
        grad_bias = tl.zeros((BLOCK_D,), dtype=tl.float32)
        for chunk_from_end in range(num_chunks):
            chunk = num_chunks - 1 - chunk_from_end
            h0 = tl.load(states_ptr + state_row * num_chunks + chunk, mask=dn_mask, other=0.0)
            step = chunk * BLOCK_L + j
            step_mask = step < length
            position = tl.where(reverse, length - 1 - step, step)
            u, B, C, delta, dt, decay, drive = _route_tile(xdbl_base, x_rows, dtw_row_ptr, bias, A, position,
                                                           step_mask, length, num_states, d_mask, n, n_mask, RANK,
                                                           RANK_UNROLL)
            mask = d_mask[:, None] & step_mask[None, :]
            dy = tl.load(dy_rows + position[None, :], mask=mask, other=0.0).to(tl.float32)
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
            grad_u += tl.load(dx_rows + position[None, :], mask=mask & accumulate, other=0.0)
            tl.store(dx_rows + position[None, :], grad_u, mask=mask)
            tl.store(grad_delta_rows + position[None, :], grad_delta.to(grad_delta_ptr.dtype.element_ty), mask=mask)
            grad_B = tl.sum(grad_h * (dt * u)[:, None, :], axis=0)  # (BLOCK_N, BLOCK_L)
            grad_C = tl.sum(states * dy[:, None, :], axis=0)
            bc_mask = n_mask[:, None] & step_mask[None, :]
            tl.store(part_base + n[:, None] * length + position[None, :], grad_B, mask=bc_mask)
            tl.store(part_base + (num_states + n)[:, None] * length + position[None, :], grad_C, mask=bc_mask)
        row = (batch * num_routes + k) * channels + d
        tl.store(part_alog_ptr + row[:, None] * num_states + n[None, :], grad_a * A, mask=dn_mask)
        tl.store(part_ds_ptr + row, grad_skip, mask=d_mask)
        tl.store(part_dtb_ptr + row, grad_bias, mask=d_mask)
        tl.debug_barrier()  # a later route reads back dx written by other threads of this program
