"""Convert an official VM-UNet checkpoint (JCruan519/VM-UNet) into an mmseg EncoderDecoder checkpoint.

    python tools/model_converters/vmunet2mmssm.py SRC DST [--arch vm-unet]

The result holds ``state_dict`` (``backbone.*`` for ``mmssm.VMUNet``, ``decode_head.conv_seg.*`` for mmseg's
``FCNHead`` with ``num_convs=0``) and ``meta``. The backbone part is loaded into ``VMUNet(arch)`` before saving, so a
wrong arch or a damaged file fails here, listing the keys. For the ImageNet initialisation of a new VM-UNet use the
Vanilla VMamba file itself as the backbone's ``init_cfg`` checkpoint instead (no conversion).
"""
from mmssm.models.backbones.vm_unet import VMUNet, convert_vmunet
from mmssm.models.utils.checkpoint import convert_checkpoint_cli

if __name__ == '__main__':
    convert_checkpoint_cli(__doc__.splitlines()[0], VMUNet, convert_vmunet, default_arch='vm-unet')
