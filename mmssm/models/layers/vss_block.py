"""The VSS block: pre-norm SS2D and (optionally) MLP residual branches on NCHW maps."""
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torchvision.ops import StochasticDepth

from .linear2d import Linear2d
from .norm import LayerNorm2d
from .ss2d import SS2D


class MultiScaleDWConv(nn.Module):
    """x + the sum of depthwise convolutions (no bias) of the given odd kernel sizes, 'same' padding (MSVM-UNet)."""

    def __init__(self, channels, kernel_sizes):
        super().__init__()
        self.dw_convs = nn.ModuleList(nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels, bias=False)
                                      for k in kernel_sizes)

    def forward(self, x):
        return x + sum(conv(x) for conv in self.dw_convs)


class Mlp2d(nn.Module):
    """Per-pixel MLP: (batch, C, H, W) -> Linear C -> hidden -> GELU (-> multi-scale depthwise convs when
    ``kernel_sizes``, MSVM-UNet's MS-MLP) -> Linear hidden -> C."""

    def __init__(self, embed_dims, hidden_dims, kernel_sizes=()):
        super().__init__()
        self.fc1 = Linear2d(embed_dims, hidden_dims)
        self.multiscale_conv = MultiScaleDWConv(hidden_dims, kernel_sizes) if kernel_sizes else nn.Identity()
        self.fc2 = Linear2d(hidden_dims, embed_dims)

    def forward(self, x):
        return self.fc2(self.multiscale_conv(F.gelu(self.fc1(x))))


class VSSBlock(nn.Module):
    """x + DropPath(SS2D(LN(x))), then x + DropPath(MLP(LN(x))) when mlp_ratio > 0.

    Args:
        embed_dims: channels C of the (batch, C, H, W) input.
        d_state, ssm_ratio, dt_rank, conv_bias, gated: passed to :class:`SS2D`.
        mlp_ratio: MLP hidden width / C; 0 removes the MLP branch (VMamba v0).
        mlp_kernel_sizes: depthwise kernel sizes inside the MLP (MSVM-UNet's multi-scale MLP); () for none.
        drop_path: stochastic-depth probability of both branches.
        with_cp: recompute the block in the backward pass (gradient checkpointing) to save memory.
    """

    def __init__(self, embed_dims, d_state=1, ssm_ratio=2.0, dt_rank='auto', conv_bias=False, gated=False,
                 mlp_ratio=4.0, mlp_kernel_sizes=(), drop_path=0.0, with_cp=False):
        super().__init__()
        self.with_cp = with_cp
        self.norm1 = LayerNorm2d(embed_dims, feeds_projection=True)
        self.ss2d = SS2D(embed_dims, d_state=d_state, ssm_ratio=ssm_ratio, dt_rank=dt_rank, conv_bias=conv_bias,
                         gated=gated)
        self.drop_path = StochasticDepth(drop_path, mode='row')
        if mlp_ratio > 0:
            self.norm2 = LayerNorm2d(embed_dims, feeds_projection=True)
            self.mlp = Mlp2d(embed_dims, int(embed_dims * mlp_ratio), mlp_kernel_sizes)
        else:
            self.norm2 = self.mlp = None

    def _forward(self, x):
        x = x + self.drop_path(self.ss2d(self.norm1(x)))
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x

    def forward(self, x):
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)
