"""One file per model family; each registers its backbone in ``mmssm.registry.MODELS``."""
from . import vmamba  # noqa: F401
from . import vim  # noqa: F401
