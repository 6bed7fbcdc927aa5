from .naive import layer_norm_2d_ref
from .op import layer_norm_2d, layer_norm_2d_fused, layer_norm_2d_torch

__all__ = ['layer_norm_2d', 'layer_norm_2d_fused', 'layer_norm_2d_ref', 'layer_norm_2d_torch']
