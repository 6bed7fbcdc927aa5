"""Vectorised PyTorch route ops (the CPU path): one gather per op, no Python loop over positions."""
import torch

from .routes import route_positions


def cross_scan_torch(x, codes):
    """(batch, C, H, W) -> (batch, K, C, H*W)."""
    batch, channels, height, width = x.shape
    positions = route_positions(codes, height, width, x.device)  # (K, L)
    seqs = x.flatten(2)[:, :, positions]  # (batch, C, K, L)
    return seqs.transpose(1, 2).contiguous()  # (batch, K, C, L)


def cross_merge_torch(y, height, width, codes):
    """(batch, K, C, H*W) in route order -> (batch, C, H, W), summed over routes in fp32 (fp64 for fp64)."""
    batch, num_routes, channels, length = y.shape
    steps = route_positions(codes, height, width, y.device).argsort(dim=1)  # (K, L): step of each position
    natural = y.gather(3, steps.view(1, num_routes, 1, length).expand_as(y))  # (batch, K, C, L) natural order
    acc_dtype = torch.float64 if y.dtype == torch.float64 else torch.float32
    total = natural.sum(dim=1, dtype=acc_dtype)  # (batch, C, L)
    return total.to(y.dtype).view(batch, channels, height, width)
