"""Readable selective-scan reference: the definition of correct (float64-capable, a loop over L).

Per batch b, channel d, state n, step t (g = d // (D / G) is the channel's group):
    dt = softplus(delta[b, d, t] + delta_bias[d])           (when delta_softplus)
    h[b, d, n, t] = exp(dt * A[d, n]) * h[b, d, n, t-1] + dt * B[b, g, n, t] * u[b, d, t]
    y[b, d, t] = sum_n C[b, g, n, t] * h[b, d, n, t] + D[d] * u[b, d, t]    (then * silu(z[b, d, t]))
"""
import torch
import torch.nn.functional as F


def expand_groups(x, channels):
    """(batch, N, L) or (batch, G, N, L) -> (batch, channels, N, L), each group shared by channels // G."""
    if x.dim() == 3:
        x = x.unsqueeze(1)
    groups = x.shape[1]
    return x.repeat_interleave(channels // groups, dim=1)


def selective_scan_ref(u, delta, A, B, C=None, D=None, z=None, delta_bias=None, delta_softplus=False,
                       initial_state=None, return_last_state=False, return_states=False, out_dtype=None):
    """Same signature and results as :func:`mmssm.kernels.selective_scan`, computed step by step.

    Math runs in float64 when any input is float64, else in float32.
    """
    compute_dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    out_dtype = out_dtype or u.dtype
    batch, channels, length = u.shape
    u, delta, A = u.to(compute_dtype), delta.to(compute_dtype), A.to(compute_dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute_dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    B = expand_groups(B.to(compute_dtype), channels)  # (batch, D, N, L)
    decay = torch.exp(delta[:, :, None, :] * A[None, :, :, None])  # (batch, D, N, L)
    drive = delta[:, :, None, :] * B * u[:, :, None, :]  # (batch, D, N, L)
    h = u.new_zeros(batch, channels, A.shape[1]) if initial_state is None else initial_state.to(compute_dtype)
    states = []
    for t in range(length):
        h = decay[..., t] * h + drive[..., t]
        states.append(h)
    states = torch.stack(states, dim=-1)  # (batch, D, N, L)
    if return_states:
        out = states.to(out_dtype)
    else:
        C = expand_groups(C.to(compute_dtype), channels)  # (batch, D, N, L)
        y = (states * C).sum(dim=2)  # (batch, D, L)
        if D is not None:
            y = y + D.to(compute_dtype)[:, None] * u
        if z is not None:
            y = y * F.silu(z.to(compute_dtype))
        out = y.to(out_dtype)
    if return_last_state:
        return out, h.to(out_dtype)
    return out
