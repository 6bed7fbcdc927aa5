"""U-Mamba (Ma et al., 2024), 2D and 3D: an nnU-Net residual U-Net with Mamba layers; official checkpoints convert here.

The official networks (bowang-lab/U-Mamba ``umamba/nnunetv2/nets/UMambaBot_2d.py``, ``UMambaEnc_2d.py``,
``UMambaBot_3d.py``, ``UMambaEnc_3d.py``) are built from an nnU-Net plan: per resolution stage the features, the
stride of its first block, the kernel size and the numbers of residual blocks in the encoder and decoder; the plan's
patch size, (H, W) or (D, H, W), sets 2D or 3D convs / InstanceNorms. All four share the layout held here:

- stem: a projected residual block (conv-IN-LeakyReLU, conv-IN, 1x1 projection added, LeakyReLU) to features[0],
  then encoder_blocks[0] - 1 nnU-Net ``BasicBlockD`` (identity skip);
- encoder stage s: a projected residual block with the stage's stride, then encoder_blocks[s] - 1 BasicBlockD;
  U-Mamba sets encoder_blocks[s] = 1 for s >= ceil(n / 2) and decoder_blocks[s] = 1 for the deeper half of the
  decoder whatever the plan says (done here from the plan's numbers, as the official constructors do);
- Mamba layers (LayerNorm over the flattened tokens, then a ONE-direction :class:`MambaMixer`, d_state 16, d_conv 4,
  expand 2, no residual), run in float32 with autocast off: ``bot`` after the last stage only; ``enc`` in 2D after
  every stage s with s odd xor n odd (the last stage always has one), in 3D after EVERY stage. A stage whose map at
  the plan's patch size has no more pixels (voxels) than channels scans the CHANNELS as tokens (the pixels are the
  features): such a model only takes inputs of the plan's patch size (nnU-Net predicts by sliding windows of it);
- decoder stage i (deepest first): nearest upsampling by the stride, 1x1 conv to the skip's features, concat with the
  skip, a projected residual block and decoder_blocks[i] - 1 BasicBlockD. The 2D nets skip the concat at the last
  stage (the full-resolution encoder output is unused); the 3D nets concatenate there too.

The backbone returns the decoder outputs, highest resolution first; the official 1x1 ``seg_layers`` (one per scale,
deep supervision) are the ``seg_layers`` of :class:`mmssm.DeepSupervisionHead`.
"""
import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmssm.registry import MODELS

from ..layers.autocast import run_in_float32
from ..layers.bimamba import MambaMixer
from ..utils.backbone import arch_from_zoo, check_unet_input
from ..utils.checkpoint import rename_by_rules, rename_keys

PLAN_KEYS = ('features', 'strides', 'kernel_sizes', 'encoder_blocks', 'decoder_blocks', 'patch_size')


def nnunet_plan(patch_size, num_stages, max_features):
    """The nnU-Net v2 default planner's U-Net for a square / cubic patch (``patch_size`` (H, W) or (D, H, W)): 32
    features doubling up to ``max_features`` (512 in 2D, 320 in 3D), 3-kernels, stride 1 then 2, two blocks per stage
    in the encoder and the decoder."""
    dims = len(patch_size)
    return dict(features=tuple(min(32 * 2 ** i, max_features) for i in range(num_stages)),
                strides=((1, ) * dims, ) + ((2, ) * dims, ) * (num_stages - 1),
                kernel_sizes=((3, ) * dims, ) * num_stages, encoder_blocks=(2, ) * num_stages,
                decoder_blocks=(2, ) * (num_stages - 1), patch_size=tuple(patch_size))


def _resolve_configuration(plans, name, visited=()):
    """The configuration ``name`` with its ``inherits_from`` chain merged in (the child's keys win), as nnU-Net's
    ``PlansManager.get_configuration``; None if it or a parent is missing."""
    config = plans.get('configurations', {}).get(name)
    if config is None or 'inherits_from' not in config:
        return config
    if config['inherits_from'] in visited + (name, ):
        raise ValueError(f'plan_from_nnunet: circular inherits_from: {" -> ".join(visited + (name, ))}')
    parent = _resolve_configuration(plans, config['inherits_from'], visited + (name, ))
    return None if parent is None else {**parent, **config}


