"""VMamba (NeurIPS 2024): a hierarchy of VSS blocks (SS2D + MLP) on NCHW maps; official checkpoints convert here.

File order: variants, backbone, checkpoint conversion. The classifier of the official model
(LN -> global average pool -> Linear) is ``norm{last}`` of this backbone + mmpretrain's ``GlobalAveragePooling``
+ ``LinearClsHead`` (``head.fc``), so a converted checkpoint gives the same logits.
"""
import re

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule

from mmssm.registry import MODELS

from ..layers.embed import DOWNSAMPLES, PATCH_EMBEDS
from ..layers.norm import LayerNorm2d
from ..layers.vss_block import VSSBlock
from ..utils.backbone import FrozenStagesMixin, arch_from_zoo, init_linear_and_layernorm
from ..utils.checkpoint import load_pretrained, rename_by_rules, rename_keys, strip_prefix

# the released v2 models (forward_type v05_noz, channel-first LN2d) and Vanilla v0 (forward_type v0)
V2_RELEASE = dict(d_state=1, ssm_ratio=2.0, dt_rank='auto', gated=False, conv_bias=False, mlp_ratio=4.0,
                  patch_embed='v2', downsample='v3')
V0_RELEASE = dict(d_state=16, ssm_ratio=2.0, dt_rank='auto', gated=True, conv_bias=True, mlp_ratio=0.0,
                  patch_embed='v1', downsample='v1')
ARCH_KEYS = {'embed_dims', 'depths'} | set(V2_RELEASE)


class VSSStage(nn.Module):
    """Blocks at one resolution, then the downsample to the next stage (none after the last stage)."""

    def __init__(self, blocks, downsample):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.downsample = downsample if downsample is not None else nn.Identity()


