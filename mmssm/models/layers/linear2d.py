"""A Linear layer applied to every pixel of an NCHW map (a 1x1 convolution holding Linear-shaped weights)."""
import torch.nn as nn
import torch.nn.functional as F


class Linear2d(nn.Linear):
    """(batch, in_features, H, W) -> (batch, out_features, H, W); weight (out_features, in_features) like nn.Linear.

    Being an ``nn.Linear``, it is initialised and weight-decayed like one, and its checkpoints are Linear-shaped.
    It runs as one GEMM over the channels-last view and returns channels-last memory (still NCHW shaped), so a
    chain of Linear2d / LayerNorm2d stays copy-free; on CPU this is about 2x faster than a 1x1 convolution.
    """

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)  # (batch, H, W, in): a free view of channels-last memory
        return F.linear(x, self.weight, self.bias).permute(0, 3, 1, 2)  # (batch, out, H, W)
