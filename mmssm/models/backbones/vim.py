"""Vim (Vision Mamba, Zhu et al., ICML 2024): a plain stack of bidirectional Mamba blocks over patch tokens.

File order: blocks -> rotary embedding -> dense pyramid -> backbone -> checkpoint conversion.
Facts from the official hustvl/Vim code: middle class token, absolute position embedding, "add -> RMSNorm -> mixer"
blocks with an fp32 residual stream, final RMSNorm ``norm_f``; the dense (det/seg) models optionally add an EVA-02
style 2D RoPE before every block and turn plain features into a 4-scale pyramid.
"""
import math
import re

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import nn

from mmssm.models.layers.bimamba import MambaMixer
from mmssm.models.layers.rms_norm import RMSNorm, at_least_float32
from mmssm.models.utils import FrozenStagesMixin, arch_from_zoo, load_pretrained
from mmssm.registry import MODELS


class VimBlock(nn.Module):
    """residual = residual + hidden; hidden = drop_path(mixer(RMSNorm(residual))); returns (hidden, residual).

    The add happens at the start of the next block (Mamba's fused add+norm layout); the first block receives
    ``residual=None`` and starts the stream from its input.
    """

    def __init__(self, embed_dims: int, mixer_cfg: dict, drop_path: float = 0., norm_eps: float = 1e-5,
                 residual_in_fp32: bool = True):
        super().__init__()
        self.residual_in_fp32 = residual_in_fp32
        self.norm = RMSNorm(embed_dims, eps=norm_eps)
        self.mixer = MambaMixer(embed_dims, **mixer_cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, hidden, residual=None):
        """hidden, residual: (batch, L, C) -> (hidden, residual) of the same shape."""
        residual = hidden if residual is None else residual + hidden
        if self.residual_in_fp32:
            residual = at_least_float32(residual)
        hidden = self.mixer(self.norm(residual))
        return self.drop_path(hidden), residual


class VisionRoPE(nn.Module):
    """EVA-02 2D rotary position embedding as used by Vim's det/seg models (no parameters).

    Channel pairs (2i, 2i+1) of the first C/2 channels rotate with the row index, those of the last C/2 with the
    column index; positions are rescaled to the pre-training grid (``pretrain_grid`` = 14 for 224 / 16).
    The class token, wherever it sits, is not rotated.
    """

    def __init__(self, embed_dims: int, pretrain_grid: int = 14, theta: float = 10000.):
        super().__init__()
        if embed_dims % 4:
            raise ValueError(f'RoPE needs embed_dims divisible by 4, got {embed_dims}')
        axis_dims = embed_dims // 2
        self.pretrain_grid = pretrain_grid
        inv_freq = theta ** -(torch.arange(0, axis_dims, 2, dtype=torch.float32) / axis_dims)  # (C / 4,)
        self.register_buffer('inv_freq', inv_freq, persistent=False)

    def _axis_angles(self, size):
        position = torch.arange(size, dtype=torch.float32, device=self.inv_freq.device) / size * self.pretrain_grid
        angles = position[:, None] * self.inv_freq[None, :]  # (size, C / 4)
        return angles.repeat_interleave(2, dim=1)  # (size, C / 2): both channels of a pair share an angle

    def rotation(self, grid_hw, cls_index=None):
        """cos, sin: (L, C) for the row-major grid tokens, with an identity row at ``cls_index`` if given."""
        height, width = grid_hw
        rows = self._axis_angles(height)[:, None, :].expand(height, width, -1)  # (H, W, C / 2)
        cols = self._axis_angles(width)[None, :, :].expand(height, width, -1)  # (H, W, C / 2)
        angles = torch.cat([rows, cols], dim=-1).flatten(0, 1)  # (H * W, C)
        if cls_index is not None:
            angles = torch.cat([angles[:cls_index], angles.new_zeros(1, angles.shape[1]), angles[cls_index:]])
        return angles.cos(), angles.sin()

    @staticmethod
    def rotate(tokens, cos, sin):
        """tokens: (batch, L, C); pairs (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin)."""
        pairs = tokens.unflatten(-1, (-1, 2))  # (batch, L, C / 2, 2)
        rotated_half = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)  # (batch, L, C)
        return tokens * cos.to(tokens.dtype) + rotated_half * sin.to(tokens.dtype)


