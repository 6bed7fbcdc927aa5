"""Triton kernels of the selective scan, forward and backward.

One program per (block of BLOCK_D channels inside one group, batch element) walks L in chunks of BLOCK_L steps.
Per chunk it builds the (BLOCK_D, BLOCK_N, BLOCK_L) tile of (decay, drive) pairs, scans it with
``tl.associative_scan`` and applies the state carried from the previous chunk. The forward saves the state entering
every chunk (``checkpoints``); the backward walks the chunks in reverse, recomputes each chunk's states from its
checkpoint and runs the reverse scan of the state gradients. Channel-summed terms (dB, dC) and batch-summed terms
(dA, dD, d delta_bias) are written as per-block partial sums that the launcher adds up: deterministic, no atomics.
All offsets are int64 so tensors beyond 2**31 elements work.
"""
import triton
import triton.language as tl

from ..common.triton_scan import pick, scan_chunk, sigmoid, softplus

LOG2_E = tl.constexpr(1.4426950408889634)


@triton.jit
def _load_dt(delta_ptr, bias, rows, steps, step_mask, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(pre-activation, dt) for a (BLOCK_D, BLOCK_L) tile: delta + delta_bias, then softplus if asked."""
    pre = tl.load(delta_ptr + rows[:, None] + steps[None, :], mask=step_mask[None, :], other=0.0).to(tl.float32)
    if HAS_BIAS:
        pre += bias[:, None]
    dt = pre
    if SOFTPLUS:
        dt = softplus(pre)
    return pre, dt


@triton.jit
def selective_scan_fwd_kernel(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, initial_ptr,
        out_ptr, last_ptr, checkpoint_ptr,
        channels, length, num_states, channels_per_group, num_groups, num_chunks,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_INITIAL: tl.constexpr,
        SOFTPLUS: tl.constexpr, RETURN_STATES: tl.constexpr, SAVE_CHECKPOINTS: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    chan = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)  # channels of this block, all in one group
    state = tl.arange(0, BLOCK_N)
    step = tl.arange(0, BLOCK_L)
    state_mask = state < num_states
    group = (pid_d * BLOCK_D) // channels_per_group
    rows = (pid_b * channels + chan) * length  # (BLOCK_D,) start of each channel's sequence
    bc_rows = ((pid_b * num_groups + group) * num_states + state) * length  # (BLOCK_N,) start of B/C rows
    state_index = (pid_b * channels + chan)[:, None] * num_states + state[None, :]  # (BLOCK_D, BLOCK_N)
    state_mask_2d = state_mask[None, :] & (chan[:, None] < channels)
    A2 = tl.load(A_ptr + chan[:, None] * num_states + state[None, :], mask=state_mask_2d, other=0.0)
    A2 = A2.to(tl.float32) * LOG2_E  # exp(dt * A) = exp2(dt * A2)
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + chan).to(tl.float32)
    if HAS_INITIAL:
        h = tl.load(initial_ptr + state_index, mask=state_mask_2d, other=0.0).to(tl.float32)
    else:
        h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    for chunk in range(0, num_chunks):
        steps = chunk * BLOCK_L + step
        step_mask = steps < length
        if SAVE_CHECKPOINTS:
            tl.store(checkpoint_ptr + state_index * num_chunks + chunk, h, mask=state_mask_2d)
        u = tl.load(u_ptr + rows[:, None] + steps[None, :], mask=step_mask[None, :], other=0.0).to(tl.float32)
        pre, dt = _load_dt(delta_ptr, bias, rows, steps, step_mask, HAS_BIAS, SOFTPLUS)
        bc_mask = state_mask[:, None] & step_mask[None, :]
        Bt = tl.load(B_ptr + bc_rows[:, None] + steps[None, :], mask=bc_mask, other=0.0).to(tl.float32)
        decay = tl.exp2(dt[:, None, :] * A2[:, :, None])  # (BLOCK_D, BLOCK_N, BLOCK_L)
        decay = tl.where(step_mask[None, None, :], decay, 1.0)
        drive = (dt * u)[:, None, :] * Bt[None, :, :]  # (BLOCK_D, BLOCK_N, BLOCK_L)
        cum_decay, local = scan_chunk(decay, drive, 2)
        states = local + cum_decay * h[:, :, None]
        if RETURN_STATES:
            offsets = state_index[:, :, None] * length + steps[None, None, :]
            mask = state_mask_2d[:, :, None] & step_mask[None, None, :]
            tl.store(out_ptr + offsets, states.to(out_ptr.dtype.element_ty), mask=mask)
        else:
            Ct = tl.load(C_ptr + bc_rows[:, None] + steps[None, :], mask=bc_mask, other=0.0).to(tl.float32)
            y = tl.sum(states * Ct[None, :, :], axis=1)  # (BLOCK_D, BLOCK_L)
            if HAS_D:
                y += tl.load(D_ptr + chan).to(tl.float32)[:, None] * u
            if HAS_Z:
                z = tl.load(z_ptr + rows[:, None] + steps[None, :], mask=step_mask[None, :], other=0.0)
                z = z.to(tl.float32)
                y = y * z * sigmoid(z)
            tl.store(out_ptr + rows[:, None] + steps[None, :], y.to(out_ptr.dtype.element_ty),
                     mask=step_mask[None, :])
        h = pick(states, step[None, None, :], BLOCK_L - 1, 2)
    tl.store(last_ptr + state_index, h.to(last_ptr.dtype.element_ty), mask=state_mask_2d)


@triton.jit
def selective_scan_bwd_kernel(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, checkpoint_ptr,
        grad_out_ptr, grad_last_ptr,
        grad_u_ptr, grad_delta_ptr, grad_z_ptr, grad_initial_ptr,
        part_A_ptr, part_D_ptr, part_bias_ptr, part_B_ptr, part_C_ptr,
        channels, length, num_states, channels_per_group, num_groups, num_chunks,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_INITIAL: tl.constexpr,
        HAS_GRAD_LAST: tl.constexpr, SOFTPLUS: tl.constexpr, RETURN_STATES: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    num_blocks = tl.num_programs(0)
    chan = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    state = tl.arange(0, BLOCK_N)
    step = tl.arange(0, BLOCK_L)
    state_mask = state < num_states
    group = (pid_d * BLOCK_D) // channels_per_group
    rows = (pid_b * channels + chan) * length  # (BLOCK_D,)
    bc_rows = ((pid_b * num_groups + group) * num_states + state) * length  # (BLOCK_N,)
    part_rows = ((pid_b * num_blocks + pid_d) * num_states + state) * length  # (BLOCK_N,) rows of dB/dC partials
    state_index = (pid_b * channels + chan)[:, None] * num_states + state[None, :]  # (BLOCK_D, BLOCK_N)
    state_mask_2d = state_mask[None, :] & (chan[:, None] < channels)
    A = tl.load(A_ptr + chan[:, None] * num_states + state[None, :], mask=state_mask_2d, other=0.0).to(tl.float32)
    A2 = A * LOG2_E
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + chan).to(tl.float32)
    skip = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        skip = tl.load(D_ptr + chan).to(tl.float32)
    if HAS_GRAD_LAST:
        carry = tl.load(grad_last_ptr + state_index, mask=state_mask_2d, other=0.0).to(tl.float32)
    else:
        carry = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    acc_A = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    acc_D = tl.zeros([BLOCK_D], dtype=tl.float32)
    acc_bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    first_decay = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    for reverse_chunk in range(0, num_chunks):
        chunk = num_chunks - 1 - reverse_chunk
        steps = chunk * BLOCK_L + step
        step_mask = steps < length
        bc_mask = state_mask[:, None] & step_mask[None, :]
        # recompute this chunk's forward states from its checkpoint
        h0 = tl.load(checkpoint_ptr + state_index * num_chunks + chunk, mask=state_mask_2d, other=0.0)
        u = tl.load(u_ptr + rows[:, None] + steps[None, :], mask=step_mask[None, :], other=0.0).to(tl.float32)
        pre, dt = _load_dt(delta_ptr, bias, rows, steps, step_mask, HAS_BIAS, SOFTPLUS)
        Bt = tl.load(B_ptr + bc_rows[:, None] + steps[None, :], mask=bc_mask, other=0.0).to(tl.float32)
        decay = tl.exp2(dt[:, None, :] * A2[:, :, None])  # (BLOCK_D, BLOCK_N, BLOCK_L)
        decay = tl.where(step_mask[None, None, :], decay, 1.0)
        dt_u = dt * u
        drive = dt_u[:, None, :] * Bt[None, :, :]
        cum_decay, local = scan_chunk(decay, drive, 2)
        states = local + cum_decay * h0[:, :, None]
        # decay of the next step, a_{t+1} (1 past the end): g_t = dh_t + a_{t+1} * g_{t+1}
        next_steps = steps + 1
        next_mask = next_steps < length
        _, next_dt = _load_dt(delta_ptr, bias, rows, next_steps, next_mask, HAS_BIAS, SOFTPLUS)
        next_decay = tl.where(next_mask[None, None, :], tl.exp2(next_dt[:, None, :] * A2[:, :, None]), 1.0)
        grad_u = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
        if RETURN_STATES:
            offsets = state_index[:, :, None] * length + steps[None, None, :]
            mask = state_mask_2d[:, :, None] & step_mask[None, None, :]
            grad_states = tl.load(grad_out_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        else:
            grad_y = tl.load(grad_out_ptr + rows[:, None] + steps[None, :], mask=step_mask[None, :], other=0.0)
            grad_y = grad_y.to(tl.float32)
            Ct = tl.load(C_ptr + bc_rows[:, None] + steps[None, :], mask=bc_mask, other=0.0).to(tl.float32)
            if HAS_Z:
                z = tl.load(z_ptr + rows[:, None] + steps[None, :], mask=step_mask[None, :], other=0.0)
                z = z.to(tl.float32)
                gate = sigmoid(z)
                y = tl.sum(states * Ct[None, :, :], axis=1) + skip[:, None] * u
                grad_z = grad_y * y * gate * (1.0 + z * (1.0 - gate))
                tl.store(grad_z_ptr + rows[:, None] + steps[None, :], grad_z.to(grad_z_ptr.dtype.element_ty),
                         mask=step_mask[None, :])
                grad_y = grad_y * z * gate
            part_C = tl.sum(states * grad_y[:, None, :], axis=0)  # (BLOCK_N, BLOCK_L)
            tl.store(part_C_ptr + part_rows[:, None] + steps[None, :], part_C, mask=bc_mask)
            if HAS_D:
                acc_D += tl.sum(grad_y * u, axis=1)
                grad_u = grad_y * skip[:, None]
            grad_states = grad_y[:, None, :] * Ct[None, :, :]
        cum_next, local_grad = scan_chunk(next_decay, grad_states, 2, True)
        grad_h = local_grad + cum_next * carry[:, :, None]  # total gradient of every state in the chunk
        grad_h = tl.where(step_mask[None, None, :], grad_h, 0.0)
        grad_decay_arg = grad_h * (states - drive)  # d loss / d (dt * A); a_t * h_{t-1} = h_t - drive_t
        acc_A += tl.sum(grad_decay_arg * dt[:, None, :], axis=2)
        grad_dt_u = tl.sum(grad_h * Bt[None, :, :], axis=1)  # (BLOCK_D, BLOCK_L)
        grad_dt = grad_dt_u * u + tl.sum(grad_decay_arg * A[:, :, None], axis=1)
        grad_u += grad_dt_u * dt
        part_B = tl.sum(grad_h * dt_u[:, None, :], axis=0)  # (BLOCK_N, BLOCK_L)
        tl.store(part_B_ptr + part_rows[:, None] + steps[None, :], part_B, mask=bc_mask)
        if SOFTPLUS:
            grad_dt = grad_dt * sigmoid(pre)
        acc_bias += tl.sum(grad_dt, axis=1)
        tl.store(grad_u_ptr + rows[:, None] + steps[None, :], grad_u.to(grad_u_ptr.dtype.element_ty),
                 mask=step_mask[None, :])
        tl.store(grad_delta_ptr + rows[:, None] + steps[None, :], grad_dt.to(grad_delta_ptr.dtype.element_ty),
                 mask=step_mask[None, :])
        carry = pick(grad_h, step[None, None, :], 0, 2)
        if HAS_INITIAL:
            first_decay = pick(decay, step[None, None, :], 0, 2)
    chan_index = pid_b * channels + chan
    tl.store(part_A_ptr + state_index, acc_A, mask=state_mask_2d)
    if HAS_D:
        tl.store(part_D_ptr + chan_index, acc_D)
    if HAS_BIAS:
        tl.store(part_bias_ptr + chan_index, acc_bias)
    if HAS_INITIAL:
        tl.store(grad_initial_ptr + state_index, (carry * first_decay).to(grad_initial_ptr.dtype.element_ty),
                 mask=state_mask_2d)
