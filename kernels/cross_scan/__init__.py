from .naive import ROUTES, cross_merge_ref, cross_scan_ref

cross_scan = cross_scan_ref
cross_merge = cross_merge_ref

__all__ = ['ROUTES', 'cross_scan', 'cross_merge', 'cross_scan_ref', 'cross_merge_ref']
