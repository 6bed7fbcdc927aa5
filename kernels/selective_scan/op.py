"""Public selective-scan op (dispatch to the fast paths is added beside the reference)."""
from .naive import selective_scan_ref


def selective_scan(u, delta, A, B, C=None, D=None, z=None, delta_bias=None, delta_softplus=False,
                   initial_state=None, return_last_state=False, return_states=False, out_dtype=None):
    """Selective scan (Mamba-1 / S6) over the last axis.

    Args:
        u, delta: (batch, D, L). A: (D, N). B, C: (batch, G, N, L) or (batch, N, L), G divides D.
        D, delta_bias: (D,). z: (batch, D, L), gates the output by silu(z). initial_state: (batch, D, N).
        return_states: return all hidden states (batch, D, N, L) instead of y (C, D and z must be None).
        out_dtype: dtype of the output (default: u.dtype); math is fp32 (fp64 for fp64 inputs).

    Returns:
        y (batch, D, L) or states (batch, D, N, L); with return_last_state, a tuple (out, last_state (batch, D, N)).
    """
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
                              return_last_state, return_states, out_dtype)
