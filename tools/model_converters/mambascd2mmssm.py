"""Convert an official MambaSCD checkpoint (ChenHongruixuan/MambaCD) into an mmseg SemanticChangeEncoderDecoder one.

    python tools/model_converters/mambascd2mmssm.py SRC DST [--arch tiny-s2l4]

The result holds ``state_dict`` (``backbone.*`` for ``mmssm.VMamba``, ``decode_head.*`` for ``mmssm.ChangeMambaHead``,
``semantic_head.*`` for ``mmssm.ChangeMambaSemanticHead`` with dates t1 and t2) and ``meta``. Every part is loaded into
the model of ``--arch`` (``tiny-s2l4`` for MambaSCD-Tiny, ``small``, ``base``) before saving, so a wrong arch or a
damaged file fails here, listing the keys. Set MMSSM_TRUST_CHECKPOINTS=1 for an official file you trust.
"""
from mmssm.models.backbones.vmamba import VMamba
from mmssm.models.decode_heads import ChangeMambaHead, ChangeMambaSemanticHead, convert_mambascd
from mmssm.models.utils.checkpoint import convert_checkpoint_cli

if __name__ == '__main__':
    convert_checkpoint_cli(__doc__.splitlines()[0], VMamba, convert_mambascd,
                           build_kwargs=dict(out_indices=(0, 1, 2, 3)),
                           build_parts={'decode_head.': lambda backbone: ChangeMambaHead(in_channels=backbone.dims),
                                        'semantic_head.': lambda backbone: ChangeMambaSemanticHead(
                                            in_channels=backbone.dims, num_classes=7, dates=('t1', 't2'))})
