from .naive import layer_norm_2d_ref
from .op import layer_norm_2d, layer_norm_2d_fused

__all__ = ['layer_norm_2d', 'layer_norm_2d_fused', 'layer_norm_2d_ref']
