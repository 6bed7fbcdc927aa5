"""Swin-UMamba and Swin-UMamba† (Liu et al., MICCAI 2024): Vanilla VMamba-T U-Nets for 2D medical segmentation with
ImageNet-initialised encoders (JiarunLiu/Swin-UMamba, on nnU-Net v2); official checkpoints convert here.

Both are mmseg U-Net backbones like :class:`VMUNet` (encoder and decoder together), but return the decoder maps that
the official deep supervision classifies, finest first; ``mmssm.DeepSupervisionHead`` holds the official 1x1 output
convs (``seg_layers``, finest first) and weights their losses the nnU-Net way.

Swin-UMamba: stem Conv7x7 s2 + InstanceNorm (C_s channels, H/2), a Vanilla VMamba encoder whose patch embed is a 2x2
stride-2 conv (stages at H/4 .. H/32) and a UNETR decoder of MONAI blocks: residual conv blocks turn the image, the
stem output and the first three stage outputs into skips (H .. H/16), five up blocks climb from the last stage output
to H, a last residual block follows. Outputs: (C_s, H), (C0, H/2), (C1, H/4), (C2, H/8).

Swin-UMamba†: the Vanilla VMamba encoder as released (4x4 patch embed) and a Mamba decoder: per stage a patch
expanding x2, the stage output of that resolution concatenated, Linear 2C -> C, VSS blocks; a final x4 patch expanding
that keeps C0 channels. Outputs: (C0, H), (C0, H/4), (C1, H/8), (C2, H/16).
"""
import re
from fnmatch import fnmatchcase

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.runner.checkpoint import CheckpointLoader

from mmssm.registry import MODELS

from ..layers.embed import PatchExpand2d
from ..layers.linear2d import Linear2d
from ..layers.vss_block import VSSBlock
from ..utils.backbone import arch_from_zoo, check_unet_input, init_linear_and_layernorm
from ..utils.checkpoint import extract_state_dict, load_state_dict_checked, rename_by_rules, rename_keys
from .vm_unet import BLOCK_KEYS
from .vmamba import BLOCK_PARTS, LEGACY_BLOCK_NAMES, V0_RELEASE, VMamba, backbone_state_dict, convert_vmamba

LEAKY_SLOPE = 0.01  # MONAI's default activation in its UNet blocks
# the ImageNet keys (ours) that the official load_pretrained_ckpt skips: the classifier norm and, for Swin-UMamba, the
# 4x4 patch embed conv and its norm's weight (its list names ``patch_embed.norm.weight`` twice: the bias IS loaded)
CLASSIFIER_NORM = 'norm[0-9]*'
SWIN_UMAMBA_SKIPPED = (CLASSIFIER_NORM, 'patch_embed.conv1.*', 'patch_embed.norm1.weight')


def instance_norm(x):
    """MONAI's ``'instance'`` norm: per sample and channel, no affine parameters, no running statistics."""
    return F.instance_norm(x, eps=1e-5)


class ResConvBlock(nn.Module):
    """MONAI's ``UnetResBlock`` (kernel 3, stride 1, instance norm): (batch, C_in, H, W) -> (batch, C, H, W).

    LReLU(IN(conv3x3(LReLU(IN(conv3x3(x))))) + shortcut), shortcut = IN(conv1x1(x)) when C_in != C, else x; no biases.
    """

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None

    def forward(self, x):
        out = F.leaky_relu(instance_norm(self.conv1(x)), LEAKY_SLOPE)
        out = instance_norm(self.conv2(out))
        residual = x if self.shortcut is None else instance_norm(self.shortcut(x))
        return F.leaky_relu(out + residual, LEAKY_SLOPE)


