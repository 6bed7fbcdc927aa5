"""Fast PyTorch path for CPU tensors: a chunked linear scan and an analytic backward (no autograd through steps).

The scan h_t = a_t * h_{t-1} + b_t runs in two short loops instead of one per token: a loop over the T steps of
every chunk at once (all chunks in parallel), then a loop over the L / T chunks carrying the state; T ~ sqrt(L).
Each step is one in-place ``addcmul`` (the per-op overhead of the small steps dominates on the CPU).
Memory stays O(batch * D * N * L). Math is fp32 (fp64 for fp64 inputs).
"""
import math

import torch
import torch.nn.functional as F

from ..common.launch import cdiv


def linear_scan(decay, drive, initial=None):
    """h_t = decay_t * h_{t-1} + drive_t along the last axis; (..., L) -> (..., L), h_{-1} = initial or 0."""
    length = decay.shape[-1]
    chunk = max(1, math.isqrt(length))
    num_chunks = cdiv(length, chunk)
    pad = num_chunks * chunk - length
    decay = F.pad(decay, (0, pad), value=1.0).unflatten(-1, (num_chunks, chunk))  # (..., chunks, T)
    drive = F.pad(drive, (0, pad)).unflatten(-1, (num_chunks, chunk))  # (..., chunks, T)
    decay = decay.movedim(-1, 0).movedim(-1, 0).contiguous()  # (chunks, T, ...): slices are contiguous
    drive = drive.movedim(-1, 0).movedim(-1, 0).contiguous()  # (chunks, T, ...)
    local = torch.empty_like(drive)  # state within each chunk started from zero
    local[:, 0] = drive[:, 0]
    for t in range(1, chunk):  # one fused multiply-add per step, written in place
        torch.addcmul(drive[:, t], decay[:, t], local[:, t - 1], out=local[:, t])
    cumulative = torch.cumprod(decay, dim=1)  # product of decays since the chunk start
    entering = torch.empty_like(local[:, 0])  # (chunks, ...): the state before each chunk
    if initial is None:
        entering[0] = 0
    else:
        entering[0] = initial
    for c in range(1, num_chunks):
        torch.addcmul(local[c - 1, -1], cumulative[c - 1, -1], entering[c - 1], out=entering[c])
    states = torch.addcmul(local, cumulative, entering[:, None])  # (chunks, T, ...)
    states = states.movedim(0, -1).movedim(0, -1)  # (..., chunks, T)
    return states.flatten(-2)[..., :length]


def reverse_linear_scan(decay, drive, final=None):
    """g_t = drive_t + decay_{t+1} * g_{t+1} along the last axis, with g_L = final (added to g_{L-1})."""
    next_decay = torch.cat([decay[..., 1:], torch.ones_like(decay[..., :1])], dim=-1)  # (..., L)
    return linear_scan(next_decay.flip(-1), drive.flip(-1), final).flip(-1)


