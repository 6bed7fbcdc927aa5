"""Mamba mixer over a token sequence, bidirectional by default (Vim's bimamba "v2").

One in_proj / out_proj shared by the directions; every direction owns a causal depthwise conv1d, x_proj, dt_proj,
A_log and D, and runs :func:`mmssm.kernels.selective_scan` with B/C per sequence and the fused ``y * silu(z)`` gate.
The backward direction reads the sequence (and the gate z) reversed along L and its output is reversed back; the
mixer output is ``out_proj(mean over directions)``, i.e. ``(y_forward + flip(y_backward)) / 2`` for two directions.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from mmssm.kernels import selective_scan

from .rms_norm import at_least_float32


class DirectionalScan(nn.Module):
    """One scan direction: causal depthwise conv1d + SiLU, input-dependent (dt, B, C), selective scan, gate.

    Args:
        d_inner: channels of the scanned sequence.
        d_state: SSM state size N.
        dt_rank: rank R of the dt projection.
        d_conv: causal conv kernel size.
        dt_min, dt_max, dt_init_floor: softplus(dt_proj.bias) is drawn log-uniformly in [dt_min, dt_max], floored.
    """

    def __init__(self, d_inner: int, d_state: int, dt_rank: int, d_conv: int = 4, dt_min: float = 1e-3,
                 dt_max: float = 0.1, dt_init_floor: float = 1e-4):
        super().__init__()
        self.d_state, self.dt_rank = d_state, dt_rank
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(d_inner, d_state))
        self.D = nn.Parameter(torch.empty(d_inner))
        self.reset_ssm_parameters(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min, dt_max, dt_init_floor):
        """Mamba's init: dt_proj weight U(+-R^-0.5), dt bias = softplus^-1(dt), A = 1..N (S4D real), D = 1."""
        bound = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        d_inner = self.D.shape[0]
        log_dt = torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = log_dt.exp().clamp(min=dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log.copy_(torch.arange(1, self.d_state + 1, dtype=torch.float32).log().expand(d_inner, -1))
        self.D.fill_(1.0)

    def forward(self, x, z):
        """x, z: (batch, d_inner, L) -> y * silu(z): (batch, d_inner, L)."""
        length = x.shape[-1]
        x = F.silu(self.conv1d(x)[..., :length])  # causal: keep the first L outputs of the left-padded conv
        x_dbl = self.x_proj(x.transpose(1, 2))  # (batch, L, R + 2N)
        dt, B, C = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # (batch, d_inner, L); bias added in the scan
        A = -torch.exp(at_least_float32(self.A_log))  # (d_inner, N)
        return selective_scan(x, delta, A, B.transpose(1, 2), C.transpose(1, 2),  # B, C: (batch, N, L)
                              D=at_least_float32(self.D), z=z, delta_bias=at_least_float32(self.dt_proj.bias),
                              delta_softplus=True)


class MambaMixer(nn.Module):
    """Mamba mixer on (batch, L, C) tokens; ``bidirectional=True`` is Vim's bimamba v2 (divide-out by 2).

    Args:
        embed_dims: token channels C.
        d_state: SSM state size N.
        d_conv: causal conv kernel size.
        expand: d_inner = expand * C.
        dt_rank: rank of the dt projection; 'auto' is ceil(C / 16).
        bidirectional: add a backward direction with its own conv/x_proj/dt_proj/A/D.
        num_layers: depth of the network; out_proj is re-scaled by 1/sqrt(num_layers) at init (GPT-2 style).
    """

    def __init__(self, embed_dims: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank='auto',
                 bidirectional: bool = True, num_layers: int = 1):
        super().__init__()
        d_inner = expand * embed_dims
        dt_rank = math.ceil(embed_dims / 16) if dt_rank == 'auto' else dt_rank
        self.in_proj = nn.Linear(embed_dims, 2 * d_inner, bias=False)
        num_directions = 2 if bidirectional else 1
        self.scans = nn.ModuleList(DirectionalScan(d_inner, d_state, dt_rank, d_conv) for _ in range(num_directions))
        self.out_proj = nn.Linear(d_inner, embed_dims, bias=False)
        with torch.no_grad():
            self.out_proj.weight.div_(math.sqrt(num_layers))

    def forward(self, hidden):
        """hidden: (batch, L, C) -> (batch, L, C)."""
        if hidden.dim() != 3 or hidden.shape[-1] != self.in_proj.in_features:
            raise ValueError(f'MambaMixer expects (batch, L, {self.in_proj.in_features}) tokens, '
                             f'got {tuple(hidden.shape)}')
        xz = self.in_proj(hidden).transpose(1, 2)  # (batch, 2 * d_inner, L)
        x, z = xz.chunk(2, dim=1)  # each (batch, d_inner, L)
        y = self.scans[0](x, z)
        if len(self.scans) == 2:
            y_backward = self.scans[1](x.flip(-1), z.flip(-1)).flip(-1)  # scanned from the last token back
            y = (y + y_backward) / 2
        return self.out_proj(y.transpose(1, 2))  # (batch, L, C)
