"""Convert an official MambaBCD checkpoint (ChenHongruixuan/MambaCD) into an mmseg SiameseEncoderDecoder checkpoint.

    python tools/model_converters/changemamba2mmssm.py SRC DST [--arch tiny-s2l4]

The result holds ``state_dict`` (``backbone.*`` for ``mmssm.VMamba``, ``decode_head.*`` for
``mmssm.ChangeMambaHead``) and ``meta``. Both parts are loaded into the model of ``--arch`` (the encoder's VMamba arch:
``tiny-s2l4`` for MambaBCD-Tiny, ``small``, ``base``) before saving, so a wrong arch or a damaged file fails here,
listing the keys. Official checkpoints pickle more than tensors: set MMSSM_TRUST_CHECKPOINTS=1 for a file you trust.
"""
from mmssm.models.backbones.vmamba import VMamba
from mmssm.models.decode_heads import ChangeMambaHead, convert_changemamba
from mmssm.models.utils.checkpoint import convert_checkpoint_cli

if __name__ == '__main__':
    convert_checkpoint_cli(__doc__.splitlines()[0], VMamba, convert_changemamba,
                           build_kwargs=dict(out_indices=(0, 1, 2, 3)),
                           build_parts={'decode_head.': lambda backbone: ChangeMambaHead(in_channels=backbone.dims)})
