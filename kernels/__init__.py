"""Shared scan ops for vision state-space models. Depends on torch (and triton on CUDA) only."""
from .cross_scan import ROUTES, cross_merge, cross_scan
from .layer_norm import layer_norm_2d
from .selective_scan import selective_scan
from .ss2d import ss2d_scan

__all__ = ['ROUTES', 'cross_merge', 'cross_scan', 'layer_norm_2d', 'selective_scan', 'ss2d_scan']
