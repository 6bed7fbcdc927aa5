"""Convert an official LightM-UNet 2D or 3D checkpoint (MrBlankness/LightM-UNet, nnU-Net's ``checkpoint_final.pth``)
into an mmseg EncoderDecoder checkpoint.

    python tools/model_converters/lightmunet2mmssm.py SRC DST [--arch lightm-unet]

The input channels and the spatial dims (2, or 3 for e.g. the LiTS models) are read from the stem's weights. The
result holds ``state_dict`` (``backbone.*`` for ``mmssm.LightMUNet`` and ``decode_head.conv_seg.*`` for mmseg's
``FCNHead`` with ``num_convs=0``) and ``meta`` (with ``build_kwargs``: in_channels, spatial_dims). The backbone part is
loaded into ``LightMUNet(arch, **build_kwargs)`` before saving, so a wrong arch or a damaged file fails here.
"""
from mmssm.models.backbones.light_m_unet import LightMUNet, convert_lightmunet, lightmunet_build_kwargs
from mmssm.models.utils.checkpoint import convert_checkpoint_cli

if __name__ == '__main__':
    convert_checkpoint_cli(__doc__.splitlines()[0], LightMUNet, convert_lightmunet,
                           build_kwargs=lightmunet_build_kwargs, default_arch='lightm-unet')