def plan_from_nnunet(plans, configuration='2d'):
    """Our plan dict from an nnU-Net v2 ``nnUNetPlans.json`` (as a dict; also ``init_args['plans']`` of a
    ``checkpoint_final.pth``) and a 2D or 3D configuration (``'2d'``, ``'3d_fullres'``, ``'3d_cascade_fullres'``
    with its ``inherits_from`` resolved, ...): the keys U-Mamba's ``get_umamba_*_from_plans`` read."""
    config = _resolve_configuration(plans, configuration)
    needed = ('UNet_base_num_features', 'unet_max_num_features', 'conv_kernel_sizes', 'pool_op_kernel_sizes',
              'n_conv_per_stage_encoder', 'n_conv_per_stage_decoder', 'patch_size')
    if config is None or any(key not in config for key in needed):
        raise ValueError(f'plan_from_nnunet: configuration {configuration!r} with the keys {needed} not found '
                         '(an nnU-Net v2 plans file of the release U-Mamba uses)')
    dims = len(config['patch_size'])
    if dims not in (2, 3) or any(len(size) != dims for key in ('conv_kernel_sizes', 'pool_op_kernel_sizes')
                                 for size in config[key]):
        raise ValueError(f'plan_from_nnunet: configuration {configuration!r} is neither 2D nor 3D throughout '
                         f'(patch_size {config["patch_size"]})')
    num_stages = len(config['conv_kernel_sizes'])
    base, most = config['UNet_base_num_features'], config['unet_max_num_features']
    return dict(features=tuple(min(base * 2 ** i, most) for i in range(num_stages)),
                strides=tuple(tuple(s) for s in config['pool_op_kernel_sizes']),
                kernel_sizes=tuple(tuple(k) for k in config['conv_kernel_sizes']),
                encoder_blocks=tuple(config['n_conv_per_stage_encoder']),
                decoder_blocks=tuple(config['n_conv_per_stage_decoder']), patch_size=tuple(config['patch_size']))


def _ntuple(value, dims):
    return (value, ) * dims if isinstance(value, int) else tuple(value)


CONV = {2: nn.Conv2d, 3: nn.Conv3d}
INSTANCE_NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


