"""Convert an official VMamba checkpoint (MzeroMiko/VMamba) into an mmpretrain ImageClassifier checkpoint.

    python tools/model_converters/vmamba2mmssm.py SRC DST [--arch tiny]

The result holds ``state_dict`` (``backbone.*`` for ``mmssm.VMamba``, ``head.fc.*`` for ``LinearClsHead``) and
``meta``. It is loaded into ``VMamba(arch)`` before saving, so a wrong arch or a damaged file fails here, listing
the keys. Official checkpoints pickle more than tensors: set MMSSM_TRUST_CHECKPOINTS=1 for a file you trust.
"""
from mmssm.models.backbones.vmamba import VMamba, convert_vmamba
from mmssm.models.utils.checkpoint import convert_checkpoint_cli

if __name__ == '__main__':
    convert_checkpoint_cli(__doc__.splitlines()[0], VMamba, convert_vmamba)
