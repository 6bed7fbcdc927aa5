"""mmssm: vision state-space models (Mamba) for OpenMMLab, on the shared scan kernels in ``mmssm.kernels``."""
from .version import __version__

__all__ = ['__version__']
