"""PyTorch route ops: one strided copy per route (on CPU 2-5x faster than a single index gather, measured at
VMamba-T sizes; on an H100 faster than the Triton route-copy kernel, docs/benchmarks.md)."""
import torch

from .naive import ROUTES, cross_scan_ref, route_map


def route_names(codes):
    """Route codes -> names (a code is the route's index in ROUTES)."""
    return [ROUTES[code] for code in codes]


def cross_scan_torch(x, codes):
    """(batch, C, H, W) -> (batch, K, C, H*W)."""
    return cross_scan_ref(x, route_names(codes))


def cross_merge_torch(y, height, width, codes):
    """(batch, K, C, H*W) in route order -> (batch, C, H, W), summed over routes in fp32 (fp64 for fp64)."""
    acc_dtype = torch.float64 if y.dtype == torch.float64 else torch.float32
    total = sum(route_map(y[:, k].to(acc_dtype), route, height, width)
                for k, route in enumerate(route_names(codes)))  # (batch, C, H, W)
    return total.to(y.dtype)
