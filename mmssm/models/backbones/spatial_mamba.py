"""Spatial-Mamba (Xiao et al., 2024): structure-aware state fusion on one row-major scan, as an OpenMMLab backbone.

File order: blocks, backbone, official-checkpoint converter.
"""
import re

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_

from mmssm.registry import MODELS

from ..layers.state_fusion import EVAL_FUSIONS
from ..layers.structure_aware_ssm import StructureAwareSSM
from ..utils import load_pretrained


class ConvNormAct(nn.Sequential):
    """conv -> [BatchNorm] -> [ReLU] on NCHW maps (the official ``ConvLayer``)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, bias=True, norm=True, act=True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups,
                              bias=bias)
        if norm:
            self.norm = nn.BatchNorm2d(out_channels)
        if act:
            self.act = nn.ReLU()


class Stem(nn.Module):
    """MLLA-style stem, (B, 3, H, W) -> (B, C, H/4, W/4): conv s2, a residual conv pair, conv s2 to 4C, 1x1 to C."""

    def __init__(self, in_channels, embed_dims):
        super().__init__()
        half = embed_dims // 2
        self.conv1 = ConvNormAct(in_channels, half, 3, stride=2, bias=False)
        self.conv2 = nn.Sequential(ConvNormAct(half, half, 3, bias=False),
                                   ConvNormAct(half, half, 3, bias=False, act=False))
        self.conv3 = nn.Sequential(ConvNormAct(half, 4 * embed_dims, 3, stride=2, bias=False),
                                   ConvNormAct(4 * embed_dims, embed_dims, 1, bias=False, act=False))

    def forward(self, x):
        x = self.conv1(x)
        return self.conv3(self.conv2(x) + x)


def downsample(in_channels, expand_ratio=8):
    """(B, C, H, W) -> (B, 2C, H/2, W/2): 1x1 to 8C + ReLU, depthwise 3x3 s2 + ReLU, 1x1 to 2C + BN."""
    hidden = expand_ratio * in_channels
    return nn.Sequential(ConvNormAct(in_channels, hidden, 1, norm=False),
                         ConvNormAct(hidden, hidden, 3, stride=2, groups=hidden, norm=False),
                         ConvNormAct(hidden, 2 * in_channels, 1, act=False))


class Mlp(nn.Sequential):
    """fc1 -> GELU -> fc2 on channel-last tokens."""

    def __init__(self, embed_dims, hidden_dims):
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, embed_dims)


class SpatialMambaBlock(nn.Module):
    """x += cpe1(x); x += DropPath(SSM(LN(x))); x += cpe2(x); x += DropPath(MLP(LN(x))) on (B, H, W, C)."""

    def __init__(self, embed_dims, mlp_ratio=4.0, drop_path=0.0, **ssm_kwargs):
        super().__init__()
        self.cpe1 = nn.Conv2d(embed_dims, embed_dims, 3, padding=1, groups=embed_dims)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.ssm = StructureAwareSSM(embed_dims, **ssm_kwargs)
        self.cpe2 = nn.Conv2d(embed_dims, embed_dims, 3, padding=1, groups=embed_dims)
        self.norm2 = nn.LayerNorm(embed_dims)
        self.mlp = Mlp(embed_dims, int(embed_dims * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    @staticmethod
    def positional_conv(conv, x):
        """Depthwise conv of a channel-last map: (B, H, W, C) -> (B, H, W, C)."""
        return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # via (B, C, H, W)

    def forward(self, x):
        x = x + self.positional_conv(self.cpe1, x)
        x = x + self.drop_path(self.ssm(self.norm1(x)))
        x = x + self.positional_conv(self.cpe2, x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SpatialMambaStage(nn.Module):
    """Blocks at one resolution, then (except in the last stage) the downsampling to the next one."""

    def __init__(self, embed_dims, depth, drop_paths, with_downsample, **block_kwargs):
        super().__init__()
        self.blocks = nn.ModuleList(
            SpatialMambaBlock(embed_dims, drop_path=drop_paths[i], **block_kwargs) for i in range(depth))
        self.downsample = downsample(embed_dims) if with_downsample else None


@MODELS.register_module()
class SpatialMamba(BaseModule):
    """Spatial-Mamba backbone: images (B, 3, H, W) -> a tuple of NCHW maps at strides 4, 8, 16, 32.

    Each block mixes tokens with a structure-aware SSM: one row-major selective scan returns its hidden states,
    which are fused over the 2-D grid by dilated (1, 3, 5) depthwise 3x3 convs on replicate-padded states.

    Eval-time fusion (``eval_fusion``): the official code merges the three convs into one 11x11 kernel in eval mode
    and runs it with ZERO padding, while training pads with REPLICATE. The two agree inside the map and differ in
    the 5-pixel border. ``'merged_zero_pad'`` (default) reproduces the official eval function, so converted official
    checkpoints give their published accuracy; ``'merged_replicate_pad'`` is the merged kernel on a replicate-padded
    map, identical to the training function; ``'separate'`` runs the training function as three convs.

    Args:
        arch: 'tiny'/'t', 'small'/'s', 'base'/'b', or a dict with ``embed_dims`` (4 ints) and ``depths`` (4 ints),
            optionally ``mlp_ratio``, ``d_state``, ``expand``.
        in_channels: image channels.
        out_indices: stages whose output is returned, each through its own LayerNorm (``norm{i}``).
        frozen_stages: -1 freezes nothing; k >= 0 freezes the stem and stages 0..k-1 (with their norms).
        drop_path_rate: stochastic depth, increasing linearly over the blocks.
        eval_fusion: one of ``EVAL_FUSIONS`` (see above).
        with_cp: gradient checkpointing per block.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)`` loads an official checkpoint through
            :func:`convert_official_spatial_mamba`; with ``prefix='backbone.'`` it loads an mmssm checkpoint.
    """
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(embed_dims=(64, 128, 256, 512), depths=(2, 4, 8, 4))),
        **dict.fromkeys(['s', 'small'], dict(embed_dims=(64, 128, 256, 512), depths=(2, 4, 21, 5))),
        **dict.fromkeys(['b', 'base'], dict(embed_dims=(96, 192, 384, 768), depths=(2, 4, 21, 5))),
    }
    arch_defaults = dict(mlp_ratio=4.0, d_state=1, expand=2)
    num_stages = 4

    def __init__(self, arch='tiny', in_channels=3, out_indices=(3,), frozen_stages=-1, drop_path_rate=0.0,
                 eval_fusion='merged_zero_pad', with_cp=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        arch = self.parse_arch(arch)
        if eval_fusion not in EVAL_FUSIONS:
            raise ValueError(f'eval_fusion must be one of {EVAL_FUSIONS}, got {eval_fusion!r}')
        self.embed_dims, self.depths = tuple(arch['embed_dims']), tuple(arch['depths'])
        self.out_indices = self.parse_out_indices(out_indices)
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp

        self.patch_embed = Stem(in_channels, self.embed_dims[0])
        num_blocks = sum(self.depths)
        drop_paths = [drop_path_rate * i / max(num_blocks - 1, 1) for i in range(num_blocks)]  # linear in depth
        self.stages = nn.ModuleList()
        for i, (dims, depth) in enumerate(zip(self.embed_dims, self.depths)):
            start = sum(self.depths[:i])
            self.stages.append(SpatialMambaStage(
                dims, depth, drop_paths[start:start + depth], with_downsample=i < self.num_stages - 1,
                mlp_ratio=arch['mlp_ratio'], d_state=arch['d_state'], expand=arch['expand'],
                eval_fusion=eval_fusion))
        for i in self.out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(self.embed_dims[i]))
        self.apply(self._init_official)
        self._freeze_stages()

    def parse_arch(self, arch):
        if isinstance(arch, str):
            if arch.lower() not in self.arch_zoo:
                raise KeyError(f'unknown SpatialMamba arch {arch!r}; choose from {sorted(self.arch_zoo)} or a dict')
            arch = self.arch_zoo[arch.lower()]
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a name or a dict, got {type(arch).__name__}')
        required, optional = {'embed_dims', 'depths'}, set(self.arch_defaults)
        if not required <= set(arch) or set(arch) - required - optional:
            raise KeyError(f'a custom arch needs {sorted(required)} (optional {sorted(optional)}), got {sorted(arch)}')
        if len(arch['embed_dims']) != self.num_stages or len(arch['depths']) != self.num_stages:
            raise ValueError(f'embed_dims and depths need {self.num_stages} entries each, got {arch}')
        if any(b != 2 * a for a, b in zip(arch['embed_dims'], arch['embed_dims'][1:])):
            raise ValueError(f'each downsampling doubles the width: embed_dims must be (C, 2C, 4C, 8C), '
                             f'got {arch["embed_dims"]}')
        return {**self.arch_defaults, **arch}

    def parse_out_indices(self, out_indices):
        indices = (out_indices,) if isinstance(out_indices, int) else tuple(out_indices)
        if any(not -self.num_stages <= i < self.num_stages for i in indices):
            raise ValueError(f'out_indices must lie in [-{self.num_stages}, {self.num_stages}), got {out_indices}')
        return tuple(sorted({i % self.num_stages for i in indices}))

    @staticmethod
    def _init_official(module):
        """The official init: truncated-normal Linear weights with zero bias, unit LayerNorms."""
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def init_weights(self):
        if not (self.init_cfg and self.init_cfg.get('type') == 'Pretrained'):
            return super().init_weights()
        prefix = self.init_cfg.get('prefix')
        load_pretrained(self, self.init_cfg['checkpoint'], prefix=prefix,
                        convert=None if prefix else self.convert_official, allow_missing=('norm*',))

    def convert_official(self, state_dict):
        """An official checkpoint's ``model`` dict -> this backbone's keys (head and unused norms dropped)."""
        converted = convert_official_spatial_mamba(state_dict)
        kept_norms = tuple(f'backbone.norm{i}.' for i in self.out_indices)
        return {k[len('backbone.'):]: v for k, v in converted.items()
                if k.startswith('backbone.') and (not k.startswith('backbone.norm') or k.startswith(kept_norms))}

    def forward(self, x):
        if x.dim() != 4:
            raise ValueError(f'SpatialMamba expects images (B, C, H, W), got {tuple(x.shape)}')
        x = self.patch_embed(x).permute(0, 2, 3, 1)  # (B, H/4, W/4, C): channel-last in the stages
        outs = []
        for i, stage in enumerate(self.stages):
            for block in stage.blocks:
                x = cp.checkpoint(block, x, use_reentrant=False) if self.with_cp and x.requires_grad else block(x)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x).permute(0, 3, 1, 2).contiguous())  # (B, C_i, H_i, W_i)
            if stage.downsample is not None:
                x = stage.downsample(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # (B, H/2, W/2, 2C) via NCHW
        return tuple(outs)

    def _freeze_stages(self):
        frozen = [self.patch_embed] if self.frozen_stages >= 0 else []
        for i in range(min(self.frozen_stages, self.num_stages)):
            frozen.append(self.stages[i])
            if i in self.out_indices:
                frozen.append(getattr(self, f'norm{i}'))
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        return self

    def get_layer_depth(self, param_name, prefix=''):
        """(layer id, number of layers) of a parameter, for layer-wise learning-rate decay.

        The stem is layer 0, block j of stage i is sum(depths[:i]) + j + 1, a stage's downsampling counts with its
        last block, and the output norms (and anything outside the backbone) are the last layer.
        """
        num_layers = sum(self.depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        if name.startswith('patch_embed'):
            return 0, num_layers
        if name.startswith('stages.'):
            parts = name.split('.')
            stage_id = int(parts[1])
            if parts[2] == 'blocks':
                return sum(self.depths[:stage_id]) + int(parts[3]) + 1, num_layers
            return sum(self.depths[:stage_id + 1]), num_layers
        return num_layers - 1, num_layers


# ---------------------------------------------------------------------------------------------------------------
# Official checkpoints (EdwardChasel/Spatial-Mamba, ``ckpt['model']``) -> mmssm classifier keys.

_KEY_RULES = (  # (official pattern, mmssm replacement), applied in order to each key
    (r'^patch_embed\.', 'backbone.patch_embed.'),
    (r'^layers\.(\d+)\.downsample\.conv\.', r'backbone.stages.\1.downsample.'),
    (r'^layers\.(\d+)\.blocks\.(\d+)\.', r'backbone.stages.\1.blocks.\2.'),
    (r'\.ln_1\.', '.norm1.'),
    (r'\.ln_2\.', '.norm2.'),
    (r'\.self_attention\.conv2d\.', '.ssm.dwconv.'),
    (r'\.self_attention\.dt_projs_(weight|bias)$', r'.ssm.dt_proj_\1'),
    (r'\.self_attention\.A_logs$', '.ssm.A_log'),
    (r'\.self_attention\.Ds$', '.ssm.D'),
    (r'\.self_attention\.', '.ssm.'),
    (r'^norm\.', 'backbone.norm3.'),
    (r'^outnorm(\d)\.', r'backbone.norm\1.'),
    (r'^head\.', 'head.fc.'),
)
_FUSION_KERNELS = ('kernel_3', 'kernel_3_1', 'kernel_3_2')  # official names of the dilation 1, 3, 5 kernels


def _rename(key):
    for pattern, replacement in _KEY_RULES:
        key = re.sub(pattern, replacement, key)
    return key


def convert_official_spatial_mamba(state_dict):
    """Official Spatial-Mamba state dict -> mmssm ImageClassifier keys (``backbone.*``, ``head.fc.*``).

    The three state-fusion kernels are stacked into one ``state_fusion.weight`` (3, C, 1, 3, 3). Raises KeyError on
    an official key this converter does not know, so a different checkpoint layout fails loudly.
    """
    converted, fusion_parts, unknown = {}, {}, []
    for key, value in state_dict.items():
        fusion = re.match(r'^(.*\.state_fusion)\.(kernel_3(?:_\d)?)$', key)
        if fusion:
            fusion_parts.setdefault(fusion.group(1), {})[fusion.group(2)] = value
            continue
        new_key = _rename(key)
        if not new_key.startswith(('backbone.', 'head.')):
            unknown.append(key)
        converted[new_key] = value
    for fusion, parts in fusion_parts.items():
        if set(parts) != set(_FUSION_KERNELS):
            raise KeyError(f'{fusion} has kernels {sorted(parts)}, expected {list(_FUSION_KERNELS)}')
        converted[_rename(f'{fusion}.weight')] = torch.stack([parts[name] for name in _FUSION_KERNELS])
    if unknown:
        raise KeyError(f'keys that are not official Spatial-Mamba keys: {unknown[:10]}')
    return converted