@MODELS.register_module()
class VMamba(FrozenStagesMixin, BaseModule):
    """VMamba backbone.

    Args:
        arch: a name from ``arch_zoo`` (aliases included) or a dict with ``embed_dims`` (int C, widths
            C * 2**i, or one width per stage) and ``depths``; other keys default to the v2 release values.
        in_channels: image channels.
        out_indices: stages whose output (before the downsample, through its own LN ``norm{i}``) is returned.
        frozen_stages: -1 none, 0 the patch embed, i > 0 the patch embed and stages 0..i-1 (with their norms).
        drop_path_rate: stochastic depth, growing linearly from 0 over all blocks.
        with_cp: gradient checkpointing per block.
        init_cfg: ``dict(type='Pretrained', checkpoint=..., prefix=...)`` loads strictly (converted from the
            official layout when needed); anything else gives the official init.

    Returns (forward): a tuple of (batch, C_i, H / 2**(i+2), W / 2**(i+2)) maps, one per ``out_indices`` (2**(i+1)
    with the ``v1-p2`` patch embed).
    """

    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(V2_RELEASE, embed_dims=96, depths=(2, 2, 8, 2), ssm_ratio=1.0)),
        **dict.fromkeys(['s', 'small'], dict(V2_RELEASE, embed_dims=96, depths=(2, 2, 15, 2))),
        **dict.fromkeys(['b', 'base'], dict(V2_RELEASE, embed_dims=128, depths=(2, 2, 15, 2))),
        'tiny-s2l5': dict(V2_RELEASE, embed_dims=96, depths=(2, 2, 5, 2)),
        'tiny-s2l4': dict(V2_RELEASE, embed_dims=96, depths=(2, 2, 4, 2)),  # MambaCD's Tiny encoder
        'v0-tiny': dict(V0_RELEASE, embed_dims=96, depths=(2, 2, 9, 2)),
        'v0-small': dict(V0_RELEASE, embed_dims=96, depths=(2, 2, 27, 2)),
        'v0-base': dict(V0_RELEASE, embed_dims=128, depths=(2, 2, 27, 2)),
    }

    def __init__(self, arch='tiny', in_channels=3, out_indices=(3,), frozen_stages=-1, drop_path_rate=0.0,
                 with_cp=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.arch = self.resolve_arch(arch)
        self.depths = tuple(self.arch['depths'])
        num_stages = len(self.depths)
        embed_dims = self.arch['embed_dims']
        self.dims = [embed_dims * 2 ** i for i in range(num_stages)] if isinstance(embed_dims, int) \
            else list(embed_dims)
        if len(self.dims) != num_stages:
            raise ValueError(f'VMamba: {len(self.dims)} embed_dims for {num_stages} stages')
        if any(not -num_stages <= i < num_stages for i in out_indices):
            raise ValueError(f'VMamba: out_indices {tuple(out_indices)} out of range for {num_stages} stages')
        self.out_indices = tuple(i % num_stages for i in out_indices)  # negative indices count from the end
        self.frozen_stages = frozen_stages
        self.in_channels = in_channels

        self.patch_embed = PATCH_EMBEDS[self.arch['patch_embed']](in_channels, self.dims[0])
        block_args = {k: self.arch[k] for k in ('d_state', 'ssm_ratio', 'dt_rank', 'conv_bias', 'gated', 'mlp_ratio')}
        drop_path_rates = [drop_path_rate * i / max(sum(self.depths) - 1, 1) for i in range(sum(self.depths))]
        self.stages = nn.ModuleList()
        for i, depth in enumerate(self.depths):
            first = sum(self.depths[:i])
            blocks = [VSSBlock(self.dims[i], drop_path=drop_path_rates[first + j], with_cp=with_cp, **block_args)
                      for j in range(depth)]
            downsample = DOWNSAMPLES[self.arch['downsample']](self.dims[i], self.dims[i + 1]) \
                if i < num_stages - 1 else None
            self.stages.append(VSSStage(blocks, downsample))
        for i in self.out_indices:
            self.add_module(f'norm{i}', LayerNorm2d(self.dims[i]))
        self._freeze_stages()

    @classmethod
    def resolve_arch(cls, arch):
        """The full arch dict for a zoo name or a custom dict; a clear error for anything else."""
        resolved = arch_from_zoo(arch, cls.arch_zoo, 'VMamba')
        if isinstance(arch, str):  # zoo entries are complete
            return resolved
        missing = {'embed_dims', 'depths'} - set(arch)
        unknown = set(arch) - ARCH_KEYS
        if missing or unknown:
            raise ValueError(f'VMamba: custom arch missing {sorted(missing)} / unknown keys {sorted(unknown)}; '
                             f'allowed keys: {sorted(ARCH_KEYS)}')
        for key, choices in (('patch_embed', PATCH_EMBEDS), ('downsample', DOWNSAMPLES)):
            if arch.get(key, V2_RELEASE[key]) not in choices:
                raise ValueError(f'VMamba: {key} must be one of {sorted(choices)}, got {arch[key]!r}')
        return dict(V2_RELEASE, **arch)

    def forward(self, x):
        maps = self.stage_maps(x)
        # NCHW memory for downstream heads
        return tuple(getattr(self, f'norm{i}')(maps[i][1]).contiguous() for i in self.out_indices)

    def stage_maps(self, x):
        """(input, output) of every stage, without output norms: (batch, C_i, H_i, W_i) maps for U-Net decoders."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'VMamba expects (batch, {self.in_channels}, H, W) images, got {tuple(x.shape)}')
        x = self.patch_embed(x)  # (batch, C0, H/4, W/4) (H/2, W/2 for v1-p2)
        maps = []
        for stage in self.stages:
            out = stage.blocks(x)  # (batch, C_i, H_i, W_i)
            maps.append((x, out))
            x = stage.downsample(out)  # (batch, C_{i+1}, H_i/2, W_i/2)
        return maps

    def _freeze_stages(self):
        frozen = [self.patch_embed] if self.frozen_stages >= 0 else []
        for i in range(min(self.frozen_stages, len(self.stages))):
            frozen.append(self.stages[i])
            if i in self.out_indices:
                frozen.append(getattr(self, f'norm{i}'))
        self.freeze(frozen)

    def get_layer_depth(self, param_name, prefix=''):
        """(layer id, number of layers) of a parameter for layer-wise lr decay.

        Patch embed is 0, block j of stage i is 1 + (blocks before it), a downsample shares the id of the last
        block of its stage, everything else (output norms, or names outside ``prefix``) is the top layer.
        """
        num_layers = sum(self.depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        if name.startswith('patch_embed.'):
            return 0, num_layers
        match = re.match(r'stages\.(\d+)\.(blocks\.(\d+)|downsample)\.', name)
        if match is None:
            return num_layers - 1, num_layers
        stage = int(match.group(1))
        if match.group(3) is None:
            return sum(self.depths[:stage + 1]), num_layers
        return sum(self.depths[:stage]) + int(match.group(3)) + 1, num_layers

    def init_weights(self):
        """Official init (trunc-normal Linear, unit LayerNorm; SS2D scan parameters at construction), or a
        strict ``Pretrained`` load that converts official checkpoints and lets only output norms be absent."""
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            left_at_init = load_pretrained(self, self.init_cfg['checkpoint'], prefix=self.init_cfg.get('prefix'),
                                           convert=backbone_state_dict, allow_missing=('norm[0-9].*',))
            if left_at_init:
                print_log(f'VMamba: output norms not in the checkpoint, left at init: {left_at_init}', 'current')
        else:
            self.apply(init_linear_and_layernorm)
        self._is_init = True


# ---------------------------------------------------------------------------------------------------------------
# official checkpoint -> ours

# older official names -> current official names (inside blocks; elsewhere)
LEGACY_BLOCK_NAMES = [
    (r'\.ln_1\.', '.norm.'),
    (r'\.self_attention\.', '.op.'),
]
LEGACY_NAMES = [
    (r'^patch_embed\.proj\.', 'patch_embed.0.'),
    (r'^patch_embed\.norm\.', 'patch_embed.2.'),
    *LEGACY_BLOCK_NAMES,
    (r'^norm\.', 'classifier.norm.'),
    (r'^head\.', 'classifier.head.'),
]
PATCH_EMBED_PARTS = {'0': 'conv1', '2': 'norm1', '5': 'conv2', '7': 'norm2'}
BLOCK_PARTS = {'norm': 'norm1', 'op': 'ss2d', 'norm2': 'norm2', 'mlp': 'mlp'}
DOWNSAMPLE_PARTS = {'1': 'conv', '3': 'norm', 'norm': 'norm', 'reduction': 'reduction'}
# projections that official checkpoints may store as 1x1 convs (out, in, 1, 1) instead of Linear (out, in)
POINTWISE_WEIGHTS = re.compile(r'(in_proj|out_proj|fc1|fc2|reduction)\.weight$')


def _rename_official_key(key, last_stage):
    """Our key (classifier layout: ``backbone.*`` / ``head.fc.*``) for one current-official key, or None."""
    rules = [
        (r'^patch_embed\.(\d+)\.(.*)$',
         lambda m: m[1] in PATCH_EMBED_PARTS and f'backbone.patch_embed.{PATCH_EMBED_PARTS[m[1]]}.{m[2]}'),
        (r'^layers\.(\d+)\.blocks\.(\d+)\.(norm|op|norm2|mlp)\.(.*)$',
         lambda m: f'backbone.stages.{m[1]}.blocks.{m[2]}.{BLOCK_PARTS[m[3]]}.{m[4]}'),
        (r'^layers\.(\d+)\.downsample\.(\w+)\.(.*)$',
         lambda m: m[2] in DOWNSAMPLE_PARTS and f'backbone.stages.{m[1]}.downsample.{DOWNSAMPLE_PARTS[m[2]]}.{m[3]}'),
        (r'^outnorm(\d+)\.(.*)$', lambda m: f'backbone.norm{m[1]}.{m[2]}'),
        (r'^classifier\.norm\.(.*)$', lambda m: f'backbone.norm{last_stage}.{m[1]}'),
        (r'^classifier\.head\.(.*)$', lambda m: f'head.fc.{m[1]}'),
    ]
    return rename_by_rules(key, rules)


def convert_vmamba(official_state_dict):
    """Official VMamba weights (a checkpoint with ``model``, or its state dict) -> an mmpretrain classifier
    state dict: ``backbone.*`` for :class:`VMamba` and ``head.fc.*`` for ``LinearClsHead``.

    Handles the older names (``ln_1``, ``self_attention``, ``patch_embed.proj/norm``, ``norm``, ``head``), the
    downstream backbones' ``outnorm{i}``, and 1x1-conv-shaped projection weights. Any key it does not know is
    an error (nothing is dropped silently).
    """
    state_dict = official_state_dict.get('model', official_state_dict)
    for pattern, replacement in LEGACY_NAMES:
        state_dict = {re.sub(pattern, replacement, k): v for k, v in state_dict.items()}
    stages = {int(m[1]) for m in (re.match(r'^layers\.(\d+)\.', k) for k in state_dict) if m}
    last_stage = max(stages, default=0)
    converted = rename_keys(state_dict, lambda key: _rename_official_key(key, last_stage), ('convert_vmamba', 'VMamba'))
    return linear_shaped(converted)


def linear_shaped(state_dict):
    """Projection weights stored as 1x1 convs (out, in, 1, 1) -> Linear-shaped (out, in), the rest as it is."""
    return {k: v.flatten(1) if POINTWISE_WEIGHTS.search(k) and v.dim() == 4 else v for k, v in state_dict.items()}


def backbone_state_dict(state_dict):
    """:class:`VMamba` keys from an official checkpoint (stages named ``layers.``, converted, head dropped) or
    from our own backbone keys (returned as they are)."""
    if not any(key.startswith('layers.') for key in state_dict):
        return state_dict
    converted = convert_vmamba(state_dict)
    return strip_prefix({k: v for k, v in converted.items() if k.startswith('backbone.')}, 'backbone.')
