"""Runner hooks registered in ``mmssm.registry.HOOKS``."""
from .freeze_module_hook import FreezeModuleHook

__all__ = ['FreezeModuleHook']
