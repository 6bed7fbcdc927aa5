"""SS2D: VMamba's 2D selective-scan mixer on NCHW maps, on the shared ``mmssm.kernels.ss2d_scan`` core.

in_proj (1x1) -> [split gate z] -> depthwise conv -> SiLU -> ss2d_scan over K routes (summed back) -> out_norm
-> [* SiLU(z)] -> out_proj (1x1) -> dropout. GroupMamba's groups are SS2D instances with a single route each.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmssm.kernels import ROUTES, ss2d_scan

from .linear2d import Linear2d
from .norm import LayerNorm2d


def inverse_softplus(y):
    """x such that softplus(x) == y, for y > 0."""
    return y + torch.log(-torch.expm1(-y))


class SS2D(nn.Module):
    """2D selective scan over K routes of a (batch, C, H, W) map.

    Args:
        embed_dims: C, the block width.
        d_state: N, the SSM state size (1 for the v2 releases, 16 for v0).
        ssm_ratio: d_inner = int(ssm_ratio * C).
        dt_rank: R of the low-rank dt projection; ``'auto'`` is ceil(C / 16) of the block width C.
        d_conv: kernel size of the depthwise conv.
        conv_bias: whether the depthwise conv has a bias (v0: True, v2: False).
        gated: v0 form, in_proj makes 2*d_inner channels and the output is gated by SiLU(z); False is ``_noz``.
        routes: route names from ``mmssm.kernels.ROUTES``; K = len(routes).
        dropout: dropout after out_proj.
        dt_min, dt_max, dt_init_floor: range of the initial step sizes (official v0 init).
    """

    def __init__(self, embed_dims, d_state=1, ssm_ratio=2.0, dt_rank='auto', d_conv=3, conv_bias=False,
                 gated=False, routes=ROUTES, dropout=0.0, dt_min=1e-3, dt_max=0.1, dt_init_floor=1e-4):
        super().__init__()
        unknown = [r for r in routes if r not in ROUTES]
        if unknown or not routes:
            raise ValueError(f'SS2D routes must be a non-empty subset of {ROUTES}, got {tuple(routes)}')
        if d_state < 1 or d_conv < 1 or d_conv % 2 == 0:
            raise ValueError(f'SS2D needs d_state >= 1 and an odd d_conv, got d_state={d_state}, d_conv={d_conv}')
        self.embed_dims = embed_dims
        self.d_state = d_state
        self.d_inner = int(ssm_ratio * embed_dims)
        self.dt_rank = math.ceil(embed_dims / 16) if dt_rank == 'auto' else int(dt_rank)
        self.gated = gated
        self.routes = tuple(routes)
        num_routes = len(self.routes)

        self.in_proj = Linear2d(embed_dims, self.d_inner * (2 if gated else 1), bias=False)
        self.conv2d = nn.Conv2d(self.d_inner, self.d_inner, d_conv, padding=d_conv // 2, groups=self.d_inner,
                                bias=conv_bias)
        self.x_proj_weight = nn.Parameter(torch.empty(num_routes, self.dt_rank + 2 * d_state, self.d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(num_routes, self.d_inner, self.dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(num_routes, self.d_inner))
        self.A_logs = nn.Parameter(torch.empty(num_routes * self.d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(num_routes * self.d_inner))
        self.out_norm = LayerNorm2d(self.d_inner, feeds_projection=not gated)  # gated: y * SiLU(z) first
        self.out_proj = Linear2d(self.d_inner, embed_dims, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_ssm_parameters(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min=1e-3, dt_max=0.1, dt_init_floor=1e-4):
        """Official ``v0`` init of the scan parameters (the 1x1 projections are initialised by the model)."""
        bound = self.d_inner ** -0.5  # nn.Linear(d_inner, R + 2N) default init, one per route
        nn.init.uniform_(self.x_proj_weight, -bound, bound)
        nn.init.uniform_(self.dt_projs_weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        log_dt = torch.empty_like(self.dt_projs_bias).uniform_(math.log(dt_min), math.log(dt_max))
        self.dt_projs_bias.copy_(inverse_softplus(log_dt.exp().clamp(min=dt_init_floor)))
        states = torch.arange(1, self.d_state + 1, dtype=self.A_logs.dtype)
        self.A_logs.copy_(states.log().expand_as(self.A_logs))  # A = -(1..N) for every channel of every route
        self.Ds.fill_(1.0)
        self.A_logs._no_weight_decay = True
        self.Ds._no_weight_decay = True

    def forward(self, x):
        """(batch, C, H, W) -> (batch, C, H, W)."""
        if x.dim() != 4 or x.shape[1] != self.embed_dims:
            raise ValueError(f'SS2D({self.embed_dims}) expects (batch, {self.embed_dims}, H, W), got {tuple(x.shape)}')
        x = self.in_proj(x)  # (batch, d_inner or 2*d_inner, H, W)
        if self.gated:
            x, z = x.chunk(2, dim=1)  # 2 x (batch, d_inner, H, W)
        x = F.silu(self.conv2d(x))
        y = ss2d_scan(x, self.x_proj_weight, self.dt_projs_weight, self.dt_projs_bias, self.A_logs, self.Ds,
                      routes=self.routes)  # (batch, d_inner, H, W)
        y = self.out_norm(y)
        if self.gated:
            y = y * F.silu(z)
        return self.dropout(self.out_proj(y))
