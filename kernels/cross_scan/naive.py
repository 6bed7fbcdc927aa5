"""Readable route reference: a (batch, C, H, W) map read along K routes and merged back by summation.

Routes: 'h' row-major, 'v' column-major, 'h_flip' reversed row-major, 'v_flip' reversed column-major.
"""
import torch

ROUTES = ('h', 'v', 'h_flip', 'v_flip')


def route_sequence(x, route):
    """(batch, C, H, W) -> (batch, C, H*W) in the order of ``route``."""
    if route in ('v', 'v_flip'):
        x = x.transpose(2, 3)  # (batch, C, W, H): column-major reading
    seq = x.flatten(2)  # (batch, C, L)
    return seq.flip(-1) if route.endswith('_flip') else seq


def route_map(seq, route, height, width):
    """Inverse of :func:`route_sequence`: (batch, C, H*W) in route order -> (batch, C, H, W)."""
    if route.endswith('_flip'):
        seq = seq.flip(-1)
    if route in ('v', 'v_flip'):
        return seq.unflatten(2, (width, height)).transpose(2, 3)  # (batch, C, W, H) -> (batch, C, H, W)
    return seq.unflatten(2, (height, width))  # (batch, C, H, W)


def cross_scan_ref(x, routes=ROUTES):
    """(batch, C, H, W) -> (batch, K, C, H*W), one copy per route."""
    return torch.stack([route_sequence(x, r) for r in routes], dim=1)


def cross_merge_ref(y, height, width, routes=ROUTES):
    """(batch, K, C, H*W) in route order -> (batch, C, H, W), the sum over routes."""
    return sum(route_map(y[:, k], r, height, width) for k, r in enumerate(routes))
