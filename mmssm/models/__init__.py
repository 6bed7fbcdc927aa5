"""Registered models: importing this package registers every family in ``mmssm.registry.MODELS``."""
from . import backbones  # noqa: F401
from . import classifiers  # noqa: F401