# scale factor (input stride / output stride) -> the op that resamples a plain (batch, C, H, W) map (ViTDet style)
def build_rescale(scale, channels, norm_cfg):
    if scale == 4.0:
        return nn.Sequential(nn.ConvTranspose2d(channels, channels, 2, stride=2),
                             build_norm_layer(norm_cfg, channels)[1], nn.GELU(),
                             nn.ConvTranspose2d(channels, channels, 2, stride=2))
    if scale == 2.0:
        return nn.ConvTranspose2d(channels, channels, 2, stride=2)
    if scale == 1.0:
        return nn.Identity()
    if scale in (0.5, 0.25):
        return nn.MaxPool2d(kernel_size=int(1 / scale), stride=int(1 / scale))
    raise ValueError(f'pyramid scale {scale} is not one of 4, 2, 1, 0.5, 0.25')


def insert_middle(tokens, token):
    """(batch, M, C) patch tokens + (batch, 1, C) token -> (batch, M + 1, C) with the token at index M // 2."""
    middle = tokens.shape[1] // 2
    return torch.cat([tokens[:, :middle], token, tokens[:, middle:]], dim=1)


def remove_index(tokens, index):
    """(batch, L, C) -> (batch, L - 1, C) without token ``index``."""
    return torch.cat([tokens[:, :index], tokens[:, index + 1:]], dim=1)


def resize_pos_embed(pos_embed, src_grid, dst_grid, with_cls):
    """(1, M_src [+ 1], C) -> (1, M_dst [+ 1], C): grid part resized bicubically, middle cls entry carried over."""
    if tuple(src_grid) == tuple(dst_grid):
        return pos_embed
    cls_embed = None
    if with_cls:
        cls_index = (pos_embed.shape[1] - 1) // 2  # M_src // 2 of M_src + 1 entries
        cls_embed = pos_embed[:, cls_index:cls_index + 1]
        pos_embed = remove_index(pos_embed, cls_index)
    grid = pos_embed.transpose(1, 2).unflatten(2, tuple(src_grid))  # (1, C, H_src, W_src)
    grid = F.interpolate(grid.float(), size=tuple(dst_grid), mode='bicubic', align_corners=False)
    pos_embed = grid.flatten(2).transpose(1, 2).to(pos_embed.dtype)  # (1, M_dst, C)
    return insert_middle(pos_embed, cls_embed) if with_cls else pos_embed


