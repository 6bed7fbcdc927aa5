"""Convert an official Spatial-Mamba checkpoint (EdwardChasel/Spatial-Mamba) into an mmpretrain classifier checkpoint.

    python tools/model_converters/spatialmamba2mmssm.py SRC DST [--arch tiny]

The result holds ``state_dict`` (``backbone.*`` for ``mmssm.SpatialMamba``, ``head.fc.*`` for ``LinearClsHead``) and
``meta``. It is loaded into ``SpatialMamba(arch)`` before saving, so a wrong arch or a damaged file fails here, listing
the keys. Official checkpoints pickle more than tensors: set MMSSM_TRUST_CHECKPOINTS=1 for a file you trust.
"""
from mmssm.models.backbones.spatial_mamba import SpatialMamba, convert_official_spatial_mamba
from mmssm.models.utils.checkpoint import convert_checkpoint_cli

if __name__ == '__main__':
    convert_checkpoint_cli(__doc__.splitlines()[0], SpatialMamba, convert_official_spatial_mamba)
