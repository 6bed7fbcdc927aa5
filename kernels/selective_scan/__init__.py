from .naive import selective_scan_ref
from .op import selective_scan

__all__ = ['selective_scan', 'selective_scan_ref']
