"""U-Mamba (Ma et al., 2024), 2D: an nnU-Net residual U-Net with Mamba layers; official checkpoints convert here.

The official networks (bowang-lab/U-Mamba ``umamba/nnunetv2/nets/UMambaBot_2d.py``, ``UMambaEnc_2d.py``) are built
from an nnU-Net plan: per resolution stage the features, the stride of its first block, the kernel size and the
numbers of residual blocks in the encoder and decoder. Both variants share the layout held here:

- stem: a projected residual block (conv-IN-LeakyReLU, conv-IN, 1x1 projection added, LeakyReLU) to features[0],
  then encoder_blocks[0] - 1 nnU-Net ``BasicBlockD`` (identity skip);
- encoder stage s: a projected residual block with the stage's stride, then encoder_blocks[s] - 1 BasicBlockD;
  U-Mamba sets encoder_blocks[s] = 1 for s >= ceil(n / 2) and decoder_blocks[s] = 1 for the deeper half of the
  decoder whatever the plan says (done here from the plan's numbers, as the official constructors do);
- Mamba layers (LayerNorm over the flattened tokens, then a ONE-direction :class:`MambaMixer`, d_state 16, d_conv 4,
  expand 2, no residual), run in float32 with autocast off: ``bot`` after the last stage only, ``enc`` after every
  stage s with s odd xor n odd (the last stage always has one). A stage whose map at the plan's patch size has no
  more pixels than channels scans the CHANNELS as tokens (the pixels are the features): such a model only takes
  inputs of the plan's patch size (nnU-Net predicts by sliding windows of it);
- decoder stage i (deepest first): nearest upsampling by the stride, 1x1 conv to the skip's features, concat with the
  skip (except the last stage: the full-resolution encoder output is not used), a projected residual block and
  decoder_blocks[i] - 1 BasicBlockD.

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


def nnunet_2d_plan(patch_size, num_stages):
    """The nnU-Net v2 default planner's 2D U-Net for a square patch: 32 features doubling up to 512, 3x3 kernels,
    stride 1 then 2, two blocks per stage in the encoder and the decoder."""
    return dict(features=tuple(min(32 * 2 ** i, 512) for i in range(num_stages)),
                strides=(1, ) + (2, ) * (num_stages - 1), kernel_sizes=(3, ) * num_stages,
                encoder_blocks=(2, ) * num_stages, decoder_blocks=(2, ) * (num_stages - 1),
                patch_size=(patch_size, patch_size))


def plan_from_nnunet(plans, configuration='2d'):
    """Our plan dict from an nnU-Net v2 ``nnUNetPlans.json`` (as a dict; also ``init_args['plans']`` of a
    ``checkpoint_final.pth``): the keys U-Mamba's ``get_umamba_*_2d_from_plans`` read."""
    config = plans.get('configurations', {}).get(configuration)
    needed = ('UNet_base_num_features', 'unet_max_num_features', 'conv_kernel_sizes', 'pool_op_kernel_sizes',
              'n_conv_per_stage_encoder', 'n_conv_per_stage_decoder', 'patch_size')
    if config is None or any(key not in config for key in needed):
        raise ValueError(f'plan_from_nnunet: configuration {configuration!r} with the keys {needed} not found '
                         '(an nnU-Net v2 plans file of the release U-Mamba uses)')
    if any(len(size) != 2 for size in config['conv_kernel_sizes']):
        raise ValueError(f'plan_from_nnunet: configuration {configuration!r} is not 2D')
    num_stages = len(config['conv_kernel_sizes'])
    base, most = config['UNet_base_num_features'], config['unet_max_num_features']
    return dict(features=tuple(min(base * 2 ** i, most) for i in range(num_stages)),
                strides=tuple(tuple(s) for s in config['pool_op_kernel_sizes']),
                kernel_sizes=tuple(tuple(k) for k in config['conv_kernel_sizes']),
                encoder_blocks=tuple(config['n_conv_per_stage_encoder']),
                decoder_blocks=tuple(config['n_conv_per_stage_decoder']), patch_size=tuple(config['patch_size']))


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


