"""Reference channel-first LayerNorm: the definition of correct for the Triton kernels (float64-capable)."""
import torch.nn.functional as F


def layer_norm_2d_ref(x, weight, bias, eps=1e-5, out_dtype=None):
    """Normalise the C channels of every pixel of x (batch, C, H, W); math in x's dtype promoted to at least fp32."""
    compute = x.dtype if x.dtype == weight.dtype else weight.dtype
    pixels = x.permute(0, 2, 3, 1).to(compute)  # (batch, H, W, C)
    y = F.layer_norm(pixels, pixels.shape[-1:], weight.to(compute), bias.to(compute), eps)
    return y.permute(0, 3, 1, 2).to(out_dtype or x.dtype)  # (batch, C, H, W)
