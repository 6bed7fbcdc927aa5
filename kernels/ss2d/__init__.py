from .naive import ss2d_scan_ref
from .op import ss2d_scan

__all__ = ['ss2d_scan', 'ss2d_scan_ref']
