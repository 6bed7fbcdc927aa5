"""VM-UNet (Ruan et al., 2024): a pure VSS U-Net for medical segmentation; official checkpoints convert here.

An mmseg U-Net backbone in the sense of mmseg's ``UNet``: encoder and decoder together, returning the decoder's
full-resolution map; the official 1x1 ``final_conv`` is the ``conv_seg`` of an mmseg ``FCNHead`` with
``num_convs=0`` on top. The encoder is a Vanilla VMamba (v0 blocks: SS2D d_state 16 with the SiLU(z) gate, no MLP;
4x4 patch embed; patch merging), held as a :class:`VMamba`. Each decoder stage adds the encoder's input of the mirrored
stage (the patch embed output is never used), expands patches x2 (except the first) and runs VSS blocks; a final
x4 patch expand gives C/4 channels at the input resolution.
"""
import re

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.runner.checkpoint import CheckpointLoader

from mmssm.registry import MODELS

from ..layers.embed import PatchExpand2d
from ..layers.vss_block import VSSBlock
from ..utils.backbone import arch_from_zoo, check_unet_input, init_linear_and_layernorm
from ..utils.checkpoint import extract_state_dict, load_state_dict_checked, rename_by_rules, rename_keys
from .vmamba import BLOCK_PARTS, LEGACY_BLOCK_NAMES, V0_RELEASE, VMamba, backbone_state_dict, convert_vmamba

BLOCK_KEYS = ('d_state', 'ssm_ratio', 'dt_rank', 'conv_bias', 'gated', 'mlp_ratio')


class VSSUpStage(nn.Module):
    """Patch expanding (or nothing, in the first decoder stage), then VSS blocks."""

    def __init__(self, embed_dims, upsample, drop_paths, with_cp, block_args):
        super().__init__()
        self.upsample = PatchExpand2d(2 * embed_dims) if upsample else nn.Identity()
        self.blocks = nn.Sequential(*(VSSBlock(embed_dims, drop_path=p, with_cp=with_cp, **block_args)
                                      for p in drop_paths))  # one block per drop-path rate

    def forward(self, x):
        return self.blocks(self.upsample(x))


@MODELS.register_module()
class VMUNet(BaseModule):
    """VM-UNet backbone (encoder + decoder).

    Args:
        arch: ``'vm-unet'`` (the paper's: dims 96, encoder depths 2-2-2-2, decoder 2-2-2-1) or a dict with
            ``embed_dims``, ``depths``, ``decoder_depths`` and optionally the v0 block settings of :class:`VMamba`.
        in_channels: image channels.
        drop_path_rate: stochastic depth, growing linearly over the encoder blocks and shrinking over the decoder's.
        with_cp: gradient checkpointing per block.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)`` with an official Vanilla VMamba ImageNet checkpoint
            initialises the encoder and, mirrored, the decoder blocks as the official code does (see
            :meth:`init_weights`); anything else gives the official init.

    Returns (forward): a 1-tuple with the (batch, C/4, H, W) decoder output.
    """

    arch_zoo = {'vm-unet': dict(embed_dims=96, depths=(2, 2, 2, 2), decoder_depths=(2, 2, 2, 1))}

    def __init__(self, arch='vm-unet', in_channels=3, drop_path_rate=0.2, with_cp=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        arch = arch_from_zoo(arch, self.arch_zoo, 'VMUNet')
        decoder_depths = tuple(arch.pop('decoder_depths', ()))
        if len(decoder_depths) != len(arch.get('depths', ())):
            raise ValueError(f'VMUNet: decoder_depths {decoder_depths} must have one depth per encoder stage '
                             f'{tuple(arch.get("depths", ()))}')
        arch = dict(V0_RELEASE, **arch)
        self.encoder = VMamba(arch, in_channels=in_channels, out_indices=(), drop_path_rate=drop_path_rate,
                              with_cp=with_cp)
        self.decoder_depths = decoder_depths
        block_args = {k: arch[k] for k in BLOCK_KEYS}
        decoder_dims = self.encoder.dims[::-1]
        total = sum(decoder_depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)][::-1]  # deepest first, largest
        self.decoder = nn.ModuleList()
        for i, (dims, depth) in enumerate(zip(decoder_dims, decoder_depths)):
            first = sum(decoder_depths[:i])
            self.decoder.append(VSSUpStage(dims, i > 0, rates[first:first + depth], with_cp, block_args))
        self.final_expand = PatchExpand2d(self.encoder.dims[0], scale=4)

    def forward(self, x):
        check_unet_input(x, self.encoder.in_channels, 'VMUNet')
        maps = self.encoder.stage_maps(x)
        skips = [stage_input for stage_input, _ in maps]  # the patch embed output, then each downsample's
        x = maps[-1][1]  # the last stage's output
        for i, stage in enumerate(self.decoder):
            x = stage(x if i == 0 else x + skips[-i])  # (batch, C_{3-i}, H_{3-i}, W_{3-i})
        return (self.final_expand(x),)  # (batch, C0/4, H, W)

    def init_weights(self):
        """Official init, or with ``Pretrained`` the official VM-UNet initialisation from a Vanilla VMamba ImageNet
        checkpoint: encoder stage i takes blocks 0 .. depth_i - 1 of stage i, decoder stage k takes blocks
        0 .. decoder_depth_k - 1 of encoder stage 3 - k; the checkpoint's deeper blocks and classifier are not used
        (logged), the patch-expanding layers keep their init. Every other model weight must be in the checkpoint."""
        self.apply(init_linear_and_layernorm)
        if self.init_cfg is None or self.init_cfg.get('type') != 'Pretrained':
            self._is_init = True
            return
        source = self.init_cfg['checkpoint']
        loaded = CheckpointLoader.load_checkpoint(source, map_location='cpu')
        imagenet = backbone_state_dict(dict(extract_state_dict(loaded)))  # our VMamba keys
        selected, unused = mirrored_encoder_weights(imagenet, self.encoder.depths, self.decoder_depths)
        load_state_dict_checked(self, selected, allow_missing=('decoder.*.upsample.*', 'final_expand.*'),
                                source=source)
        print_log(f'VMUNet: {len(selected)} tensors from {source}; not used: {len(unused)} '
                  f'({", ".join(unused[:6])}{", ..." if len(unused) > 6 else ""})', 'current')
        self._is_init = True