class ConvNorm(nn.Module):
    """conv (same padding) + InstanceNorm (affine), optionally LeakyReLU: nnU-Net's ``ConvDropoutNormReLU``."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, act=True):
        super().__init__()
        kernel_size = _pair(kernel_size)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, [k // 2 for k in kernel_size])
        self.norm = nn.InstanceNorm2d(out_channels, eps=1e-5, affine=True)
        self.act = nn.LeakyReLU(0.01) if act else nn.Identity()

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class BasicBlockD(nn.Module):
    """nnU-Net's residual block with an identity skip: act(conv-IN-act -> conv-IN + x)."""

    def __init__(self, channels, kernel_size):
        super().__init__()
        self.conv1 = ConvNorm(channels, channels, kernel_size)
        self.conv2 = ConvNorm(channels, channels, kernel_size, act=False)
        self.act = nn.LeakyReLU(0.01)

    def forward(self, x):
        return self.act(self.conv2(self.conv1(x)) + x)


class ProjectedResBlock(nn.Module):
    """U-Mamba's ``BasicResBlock`` with its 1x1 projection: act(IN(conv2(act(IN(conv1 x)))) + conv3 x); conv1 and
    conv3 carry the stride."""

    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__()
        kernel_size, padding = _pair(kernel_size), [k // 2 for k in _pair(kernel_size)]
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)
        self.norm1 = nn.InstanceNorm2d(out_channels, eps=1e-5, affine=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size, 1, padding)
        self.norm2 = nn.InstanceNorm2d(out_channels, eps=1e-5, affine=True)
        self.conv3 = nn.Conv2d(in_channels, out_channels, 1, stride)
        self.act = nn.LeakyReLU(0.01)

    def forward(self, x):
        y = self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))
        return self.act(y + self.conv3(x))


def res_stage(in_channels, out_channels, kernel_size, stride, num_blocks):
    """A projected residual block (with the stride) then num_blocks - 1 BasicBlockD."""
    return nn.Sequential(ProjectedResBlock(in_channels, out_channels, kernel_size, stride),
                         *(BasicBlockD(out_channels, kernel_size) for _ in range(num_blocks - 1)))


class ImageMambaLayer(nn.Module):
    """LayerNorm + one-direction Mamba over a map's pixels (tokens of C features) or, with ``channel_token``, over
    its channels (tokens of H*W features); float32 with autocast off.

    Args:
        dims: the token features (C, or H*W with channel tokens).
        channel_token: scan the channels as tokens.
    """

    def __init__(self, dims, channel_token=False):
        super().__init__()
        self.dims, self.channel_token = dims, channel_token
        self.norm = nn.LayerNorm(dims)
        self.mamba = MambaMixer(dims, d_state=16, d_conv=4, expand=2, bidirectional=False)

    def _scan(self, x):
        B, C, H, W = x.shape
        tokens = x.flatten(2)  # (B, C, H*W)
        if not self.channel_token:
            tokens = tokens.transpose(1, 2)  # (B, H*W, C)
        if tokens.shape[-1] != self.dims:
            kind = 'pixels (the plan\'s patch size)' if self.channel_token else 'channels'
            raise ValueError(f'ImageMambaLayer expects {self.dims} {kind}, got a {tuple(x.shape)} map')
        y = self.mamba(self.norm(tokens))
        if not self.channel_token:
            y = y.transpose(1, 2)  # (B, C, H*W)
        return y.reshape(B, C, H, W)

    def forward(self, x):
        return run_in_float32(self._scan, x)


