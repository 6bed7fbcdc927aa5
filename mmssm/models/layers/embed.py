"""VMamba stems (patch embed) and stage-to-stage downsampling on NCHW maps, with the official variant names.

Patch embed ``v1``: Conv4x4 s4 -> LN (``v1-p2``: Conv2x2 s2 -> LN, Swin-UMamba's after its stem).
``v2``: Conv3x3 s2 (C/2) -> LN -> GELU -> Conv3x3 s2 (C) -> LN.
Downsample ``v1``: Swin PatchMerging (2x2 neighbours concatenated -> LN(4C) -> Linear 4C -> C_out).
``v2``: Conv2x2 s2 -> LN.  ``v3``: Conv3x3 s2 p1 -> LN.
Upsample (U-Net decoders): patch expanding, the inverse of patch merging (Linear C -> s*C, s x s pixel shuffle, LN),
and MSVM-UNet's large-kernel variant (1x1 conv + BN + ReLU + depthwise 3x3 conv before the shuffle).
"""
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from .linear2d import Linear2d
from .norm import LayerNorm2d


class PatchEmbedV1(nn.Module):
    """(batch, in_channels, H, W) -> (batch, embed_dims, H/p, W/p) with one p x p stride-p conv and a LayerNorm."""

    def __init__(self, in_channels, embed_dims, patch_size=4):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, embed_dims, kernel_size=patch_size, stride=patch_size)
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


def patch_shuffle(x, scale):
    """(batch, scale**2 * c, H, W) -> (batch, c, scale * H, scale * W), the channels ordered (row offset, column
    offset, channel) as the official ``rearrange('b h w (p1 p2 c) -> b (h p1) (w p2) c')`` (not pixel_shuffle's)."""
    batch, channels, height, width = x.shape
    x = x.reshape(batch, scale, scale, channels // scale ** 2, height, width)  # (B, p1, p2, c, H, W)
    x = x.permute(0, 3, 4, 1, 5, 2)  # (B, c, H, p1, W, p2)
    return x.reshape(batch, channels // scale ** 2, height * scale, width * scale)


class PatchExpand2d(nn.Module):
    """Patch expanding (Swin-Unet, VM-UNet): (batch, C, H, W) -> (batch, out, scale * H, scale * W).

    Linear C -> scale**2 * out (no bias), :func:`patch_shuffle`, LayerNorm(out); out is C / scale unless given
    (Swin-UMamba's final x4 expand keeps C).
    """

    def __init__(self, in_channels, scale=2, out_channels=None):
        super().__init__()
        if out_channels is None and in_channels % scale:
            raise ValueError(f'PatchExpand2d: {in_channels} channels do not split into {scale} x {scale} pixels')
        out_channels = out_channels or in_channels // scale
        self.scale = scale
        self.expand = Linear2d(in_channels, scale ** 2 * out_channels, bias=False)
        self.norm = LayerNorm2d(out_channels)

    def forward(self, x):
        return self.norm(patch_shuffle(self.expand(x), self.scale))


class LargeKernelPatchExpand(nn.Module):
    """MSVM-UNet's (final) large-kernel patch expanding: (batch, C, H, W) -> (batch, out, scale * H, scale * W).

    1x1 conv C -> scale**2 * out + BN + ReLU + depthwise 3x3 conv (both convs with bias), :func:`patch_shuffle`,
    LayerNorm(out). The decoder's LKPE is scale 2 with out = C / 2, the final FLKPE scale 4 with out = C.
    """

    def __init__(self, in_channels, out_channels, scale):
        super().__init__()
        expanded = scale ** 2 * out_channels
        self.scale = scale
        self.expand = nn.Sequential(nn.Conv2d(in_channels, expanded, 1), nn.BatchNorm2d(expanded), nn.ReLU(),
                                    nn.Conv2d(expanded, expanded, 3, padding=1, groups=expanded))
        self.norm = LayerNorm2d(out_channels)

    def forward(self, x):
        return self.norm(patch_shuffle(self.expand(x), self.scale))


class ConvDownsample(nn.Module):
    """(batch, C, H, W) -> (batch, out_channels, H/2, W/2): a stride-2 conv then a LayerNorm."""

    def __init__(self, in_channels, out_channels, kernel_size=3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=2, padding=(kernel_size - 1) // 2)
        self.norm = LayerNorm2d(out_channels)

    def forward(self, x):
        return self.norm(self.conv(x))


PATCH_EMBEDS = {'v1': PatchEmbedV1, 'v1-p2': partial(PatchEmbedV1, patch_size=2), 'v2': PatchEmbedV2}
DOWNSAMPLES = {
    'v1': PatchMerging2d,
    'v2': partial(ConvDownsample, kernel_size=2),
    'v3': partial(ConvDownsample, kernel_size=3),
}