class ConvNorm(nn.Module):
    """conv (same padding) + InstanceNorm (affine), optionally LeakyReLU: nnU-Net's ``ConvDropoutNormReLU``."""

    def __init__(self, in_channels, out_channels, kernel_size, dims, stride=1, act=True):
        super().__init__()
        kernel_size = _ntuple(kernel_size, dims)
        self.conv = CONV[dims](in_channels, out_channels, kernel_size, stride, [k // 2 for k in kernel_size])
        self.norm = INSTANCE_NORM[dims](out_channels, eps=1e-5, affine=True)
        self.act = nn.LeakyReLU(0.01) if act else nn.Identity()

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class BasicBlockD(nn.Module):
    """nnU-Net's residual block with an identity skip: act(conv-IN-act -> conv-IN + x)."""

    def __init__(self, channels, kernel_size, dims):
        super().__init__()
        self.conv1 = ConvNorm(channels, channels, kernel_size, dims)
        self.conv2 = ConvNorm(channels, channels, kernel_size, dims, act=False)
        self.act = nn.LeakyReLU(0.01)

    def forward(self, x):
        return self.act(self.conv2(self.conv1(x)) + x)


class ProjectedResBlock(nn.Module):
    """U-Mamba's ``BasicResBlock`` with its 1x1 projection: act(IN(conv2(act(IN(conv1 x)))) + conv3 x); conv1 and
    conv3 carry the stride."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, dims):
        super().__init__()
        kernel_size = _ntuple(kernel_size, dims)
        padding = [k // 2 for k in kernel_size]
        self.conv1 = CONV[dims](in_channels, out_channels, kernel_size, stride, padding)
        self.norm1 = INSTANCE_NORM[dims](out_channels, eps=1e-5, affine=True)
        self.conv2 = CONV[dims](out_channels, out_channels, kernel_size, 1, padding)
        self.norm2 = INSTANCE_NORM[dims](out_channels, eps=1e-5, affine=True)
        self.conv3 = CONV[dims](in_channels, out_channels, 1, stride)
        self.act = nn.LeakyReLU(0.01)

    def forward(self, x):
        y = self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))
        return self.act(y + self.conv3(x))


def res_stage(in_channels, out_channels, kernel_size, stride, num_blocks, dims):
    """A projected residual block (with the stride) then num_blocks - 1 BasicBlockD."""
    return nn.Sequential(ProjectedResBlock(in_channels, out_channels, kernel_size, stride, dims),
                         *(BasicBlockD(out_channels, kernel_size, dims) for _ in range(num_blocks - 1)))


class ImageMambaLayer(nn.Module):
    """LayerNorm + one-direction Mamba over a map's pixels / voxels (tokens of C features) or, with
    ``channel_token``, over its channels (tokens of H*W or D*H*W features); float32 with autocast off.

    Args:
        dims: the token features (C, or the map's size with channel tokens).
        channel_token: scan the channels as tokens.
    """

    def __init__(self, dims, channel_token=False):
        super().__init__()
        self.dims, self.channel_token = dims, channel_token
        self.norm = nn.LayerNorm(dims)
        self.mamba = MambaMixer(dims, d_state=16, d_conv=4, expand=2, bidirectional=False)

    def _scan(self, x):
        tokens = x.flatten(2)  # (B, C, L) with L = H*W or D*H*W
        if not self.channel_token:
            tokens = tokens.transpose(1, 2)  # (B, L, C)
        if tokens.shape[-1] != self.dims:
            kind = 'pixels (the plan\'s patch size)' if self.channel_token else 'channels'
            raise ValueError(f'ImageMambaLayer expects {self.dims} {kind}, got a {tuple(x.shape)} map')
        y = self.mamba(self.norm(tokens))
        if not self.channel_token:
            y = y.transpose(1, 2)  # (B, C, L)
        return y.reshape(x.shape)  # (B, C, *spatial)

    def forward(self, x):
        return run_in_float32(self._scan, x)


class UMambaEncoder(nn.Module):
    """Stem, the residual stages and a Mamba layer (or Identity) after each; returns every stage's output.

    ``mamba_tokens``: {stage: (token features, channel_token)} of the stages with a Mamba layer."""

    def __init__(self, in_channels, plan, mamba_tokens, dims):
        super().__init__()
        features, kernels = plan['features'], plan['kernel_sizes']
        self.stem = res_stage(in_channels, features[0], kernels[0], 1, plan['encoder_blocks'][0], dims)
        self.stages = nn.ModuleList(
            res_stage(features[max(s - 1, 0)], features[s], kernels[s], plan['strides'][s], plan['encoder_blocks'][s],
                      dims) for s in range(len(features)))
        self.mamba_layers = nn.ModuleList(
            ImageMambaLayer(*mamba_tokens[s]) if s in mamba_tokens else nn.Identity() for s in range(len(features)))

    def forward(self, x):
        x = self.stem(x)
        outputs = []
        for stage, mamba in zip(self.stages, self.mamba_layers):
            x = mamba(stage(x))
            outputs.append(x)
        return outputs


class UpsampleConv(nn.Module):
    """Nearest upsampling by the encoder stride, then a 1x1 conv."""

    def __init__(self, in_channels, out_channels, scale):
        super().__init__()
        self.scale = tuple(float(s) for s in scale)
        self.conv = CONV[len(scale)](in_channels, out_channels, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode='nearest'))


class UMambaDecoder(nn.Module):
    """Deepest first: upsample + 1x1 conv, concat the skip, residual stage. The official 2D decoder does not
    concatenate at its last stage (the full-resolution encoder output is unused); the 3D one does
    (``full_resolution_skip``)."""

    def __init__(self, plan, dims, full_resolution_skip):
        super().__init__()
        features, kernels, strides = plan['features'], plan['kernel_sizes'], plan['strides']
        num_stages = len(features)
        self.concat = [i < num_stages - 2 or full_resolution_skip for i in range(num_stages - 1)]
        self.upsample_layers, self.stages = nn.ModuleList(), nn.ModuleList()
        for i in range(num_stages - 1):
            below, skip = features[-1 - i], features[-2 - i]
            self.upsample_layers.append(UpsampleConv(below, skip, _ntuple(strides[-1 - i], dims)))
            self.stages.append(res_stage(2 * skip if self.concat[i] else skip, skip, kernels[-2 - i], 1,
                                         plan['decoder_blocks'][i], dims))

    def forward(self, skips):
        x = skips[-1]
        outputs = []
        for i, (upsample, stage) in enumerate(zip(self.upsample_layers, self.stages)):
            x = upsample(x)
            if self.concat[i]:
                x = torch.cat([x, skips[-2 - i]], dim=1)  # (B, 2 C_skip, *spatial)
            x = stage(x)
            outputs.append(x)
        return tuple(outputs[::-1])  # highest resolution first


def _check_plan(plan, spatial_dims):
    missing = [key for key in PLAN_KEYS if key not in plan]
    unknown = sorted(set(plan) - set(PLAN_KEYS))
    if missing or unknown:
        raise ValueError(f'UMamba: a plan needs the keys {PLAN_KEYS}; missing {missing}, unknown {unknown}')
    n = len(plan['features'])
    lengths = {key: len(plan[key]) for key in ('strides', 'kernel_sizes', 'encoder_blocks')}
    if n < 2 or any(length != n for length in lengths.values()) or len(plan['decoder_blocks']) != n - 1:
        raise ValueError(f'UMamba: a plan of {n} stages needs {n} strides, kernel_sizes and encoder_blocks and '
                         f'{n - 1} decoder_blocks, got {lengths} and {len(plan["decoder_blocks"])} decoder_blocks')
    dims = 0 if isinstance(plan['patch_size'], int) else len(plan['patch_size'])
    sizes = [v for key in ('strides', 'kernel_sizes') for v in plan[key] if not isinstance(v, int)]
    if dims not in (2, 3) or spatial_dims not in (None, dims) or any(len(v) != dims for v in sizes):
        raise ValueError(f'UMamba: spatial_dims {spatial_dims} does not fit the plan, whose patch_size '
                         f'{plan["patch_size"]}, strides and kernel_sizes need 2 (H, W) or 3 (D, H, W) entries each')
    return dims


def umamba_blocks(plan):
    """The plan with U-Mamba's block numbers: one encoder block from stage ceil(n / 2) on, one decoder block from
    decoder stage ceil((n - 1) / 2 + 0.5) on (``UMambaBot.__init__`` / ``UMambaEnc.__init__``)."""
    n = len(plan['features'])
    encoder = [b if s < math.ceil(n / 2) else 1 for s, b in enumerate(plan['encoder_blocks'])]
    decoder = [b if s < math.ceil((n - 1) / 2 + 0.5) else 1 for s, b in enumerate(plan['decoder_blocks'])]
    return dict(plan, encoder_blocks=tuple(encoder), decoder_blocks=tuple(decoder))


@MODELS.register_module()
class UMamba(BaseModule):
    """U-Mamba 2D / 3D backbone (encoder + decoder) from an nnU-Net plan.

    Args:
        arch: a plan name from ``arch_zoo`` or a dict with ``features``, ``strides`` (per stage, an int or one per
            axis; the first is 1), ``kernel_sizes``, ``encoder_blocks``, ``decoder_blocks`` (n - 1, deepest first) and
            ``patch_size`` ((H, W) or (D, H, W): it sets the spatial dims): the numbers of an ``nnUNetPlans.json``
            configuration (``UNet_base_num_features`` doubled up to ``unet_max_num_features``,
            ``pool_op_kernel_sizes``, ``conv_kernel_sizes``, ``n_conv_per_stage_encoder``,
            ``n_conv_per_stage_decoder``, ``patch_size``; :func:`plan_from_nnunet` reads them).
            The zoo's plans are what nnU-Net v2's default planner gives for a square / cubic patch of that size
            (``nnunet-2d-512``: 8 stages, e.g. a 512 x 512 microscopy or endoscopy patch; ``nnunet-2d-320``: 7
            stages; ``nnunet-3d-128``: 6 stages of 32-320 features on a 128^3 patch). The planner's result depends on
            the data set: for a released checkpoint pass its plan's numbers.
        mamba: ``'bot'`` (U-Mamba_Bot: a Mamba layer at the bottleneck) or ``'enc'`` (U-Mamba_Enc: in 2D after
            alternate encoder stages ending with the last, in 3D after every stage, as the official nets do).
        in_channels: image channels (the data set's ``channel_names``).
        spatial_dims: 2 or 3; None takes it from the plan's ``patch_size`` (given, it must agree).
        init_cfg: None gives nnU-Net's He init (``InitWeights_He(1e-2)``) of the convolutions.

    Returns (forward): the decoder outputs, a tuple of n - 1 maps (B, features[i], *spatial / stride_i), highest
    resolution first.
    """

    arch_zoo = {'nnunet-2d-512': nnunet_plan((512, 512), 8, 512), 'nnunet-2d-320': nnunet_plan((320, 320), 7, 512),
                'nnunet-3d-128': nnunet_plan((128, 128, 128), 6, 320)}

    def __init__(self, arch='nnunet-2d-512', mamba='bot', in_channels=3, spatial_dims=None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        plan = arch_from_zoo(arch, self.arch_zoo, 'UMamba')
        self.spatial_dims = dims = _check_plan(plan, spatial_dims)
        if mamba not in ('bot', 'enc'):
            raise ValueError(f"UMamba: mamba must be 'bot' or 'enc', got {mamba!r}")
        self.plan = umamba_blocks(plan)
        self.in_channels = in_channels
        n = len(plan['features'])
        strides = [_ntuple(s, dims) for s in plan['strides']]
        self.size_multiple = tuple(math.prod(s[axis] for s in strides) for axis in range(dims))
        map_sizes, size = [], tuple(plan['patch_size'])
        for stride in strides:
            size = tuple(i // j for i, j in zip(size, stride))
            map_sizes.append(size)
        if mamba == 'bot':
            mamba_stages = [n - 1]
        else:  # 3D: every stage; 2D: alternate stages ending with the last
            mamba_stages = [s for s in range(n) if dims == 3 or (s % 2 == 1) != (n % 2 == 1)]
        mamba_tokens = {}
        for s in mamba_stages:  # U-Mamba_Enc scans channels where a map has no more pixels than channels
            pixels = math.prod(map_sizes[s])
            channel_token = mamba == 'enc' and pixels <= plan['features'][s]
            mamba_tokens[s] = (pixels if channel_token else plan['features'][s], channel_token)
        self.encoder = UMambaEncoder(in_channels, self.plan, mamba_tokens, dims)
        self.decoder = UMambaDecoder(self.plan, dims, full_resolution_skip=dims == 3)
        self.fixed_size = tuple(plan['patch_size']) if any(token for _, token in mamba_tokens.values()) else None

    @property
    def out_channels(self):
        """Channels of the outputs, highest resolution first."""
        return tuple(self.plan['features'][:-1])

    def forward(self, x):
        check_unet_input(x, self.in_channels, 'UMamba', multiple=self.size_multiple, spatial_dims=self.spatial_dims)
        if self.fixed_size is not None and tuple(x.shape[2:]) != self.fixed_size:
            raise ValueError(f'UMamba (enc) scans channel tokens at the plan\'s patch size {self.fixed_size}; got '
                             f'{tuple(x.shape[2:])} (predict by sliding windows of the patch size: mode="slide" in '
                             'mmseg, mmssm.apis.predict_volume in 3D)')
        return self.decoder(self.encoder(x))

    def init_weights(self):
        """nnU-Net's ``InitWeights_He(1e-2)``: Kaiming-normal (a = 0.01) conv weights, zero conv biases; the Mamba
        mixers keep their own init. A ``Pretrained`` init_cfg loads as mmengine does."""
        if self.init_cfg is not None:
            super().init_weights()
            return
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):  # the Mamba mixers' convs are Conv1d: Mamba's init
                nn.init.kaiming_normal_(module.weight, a=1e-2)
                nn.init.zeros_(module.bias)
        self._is_init = True


# ---------------------------------------------------------------------------------------------------------------
# official nnU-Net checkpoint (``network_weights``) -> ours

MAMBA_PARTS = r'(conv1d|x_proj|dt_proj|A_log|D)'
# duplicates in the official state dict: ConvDropoutNormReLU registers its conv / norm also as ``all_modules.i``;
# the decoder holds the encoder as ``decoder.encoder``
DUPLICATES = (r'\.all_modules\.\d+\.', r'^decoder\.encoder\.')


def _num_seg_layers(state_dict):
    return len({m[1] for k in state_dict if (m := re.match(r'decoder\.seg_layers\.(\d+)\.', k))})


def _num_stages(state_dict):
    return len({m[1] for k in state_dict if (m := re.match(r'encoder\.stages\.(\d+)\.', k))})


def drop_duplicates(state_dict, what):
    """The state dict without nnU-Net's duplicate keys, after checking each equals its original."""
    kept = {k: v for k, v in state_dict.items() if not any(re.search(p, k) for p in DUPLICATES)}
    for key, value in state_dict.items():
        if key in kept:
            continue
        original = re.sub(r'^decoder\.encoder\.', 'encoder.', key)
        original = re.sub(r'\.all_modules\.0\.', '.conv.', original)
        original = re.sub(r'\.all_modules\.\d+\.', '.norm.', original)  # no dropout in these plans: 1 is the norm
        if original not in kept or not torch.equal(kept[original], value):
            raise ValueError(f'{what}: {key} is not a copy of {original}: not an official checkpoint')
    return kept


def convert_umamba(official_state_dict):
    """An official U-Mamba 2D or 3D state dict (``network_weights`` of nnU-Net's ``checkpoint_final.pth``; Bot or
    Enc) -> an mmseg EncoderDecoder state dict: ``backbone.*`` for :class:`UMamba`, ``decode_head.seg_layers.*`` for
    :class:`mmssm.DeepSupervisionHead` (highest resolution first). Unknown keys are an error."""
    state_dict = official_state_dict.get('network_weights', official_state_dict)
    state_dict = drop_duplicates(state_dict, 'convert_umamba')
    last_stage, num_seg = _num_stages(state_dict) - 1, _num_seg_layers(state_dict)
    rules = [
        (r'^mamba_layer\.mamba\.' + MAMBA_PARTS + r'(.*)$',
         lambda m: f'backbone.encoder.mamba_layers.{last_stage}.mamba.scans.0.{m[1]}{m[2]}'),
        (r'^mamba_layer\.(.*)$', lambda m: f'backbone.encoder.mamba_layers.{last_stage}.{m[1]}'),
        (r'^encoder\.mamba_layers\.(\d+)\.mamba\.' + MAMBA_PARTS + r'(.*)$',
         lambda m: f'backbone.encoder.mamba_layers.{m[1]}.mamba.scans.0.{m[2]}{m[3]}'),
        (r'^encoder\.mamba_layers\.(\d+)\.(norm\.|mamba\.in_proj\.|mamba\.out_proj\.)(.*)$',
         lambda m: f'backbone.encoder.mamba_layers.{m[1]}.{m[2]}{m[3]}'),
        (r'^decoder\.seg_layers\.(\d+)\.(weight|bias)$',
         lambda m: f'decode_head.seg_layers.{num_seg - 1 - int(m[1])}.{m[2]}'),
        (r'^((encoder\.(stem|stages))|(decoder\.(stages|upsample_layers)))\.(.*)$', lambda m: f'backbone.{m[0]}'),
    ]
    return rename_keys(state_dict, lambda key: rename_by_rules(key, rules), ('convert_umamba', 'U-Mamba'))