@MODELS.register_module()
class Vim(FrozenStagesMixin, BaseModule):
    """Vision Mamba backbone.

    Args:
        arch: a name of :attr:`arch_zoo` or a dict with ``embed_dims`` and ``num_layers`` (optional
            ``patch_stride``, ``d_state``, ``expand``).
        img_size: training input size; fixes the position-embedding grid (other sizes are interpolated).
        patch_size: patch conv kernel (its stride comes from the arch: 16, or 8 for the "+" variants).
        in_channels: image channels.
        out_type: 'cls_token' -> for every out index, the class-position token after ``norm_f``, (batch, C);
            'featmap' -> for every out index, the residual stream without the class token, normed by its own
            LayerNorm, as a (batch, C, H, W) map resampled by ``pyramid_scales``.
        out_indices: block indices to output; default: the last block ('cls_token'), or the ends of the four
            quarters of the depth ('featmap', i.e. 5, 11, 17, 23 for depth 24).
        with_cls_token: insert a learnable class token in the middle of the sequence.
        use_rope, rope_residual: EVA-02 2D RoPE on the block inputs (and on the residual stream).
        rope_pretrain_grid: the grid that RoPE positions are rescaled to.
        residual_in_fp32: keep the residual stream in float32.
        norm_eps: RMSNorm epsilon.
        drop_rate: dropout after the position embedding.
        drop_path_rate: stochastic depth, rising linearly over the blocks.
        pyramid_scales: per output, 4 / 2 / 1 / 0.5 / 0.25; default: to strides 4, 8, 16, 32.
        pyramid_norm_cfg: norm inside the x4 upsampler (SyncBN in the dense configs).
        out_norm_cfg: norm of every 'featmap' output.
        frozen_stages: as in mmpretrain's ViT: > 0 freezes the embeddings and the first ``frozen_stages`` blocks
            (and ``norm_f`` when all are frozen); -1 or 0 freezes nothing.
        with_cp: gradient checkpointing of every block.
        init_cfg: ``dict(type='Pretrained', checkpoint=..., prefix=None)`` loads an official Vim checkpoint or an
            mmssm one (keys under ``backbone.``) strictly, resizing the position embedding; other types as mmengine.
    """

    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(embed_dims=192, num_layers=24, patch_stride=16)),
        **dict.fromkeys(['s', 'small'], dict(embed_dims=384, num_layers=24, patch_stride=16)),
        **dict.fromkeys(['b', 'base'], dict(embed_dims=768, num_layers=24, patch_stride=16)),
        **dict.fromkeys(['t+', 'tiny-stride8'], dict(embed_dims=192, num_layers=24, patch_stride=8)),
        **dict.fromkeys(['s+', 'small-stride8'], dict(embed_dims=384, num_layers=24, patch_stride=8)),
    }
    arch_defaults = dict(patch_stride=16, d_state=16, expand=2)
    out_types = ('cls_token', 'featmap')
    dense_output_keys = ('out_norms.*', 'pyramid.*')  # task layers that a classification checkpoint lacks

    def __init__(self, arch='tiny', img_size=224, patch_size=16, in_channels=3, out_type='cls_token',
                 out_indices=None, with_cls_token=True, use_rope=False, rope_residual=False, rope_pretrain_grid=14,
                 residual_in_fp32=True, norm_eps=1e-5, drop_rate=0., drop_path_rate=0., pyramid_scales=None,
                 pyramid_norm_cfg=dict(type='BN'), out_norm_cfg=dict(type='LN', eps=1e-6), frozen_stages=-1,
                 with_cp=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._resolve_arch(arch)
        embed_dims, num_layers = self.arch_settings['embed_dims'], self.arch_settings['num_layers']
        patch_stride = self.arch_settings['patch_stride']
        if out_type not in self.out_types:
            raise ValueError(f'out_type must be one of {self.out_types}, got {out_type!r}')
        if out_type == 'cls_token' and not with_cls_token:
            raise ValueError("out_type='cls_token' needs with_cls_token=True")
        self.embed_dims, self.num_layers, self.patch_stride = embed_dims, num_layers, patch_stride
        self.out_type, self.with_cls_token = out_type, with_cls_token
        self.out_indices = self._resolve_out_indices(out_indices)
        self.frozen_stages, self.with_cp = frozen_stages, with_cp

        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.grid_size = tuple((size - patch_size) // patch_stride + 1 for size in img_size)
        num_patches = self.grid_size[0] * self.grid_size[1]
        self.patch_embed = nn.Conv2d(in_channels, embed_dims, patch_size, stride=patch_stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims)) if with_cls_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + int(with_cls_token), embed_dims))
        self.pos_drop = nn.Dropout(drop_rate)
        self.rope = VisionRoPE(embed_dims, rope_pretrain_grid) if use_rope else None
        self.rope_residual = rope_residual

        mixer_cfg = dict(d_state=self.arch_settings['d_state'], expand=self.arch_settings['expand'],
                         bidirectional=True, num_layers=num_layers)
        drop_path_rates = torch.linspace(0, drop_path_rate, num_layers).tolist()
        self.layers = nn.ModuleList(
            VimBlock(embed_dims, mixer_cfg, drop_path_rates[i], norm_eps, residual_in_fp32)
            for i in range(num_layers))

        if out_type == 'cls_token':
            self.norm_f = RMSNorm(embed_dims, eps=norm_eps)
        else:
            if pyramid_scales is None:
                pyramid_scales = tuple(patch_stride / stride for stride in (4, 8, 16, 32))
            if len(pyramid_scales) != len(self.out_indices):
                raise ValueError(f'pyramid_scales {pyramid_scales} needs one entry per out index {self.out_indices}')
            self.out_norms = nn.ModuleList(build_norm_layer(out_norm_cfg, embed_dims)[1] for _ in self.out_indices)
            self.pyramid = nn.ModuleList(build_rescale(s, embed_dims, pyramid_norm_cfg) for s in pyramid_scales)
        self._init_embeddings()
        self._freeze_stages()

    def _resolve_arch(self, arch):
        resolved = arch_from_zoo(arch, self.arch_zoo, 'Vim')
        if isinstance(arch, str):  # zoo entries hold only known keys
            return {**self.arch_defaults, **resolved}
        missing = {'embed_dims', 'num_layers'} - set(arch)
        unknown = set(arch) - {'embed_dims', 'num_layers', *self.arch_defaults}
        if missing or unknown:
            raise ValueError(f'custom Vim arch: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}')
        return {**self.arch_defaults, **arch}

    def _resolve_out_indices(self, out_indices):
        if out_indices is None:
            quarters = [max(self.num_layers * k // 4 - 1, 0) for k in (1, 2, 3, 4)]
            out_indices = [-1] if self.out_type == 'cls_token' else quarters
        out_indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        for i, index in enumerate(out_indices):
            if not -self.num_layers <= index < self.num_layers:
                raise ValueError(f'out index {index} is outside the {self.num_layers} blocks')
            out_indices[i] = index % self.num_layers
        return tuple(out_indices)

    @torch.no_grad()
    def _init_embeddings(self):
        """Official init of what is not a mixer: truncated-normal embeddings, lecun-normal patch conv."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        fan_in = self.patch_embed.weight[0].numel()
        truncated_std = .87962566103423978  # std of a unit normal truncated to (-2, 2): lecun_normal's correction
        nn.init.trunc_normal_(self.patch_embed.weight, std=math.sqrt(1 / fan_in) / truncated_std)
        nn.init.zeros_(self.patch_embed.bias)

    def init_weights(self):
        """Strict Pretrained loading through :func:`convert_vim`; every other init_cfg goes to mmengine."""
        if not (isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained'):
            super().init_weights()
            return
        new_layers = load_pretrained(self, self.init_cfg['checkpoint'], prefix=self.init_cfg.get('prefix'),
                                     convert=self.adapt_state_dict, allow_missing=self.dense_output_keys)
        if new_layers:
            print_log(f'Vim: {len(new_layers)} dense-output weights not in the checkpoint keep their init: '
                      f'{new_layers}', logger='current')
        self._is_init = True

    def adapt_state_dict(self, state_dict):
        """An official or mmssm Vim state dict -> this backbone's keys: converted, position embedding resized to
        this grid (class entry kept or dropped), weights this configuration does not use removed by name."""
        if 'patch_embed.proj.weight' in state_dict:  # official layout
            state_dict = convert_vim(state_dict)
        if any(key.startswith('backbone.') for key in state_dict):
            state_dict = {k[len('backbone.'):]: v for k, v in state_dict.items() if k.startswith('backbone.')}
        state_dict = dict(state_dict)
        unused = [] if self.out_type == 'cls_token' else ['norm_f.weight']
        if not self.with_cls_token:
            unused.append('cls_token')
        for key in unused:
            state_dict.pop(key, None)
        if 'pos_embed' in state_dict:
            state_dict['pos_embed'] = self._fit_pos_embed(state_dict['pos_embed'])
        return state_dict

    def _fit_pos_embed(self, pos_embed):
        """A checkpoint's (1, M [+ 1], C) square-grid embedding -> this model's (grid, class entry)."""
        num = pos_embed.shape[1]
        side = math.isqrt(num)
        src_with_cls = side * side != num
        if src_with_cls:
            side = math.isqrt(num - 1)
            if side * side != num - 1:
                raise ValueError(f'pos_embed with {num} entries is neither a square grid nor a grid + class token')
        if self.with_cls_token and not src_with_cls:
            raise ValueError('the checkpoint has no class-token position embedding but this model uses a class token')
        pos_embed = resize_pos_embed(pos_embed, (side, side), self.grid_size, src_with_cls)
        if src_with_cls and not self.with_cls_token:
            pos_embed = remove_index(pos_embed, (pos_embed.shape[1] - 1) // 2)  # the middle class entry
        return pos_embed

    def embed(self, x):
        """Images (batch, 3, H, W) -> tokens (batch, L, C), grid (Hp, Wp), class index or None."""
        if x.dim() != 4:
            raise ValueError(f'Vim expects images (batch, channels, H, W), got {tuple(x.shape)}')
        patches = self.patch_embed(x)  # (batch, C, Hp, Wp)
        grid = tuple(patches.shape[2:])
        tokens = patches.flatten(2).transpose(1, 2)  # (batch, Hp * Wp, C)
        pos_embed = resize_pos_embed(self.pos_embed, self.grid_size, grid, self.with_cls_token)
        cls_index = None
        if self.with_cls_token:
            cls_index = tokens.shape[1] // 2
            tokens = insert_middle(tokens, self.cls_token.expand(tokens.shape[0], -1, -1))  # (batch, L, C)
        return self.pos_drop(tokens + pos_embed), grid, cls_index

    def forward(self, x):
        """Images (batch, 3, H, W) -> tuple of outputs, one per out index (see ``out_type``)."""
        hidden, grid, cls_index = self.embed(x)
        rotation = self.rope.rotation(grid, cls_index) if self.rope is not None else None
        residual = None
        streams = {}
        for i, block in enumerate(self.layers):
            if rotation is not None:
                hidden = self.rope.rotate(hidden, *rotation)
                if self.rope_residual and residual is not None:
                    residual = self.rope.rotate(residual, *rotation)
            if self.with_cp and hidden.requires_grad:
                hidden, residual = cp.checkpoint(block, hidden, residual, use_reentrant=False)
            else:
                hidden, residual = block(hidden, residual)
            if i in self.out_indices:
                streams[i] = residual + hidden  # the residual stream after block i
        return tuple(self._output(streams[index], grid, cls_index, k) for k, index in enumerate(self.out_indices))

    def _output(self, stream, grid, cls_index, k):
        """The residual stream after a block (batch, L, C) -> the k-th output."""
        if self.out_type == 'cls_token':
            return self.norm_f(stream)[:, cls_index]  # (batch, C)
        if cls_index is not None:
            stream = remove_index(stream, cls_index)  # (batch, Hp * Wp, C)
        stream = self.out_norms[k](stream)
        featmap = stream.transpose(1, 2).unflatten(2, grid)  # (batch, C, Hp, Wp)
        return self.pyramid[k](featmap)

    def _freeze_stages(self):
        if self.frozen_stages <= 0:
            return
        frozen = [self.patch_embed, *self.layers[:self.frozen_stages]]
        if self.frozen_stages >= self.num_layers and self.out_type == 'cls_token':
            frozen.append(self.norm_f)
        self.freeze(frozen)
        for param in (self.pos_embed, self.cls_token):
            if param is not None:
                param.requires_grad = False

    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """(layer depth, number of depths) of a parameter, for layer-wise lr decay: embeddings 0, block i -> i + 1,
        everything else (final norm, outputs, pyramid, neck/head) the last depth."""
        num_depths = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num_depths - 1, num_depths
        name = param_name[len(prefix):]
        if name in ('cls_token', 'pos_embed') or name.startswith('patch_embed.'):
            return 0, num_depths
        if name.startswith('layers.'):
            return int(name.split('.')[1]) + 1, num_depths
        return num_depths - 1, num_depths


# official key -> mmpretrain classifier key (``backbone.`` / ``head.fc.``); the first matching pattern wins
OFFICIAL_KEY_MAP = (
    (r'patch_embed\.proj\.(weight|bias)', r'backbone.patch_embed.\1'),
    (r'(cls_token|pos_embed|norm_f\.weight)', r'backbone.\1'),
    (r'layers\.(\d+)\.norm\.weight', r'backbone.layers.\1.norm.weight'),
    (r'layers\.(\d+)\.mixer\.(in_proj|out_proj)\.weight', r'backbone.layers.\1.mixer.\2.weight'),
    (r'layers\.(\d+)\.mixer\.(conv1d|x_proj|dt_proj)\.(weight|bias)', r'backbone.layers.\1.mixer.scans.0.\2.\3'),
    (r'layers\.(\d+)\.mixer\.(conv1d|x_proj|dt_proj)_b\.(weight|bias)', r'backbone.layers.\1.mixer.scans.1.\2.\3'),
    (r'layers\.(\d+)\.mixer\.(A_log|D)', r'backbone.layers.\1.mixer.scans.0.\2'),
    (r'layers\.(\d+)\.mixer\.A_b_log', r'backbone.layers.\1.mixer.scans.1.A_log'),
    (r'layers\.(\d+)\.mixer\.D_b', r'backbone.layers.\1.mixer.scans.1.D'),
    (r'head\.(weight|bias)', r'head.fc.\1'),
)
# official buffers recomputed from the input grid here
DERIVED_KEYS = re.compile(r'rope\.freqs_(cos|sin)')


def convert_vim(official_state_dict):
    """Official hustvl/Vim state dict (``ckpt['model']``) -> mmpretrain ImageClassifier keys.

    Raises a ValueError listing every key that has no mapping (a different model, a half-converted file).
    """
    converted, unknown = {}, []
    for key, value in official_state_dict.items():
        if DERIVED_KEYS.fullmatch(key):
            continue
        for pattern, replacement in OFFICIAL_KEY_MAP:
            match = re.fullmatch(pattern, key)
            if match:
                converted[match.expand(replacement)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f'{len(unknown)} keys of the official Vim checkpoint have no mmssm name: {sorted(unknown)}')
    return converted
