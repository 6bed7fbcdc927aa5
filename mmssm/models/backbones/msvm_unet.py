"""MSVM-UNet (Chen et al., 2024): a VMamba v2 U-Net with multi-scale VSS decoder blocks; official checkpoints convert
here.

An mmseg U-Net backbone like :class:`VMUNet`: the encoder is a VMamba (v2, ``tiny``: its stage outputs without
output norms are the skips), each decoder stage expands the deeper map with a large-kernel patch expanding (LKPE),
concatenates the skip, projects 2C -> C and runs VSS blocks whose MLP holds multi-scale depthwise convolutions
(kernels 1, 3, 5); the final x4 large-kernel expanding (FLKPE) gives C0 channels at the input resolution and its 1x1
classifier is the ``conv_seg`` of an mmseg ``FCNHead`` with ``num_convs=0``.
"""
import re

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmssm.registry import MODELS

from ..layers.embed import LargeKernelPatchExpand
from ..layers.linear2d import Linear2d
from ..layers.vss_block import VSSBlock
from ..utils.backbone import arch_from_zoo, check_unet_input, init_linear_and_layernorm
from ..utils.checkpoint import extract_state_dict, load_pretrained, rename_by_rules, rename_keys
from .vmamba import BLOCK_PARTS, DOWNSAMPLE_PARTS, PATCH_EMBED_PARTS, VMamba, backbone_state_dict

DECODER_BLOCK = dict(d_state=1, ssm_ratio=1.0, dt_rank='auto', conv_bias=False, gated=False, mlp_ratio=4.0,
                     mlp_kernel_sizes=(1, 3, 5))