class ResUpBlock(nn.Module):
    """MONAI's ``UnetrUpBlock`` (res_block): 2x2 stride-2 transposed conv C_in -> C (no bias), the skip (C channels)
    concatenated, a :class:`ResConvBlock` 2C -> C."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.upsample = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=False)
        self.block = ResConvBlock(2 * out_channels, out_channels)

    def forward(self, x, skip):
        return self.block(torch.cat([self.upsample(x), skip], dim=1))  # (batch, 2C, 2H, 2W) -> (batch, C, 2H, 2W)


class MambaUpStage(nn.Module):
    """Swin-UMamba†'s decoder stage: patch expanding x2 (2C -> C), the skip (C) concatenated, Linear 2C -> C (with
    bias), VSS blocks."""

    def __init__(self, embed_dims, drop_paths, with_cp, block_args):
        super().__init__()
        self.upsample = PatchExpand2d(2 * embed_dims)
        self.fuse = Linear2d(2 * embed_dims, embed_dims)
        self.blocks = nn.Sequential(*(VSSBlock(embed_dims, drop_path=p, with_cp=with_cp, **block_args)
                                      for p in drop_paths))  # one block per drop-path rate

    def forward(self, x, skip):
        x = torch.cat([self.upsample(x), skip], dim=1)  # (batch, 2C, 2H, 2W)
        return self.blocks(self.fuse(x))


def _v0_encoder(arch, in_channels, drop_path_rate, with_cp, name, **overrides):
    """A Vanilla VMamba (v0 blocks) of four stages from a Swin-UMamba arch dict (its own keys already popped)."""
    encoder = VMamba({**V0_RELEASE, **overrides, **arch}, in_channels=in_channels, out_indices=(),
                     drop_path_rate=drop_path_rate, with_cp=with_cp)
    if len(encoder.depths) != 4:
        raise ValueError(f'{name}: the official U-Net has 4 encoder stages, got depths {encoder.depths}')
    return encoder


def load_imagenet_encoder(encoder, source, skipped):
    """The official ``load_pretrained_ckpt``: a Vanilla VMamba ImageNet file (official or our keys) into ``encoder``,
    except the keys matching the glob patterns ``skipped(imagenet_state_dict)``, which keep their init. Any other
    mismatch (a missing block, an extra one, a shape) raises :class:`CheckpointMismatchError`."""
    loaded = CheckpointLoader.load_checkpoint(source, map_location='cpu')
    imagenet = backbone_state_dict(dict(extract_state_dict(loaded)))  # our VMamba keys; classifier norm: norm{last}
    patterns = skipped(imagenet)
    kept = {k: v for k, v in imagenet.items() if not any(fnmatchcase(k, p) for p in patterns)}
    load_state_dict_checked(encoder, kept, allow_missing=patterns, source=source)
    unused = sorted(set(imagenet) - set(kept))
    print_log(f'{len(kept)} encoder tensors from {source}; skipped as the official code does: {", ".join(unused)}',
              'current')


@MODELS.register_module()
class SwinUMamba(BaseModule):
    """Swin-UMamba backbone (stem, encoder and UNETR decoder).

    Args:
        arch: ``'swin-umamba'`` (the paper's: stem 48, dims 96-768, depths 2-2-9-2) or a dict with ``stem_dims``,
            ``embed_dims``, ``depths`` (four stages) and optionally the v0 block settings of :class:`VMamba`.
        in_channels: image channels (1 for MR, 3 for RGB).
        drop_path_rate: stochastic depth of the encoder blocks, growing linearly from 0 (official: 0.2).
        with_cp: gradient checkpointing per VSS block.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)`` with the official Vanilla VMamba-T ImageNet file
            initialises the encoder as the official code does (see :meth:`init_weights`); anything else gives the
            official init.

    Returns (forward): the (batch, C, H_k, W_k) decoder maps of the deep supervision, finest first; widths in
    ``out_channels``.
    """

    arch_zoo = {'swin-umamba': dict(stem_dims=48, embed_dims=96, depths=(2, 2, 9, 2))}

    def __init__(self, arch='swin-umamba', in_channels=1, drop_path_rate=0.2, with_cp=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        arch = arch_from_zoo(arch, self.arch_zoo, 'SwinUMamba')
        if 'stem_dims' not in arch:
            raise ValueError(f'SwinUMamba: a custom arch needs stem_dims, got keys {sorted(arch)}')
        stem_dims = arch.pop('stem_dims')
        self.in_channels = in_channels
        self.stem = nn.Sequential()
        self.stem.add_module('conv', nn.Conv2d(in_channels, stem_dims, 7, stride=2, padding=3))
        self.stem.add_module('norm', nn.InstanceNorm2d(stem_dims, affine=True))
        self.encoder = _v0_encoder(arch, stem_dims, drop_path_rate, with_cp, 'SwinUMamba', patch_embed='v1-p2')
        widths = [stem_dims, *self.encoder.dims]  # of the skips at H, H/2, ..., H/16
        self.skip_blocks = nn.ModuleList(ResConvBlock(c_in, c) for c_in, c in zip([in_channels, *widths], widths))
        up_widths = widths[::-1]  # the deepest first: C3, C3, C2, C1, C0, C_s
        self.up_blocks = nn.ModuleList(ResUpBlock(c_in, c) for c_in, c in zip([up_widths[0], *up_widths], up_widths))
        self.final_block = ResConvBlock(stem_dims, stem_dims)
        self.out_channels = tuple(widths[:4])

    def forward(self, x):
        check_unet_input(x, self.in_channels, 'SwinUMamba')
        stem = self.stem(x)  # (batch, C_s, H/2, W/2)
        outs = [out for _, out in self.encoder.stage_maps(stem)]  # (batch, C_i, H/2**(i+2), W/2**(i+2))
        skips = [block(feature) for block, feature in zip(self.skip_blocks, [x, stem, *outs[:-1]])]  # H .. H/16
        y, decoded = outs[-1], []
        for block, skip in zip(self.up_blocks, skips[::-1]):
            y = block(y, skip)  # (batch, C, 2 H_y, 2 W_y)
            decoded.append(y)
        return (self.final_block(y), *decoded[-2:-5:-1])  # H, H/2, H/4, H/8

    def init_weights(self):
        """Official init (trunc-normal Linear, unit LayerNorm in the encoder; convs keep torch's default, as MONAI's
        blocks), then with ``Pretrained`` the official ImageNet initialisation: every encoder weight from the file
        except the 4x4 patch embed conv and its norm's weight (the stem feeds 48 channels to a 2x2 patch embed)."""
        self.apply(init_linear_and_layernorm)
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            load_imagenet_encoder(self.encoder, self.init_cfg['checkpoint'], lambda _: SWIN_UMAMBA_SKIPPED)
        self._is_init = True


