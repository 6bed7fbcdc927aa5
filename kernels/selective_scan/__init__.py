from .naive import selective_scan_ref
from .op import selective_scan, selective_scan_flop_count

__all__ = ['selective_scan', 'selective_scan_flop_count', 'selective_scan_ref']
