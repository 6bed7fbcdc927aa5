"""Channel-first normalisation for NCHW feature maps."""
import torch
import torch.nn as nn

from mmssm.kernels.layer_norm import layer_norm_2d, layer_norm_2d_torch

from .autocast import autocast_dtype


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (batch, C, H, W) map; the same parameters as ``nn.LayerNorm(C)``.

    Returns channels-last memory (NCHW shaped), the layout ``Linear2d`` multiplies without copies: on CUDA the
    ``mmssm.kernels.layer_norm_2d`` kernel reads NCHW or channels-last input and writes that in one pass; on CPU
    ``F.layer_norm`` runs on the channels-last view.
    Under autocast the output is fp32 like ``nn.LayerNorm``'s, unless ``feeds_projection``: when the output only
    feeds a projection, which would cast it to the autocast dtype anyway, it is written in that dtype directly
    (the same numbers, half the bytes).
    """

    def __init__(self, normalized_shape, eps=1e-5, feeds_projection=False, **kwargs):
        super().__init__(normalized_shape, eps=eps, **kwargs)
        self.feeds_projection = feeds_projection

    def forward(self, x):
        channels = self.normalized_shape[0]
        if x.dim() != 4 or x.shape[1] != channels:
            raise ValueError(f'LayerNorm2d({channels}) expects (batch, {channels}, H, W), got {tuple(x.shape)}')
        out_dtype = autocast_dtype(x)
        if out_dtype is not None and not self.feeds_projection:
            out_dtype = torch.float32
        if self.weight is None or self.bias is None:  # the kernels take affine LayerNorms only
            return layer_norm_2d_torch(x, self.weight, self.bias, self.eps, out_dtype or x.dtype)
        return layer_norm_2d(x, self.weight, self.bias, self.eps, out_dtype)