@MODELS.register_module()
class SwinUMambaD(BaseModule):
    """Swin-UMamba† backbone (encoder and Mamba decoder).

    Args:
        arch: ``'swin-umamba-d'`` (the paper's: dims 96-768, depths 2-2-9-2, decoder depths 2-2-2) or a dict with
            ``embed_dims``, ``depths`` (four stages), ``decoder_depths`` (three, the deepest first) and optionally
            the v0 block settings of :class:`VMamba`, shared by the decoder blocks.
        in_channels: image channels.
        drop_path_rate: stochastic depth, growing linearly from 0 over the encoder blocks and shrinking to 0 over
            the decoder's (official: 0.2).
        with_cp: gradient checkpointing per VSS block.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)`` with the official Vanilla VMamba-T ImageNet file
            initialises the encoder as the official code does (see :meth:`init_weights`).

    Returns (forward): the (batch, C, H_k, W_k) decoder maps of the deep supervision, finest first; widths in
    ``out_channels``.
    """

    arch_zoo = {'swin-umamba-d': dict(embed_dims=96, depths=(2, 2, 9, 2), decoder_depths=(2, 2, 2))}

    def __init__(self, arch='swin-umamba-d', in_channels=1, drop_path_rate=0.2, with_cp=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        arch = arch_from_zoo(arch, self.arch_zoo, 'SwinUMambaD')
        decoder_depths = tuple(arch.pop('decoder_depths', ()))
        self.encoder = _v0_encoder(arch, in_channels, drop_path_rate, with_cp, 'SwinUMambaD')
        dims = self.encoder.dims
        if len(decoder_depths) != 3 or any(deep != 2 * dim for dim, deep in zip(dims, dims[1:])):
            raise ValueError(f'SwinUMambaD: needs three decoder_depths (got {decoder_depths}) and widths doubling '
                             f'per stage (got {dims})')
        block_args = {k: self.encoder.arch[k] for k in BLOCK_KEYS}
        total = sum(decoder_depths)
        rates = [drop_path_rate * (1 - i / max(total - 1, 1)) for i in range(total)]  # the deepest first, largest
        self.decoder = nn.ModuleList()
        for i, depth in enumerate(decoder_depths):
            first = sum(decoder_depths[:i])
            self.decoder.append(MambaUpStage(dims[2 - i], rates[first:first + depth], with_cp, block_args))
        self.final_expand = PatchExpand2d(dims[0], scale=4, out_channels=dims[0])
        self.out_channels = (dims[0], *dims[:3])

    def forward(self, x):
        check_unet_input(x, self.encoder.in_channels, 'SwinUMambaD')
        outs = [out for _, out in self.encoder.stage_maps(x)]  # (batch, C_i, H/2**(i+2), W/2**(i+2))
        y, decoded = outs[-1], []
        for stage, skip in zip(self.decoder, outs[-2::-1]):
            y = stage(y, skip)  # (batch, C_i, H_i, W_i), i = 2, 1, 0
            decoded.append(y)
        return (self.final_expand(y), *decoded[::-1])  # H, H/4, H/8, H/16

    def init_weights(self):
        """Official init (the encoder's trunc-normal Linear, unit LayerNorm; the decoder's Linear layers keep torch's
        default; nnU-Net's He init, a = 0.01, on every conv), then with ``Pretrained`` the official ImageNet
        initialisation: every encoder weight from the file; the patch embed only when the file's input channels
        equal ``in_channels``."""
        self.encoder.apply(init_linear_and_layernorm)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=1e-2)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            load_imagenet_encoder(self.encoder, self.init_cfg['checkpoint'], self._imagenet_skipped)
        self._is_init = True

    def _imagenet_skipped(self, imagenet):
        embed = imagenet.get('patch_embed.conv1.weight')
        same_input = embed is not None and embed.shape[1] == self.encoder.in_channels
        return (CLASSIFIER_NORM, ) if same_input else (CLASSIFIER_NORM, 'patch_embed.*')


