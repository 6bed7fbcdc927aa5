"""Convert an official GroupMamba checkpoint (Amshaker/GroupMamba) into an mmpretrain classifier checkpoint.

    python tools/model_converters/groupmamba2mmssm.py SRC DST [--arch tiny]

The result holds ``state_dict`` (``backbone.*`` for ``mmssm.GroupMamba`` with ``out_type='cls_token'``, ``head.fc.*``
and, for distilled models, ``head.dist_fc.*`` for ``mmssm.DistilledLinearClsHead``) and ``meta``. It is loaded into
``GroupMamba(arch)`` before saving, so a wrong arch or a damaged file fails here, listing the keys. Official
checkpoints pickle more than tensors: set MMSSM_TRUST_CHECKPOINTS=1 for a file you trust.
"""
from mmssm.models.backbones.group_mamba import GroupMamba, convert_official_group_mamba
from mmssm.models.utils.checkpoint import convert_checkpoint_cli

if __name__ == '__main__':
    convert_checkpoint_cli(__doc__.splitlines()[0], GroupMamba, convert_official_group_mamba,
                           build_kwargs=dict(out_type='cls_token'))