class MSUpStage(nn.Module):
    """LKPE the deeper map (C_in -> C_in / 2 = C at twice the size), concat the skip, Linear 2C -> C, VSS blocks."""

    def __init__(self, in_channels, out_channels, drop_paths, with_cp):
        super().__init__()
        self.up = LargeKernelPatchExpand(in_channels, in_channels // 2, scale=2)
        self.concat_proj = Linear2d(2 * out_channels, out_channels)
        self.blocks = nn.Sequential(*(VSSBlock(out_channels, drop_path=p, with_cp=with_cp, **DECODER_BLOCK)
                                      for p in drop_paths))

    def forward(self, x, skip):
        return self.blocks(self.concat_proj(torch.cat([self.up(x), skip], dim=1)))


@MODELS.register_module()
class MSVMUNet(BaseModule):
    """MSVM-UNet backbone (encoder + decoder).

    Args:
        arch: a :class:`VMamba` arch of the encoder (``'tiny'``, the paper's; ``'small'``), as a name or dict.
        in_channels: image channels.
        drop_path_rate: the encoder's stochastic depth (linear over its blocks).
        decoder_depths: VSS blocks per decoder stage (shallowest last). decoder_drop_path_rate: stochastic depth
            of the decoder blocks, falling linearly from this rate (deepest) to 0.
        with_cp: gradient checkpointing per block.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)`` with an official VMamba ImageNet checkpoint fills the
            encoder as the official code does (the classifier is not used); the decoder keeps PyTorch's default init.

    Returns (forward): a 1-tuple with the (batch, C0, H, W) decoder output.
    """

    arch_zoo = VMamba.arch_zoo  # the encoder's

    def __init__(self, arch='tiny', in_channels=3, drop_path_rate=0.2, decoder_depths=(2, 2, 2),
                 decoder_drop_path_rate=0.2, with_cp=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.encoder = VMamba(arch_from_zoo(arch, self.arch_zoo, 'MSVMUNet'), in_channels=in_channels,
                              out_indices=(), drop_path_rate=drop_path_rate, with_cp=with_cp)
        dims = self.encoder.dims[::-1]  # deepest first
        if len(decoder_depths) != len(dims) - 1:
            raise ValueError(f'MSVMUNet: {len(decoder_depths)} decoder_depths for {len(dims) - 1} decoder stages')
        total = sum(decoder_depths)
        rates = [decoder_drop_path_rate * (1 - i / max(total - 1, 1)) for i in range(total)]  # rate down to 0
        self.decoder = nn.ModuleList()
        for i, depth in enumerate(decoder_depths):
            first = sum(decoder_depths[:i])
            self.decoder.append(MSUpStage(dims[i], dims[i + 1], rates[first:first + depth], with_cp))
        self.final_expand = LargeKernelPatchExpand(dims[-1], dims[-1], scale=4)

    def forward(self, x):
        check_unet_input(x, self.encoder.in_channels, 'MSVMUNet')
        outputs = [out for _, out in self.encoder.stage_maps(x)]  # (batch, C_i, H_i, W_i), shallowest first
        x = outputs[-1]
        for stage, skip in zip(self.decoder, outputs[-2::-1]):
            x = stage(x, skip)
        return (self.final_expand(x),)  # (batch, C0, H, W)

    def init_weights(self):
        """Official init: the encoder's (VMamba's trunc-normal Linears), the decoder keeps PyTorch's default init (the
        official ``Decoder`` applies none); with ``Pretrained`` the encoder from an official VMamba checkpoint
        (strict, the output norms and classifier are not used)."""
        self.encoder.apply(init_linear_and_layernorm)
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            load_pretrained(self.encoder, self.init_cfg['checkpoint'], convert=_encoder_only)
        self._is_init = True


def _encoder_only(state_dict):
    """Our VMamba keys from an official (or our) VMamba checkpoint, without the output norms."""
    return {k: v for k, v in backbone_state_dict(state_dict).items() if not re.match(r'norm\d\.', k)}


# ---------------------------------------------------------------------------------------------------------------
# official MSVM-UNet checkpoint -> ours

# the official Encoder splits VMamba's patch embed Sequential: layer0 = patch_embed[0:5], layer1 = patch_embed[5:8]
ENCODER_STEM = {'layer0.0': '0', 'layer0.2': '2', 'layer1.0': '5', 'layer1.2': '7'}
LKPE_PARTS = {'expand.0': 'expand.0', 'expand.1': 'expand.1', 'expand.3': 'expand.3', 'norm': 'norm'}


def _rename_official_key(key):
    """Our key (mmseg EncoderDecoder layout) for one official MSVMUNet key, or None."""
    rules = [
        (r'^encoder\.(layer[01]\.[02])\.(.*)$',
         lambda m: f'backbone.encoder.patch_embed.{PATCH_EMBED_PARTS[ENCODER_STEM[m[1]]]}.{m[2]}'),
        (r'^encoder\.layers\.(\d+)\.blocks\.(\d+)\.(norm|op|norm2|mlp)\.(.*)$',
         lambda m: f'backbone.encoder.stages.{m[1]}.blocks.{m[2]}.{BLOCK_PARTS[m[3]]}.{m[4]}'),
        (r'^encoder\.downsamples\.(\d+)\.(\w+)\.(.*)$', lambda m: m[2] in DOWNSAMPLE_PARTS and
         f'backbone.encoder.stages.{m[1]}.downsample.{DOWNSAMPLE_PARTS[m[2]]}.{m[3]}'),
        (r'^decoder\.layers\.(\d+)\.up\.(expand\.[013]|norm)\.(.*)$',
         lambda m: f'backbone.decoder.{m[1]}.up.{LKPE_PARTS[m[2]]}.{m[3]}'),
        (r'^decoder\.layers\.(\d+)\.concat_layer\.(.*)$', lambda m: f'backbone.decoder.{m[1]}.concat_proj.{m[2]}'),
        (r'^decoder\.layers\.(\d+)\.vss_layer\.blocks\.(\d+)\.(norm|op|norm2|mlp)\.(.*)$',
         lambda m: f'backbone.decoder.{m[1]}.blocks.{m[2]}.{BLOCK_PARTS[m[3]]}.{m[4]}'),
        (r'^decoder\.out_layers\.0\.(expand\.[013]|norm)\.(.*)$',
         lambda m: f'backbone.final_expand.{LKPE_PARTS[m[1]]}.{m[2]}'),
        (r'^decoder\.out_layers\.0\.out\.(.*)$', lambda m: f'decode_head.conv_seg.{m[1]}'),
    ]
    return rename_by_rules(key, rules)


def convert_msvmunet(official_state_dict):
    """Official MSVM-UNet weights (its Lightning checkpoint: ``state_dict`` with ``_model.`` keys; or a bare model
    state dict) -> an mmseg EncoderDecoder state dict: ``backbone.*`` for :class:`MSVMUNet`,
    ``decode_head.conv_seg.*`` for the FCNHead. Unknown keys are an error."""
    state_dict = extract_state_dict(official_state_dict)
    state_dict = {re.sub(r'^_model\.', '', k): v for k, v in state_dict.items()}
    return rename_keys(state_dict, _rename_official_key, ('convert_msvmunet', 'MSVM-UNet'))
