"""A Linear layer applied to every pixel of an NCHW map (a 1x1 convolution holding Linear-shaped weights)."""
import torch.nn as nn
import torch.nn.functional as F


class Linear2d(nn.Linear):
    """(batch, in_features, H, W) -> (batch, out_features, H, W); weight (out_features, in_features) like nn.Linear.

    Being an ``nn.Linear``, it is initialised and weight-decayed like one, and its checkpoints are Linear-shaped.
    """

    def forward(self, x):
        return F.conv2d(x, self.weight[:, :, None, None], self.bias)  # weight as (out, in, 1, 1)
