"""Readable SS2D core reference: routes, per-route projections, one grouped selective scan, merge.

This is what VMamba's SS2D computes between the depthwise-conv activation and ``out_norm``, written as the
separate ops the fused kernel must agree with.
"""
import torch

from ..cross_scan.naive import ROUTES, cross_merge_ref, cross_scan_ref
from ..selective_scan.naive import selective_scan_ref


def ss2d_scan_ref(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, routes=ROUTES, out_dtype=None,
                  scan=selective_scan_ref, scan_routes=cross_scan_ref, merge_routes=cross_merge_ref):
    """(batch, D, H, W) -> (batch, D, H, W); see :func:`mmssm.kernels.ss2d_scan` for the arguments.

    ``scan``, ``scan_routes`` and ``merge_routes`` let the same composition run on the fast unfused ops.
    """
    batch, channels, height, width = x.shape
    num_routes = len(routes)
    rank = dt_projs_weight.shape[2]
    num_states = A_logs.shape[1]
    xs = scan_routes(x, routes)  # (batch, K, D, L)
    x_dbl = torch.einsum('bkdl,kcd->bkcl', xs, x_proj_weight.to(xs.dtype))  # (batch, K, R + 2N, L)
    dts, Bs, Cs = torch.split(x_dbl, [rank, num_states, num_states], dim=2)
    dts = torch.einsum('bkrl,kdr->bkdl', dts, dt_projs_weight.to(xs.dtype))  # (batch, K, D, L)
    ys = scan(
        xs.flatten(1, 2),  # (batch, K*D, L)
        dts.flatten(1, 2),  # (batch, K*D, L)
        -torch.exp(A_logs), Bs, Cs, D=Ds,  # B, C: (batch, K, N, L), one group per route
        delta_bias=dt_projs_bias.flatten(), delta_softplus=True, out_dtype=out_dtype or x.dtype)
    ys = ys.unflatten(1, (num_routes, channels))  # (batch, K, D, L)
    return merge_routes(ys, height, width, routes)  # (batch, D, H, W)
