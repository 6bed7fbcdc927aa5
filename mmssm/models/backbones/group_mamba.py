"""GroupMamba (Shaker et al., CVPR 2025): Modulated Group Mamba layers, as an OpenMMLab backbone.

File order: blocks, backbone, official-checkpoint converter.
"""
import re

import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_

from mmssm.registry import MODELS

from ..layers.group_mamba_layer import ModulatedGroupMamba
from ..utils import load_pretrained

BLOCK_NORM_EPS = 1e-6  # the official norm_layer of blocks, stage norms and the class block


class Stem(nn.Module):
    """(B, 3, H, W) -> (B, H/4, W/4, C): conv7x7 s2, two conv3x3 (each BN + ReLU), conv3x3 s2, LayerNorm."""

    def __init__(self, in_channels, hidden_dims, embed_dims):
        super().__init__()
        layers = []
        for cin, kernel, stride in ((in_channels, 7, 2), (hidden_dims, 3, 1), (hidden_dims, 3, 1)):
            layers += [nn.Conv2d(cin, hidden_dims, kernel, stride, kernel // 2, bias=False),
                       nn.BatchNorm2d(hidden_dims), nn.ReLU()]
        self.conv = nn.Sequential(*layers)
        self.proj = nn.Conv2d(hidden_dims, embed_dims, 3, 2, 1)
        self.norm = nn.LayerNorm(embed_dims)

    def forward(self, x):
        return self.norm(self.proj(self.conv(x)).permute(0, 2, 3, 1))  # (B, H/4, W/4, C)


class Downsample(nn.Module):
    """(B, H, W, C) -> (B, H/2, W/2, C'): conv3x3 s2 + LayerNorm."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x):
        return self.norm(self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))  # via (B, C, H, W)


class ConvFFN(nn.Module):
    """fc1 -> depthwise 3x3 conv -> GELU -> fc2 on (B, H, W, C)."""

    def __init__(self, embed_dims, hidden_dims):
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.dwconv = nn.Conv2d(hidden_dims, hidden_dims, 3, padding=1, groups=hidden_dims)
        self.fc2 = nn.Linear(hidden_dims, embed_dims)

    def forward(self, x):
        x = self.dwconv(self.fc1(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # via (B, hidden, H, W)
        return self.fc2(F.gelu(x))


class GroupMambaBlock(nn.Module):
    """x += DropPath(ModulatedGroupMamba(x)) (the layer norms its input); x += DropPath(ConvFFN(LN(x)))."""

    def __init__(self, embed_dims, mlp_ratio, drop_path=0.0):
        super().__init__()
        self.mixer = ModulatedGroupMamba(embed_dims)
        self.norm = nn.LayerNorm(embed_dims, eps=BLOCK_NORM_EPS)
        self.ffn = ConvFFN(embed_dims, int(embed_dims * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        x = x + self.drop_path(self.mixer(x))
        return x + self.drop_path(self.ffn(self.norm(x)))


class ClassBlock(nn.Module):
    """The classification token block: cls (B, C) = mean token; cls += LN(mixer(cls)); cls += MLP(LN(cls))."""

    def __init__(self, embed_dims, mlp_ratio):
        super().__init__()
        self.mixer = ModulatedGroupMamba(embed_dims)
        self.norm1 = nn.LayerNorm(embed_dims, eps=BLOCK_NORM_EPS)
        self.norm2 = nn.LayerNorm(embed_dims, eps=BLOCK_NORM_EPS)
        hidden = int(embed_dims * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(embed_dims, hidden), nn.GELU(), nn.Linear(hidden, embed_dims))

    def forward(self, x):
        cls = x.mean(dim=(1, 2), keepdim=True)  # (B, 1, 1, C): a 1x1 map for the mixer
        cls = cls + self.norm1(self.mixer(cls))
        cls = cls + self.mlp(self.norm2(cls))
        return cls.flatten(1)  # (B, C)


class GroupMambaStage(nn.Module):
    """[Downsample] then blocks at one resolution."""

    def __init__(self, in_dims, embed_dims, depth, mlp_ratio, drop_paths, with_downsample):
        super().__init__()
        self.downsample = Downsample(in_dims, embed_dims) if with_downsample else None
        self.blocks = nn.ModuleList(GroupMambaBlock(embed_dims, mlp_ratio, drop_paths[i]) for i in range(depth))


@MODELS.register_module()
class GroupMamba(BaseModule):
    """GroupMamba backbone: images (B, 3, H, W) -> a tuple of NCHW maps at strides 4, 8, 16, 32 (or a class vector).

    Stages 0-2 end with a LayerNorm that is part of the network (the next stage reads its output); it is also the
    output norm of those stages. The last stage's norm ``norm3`` follows the class block in ``out_type='cls_token'``
    (classification, the official model: the mean token goes through a Modulated Group Mamba class block and the
    output for stage 3 is a (B, C) vector) and normalises the stage-3 map in ``out_type='featmap'`` (dense tasks; the
    class block is not built).

    Args:
        arch: 'tiny'/'t', 'small'/'s', 'base'/'b', or a dict with ``embed_dims``, ``depths``, ``mlp_ratios`` (4 each)
            and ``stem_hidden_dims``.
        in_channels: image channels.
        out_indices: stages whose (normalised) output is returned.
        out_type: 'featmap' or 'cls_token' (see above).
        frozen_stages: -1 freezes nothing; k >= 0 freezes the stem and stages 0..k-1 (with their norms).
        drop_path_rate: stochastic depth, increasing linearly over the blocks.
        with_cp: gradient checkpointing per block.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)`` loads an official checkpoint through
            :func:`convert_official_group_mamba`; with ``prefix='backbone.'`` it loads an mmssm checkpoint.
    """
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(embed_dims=(64, 128, 348, 448), depths=(3, 4, 9, 3),
                                            mlp_ratios=(8, 8, 4, 4), stem_hidden_dims=32)),
        **dict.fromkeys(['s', 'small'], dict(embed_dims=(64, 128, 348, 512), depths=(3, 4, 16, 3),
                                             mlp_ratios=(8, 8, 4, 4), stem_hidden_dims=64)),
        **dict.fromkeys(['b', 'base'], dict(embed_dims=(96, 192, 424, 512), depths=(3, 6, 21, 3),
                                            mlp_ratios=(8, 8, 4, 4), stem_hidden_dims=64)),
    }
    out_types = ('featmap', 'cls_token')
    num_stages = 4

    def __init__(self, arch='tiny', in_channels=3, out_indices=(3,), out_type='featmap', frozen_stages=-1,
                 drop_path_rate=0.0, with_cp=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        arch = self.parse_arch(arch)
        if out_type not in self.out_types:
            raise ValueError(f'out_type must be one of {self.out_types}, got {out_type!r}')
        self.embed_dims, self.depths = tuple(arch['embed_dims']), tuple(arch['depths'])
        self.out_indices = self.parse_out_indices(out_indices)
        self.out_type = out_type
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp

        self.patch_embed = Stem(in_channels, arch['stem_hidden_dims'], self.embed_dims[0])
        num_blocks = sum(self.depths)
        drop_paths = [drop_path_rate * i / max(num_blocks - 1, 1) for i in range(num_blocks)]  # linear in depth
        self.stages = nn.ModuleList()
        for i, (dims, depth, mlp_ratio) in enumerate(zip(self.embed_dims, self.depths, arch['mlp_ratios'])):
            start = sum(self.depths[:i])
            self.stages.append(GroupMambaStage(self.embed_dims[i - 1] if i else dims, dims, depth, mlp_ratio,
                                               drop_paths[start:start + depth], with_downsample=i > 0))
        for i, dims in enumerate(self.embed_dims):
            self.add_module(f'norm{i}', nn.LayerNorm(dims, eps=BLOCK_NORM_EPS))
        if out_type == 'cls_token':
            self.class_block = ClassBlock(self.embed_dims[-1], arch['mlp_ratios'][-1])
        self.apply(self._init_official)
        self._freeze_stages()

    def parse_arch(self, arch):
        if isinstance(arch, str):
            if arch.lower() not in self.arch_zoo:
                raise KeyError(f'unknown GroupMamba arch {arch!r}; choose from {sorted(self.arch_zoo)} or a dict')
            arch = self.arch_zoo[arch.lower()]
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a name or a dict, got {type(arch).__name__}')
        required = {'embed_dims', 'depths', 'mlp_ratios', 'stem_hidden_dims'}
        if set(arch) != required:
            raise KeyError(f'a custom arch needs exactly {sorted(required)}, got {sorted(arch)}')
        if any(len(arch[k]) != self.num_stages for k in ('embed_dims', 'depths', 'mlp_ratios')):
            raise ValueError(f'embed_dims, depths and mlp_ratios need {self.num_stages} entries each, got {arch}')
        return arch

    def parse_out_indices(self, out_indices):
        indices = (out_indices,) if isinstance(out_indices, int) else tuple(out_indices)
        if any(not -self.num_stages <= i < self.num_stages for i in indices):
            raise ValueError(f'out_indices must lie in [-{self.num_stages}, {self.num_stages}), got {out_indices}')
        return tuple(sorted({i % self.num_stages for i in indices}))

    @staticmethod
    def _init_official(module):
        """The official init: truncated-normal Linear weights with zero bias, unit LayerNorms, fan-out convs."""
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
            nn.init.normal_(module.weight, 0, (2.0 / fan_out) ** 0.5)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def init_weights(self):
        if not (self.init_cfg and self.init_cfg.get('type') == 'Pretrained'):
            return super().init_weights()
        prefix = self.init_cfg.get('prefix')
        load_pretrained(self, self.init_cfg['checkpoint'], prefix=prefix,
                        convert=None if prefix else self.convert_official)

    def convert_official(self, state_dict):
        """An official checkpoint's ``model`` dict -> this backbone's keys (heads dropped; the class block too
        in 'featmap' mode, where it is not built)."""
        dropped = ('backbone.class_block.',) if self.out_type == 'featmap' else ()
        return {k[len('backbone.'):]: v for k, v in convert_official_group_mamba(state_dict).items()
                if k.startswith('backbone.') and not k.startswith(dropped)}

    def forward(self, x):
        if x.dim() != 4:
            raise ValueError(f'GroupMamba expects images (B, C, H, W), got {tuple(x.shape)}')
        x = self.patch_embed(x)  # (B, H/4, W/4, C): channel-last in the stages
        outs = []
        for i, stage in enumerate(self.stages):
            if stage.downsample is not None:
                x = stage.downsample(x)
            for block in stage.blocks:
                x = cp.checkpoint(block, x, use_reentrant=False) if self.with_cp and x.requires_grad else block(x)
            norm = getattr(self, f'norm{i}')
            if i < self.num_stages - 1:
                x = norm(x)
            if i in self.out_indices:
                if i < self.num_stages - 1 or self.out_type == 'featmap':
                    outs.append((x if i < self.num_stages - 1 else norm(x)).permute(0, 3, 1, 2).contiguous())
                else:
                    outs.append(norm(self.class_block(x)))  # (B, C)
        return tuple(outs)

    def _freeze_stages(self):
        frozen = [self.patch_embed] if self.frozen_stages >= 0 else []
        for i in range(min(self.frozen_stages, self.num_stages)):
            frozen += [self.stages[i], getattr(self, f'norm{i}')]
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
        first block and its norm with its last block; the class block and the last norm are the last layer.
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
            block_id = int(parts[3]) if parts[2] == 'blocks' else 0
            return sum(self.depths[:stage_id]) + block_id + 1, num_layers
        norm = re.match(r'norm(\d)\.', name)
        if norm and int(norm.group(1)) < self.num_stages - 1:
            return sum(self.depths[:int(norm.group(1)) + 1]), num_layers
        return num_layers - 1, num_layers


# ---------------------------------------------------------------------------------------------------------------
# Official checkpoints (Amshaker/GroupMamba, ``ckpt['model']``) -> mmssm classifier keys.

def _block(suffix):
    """Replacement for ``block{s}.{j}.``: official stages count from 1, ours from 0."""
    return lambda m: f'backbone.stages.{int(m[1]) - 1}.blocks.{m[2]}.{suffix}'


_KEY_RULES = (  # (official pattern, mmssm replacement or function of the match), applied in order to each key
    (r'^patch_embed1\.', 'backbone.patch_embed.'),
    (r'^patch_embed(\d)\.', lambda m: f'backbone.stages.{int(m[1]) - 1}.downsample.'),
    (r'^block(\d)\.(\d+)\.norm2\.', _block('norm.')),
    (r'^block(\d)\.(\d+)\.mlp\.dwconv\.dwconv\.', _block('ffn.dwconv.')),
    (r'^block(\d)\.(\d+)\.mlp\.', _block('ffn.')),
    (r'^block(\d)\.(\d+)\.attn\.', _block('mixer.')),
    (r'^post_network\.0\.attn\.', 'backbone.class_block.mixer.'),
    (r'^post_network\.0\.mlp\.fc1\.', 'backbone.class_block.mlp.0.'),
    (r'^post_network\.0\.mlp\.fc2\.', 'backbone.class_block.mlp.2.'),
    (r'^post_network\.0\.', 'backbone.class_block.'),
    (r'\.mixer\.mamba_g(\d)\.', lambda m: f'.mixer.groups.{int(m[1]) - 1}.'),
    (r'\.mixer\.fc([12])\.', r'.mixer.affinity.fc\1.'),
    (r'^norm(\d)\.', lambda m: f'backbone.norm{int(m[1]) - 1}.'),
    (r'^head\.', 'head.fc.'),
    (r'^dist_head\.', 'head.dist_fc.'),
)


def convert_official_group_mamba(state_dict):
    """Official GroupMamba state dict -> mmssm classifier keys (``backbone.*``, ``head.fc.*``, ``head.dist_fc.*``).

    Raises KeyError on a key this converter does not know, so a different checkpoint layout fails loudly.
    """
    converted, unknown = {}, []
    for key, value in state_dict.items():
        new_key = key
        for pattern, replacement in _KEY_RULES:
            new_key = re.sub(pattern, replacement, new_key)
        if not new_key.startswith(('backbone.', 'head.')):
            unknown.append(key)
        converted[new_key] = value
    if unknown:
        raise KeyError(f'keys that are not official GroupMamba keys: {unknown[:10]}')
    return converted
