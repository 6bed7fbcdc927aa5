"""Layer-wise learning-rate decay for any model whose backbone has ``get_layer_depth(param_name, prefix)``.

Works for mmpretrain classifiers (which delegate ``get_layer_depth`` to the backbone) and for mmdet / mmseg models
(their ``backbone`` answers for every parameter name; necks and heads sit at the top depth, lr scale 1).
A parameter at depth ``i`` of ``n`` gets ``lr = base_lr * layer_decay_rate ** (n - 1 - i)``.

``paramwise_cfg`` keys:
    layer_decay_rate (float): the decay per layer, default 1.0 (no decay).
    norm_decay_mult, bias_decay_mult, flat_decay_mult (float): weight-decay multipliers for parameters of
        normalisation layers, for biases, and for every 1-D parameter (0.0 = no weight decay).
    custom_keys (dict): substring of a parameter name -> dict(lr_mult=..., decay_mult=...), longest match wins.
"""
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from mmssm.registry import OPTIM_WRAPPER_CONSTRUCTORS

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm)


def layer_depth_function(model):
    """``name -> (layer_id, num_layers)`` for ``model``: its own ``get_layer_depth`` or its backbone's."""
    if hasattr(model, 'get_layer_depth'):
        return model.get_layer_depth
    backbone = getattr(model, 'backbone', None)
    if backbone is not None and hasattr(backbone, 'get_layer_depth'):
        return lambda name: backbone.get_layer_depth(name, prefix='backbone.')
    raise NotImplementedError(f'layer-wise lr decay needs {type(model).__name__} or its backbone to define '
                              '`get_layer_depth(param_name, prefix)`')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Optimizer-wrapper constructor with layer-wise lr decay driven by the backbone's ``get_layer_depth``."""

    def _validate_cfg(self):
        super()._validate_cfg()
        if 'flat_decay_mult' in self.paramwise_cfg and self.base_wd is None:
            raise ValueError('flat_decay_mult needs optimizer.weight_decay to be set')

    def add_params(self, params, module, **kwargs):
        """Append one param group per trainable parameter of ``module`` (lr by depth, wd by kind)."""
        depth_of = layer_depth_function(module)
        decay_rate = self.paramwise_cfg.get('layer_decay_rate', 1.0)
        custom_keys = self.paramwise_cfg.get('custom_keys', {})
        keys_longest_first = sorted(sorted(custom_keys), key=len, reverse=True)
        for module_name, submodule in module.named_modules():
            is_norm = isinstance(submodule, NORM_TYPES)
            for name, param in submodule.named_parameters(recurse=False):
                if not param.requires_grad:
                    continue
                param_name = f'{module_name}.{name}' if module_name else name
                layer_id, num_layers = depth_of(param_name)
                custom = next((custom_keys[k] for k in keys_longest_first if k in param_name), {})
                group = dict(params=[param], param_name=param_name, layer_id=layer_id,
                             lr=self.base_lr * decay_rate ** (num_layers - 1 - layer_id) * custom.get('lr_mult', 1.0))
                if self.base_wd is not None:
                    group['weight_decay'] = self.base_wd * self._decay_mult(name, param, is_norm, custom)
                params.append(group)

    def _decay_mult(self, name, param, is_norm, custom):
        """Weight-decay multiplier: custom key, else norm, else bias, else 1-D, else 1."""
        cfg = self.paramwise_cfg
        if 'decay_mult' in custom:
            return custom['decay_mult']
        if is_norm and 'norm_decay_mult' in cfg:
            return cfg['norm_decay_mult']
        if name == 'bias' and 'bias_decay_mult' in cfg:
            return cfg['bias_decay_mult']
        if param.ndim == 1 and 'flat_decay_mult' in cfg:
            return cfg['flat_decay_mult']
        return 1.0
