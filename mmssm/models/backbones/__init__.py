"""One file per model family; each registers its backbone in ``mmssm.registry.MODELS``."""
from . import vmamba  # noqa: F401
from . import vim  # noqa: F401
from . import spatial_mamba  # noqa: F401
from . import group_mamba  # noqa: F401
from . import vm_unet  # noqa: F401
from . import msvm_unet  # noqa: F401
from . import u_mamba  # noqa: F401
from . import light_m_unet  # noqa: F401
from . import swin_umamba  # noqa: F401