class UMambaEncoder(nn.Module):
    """Stem, the residual stages and a Mamba layer (or Identity) after each; returns every stage's output.

    ``mamba_tokens``: {stage: (token features, channel_token)} of the stages with a Mamba layer."""

    def __init__(self, in_channels, plan, mamba_tokens):
        super().__init__()
        features, kernels = plan['features'], plan['kernel_sizes']
        self.stem = res_stage(in_channels, features[0], kernels[0], 1, plan['encoder_blocks'][0])
        self.stages = nn.ModuleList(
            res_stage(features[max(s - 1, 0)], features[s], kernels[s], plan['strides'][s], plan['encoder_blocks'][s])
            for s in range(len(features)))
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
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode='nearest'))


class UMambaDecoder(nn.Module):
    """Deepest first: upsample + 1x1 conv, concat the skip (all but the last stage), residual stage."""

    def __init__(self, plan):
        super().__init__()
        features, kernels, strides = plan['features'], plan['kernel_sizes'], plan['strides']
        num_stages = len(features)
        self.upsample_layers, self.stages = nn.ModuleList(), nn.ModuleList()
        for i in range(num_stages - 1):
            below, skip = features[-1 - i], features[-2 - i]
            self.upsample_layers.append(UpsampleConv(below, skip, _pair(strides[-1 - i])))
            concat = i < num_stages - 2
            self.stages.append(res_stage(2 * skip if concat else skip, skip, kernels[-2 - i], 1,
                                         plan['decoder_blocks'][i]))

    def forward(self, skips):
        x = skips[-1]
        outputs = []
        for i, (upsample, stage) in enumerate(zip(self.upsample_layers, self.stages)):
            x = upsample(x)
            if i < len(self.stages) - 1:
                x = torch.cat([x, skips[-2 - i]], dim=1)  # (B, 2 C_skip, h, w)
            x = stage(x)
            outputs.append(x)
        return tuple(outputs[::-1])  # highest resolution first


def _check_plan(plan):
    missing = [key for key in PLAN_KEYS if key not in plan]
    unknown = sorted(set(plan) - set(PLAN_KEYS))
    if missing or unknown:
        raise ValueError(f'UMamba: a plan needs the keys {PLAN_KEYS}; missing {missing}, unknown {unknown}')
    n = len(plan['features'])
    lengths = {key: len(plan[key]) for key in ('strides', 'kernel_sizes', 'encoder_blocks')}
    if n < 2 or any(length != n for length in lengths.values()) or len(plan['decoder_blocks']) != n - 1:
        raise ValueError(f'UMamba: a plan of {n} stages needs {n} strides, kernel_sizes and encoder_blocks and '
                         f'{n - 1} decoder_blocks, got {lengths} and {len(plan["decoder_blocks"])} decoder_blocks')


def umamba_blocks(plan):
    """The plan with U-Mamba's block numbers: one encoder block from stage ceil(n / 2) on, one decoder block from
    decoder stage ceil((n - 1) / 2 + 0.5) on (``UMambaBot.__init__`` / ``UMambaEnc.__init__``)."""
    n = len(plan['features'])
    encoder = [b if s < math.ceil(n / 2) else 1 for s, b in enumerate(plan['encoder_blocks'])]
    decoder = [b if s < math.ceil((n - 1) / 2 + 0.5) else 1 for s, b in enumerate(plan['decoder_blocks'])]
    return dict(plan, encoder_blocks=tuple(encoder), decoder_blocks=tuple(decoder))


