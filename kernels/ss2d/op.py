"""Public fused SS2D core (the fused Triton path is added beside the reference)."""
from ..cross_scan.naive import ROUTES
from .naive import ss2d_scan_ref


def ss2d_scan(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, routes=ROUTES, out_dtype=None):
    """SS2D core: scan a feature map along K routes with per-route projections and sum the routes back.

    Args:
        x: (batch, D, H, W), the activated features in their natural layout.
        x_proj_weight: (K, R + 2N, D) per-route projection to dt (R), B (N), C (N).
        dt_projs_weight: (K, D, R) low-rank dt up-projection. dt_projs_bias: (K, D), softplus applied inside.
        A_logs: (K*D, N), A = -exp(A_logs). Ds: (K*D,). routes: K names from ``mmssm.kernels.ROUTES``.
        out_dtype: output dtype (default x.dtype); math is fp32.

    Returns:
        (batch, D, H, W): the sum over routes of each route's scan output mapped back to row-major positions.
    """
    return ss2d_scan_ref(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, routes, out_dtype)
