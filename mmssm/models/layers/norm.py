"""Channel-first normalisation for NCHW feature maps."""
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (batch, C, H, W) map; the same parameters as ``nn.LayerNorm(C)``.

    Normalises the channels-last view and returns channels-last memory (NCHW shaped), like ``Linear2d``.
    """

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != self.normalized_shape[0]:
            raise ValueError(f'LayerNorm2d({self.normalized_shape[0]}) expects (batch, '
                             f'{self.normalized_shape[0]}, H, W), got {tuple(x.shape)}')
        x = x.permute(0, 2, 3, 1)  # (batch, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (batch, C, H, W)
