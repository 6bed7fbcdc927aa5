"""Convert an official LightM-UNet 2D checkpoint (MrBlankness/LightM-UNet, nnU-Net's ``checkpoint_final.pth``) into an
mmseg EncoderDecoder checkpoint.

    python tools/model_converters/lightmunet2mmssm.py SRC DST [--arch lightm-unet]

The result holds ``state_dict`` (``backbone.*`` for ``mmssm.LightMUNet`` with 3 input channels, the official chest
X-ray dataset.json's, and ``decode_head.conv_seg.*`` for mmseg's ``FCNHead`` with ``num_convs=0``) and ``meta``. The
backbone part is loaded into ``LightMUNet(arch)`` before saving, so a wrong arch or a damaged file fails here.
"""
from mmssm.models.backbones.light_m_unet import LightMUNet, convert_lightmunet
from mmssm.models.utils.checkpoint import convert_checkpoint_cli

if __name__ == '__main__':
    convert_checkpoint_cli(__doc__.splitlines()[0], LightMUNet, convert_lightmunet, default_arch='lightm-unet')
