"""LightM-UNet (Liao et al., 2024), 2D and 3D: a Mamba U-Net; official checkpoints convert here.

The official network (MrBlankness/LightM-UNet ``lightm-unet/nnunetv2/nets/LightMUNet.py``, the release whose stem and
decoder blocks are depthwise-separable; ``nnUNetTrainerLightMUNet``: init_filters 32, blocks_down 1-2-2-4, blocks_up
1-1-1; ``spatial_dims`` 2 or 3 picks 2D or 3D convs, pools and upsampling, the layout is the same) is SegResNet-shaped:

- stem: depthwise 3x3 (3x3x3) + pointwise 1x1 conv (no bias) to 32 channels;
- encoder stage i (channels 32 * 2^i): for i > 0 a Mamba projection C/2 -> C at the higher resolution, then a 2x
  max pool; then residual Mamba blocks x + M2(ReLU(GN(M1(ReLU(GN(x)))))) with GroupNorm(8);
- a Mamba projection M: tokens t = LN(x) over the pixels (voxels), LN(Mamba(t) + s * x) with the SAME LayerNorm,
  then a Linear (s a learnt scalar; one-direction Mamba, d_state 16, d_conv 4, expand 2);
- decoder stage i (deepest first): 1x1 conv C -> C/2 (no bias), bilinear (trilinear) x2 upsampling, ADD the encoder
  skip, then residual blocks ReLU(GN(dwsep(ReLU(GN(x))) + s * x)) with a depthwise-separable 3x3 (3x3x3) conv;
- head: GroupNorm + ReLU + depthwise 1x1 conv (bias) here; its pointwise 1x1 conv to the classes is the ``conv_seg``
  of an mmseg ``FCNHead`` with ``num_convs=0``. No deep supervision.

The Mamba projections run in float32 with autocast off (the official casts half inputs to float32 and trains without
AMP).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmssm.registry import MODELS

from ..layers.autocast import run_in_float32
from ..layers.bimamba import MambaMixer
from ..utils.backbone import arch_from_zoo, check_unet_input
from ..utils.checkpoint import rename_by_rules, rename_keys

ARCH_KEYS = ('init_filters', 'blocks_down', 'blocks_up', 'num_groups')
CONV = {2: nn.Conv2d, 3: nn.Conv3d}
MAX_POOL = {2: F.max_pool2d, 3: F.max_pool3d}
LINEAR = {2: 'bilinear', 3: 'trilinear'}  # MONAI's non-trainable UpSample


class MambaProjection(nn.Module):
    """Linear(LN(Mamba(LN(x)) + skip_scale * x)) over a map's pixels / voxels: (B, C_in, *spatial) ->
    (B, C_out, *spatial)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.norm = nn.LayerNorm(in_channels)
        self.mamba = MambaMixer(in_channels, d_state=16, d_conv=4, expand=2, bidirectional=False)
        self.proj = nn.Linear(in_channels, out_channels)
        self.skip_scale = nn.Parameter(torch.ones(1))

    def _project(self, x):
        tokens = x.flatten(2).transpose(1, 2)  # (B, L, C) with L = H*W or D*H*W
        y = self.norm(self.mamba(self.norm(tokens)) + self.skip_scale * tokens)
        return self.proj(y).transpose(1, 2).reshape(x.shape[0], -1, *x.shape[2:])  # (B, C_out, *spatial)

    def forward(self, x):
        return run_in_float32(self._project, x)


class ResMambaBlock(nn.Module):
    """x + M2(ReLU(GN(M1(ReLU(GN(x))))))."""

    def __init__(self, channels, num_groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, channels)
        self.mamba1 = MambaProjection(channels, channels)
        self.norm2 = nn.GroupNorm(num_groups, channels)
        self.mamba2 = MambaProjection(channels, channels)

    def forward(self, x):
        y = self.mamba1(F.relu(self.norm1(x)))
        return x + self.mamba2(F.relu(self.norm2(y)))