# ---------------------------------------------------------------------------------------------------------------
# official trained checkpoints -> ours

CONV_PARTS = {'conv1': 'conv1', 'conv2': 'conv2', 'conv3': 'shortcut'}  # MONAI's UnetResBlock -> ResConvBlock


def _conv_key(prefix, conv):
    return conv in CONV_PARTS and f'{prefix}.{CONV_PARTS[conv]}.weight'


def _rename_official_key(key, last):
    """Our key (mmseg EncoderDecoder layout) for one official decoder / head key (not the encoder's), or None;
    ``last``: the index of Swin-UMamba†'s final expand layer and finest seg layer."""
    rules = [  # Swin-UMamba
        (r'^stem\.([01])\.(weight|bias)$', lambda m: f'backbone.stem.{("conv", "norm")[int(m[1])]}.{m[2]}'),
        (r'^encoder([1-5])\.layer\.(conv\d)\.conv\.weight$',
         lambda m: _conv_key(f'backbone.skip_blocks.{int(m[1]) - 1}', m[2])),
        (r'^decoder([2-6])\.transp_conv\.conv\.weight$',
         lambda m: f'backbone.up_blocks.{6 - int(m[1])}.upsample.weight'),
        (r'^decoder([2-6])\.conv_block\.(conv\d)\.conv\.weight$',
         lambda m: _conv_key(f'backbone.up_blocks.{6 - int(m[1])}.block', m[2])),
        (r'^decoder1\.layer\.(conv\d)\.conv\.weight$', lambda m: _conv_key('backbone.final_block', m[1])),
        (r'^out_layers\.([0-3])\.conv\.conv\.(weight|bias)$', lambda m: f'decode_head.seg_layers.{m[1]}.{m[2]}'),
        # Swin-UMamba†
        (r'^decoder\.expand_layers\.(\d+)\.(expand|norm)\.(.*)$',
         lambda m: f'backbone.final_expand.{m[2]}.{m[3]}' if int(m[1]) == last
         else f'backbone.decoder.{m[1]}.upsample.{m[2]}.{m[3]}'),
        (r'^decoder\.stages\.(\d+)\.blocks\.(\d+)\.(norm|op)\.(.*)$',
         lambda m: f'backbone.decoder.{m[1]}.blocks.{m[2]}.{BLOCK_PARTS[m[3]]}.{m[4]}'),
        (r'^decoder\.concat_back_dim\.(\d+)\.(weight|bias)$', lambda m: f'backbone.decoder.{m[1]}.fuse.{m[2]}'),
        (r'^decoder\.seg_layers\.(\d+)\.(weight|bias)$',
         lambda m: f'decode_head.seg_layers.{last - int(m[1])}.{m[2]}'),  # the official's coarsest first
    ]
    return rename_by_rules(key, rules)


def convert_swin_umamba(official_state_dict):
    """Official trained Swin-UMamba or Swin-UMamba† weights (nnU-Net's ``checkpoint_final.pth`` with
    ``network_weights``, or the bare state dict) -> an mmseg EncoderDecoder state dict: ``backbone.*`` for
    :class:`SwinUMamba` / :class:`SwinUMambaD`, ``decode_head.*`` for ``DeepSupervisionHead``. Unknown keys are an
    error."""
    state_dict = official_state_dict.get('network_weights', official_state_dict)
    encoder = {k[len('vssm_encoder.'):]: v for k, v in state_dict.items() if k.startswith('vssm_encoder.')}
    # the official VMamba layout: the encoder keeps its downsamples beside the stages, not inside them
    encoder = {re.sub(r'^downsamples\.(\d+)\.', r'layers.\1.downsample.', k): v for k, v in encoder.items()}
    converted = {'backbone.encoder.' + k[len('backbone.'):]: v for k, v in convert_vmamba(encoder).items()}
    rest = {k: v for k, v in state_dict.items() if not k.startswith('vssm_encoder.')}
    for pattern, replacement in LEGACY_BLOCK_NAMES:  # ln_1 -> norm, self_attention -> op in the decoder blocks
        rest = {re.sub(pattern, replacement, k): v for k, v in rest.items()}
    expands = [int(m[1]) for m in (re.match(r'^decoder\.expand_layers\.(\d+)\.', k) for k in rest) if m]
    last = max(expands, default=-1)
    return {**converted,
            **rename_keys(rest, lambda key: _rename_official_key(key, last), ('convert_swin_umamba', 'Swin-UMamba'))}
