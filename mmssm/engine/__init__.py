"""Training-time pieces registered in ``mmssm.registry`` (optimizer-wrapper constructors, hooks)."""
from .optimizers import LayerDecayOptimWrapperConstructor

__all__ = ['LayerDecayOptimWrapperConstructor']
