"""VMamba stems (patch embed) and stage-to-stage downsampling on NCHW maps, with the official variant names.

Patch embed ``v1``: Conv4x4 s4 -> LN.  ``v2``: Conv3x3 s2 (C/2) -> LN -> GELU -> Conv3x3 s2 (C) -> LN.
Downsample ``v1``: Swin PatchMerging (2x2 neighbours concatenated -> LN(4C) -> Linear 4C -> C_out).
``v2``: Conv2x2 s2 -> LN.  ``v3``: Conv3x3 s2 p1 -> LN.
Upsample (U-Net decoders): patch expanding, the inverse of patch merging (Linear C -> s*C, s x s pixel shuffle, LN).
"""
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from .linear2d import Linear2d
from .norm import LayerNorm2d


class PatchEmbedV1(nn.Module):
    """(batch, in_channels, H, W) -> (batch, embed_dims, H/4, W/4) with one 4x4 stride-4 conv and a LayerNorm."""

    def __init__(self, in_channels, embed_dims):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, embed_dims, kernel_size=4, stride=4)
        self.norm1 = LayerNorm2d(embed_dims)

    def forward(self, x):
        return self.norm1(self.conv1(x))


class PatchEmbedV2(nn.Module):
    """(batch, in_channels, H, W) -> (batch, embed_dims, H/4, W/4) with two 3x3 stride-2 convs."""

    def __init__(self, in_channels, embed_dims):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, embed_dims // 2, kernel_size=3, stride=2, padding=1)
        self.norm1 = LayerNorm2d(embed_dims // 2)
        self.conv2 = nn.Conv2d(embed_dims // 2, embed_dims, kernel_size=3, stride=2, padding=1)
        self.norm2 = LayerNorm2d(embed_dims)

    def forward(self, x):
        x = F.gelu(self.norm1(self.conv1(x)))
        return self.norm2(self.conv2(x))


class PatchMerging2d(nn.Module):
    """Swin patch merging: (batch, C, H, W) -> (batch, out_channels, ceil(H/2), ceil(W/2)); odd sizes are padded."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.norm = LayerNorm2d(4 * in_channels, feeds_projection=True)
        self.reduction = Linear2d(4 * in_channels, out_channels, bias=False)

    def forward(self, x):
        height, width = x.shape[-2:]
        x = F.pad(x, (0, width % 2, 0, height % 2))  # (batch, C, even H, even W)
        # neighbours in the official order: (row 0, col 0), (row 1, col 0), (row 0, col 1), (row 1, col 1)
        x = torch.cat([x[..., 0::2, 0::2], x[..., 1::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 1::2]],
                      dim=1)  # (batch, 4C, H/2, W/2)
        return self.reduction(self.norm(x))


class PatchExpand2d(nn.Module):
    """Patch expanding (Swin-Unet, VM-UNet): (batch, C, H, W) -> (batch, C / scale, scale * H, scale * W).

    Linear C -> scale * C (no bias), whose output channels are ordered (row offset, column offset, channel) as in
    the official ``rearrange('b h w (p1 p2 c) -> b (h p1) (w p2) c')``, then LayerNorm(C / scale).
    """

    def __init__(self, in_channels, scale=2):
        super().__init__()
        if in_channels % scale:
            raise ValueError(f'PatchExpand2d: {in_channels} channels do not split into {scale} x {scale} pixels')
        self.scale = scale
        self.expand = Linear2d(in_channels, scale * in_channels, bias=False)
        self.norm = LayerNorm2d(in_channels // scale)

    def forward(self, x):
        batch, channels, height, width = x.shape
        s = self.scale
        x = self.expand(x).reshape(batch, s, s, channels // s, height, width)  # (B, p1, p2, c, H, W)
        x = x.permute(0, 3, 4, 1, 5, 2)  # (B, c, H, p1, W, p2)
        return self.norm(x.reshape(batch, channels // s, height * s, width * s))


class ConvDownsample(nn.Module):
    """(batch, C, H, W) -> (batch, out_channels, H/2, W/2): a stride-2 conv then a LayerNorm."""

    def __init__(self, in_channels, out_channels, kernel_size=3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=2, padding=(kernel_size - 1) // 2)
        self.norm = LayerNorm2d(out_channels)

    def forward(self, x):
        return self.norm(self.conv(x))


PATCH_EMBEDS = {'v1': PatchEmbedV1, 'v2': PatchEmbedV2}
DOWNSAMPLES = {
    'v1': PatchMerging2d,
    'v2': partial(ConvDownsample, kernel_size=2),
    'v3': partial(ConvDownsample, kernel_size=3),
}