@MODELS.register_module()
class UMamba(BaseModule):
    """U-Mamba 2D backbone (encoder + decoder) from an nnU-Net plan.

    Args:
        arch: a plan name from ``arch_zoo`` or a dict with ``features``, ``strides`` (per stage, an int or (sh, sw);
            the first is 1), ``kernel_sizes``, ``encoder_blocks``, ``decoder_blocks`` (n - 1, deepest first) and
            ``patch_size`` (H, W): the numbers of an ``nnUNetPlans.json`` 2d configuration (``UNet_base_num_features``
            doubled up to ``unet_max_num_features``, ``pool_op_kernel_sizes``, ``conv_kernel_sizes``,
            ``n_conv_per_stage_encoder``, ``n_conv_per_stage_decoder``, ``patch_size``).
            The zoo's plans are what nnU-Net v2's default planner gives for a square 2D patch of that size
            (``nnunet-2d-512``: 8 stages, e.g. a 512 x 512 microscopy or endoscopy patch; ``nnunet-2d-320``: 7
            stages). The planner's result depends on the data set: for a released checkpoint pass its plan's numbers.
        mamba: ``'bot'`` (U-Mamba_Bot: a Mamba layer at the bottleneck) or ``'enc'`` (U-Mamba_Enc: in alternate encoder
            stages ending with the last).
        in_channels: image channels (the data set's ``channel_names``).
        init_cfg: None gives nnU-Net's He init (``InitWeights_He(1e-2)``) of the convolutions.

    Returns (forward): the decoder outputs, a tuple of n - 1 maps (B, features[i], H / stride_i, W / stride_i),
    highest resolution first.
    """

    arch_zoo = {'nnunet-2d-512': nnunet_2d_plan(512, 8), 'nnunet-2d-320': nnunet_2d_plan(320, 7)}

    def __init__(self, arch='nnunet-2d-512', mamba='bot', in_channels=3, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        plan = arch_from_zoo(arch, self.arch_zoo, 'UMamba')
        _check_plan(plan)
        if mamba not in ('bot', 'enc'):
            raise ValueError(f"UMamba: mamba must be 'bot' or 'enc', got {mamba!r}")
        self.plan = umamba_blocks(plan)
        self.in_channels = in_channels
        n = len(plan['features'])
        strides = [_pair(s) for s in plan['strides']]
        self.size_multiple = (math.prod(s[0] for s in strides), math.prod(s[1] for s in strides))
        map_sizes, size = [], _pair(plan['patch_size'])
        for stride in strides:
            size = (size[0] // stride[0], size[1] // stride[1])
            map_sizes.append(size)
        mamba_stages = [n - 1] if mamba == 'bot' else [s for s in range(n) if (s % 2 == 1) != (n % 2 == 1)]
        mamba_tokens = {}
        for s in mamba_stages:  # U-Mamba_Enc scans channels where a map has no more pixels than channels
            pixels = map_sizes[s][0] * map_sizes[s][1]
            channel_token = mamba == 'enc' and pixels <= plan['features'][s]
            mamba_tokens[s] = (pixels if channel_token else plan['features'][s], channel_token)
        self.encoder = UMambaEncoder(in_channels, self.plan, mamba_tokens)
        self.decoder = UMambaDecoder(self.plan)
        self.fixed_size = _pair(plan['patch_size']) if any(token for _, token in mamba_tokens.values()) else None

    @property
    def out_channels(self):
        """Channels of the outputs, highest resolution first."""
        return tuple(self.plan['features'][:-1])

    def forward(self, x):
        check_unet_input(x, self.in_channels, 'UMamba', multiple=self.size_multiple)
        if self.fixed_size is not None and tuple(x.shape[-2:]) != self.fixed_size:
            raise ValueError(f'UMamba (enc) scans channel tokens at the plan\'s patch size {self.fixed_size}; got '
                             f'{tuple(x.shape[-2:])} (predict with mode="slide" and crop_size = the patch size)')
        return self.decoder(self.encoder(x))

    def init_weights(self):
        """nnU-Net's ``InitWeights_He(1e-2)``: Kaiming-normal (a = 0.01) conv weights, zero conv biases; the Mamba
        mixers keep their own init. A ``Pretrained`` init_cfg loads as mmengine does."""
        if self.init_cfg is not None:
            super().init_weights()
            return
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # the Mamba mixers' convs are Conv1d and keep Mamba's init
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
    """An official U-Mamba 2D state dict (``network_weights`` of nnU-Net's ``checkpoint_final.pth``; Bot or Enc) ->
    an mmseg EncoderDecoder state dict: ``backbone.*`` for :class:`UMamba`, ``decode_head.seg_layers.*`` for
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
