"""Spatial-Mamba's structure-aware state fusion: dilated depthwise convolutions over the scan's hidden states."""
import torch
import torch.nn as nn
import torch.nn.functional as F

# How the eval mode runs the fusion:
#   'separate'              the training function: one replicate-padded conv per dilation.
#   'merged_replicate_pad'  one merged kernel on a replicate-padded input: the training function, one conv.
#   'merged_zero_pad'       one merged kernel with zero padding: the official eval path. Equal to the training
#                           function inside, different within max(dilations) * (kernel_size // 2) pixels of a border.
EVAL_FUSIONS = ('separate', 'merged_replicate_pad', 'merged_zero_pad')


class StateFusion(nn.Module):
    """h (B, C, H, W) -> sum_i alpha_i * depthwise_conv(h, kernel_i, dilation_i), each on a replicate-padded h.

    Args:
        channels: C. dilations: one kernel per dilation. kernel_size: odd size of every kernel.
        eval_fusion: one of ``EVAL_FUSIONS``, how the eval mode computes the fusion.
    """

    def __init__(self, channels, dilations=(1, 3, 5), kernel_size=3, eval_fusion='merged_zero_pad'):
        super().__init__()
        if eval_fusion not in EVAL_FUSIONS:
            raise ValueError(f'eval_fusion must be one of {EVAL_FUSIONS}, got {eval_fusion!r}')
        if kernel_size % 2 != 1:
            raise ValueError(f'kernel_size must be odd, got {kernel_size}')
        self.channels = channels
        self.dilations = tuple(dilations)
        self.eval_fusion = eval_fusion
        self.weight = nn.Parameter(torch.ones(len(self.dilations), channels, 1, kernel_size, kernel_size))
        self.alpha = nn.Parameter(torch.ones(len(self.dilations)))

    @property
    def merged_radius(self):
        """Half-width of the merged kernel: max(dilations) * (kernel_size // 2)."""
        return max(self.dilations) * (self.weight.shape[-1] // 2)

    def merged_kernel(self):
        """The fusion as one depthwise kernel (C, 1, 2r+1, 2r+1): each alpha_i * kernel_i spread out by its dilation."""
        radius, half = self.merged_radius, self.weight.shape[-1] // 2
        merged = self.weight.new_zeros(self.channels, 1, 2 * radius + 1, 2 * radius + 1)
        for kernel, alpha, dilation in zip(self.weight, self.alpha, self.dilations):
            taps = slice(radius - half * dilation, radius + half * dilation + 1, dilation)
            merged[:, :, taps, taps] += alpha * kernel
        return merged

    def forward_separate(self, h):
        """The training function: one replicate-padded dilated conv per kernel, weighted by alpha."""
        half = self.weight.shape[-1] // 2
        out = 0
        for kernel, alpha, dilation in zip(self.weight, self.alpha, self.dilations):
            padded = F.pad(h, (half * dilation,) * 4, mode='replicate')
            out = out + alpha * F.conv2d(padded, kernel, dilation=dilation, groups=self.channels)
        return out

    def forward_merged(self, h, padding_mode):
        """One conv with :meth:`merged_kernel`; ``padding_mode`` is 'replicate' or 'zeros'."""
        radius = self.merged_radius
        kernel = self.merged_kernel().to(h.dtype)
        if padding_mode == 'replicate':
            return F.conv2d(F.pad(h, (radius,) * 4, mode='replicate'), kernel, groups=self.channels)
        return F.conv2d(h, kernel, padding=radius, groups=self.channels)

    def forward(self, h):
        if h.dim() != 4 or h.shape[1] != self.channels:
            raise ValueError(f'expected states (B, {self.channels}, H, W), got {tuple(h.shape)}')
        if self.training or self.eval_fusion == 'separate':
            return self.forward_separate(h)
        return self.forward_merged(h, 'replicate' if self.eval_fusion == 'merged_replicate_pad' else 'zeros')

    def extra_repr(self):
        return f'channels={self.channels}, dilations={self.dilations}, eval_fusion={self.eval_fusion!r}'