def _compute_dtype(u):
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _grouped(x, groups):
    """(batch, D, ...) -> (batch, G, D / G, ...): the channels of each group side by side (a view)."""
    return x.unflatten(1, (groups, x.shape[1] // groups))


def _as_groups(x):
    """B or C as (batch, G, N, L): a (batch, N, L) input is one group."""
    return x.unsqueeze(1) if x.dim() == 3 else x


def _discretize(u, delta, A, B, delta_bias, delta_softplus):
    """dt (batch, D, L), decay exp(dt * A) and drive dt * B * u, both (batch, D, N, L), in the compute dtype."""
    dtype = _compute_dtype(u)
    pre_dt = delta.to(dtype)
    if delta_bias is not None:
        pre_dt = pre_dt + delta_bias.to(dtype)[:, None]
    dt = F.softplus(pre_dt) if delta_softplus else pre_dt
    B = _as_groups(B).to(dtype)
    groups = B.shape[1]
    decay = torch.exp(dt[:, :, None, :] * A.to(dtype)[None, :, :, None])  # (batch, D, N, L)
    dt_u = _grouped(dt * u.to(dtype), groups)  # (batch, G, D/G, L)
    drive = (dt_u[:, :, :, None, :] * B[:, :, None]).flatten(1, 2)  # (batch, D, N, L)
    return pre_dt, dt, decay, drive


def _readout(states, u, C, D):
    """sum_n C * h + D * u: (batch, D, N, L) states -> (batch, D, L)."""
    C = _as_groups(C).to(states.dtype)
    grouped = _grouped(states, C.shape[1])  # (batch, G, D/G, N, L)
    y = (grouped * C[:, :, None]).sum(dim=3).flatten(1, 2)  # (batch, D, L)
    if D is not None:
        y = y + D.to(states.dtype)[:, None] * u.to(states.dtype)
    return y


def selective_scan_chunked_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
                               return_states, out_dtype):
    """Forward on the chunked path: returns (out, last_state) in ``out_dtype``; see ``selective_scan``."""
    _, _, decay, drive = _discretize(u, delta, A, B, delta_bias, delta_softplus)
    states = linear_scan(decay, drive, initial_state)  # (batch, D, N, L)
    last_state = states[..., -1].to(out_dtype, copy=True)  # a copy: outputs of a custom op never alias
    if return_states:
        return states.to(out_dtype), last_state
    y = _readout(states, u, C, D)
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(out_dtype), last_state


def selective_scan_chunked_bwd(grad_out, grad_last_state, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                               initial_state, return_states):
    """Analytic backward: gradients of (u, delta, A, B, C, D, z, delta_bias, initial_state), None where absent."""
    dtype = _compute_dtype(u)
    pre_dt, dt, decay, drive = _discretize(u, delta, A, B, delta_bias, delta_softplus)
    states = linear_scan(decay, drive, initial_state)  # (batch, D, N, L)
    groups = _as_groups(B).shape[1]
    grad_out = grad_out.to(dtype)
    grad_u = grad_C = grad_D = grad_z = None
    if return_states:
        grad_states = grad_out  # (batch, D, N, L)
    else:
        grad_y = grad_out
        if z is not None:
            z32 = z.to(dtype)
            gate_sigmoid = torch.sigmoid(z32)
            y = _readout(states, u, C, D)
            grad_z = (grad_out * y * gate_sigmoid * (1 + z32 * (1 - gate_sigmoid))).to(z.dtype)
            grad_y = grad_out * z32 * gate_sigmoid
        C_groups = _as_groups(C).to(dtype)  # (batch, G, N, L)
        grad_C = (_grouped(states, groups) * _grouped(grad_y, groups)[:, :, :, None]).sum(2)  # (batch, G, N, L)
        grad_C = grad_C.reshape(C.shape).to(C.dtype)
        grad_states = (_grouped(grad_y, groups)[:, :, :, None] * C_groups[:, :, None]).flatten(1, 2)
        if D is not None:
            grad_D = (grad_y * u.to(dtype)).sum((0, 2)).to(D.dtype)
            grad_u = grad_y * D.to(dtype)[:, None]
    final = None if grad_last_state is None else grad_last_state.to(dtype)
    grad_h = reverse_linear_scan(decay, grad_states, final)  # (batch, D, N, L): total gradient of each state
    start = torch.zeros_like(states[..., :1]) if initial_state is None else initial_state.to(dtype)[..., None]
    previous = torch.cat([start, states[..., :-1]], dim=-1)  # h_{t-1}: (batch, D, N, L)
    grad_decay_arg = grad_h * previous * decay  # d loss / d (dt * A): (batch, D, N, L)
    A32 = A.to(dtype)
    B_groups = _as_groups(B).to(dtype)  # (batch, G, N, L)
    grad_h_grouped = _grouped(grad_h, groups)  # (batch, G, D/G, N, L)
    grad_dt_u = (grad_h_grouped * B_groups[:, :, None]).sum(3).flatten(1, 2)  # (batch, D, L)
    grad_dt = grad_dt_u * u.to(dtype) + (grad_decay_arg * A32[None, :, :, None]).sum(2)
    dt_u = _grouped(dt * u.to(dtype), groups)  # (batch, G, D/G, L)
    grad_B = (grad_h_grouped * dt_u[:, :, :, None]).sum(2).reshape(B.shape).to(B.dtype)
    grad_A = (grad_decay_arg * dt[:, :, None]).sum((0, 3)).to(A.dtype)
    grad_u = grad_dt_u * dt + (0 if grad_u is None else grad_u)
    if delta_softplus:
        grad_dt = grad_dt * torch.sigmoid(pre_dt)
    grad_bias = None if delta_bias is None else grad_dt.sum((0, 2)).to(delta_bias.dtype)
    grad_initial = None
    if initial_state is not None:
        grad_initial = (grad_h[..., 0] * decay[..., 0]).to(initial_state.dtype)
    return (grad_u.to(u.dtype), grad_dt.to(delta.dtype), grad_A, grad_B, grad_C, grad_D, grad_z, grad_bias,
            grad_initial)
