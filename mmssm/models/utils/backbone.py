"""Pieces of the OpenMMLab backbone contract that every family shares."""
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_


class UnknownArchError(KeyError, ValueError):
    """An arch name outside a backbone's zoo (a KeyError for the zoo lookup, a ValueError for the argument)."""


def arch_from_zoo(arch, arch_zoo, name):
    """A zoo name (any case) -> a copy of its arch dict; a dict -> a copy; anything else is a clear error.

    ``name`` is the backbone's name for the messages. Checking a dict's keys is left to the backbone.
    """
    if isinstance(arch, str):
        if arch.lower() not in arch_zoo:
            raise UnknownArchError(f'unknown {name} arch {arch!r}; choose from {sorted(arch_zoo)} or pass a dict')
        return dict(arch_zoo[arch.lower()])
    if not isinstance(arch, dict):
        raise TypeError(f'{name}: arch must be a name or a dict, got {type(arch).__name__}')
    return dict(arch)


def parse_out_indices(out_indices, num_stages, name):
    """An int or sequence of stage indices (negative allowed) -> sorted tuple of indices in [0, num_stages)."""
    indices = (out_indices, ) if isinstance(out_indices, int) else tuple(out_indices)
    if not indices or any(not -num_stages <= i < num_stages for i in indices):
        raise ValueError(f'{name}: out_indices must lie in [-{num_stages}, {num_stages}), got {out_indices}')
    return tuple(sorted({i % num_stages for i in indices}))


def init_linear_and_layernorm(module):
    """The official vision-Mamba init, for ``model.apply``: trunc-normal(0.02) Linear weights with zero bias, unit
    LayerNorms."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class FrozenStagesMixin:
    """``train()`` re-applies ``_freeze_stages()`` (so frozen stages stay in eval mode with no gradients)."""

    def _freeze_stages(self):
        raise NotImplementedError

    @staticmethod
    def freeze(modules):
        for module in modules:
            module.eval()
            module.requires_grad_(False)

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        return self


def check_unet_input(x, in_channels, name, multiple=32, spatial_dims=2):
    """ValueError unless ``x`` is (batch, in_channels, H, W) (``spatial_dims`` 2) or (batch, in_channels, D, H, W)
    (3) with each spatial size a multiple of ``multiple`` (an int, or one per axis): a U-Net adds each skip to (or
    concatenates it with) the deeper map upsampled from 1/multiple of the input."""
    multiples = (multiple, ) * spatial_dims if isinstance(multiple, int) else tuple(multiple)
    if x.dim() != spatial_dims + 2 or x.shape[1] != in_channels or any(
            size % m for size, m in zip(x.shape[2:], multiples)):
        axes = ('H', 'W') if spatial_dims == 2 else ('D', 'H', 'W')
        shown = multiple if isinstance(multiple, int) else ' x '.join(map(str, multiples))
        raise ValueError(f'{name} expects (batch, {in_channels}, {", ".join(axes)}) '
                         f'{"images" if spatial_dims == 2 else "volumes"} with {", ".join(axes[:-1])} and {axes[-1]} '
                         f'multiples of {shown} (skips meet the upsampled maps), got {tuple(x.shape)}')
