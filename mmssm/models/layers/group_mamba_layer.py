"""GroupMamba's Modulated Group Mamba layer: four single-route SS2D groups modulated by channel affinity."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmssm.kernels import ROUTES

from .ss2d import SS2D


class ChannelAffinity(nn.Module):
    """Channel Affinity Modulation weights: (B, H, W, C) -> (B, C) = sigmoid(fc2(relu(fc1(mean over tokens))))."""

    def __init__(self, embed_dims, reduction=16):
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, embed_dims // reduction)
        self.fc2 = nn.Linear(embed_dims // reduction, embed_dims)

    def forward(self, x):
        return torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(1, 2))))))


class ModulatedGroupMamba(nn.Module):
    """Modulated Group Mamba layer on a channel-last map: (B, H, W, C) -> (B, H, W, C).

    x = LN(x); the channels split into one group per route, each scanned by its own single-route SS2D (d_state 1,
    ssm_ratio 1, gated, conv bias); y = concat(groups) * skip_scale * x * CAM(x); out = proj(LN(y)) with the SAME
    LayerNorm as the input.

    Args:
        embed_dims: C, divisible by the number of routes.
        routes: one route per group (default: row-major, column-major and their reverses).
        reduction: channel reduction of the affinity MLP.
        d_state, ssm_ratio: of each group's SS2D.
    """

    def __init__(self, embed_dims, routes=ROUTES, reduction=16, d_state=1, ssm_ratio=1.0):
        super().__init__()
        if embed_dims % len(routes):
            raise ValueError(f'embed_dims {embed_dims} must split evenly into {len(routes)} route groups')
        group_dims = embed_dims // len(routes)
        self.norm = nn.LayerNorm(embed_dims)
        self.affinity = ChannelAffinity(embed_dims, reduction)
        self.groups = nn.ModuleList(
            SS2D(group_dims, d_state=d_state, ssm_ratio=ssm_ratio, conv_bias=True, gated=True, routes=(route,))
            for route in routes)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.skip_scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        if x.dim() != 4 or x.shape[-1] != self.proj.in_features:
            raise ValueError(f'expected (B, H, W, {self.proj.in_features}), got {tuple(x.shape)}')
        x = self.norm(x)
        groups = x.permute(0, 3, 1, 2).chunk(len(self.groups), dim=1)  # G x (B, C/G, H, W)
        y = torch.cat([ss2d(g) for ss2d, g in zip(self.groups, groups)], dim=1).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = y * self.skip_scale * x * self.affinity(x)[:, None, None, :]
        return self.proj(self.norm(y))