def mirrored_encoder_weights(imagenet, depths, decoder_depths):
    """(our VMUNet keys, unused ImageNet keys) from a converted VMamba state dict, as VM-UNet's ``load_from``."""
    selected, used = {}, set()
    for key, value in imagenet.items():
        match = re.match(r'stages\.(\d+)\.blocks\.(\d+)\.(.*)$', key)
        if match is None:
            if key.startswith(('patch_embed.', 'stages.')):  # stem and downsamples
                selected['encoder.' + key] = value
                used.add(key)
            continue
        stage, block, rest = int(match[1]), int(match[2]), match[3]
        if block < depths[stage]:
            selected[f'encoder.stages.{stage}.blocks.{block}.{rest}'] = value
            used.add(key)
        mirror = len(depths) - 1 - stage
        if block < decoder_depths[mirror]:
            selected[f'decoder.{mirror}.blocks.{block}.{rest}'] = value
            used.add(key)
    return selected, sorted(set(imagenet) - used)


# ---------------------------------------------------------------------------------------------------------------
# official VM-UNet checkpoint -> ours

def _rename_official_key(key):
    """Our key (mmseg EncoderDecoder layout) for one official VMUNet key (``vmunet.`` stripped), or None."""
    rules = [
        (r'^layers_up\.(\d+)\.blocks\.(\d+)\.(norm|op)\.(.*)$',
         lambda m: f'backbone.decoder.{m[1]}.blocks.{m[2]}.{BLOCK_PARTS[m[3]]}.{m[4]}'),
        (r'^layers_up\.(\d+)\.upsample\.(expand|norm)\.(.*)$',
         lambda m: f'backbone.decoder.{m[1]}.upsample.{m[2]}.{m[3]}'),
        (r'^final_up\.(expand|norm)\.(.*)$', lambda m: f'backbone.final_expand.{m[1]}.{m[2]}'),
        (r'^final_conv\.(.*)$', lambda m: f'decode_head.conv_seg.{m[1]}'),
    ]
    return rename_by_rules(key, rules)


def convert_vmunet(official_state_dict):
    """Official VM-UNet weights (``vmunet.*`` as its training script saves them; under ``model_state_dict`` or
    ``model``, or bare) -> an mmseg EncoderDecoder state dict: ``backbone.*`` for :class:`VMUNet` and
    ``decode_head.conv_seg.*`` for the FCNHead. Unknown keys are an error."""
    state_dict = official_state_dict
    for entry in ('model_state_dict', 'model'):
        state_dict = state_dict.get(entry, state_dict)
    state_dict = {re.sub(r'^vmunet\.', '', k): v for k, v in state_dict.items()}
    for pattern, replacement in LEGACY_BLOCK_NAMES:  # ln_1 -> norm, self_attention -> op, in every block
        state_dict = {re.sub(pattern, replacement, k): v for k, v in state_dict.items()}
    encoder = {k: v for k, v in state_dict.items() if k.startswith(('patch_embed.', 'layers.'))}
    converted = {'backbone.encoder.' + k[len('backbone.'):]: v for k, v in convert_vmamba(encoder).items()}
    rest = {k: v for k, v in state_dict.items() if k not in encoder}
    return {**converted, **rename_keys(rest, _rename_official_key, ('convert_vmunet', 'VM-UNet'))}
