"""Route names <-> integer codes."""
from .naive import ROUTES

# bit 0: column-major reading, bit 1: reversed
ROUTE_CODES = {'h': 0, 'v': 1, 'h_flip': 2, 'v_flip': 3}
assert tuple(ROUTE_CODES) == ROUTES


def route_codes(routes):
    """Validate ``routes`` (1, 2 or 4 distinct names from ROUTES) and return their codes as a list of ints."""
    routes = (routes,) if isinstance(routes, str) else tuple(routes)
    unknown = [r for r in routes if r not in ROUTE_CODES]
    if unknown:
        raise ValueError(f'unknown routes {unknown}; choose from {ROUTES}')
    if len(routes) not in (1, 2, 4) or len(set(routes)) != len(routes):
        raise ValueError(f'routes must be 1, 2 or 4 distinct names from {ROUTES}, got {routes}')
    return [ROUTE_CODES[r] for r in routes]