class DepthwiseSeparableConv(nn.Module):
    """Depthwise k x k (x k) then pointwise 1x1 conv."""

    def __init__(self, in_channels, out_channels, dims, kernel_size=3, bias=False):
        super().__init__()
        self.depthwise = CONV[dims](in_channels, in_channels, kernel_size, padding=kernel_size // 2,
                                    groups=in_channels, bias=bias)
        self.pointwise = CONV[dims](in_channels, out_channels, 1, bias=bias)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class ResUpBlock(nn.Module):
    """ReLU(GN(dwsep(ReLU(GN(x))) + skip_scale * x))."""

    def __init__(self, channels, num_groups, dims):
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, channels)
        self.conv = DepthwiseSeparableConv(channels, channels, dims)
        self.norm2 = nn.GroupNorm(num_groups, channels)
        self.skip_scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return F.relu(self.norm2(self.conv(F.relu(self.norm1(x))) + self.skip_scale * x))


class DownStage(nn.Module):
    """Optional Mamba projection C/2 -> C + 2x max pool, then residual Mamba blocks."""

    def __init__(self, channels, num_blocks, num_groups, downsample, dims):
        super().__init__()
        self.max_pool = MAX_POOL[dims]
        self.downsample = MambaProjection(channels // 2, channels) if downsample else None
        self.blocks = nn.Sequential(*(ResMambaBlock(channels, num_groups) for _ in range(num_blocks)))

    def forward(self, x):
        if self.downsample is not None:
            x = self.max_pool(self.downsample(x), 2)
        return self.blocks(x)


class UpStage(nn.Module):
    """1x1 conv C -> C/2, bilinear (trilinear) x2, add the skip, residual up blocks."""

    def __init__(self, channels, num_blocks, num_groups, dims):
        super().__init__()
        self.mode = LINEAR[dims]
        self.reduce = CONV[dims](channels, channels // 2, 1, bias=False)
        self.blocks = nn.Sequential(*(ResUpBlock(channels // 2, num_groups, dims) for _ in range(num_blocks)))

    def forward(self, x, skip):
        x = F.interpolate(self.reduce(x), scale_factor=2, mode=self.mode, align_corners=False)
        return self.blocks(x + skip)


@MODELS.register_module()
class LightMUNet(BaseModule):
    """LightM-UNet 2D / 3D backbone (encoder + decoder + the head's norm and depthwise conv).

    Args:
        arch: ``'lightm-unet'`` (the paper's: init_filters 32, blocks_down (1, 2, 2, 4), blocks_up (1, 1, 1),
            GroupNorm(8)) or a dict with ``init_filters``, ``blocks_down``, ``blocks_up`` (one fewer), ``num_groups``.
        in_channels: image channels (3 for the chest X-ray PNGs, as the official dataset.json's R, G, B).
        spatial_dims: 2 ((B, C, H, W) images) or 3 ((B, C, D, H, W) volumes, the official LiTS models).

    Returns (forward): a 1-tuple with the (B, init_filters, *spatial) map before the final pointwise conv.
    """

    arch_zoo = {'lightm-unet': dict(init_filters=32, blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), num_groups=8)}

    def __init__(self, arch='lightm-unet', in_channels=3, spatial_dims=2, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        arch = arch_from_zoo(arch, self.arch_zoo, 'LightMUNet')
        if sorted(arch) != sorted(ARCH_KEYS) or len(arch['blocks_up']) != len(arch['blocks_down']) - 1:
            raise ValueError(f'LightMUNet: arch needs exactly {ARCH_KEYS} with one blocks_up per blocks_down after '
                             f'the first, got {arch}')
        if spatial_dims not in (2, 3):
            raise ValueError(f'LightMUNet: spatial_dims must be 2 or 3, got {spatial_dims!r}')
        filters, groups = arch['init_filters'], arch['num_groups']
        self.in_channels, self.spatial_dims = in_channels, spatial_dims
        self.size_multiple = 2 ** (len(arch['blocks_down']) - 1)
        self.stem = DepthwiseSeparableConv(in_channels, filters, spatial_dims)
        self.stages = nn.ModuleList(DownStage(filters * 2 ** i, n, groups, i > 0, spatial_dims)
                                    for i, n in enumerate(arch['blocks_down']))
        num_up = len(arch['blocks_up'])
        self.decoder = nn.ModuleList(UpStage(filters * 2 ** (num_up - i), n, groups, spatial_dims)
                                     for i, n in enumerate(arch['blocks_up']))
        self.final_norm = nn.GroupNorm(groups, filters)
        self.final_depthwise = CONV[spatial_dims](filters, filters, 1, groups=filters)

    def forward(self, x):
        check_unet_input(x, self.in_channels, 'LightMUNet', multiple=self.size_multiple, spatial_dims=self.spatial_dims)
        skips = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        for i, stage in enumerate(self.decoder):
            x = stage(x, skips[-2 - i])
        return (self.final_depthwise(F.relu(self.final_norm(x))),)  # (B, init_filters, *spatial)


# ---------------------------------------------------------------------------------------------------------------
# official nnU-Net checkpoint (``network_weights``) -> ours

MAMBA_PARTS = r'(conv1d|x_proj|dt_proj|A_log|D)'


def _rename_mamba_projection(rest):
    """Our key inside a MambaProjection for the official MambaLayer's ``rest``."""
    return rename_by_rules(rest, [(r'^mamba\.' + MAMBA_PARTS + r'(.*)$', lambda m: f'mamba.scans.0.{m[1]}{m[2]}'),
                                  (r'^(norm\.|proj\.|skip_scale$|mamba\.in_proj\.|mamba\.out_proj\.)(.*)$',
                                   lambda m: m[0])])


def _rename_official_key(key):
    def projection(prefix, rest):
        inner = _rename_mamba_projection(rest)
        return inner and f'{prefix}.{inner}'

    rules = [
        (r'^convInit\.(0|1)\.conv\.weight$',
         lambda m: f'backbone.stem.{("depthwise", "pointwise")[int(m[1])]}.weight'),
        (r'^down_layers\.(\d+)\.0\.0\.(.*)$', lambda m: projection(f'backbone.stages.{m[1]}.downsample', m[2])),
        (r'^down_layers\.(\d+)\.(\d+)\.(norm1|norm2)\.(weight|bias)$',
         lambda m: f'backbone.stages.{m[1]}.blocks.{int(m[2]) - 1}.{m[3]}.{m[4]}'),
        (r'^down_layers\.(\d+)\.(\d+)\.conv(1|2)\.(.*)$',
         lambda m: projection(f'backbone.stages.{m[1]}.blocks.{int(m[2]) - 1}.mamba{m[3]}', m[4])),
        (r'^up_samples\.(\d+)\.0\.conv\.weight$', lambda m: f'backbone.decoder.{m[1]}.reduce.weight'),
        (r'^up_layers\.(\d+)\.(\d+)\.(norm1\.weight|norm1\.bias|norm2\.weight|norm2\.bias|skip_scale)$',
         lambda m: f'backbone.decoder.{m[1]}.blocks.{m[2]}.{m[3]}'),
        (r'^up_layers\.(\d+)\.(\d+)\.conv\.(0|1)\.conv\.weight$',
         lambda m: f'backbone.decoder.{m[1]}.blocks.{m[2]}.conv.{("depthwise", "pointwise")[int(m[3])]}.weight'),
        (r'^conv_final\.0\.(weight|bias)$', lambda m: f'backbone.final_norm.{m[1]}'),
        (r'^conv_final\.2\.0\.conv\.(weight|bias)$', lambda m: f'backbone.final_depthwise.{m[1]}'),
        (r'^conv_final\.2\.1\.conv\.(weight|bias)$', lambda m: f'decode_head.conv_seg.{m[1]}'),
    ]
    return rename_by_rules(key, rules)


def convert_lightmunet(official_state_dict):
    """An official LightM-UNet 2D or 3D state dict (``network_weights`` of nnU-Net's ``checkpoint_final.pth``) -> an
    mmseg EncoderDecoder state dict: ``backbone.*`` for :class:`LightMUNet`, ``decode_head.conv_seg.*`` for the
    FCNHead. Unknown keys are an error."""
    state_dict = official_state_dict.get('network_weights', official_state_dict)
    return rename_keys(state_dict, _rename_official_key, ('convert_lightmunet', 'LightM-UNet'))


def lightmunet_build_kwargs(state_dict):
    """``in_channels`` and ``spatial_dims`` of the :class:`LightMUNet` a converted state dict is for (its stem)."""
    stem = state_dict['backbone.stem.depthwise.weight']  # (C_in, 1, 3, 3) or (C_in, 1, 3, 3, 3)
    return dict(in_channels=stem.shape[0], spatial_dims=stem.dim() - 2)
