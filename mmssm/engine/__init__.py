"""Training-time pieces registered in ``mmssm.registry`` (optimizer-wrapper constructors, hooks)."""
from .hooks import FreezeModuleHook
from .optimizers import LayerDecayOptimWrapperConstructor

__all__ = ['FreezeModuleHook', 'LayerDecayOptimWrapperConstructor']
