from .naive import ss2d_scan_ref
from .op import ss2d_flop_count, ss2d_scan, ss2d_scan_fused

__all__ = ['ss2d_flop_count', 'ss2d_scan', 'ss2d_scan_fused', 'ss2d_scan_ref']
