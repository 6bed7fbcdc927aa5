from .naive import ROUTES, cross_merge_ref, cross_scan_ref
from .op import cross_merge, cross_scan
from .routes import route_codes

__all__ = ['ROUTES', 'cross_scan', 'cross_merge', 'cross_scan_ref', 'cross_merge_ref', 'route_codes']
