"""RMSNorm (no bias, no mean subtraction), computed in at least float32 whatever the input dtype."""
import torch
from torch import nn


def at_least_float32(x):
    """float16 / bfloat16 / float32 -> float32; float64 stays float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight over the last axis; returns the input's dtype.

    Args:
        dim: size of the normalised (last) axis.
        eps: added to the mean square.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x_wide = at_least_float32(x)
        rms_inv = torch.rsqrt(x_wide.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (x_wide * rms_inv * at_least_float32(self.weight)).to(x.dtype)

    def extra_repr(self):
        return f'{self.weight.shape[0]}, eps={self.eps}'
