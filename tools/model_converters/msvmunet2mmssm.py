"""Convert an official MSVM-UNet checkpoint (gndlwch2w/msvm-unet) into an mmseg EncoderDecoder checkpoint.

    python tools/model_converters/msvmunet2mmssm.py SRC DST [--arch tiny]

The result holds ``state_dict`` (``backbone.*`` for ``mmssm.MSVMUNet``, ``decode_head.conv_seg.*`` for mmseg's
``FCNHead`` with ``num_convs=0``) and ``meta``. The backbone part is loaded into ``MSVMUNet(arch)`` (the encoder's
VMamba arch) before saving, so a wrong arch or a damaged file fails here, listing the keys. For the ImageNet
initialisation of a new MSVM-UNet use the official VMamba file itself as the backbone's ``init_cfg`` checkpoint.
"""
from mmssm.models.backbones.msvm_unet import MSVMUNet, convert_msvmunet
from mmssm.models.utils.checkpoint import convert_checkpoint_cli

if __name__ == '__main__':
    convert_checkpoint_cli(__doc__.splitlines()[0], MSVMUNet, convert_msvmunet)
