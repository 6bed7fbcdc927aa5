"""Spatial-Mamba's structure-aware SSM: one row-major scan that returns its hidden states, fused over 2-D space."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmssm.kernels import selective_scan

from .ss2d import inverse_softplus
from .state_fusion import StateFusion


class StructureAwareSSM(nn.Module):
    """Structure-aware state space mixer on a channel-last map: (B, H, W, C) -> (B, H, W, C).

    in_proj -> (x, z); x: depthwise conv + SiLU -> one row-major selective scan returning all states h (no C, no D)
    -> state fusion of h over the (H, W) grid -> y = sum_n fused_h * C + x * D -> out_norm(y) * SiLU(z) -> out_proj.

    Args:
        embed_dims: C. d_state: N. expand: d_inner = expand * C. dt_rank: low rank of dt (default ceil(C / 16)).
        conv_kernel: depthwise conv size. dilations, eval_fusion: see :class:`StateFusion`.
    """

    def __init__(self, embed_dims, d_state=1, expand=2, dt_rank=None, conv_kernel=3, dilations=(1, 3, 5),
                 eval_fusion='merged_zero_pad'):
        super().__init__()
        self.d_inner = int(expand * embed_dims)
        self.d_state = d_state
        self.dt_rank = dt_rank or math.ceil(embed_dims / 16)
        self.in_proj = nn.Linear(embed_dims, 2 * self.d_inner, bias=False)
        self.dwconv = nn.Conv2d(self.d_inner, self.d_inner, conv_kernel, padding=conv_kernel // 2,
                                groups=self.d_inner)
        x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.x_proj_weight = nn.Parameter(x_proj.weight.detach())  # (R + 2N, d_inner)
        dt_std = self.dt_rank ** -0.5
        self.dt_proj_weight = nn.Parameter(torch.empty(self.d_inner, self.dt_rank).uniform_(-dt_std, dt_std))
        log_dt = torch.empty(self.d_inner).uniform_(math.log(1e-3), math.log(0.1))  # Mamba: dt in [1e-3, 0.1]
        self.dt_proj_bias = nn.Parameter(inverse_softplus(log_dt.exp().clamp(min=1e-4)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1.0)).repeat(self.d_inner, 1))  # (d_inner, N)
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.state_fusion = StateFusion(self.d_inner, dilations, eval_fusion=eval_fusion)
        self.out_norm = nn.LayerNorm(self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, embed_dims, bias=False)

    def scan(self, x):
        """x (B, d_inner, H, W), activated -> y (B, d_inner, H*W) = sum_n fuse(h)[:, :, n] * C_n + x * D."""
        batch, channels, height, width = x.shape
        u = x.flatten(2)  # (B, d_inner, L), row-major
        x_dbl = torch.einsum('cd,bdl->bcl', self.x_proj_weight.to(u.dtype), u)  # (B, R + 2N, L)
        dts, Bs, Cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)
        dts = torch.einsum('dr,brl->bdl', self.dt_proj_weight.to(u.dtype), dts)  # (B, d_inner, L)
        states = selective_scan(u, dts, -torch.exp(self.A_log.float()), Bs, delta_bias=self.dt_proj_bias.float(),
                                delta_softplus=True, return_states=True, out_dtype=u.dtype)  # (B, d_inner, N, L)
        states = states.transpose(1, 2).reshape(batch * self.d_state, channels, height, width)  # (B*N, d_inner, H, W)
        fused = self.state_fusion(states).reshape(batch, self.d_state, channels, -1)  # (B, N, d_inner, L)
        y = torch.einsum('bndl,bnl->bdl', fused, Cs)  # (B, d_inner, L)
        return y + u * self.D.to(u.dtype)[:, None]

    def forward(self, x):
        if x.dim() != 4 or x.shape[-1] != self.in_proj.in_features:
            raise ValueError(f'expected (B, H, W, {self.in_proj.in_features}), got {tuple(x.shape)}')
        batch, height, width, _ = x.shape
        x, z = self.in_proj(x).chunk(2, dim=-1)  # (B, H, W, d_inner) each
        x = F.silu(self.dwconv(x.permute(0, 3, 1, 2)))  # (B, d_inner, H, W)
        y = self.scan(x).transpose(1, 2).reshape(batch, height, width, self.d_inner)  # (B, H, W, d_inner)
        return self.out_proj(self.out_norm(y) * F.silu(z))
