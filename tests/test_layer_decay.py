import pytest
import torch
from torch import nn

from mmssm.engine import LayerDecayOptimWrapperConstructor
from mmssm.registry import OPTIM_WRAPPER_CONSTRUCTORS


class ToyBackbone(nn.Module):
    """embed (depth 0), two blocks (depths 1, 2), out norm (top depth 3 of 4)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(2, 4)
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])
        self.norm = nn.LayerNorm(4)

    def get_layer_depth(self, param_name, prefix=''):
        num_layers = 4
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        if name.startswith('embed'):
            return 0, num_layers
        if name.startswith('blocks'):
            return int(name.split('.')[1]) + 1, num_layers
        return num_layers - 1, num_layers


class ToyDetector(nn.Module):
    """An mmdet/mmseg-like model: a backbone plus a head without get_layer_depth of its own."""

    def __init__(self):
        super().__init__()
        self.backbone = ToyBackbone()
        self.head = nn.Linear(4, 1)


def build(model, **paramwise_cfg):
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='mmssm.LayerDecayOptimWrapperConstructor',  # resolves whatever the default scope is
        optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05)),
        paramwise_cfg=paramwise_cfg))
    assert isinstance(constructor, LayerDecayOptimWrapperConstructor)
    groups = constructor(model).optimizer.param_groups
    return {group['param_name']: group for group in groups}


def test_lr_decays_with_depth_and_head_keeps_base_lr():
    groups = build(ToyDetector(), layer_decay_rate=0.5)
    assert groups['backbone.embed.weight']['lr'] == pytest.approx(0.5 ** 3)
    assert groups['backbone.blocks.0.weight']['lr'] == pytest.approx(0.5 ** 2)
    assert groups['backbone.blocks.1.bias']['lr'] == pytest.approx(0.5)
    assert groups['backbone.norm.weight']['lr'] == pytest.approx(1.0)
    assert groups['head.weight']['lr'] == pytest.approx(1.0)
    assert all(g['weight_decay'] == pytest.approx(0.05) for g in groups.values())


def test_no_weight_decay_on_norms_and_biases_when_asked():
    groups = build(ToyDetector(), layer_decay_rate=0.9, norm_decay_mult=0.0, bias_decay_mult=0.0,
                   custom_keys={'embed': dict(lr_mult=2.0, decay_mult=0.5)})
    assert groups['backbone.norm.weight']['weight_decay'] == 0.0
    assert groups['backbone.blocks.0.bias']['weight_decay'] == 0.0
    assert groups['backbone.blocks.0.weight']['weight_decay'] == pytest.approx(0.05)
    assert groups['backbone.embed.weight']['weight_decay'] == pytest.approx(0.025)
    assert groups['backbone.embed.weight']['lr'] == pytest.approx(2.0 * 0.9 ** 3)


def test_frozen_parameters_are_left_out():
    model = ToyDetector()
    model.backbone.embed.requires_grad_(False)
    groups = build(model, layer_decay_rate=0.9)
    assert not any(name.startswith('backbone.embed') for name in groups)
    assert sum(len(g['params']) for g in groups.values()) == sum(p.requires_grad for p in model.parameters())


def test_model_without_layer_depth_is_a_clear_error():
    with pytest.raises(NotImplementedError, match='get_layer_depth'):
        build(nn.Sequential(nn.Linear(2, 2)), layer_decay_rate=0.9)


def test_scoped_type_from_a_downstream_config():
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as ROOT
    constructor = ROOT.build(dict(
        type='mmssm.LayerDecayOptimWrapperConstructor',
        optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1)),
        paramwise_cfg=dict(layer_decay_rate=0.5)))
    groups = constructor(ToyDetector()).optimizer.param_groups
    assert min(g['lr'] for g in groups) == pytest.approx(0.1 * 0.5 ** 3)
    assert isinstance(groups[0]['params'][0], torch.nn.Parameter)


def test_vmamba_backbone_inside_a_dense_model():
    from mmssm.models.backbones.vmamba import VMamba

    class Segmentor(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = VMamba(dict(embed_dims=8, depths=(1, 2)), out_indices=(0, 1))
            self.decode_head = nn.Conv2d(16, 2, 1)

    groups = build(Segmentor(), layer_decay_rate=0.5, norm_decay_mult=0.0)
    num_layers = 5  # patch embed, 3 blocks, top
    assert groups['backbone.patch_embed.conv1.weight']['lr'] == pytest.approx(0.5 ** (num_layers - 1))
    assert groups['backbone.stages.1.blocks.1.ss2d.A_logs']['lr'] == pytest.approx(0.5)
    assert groups['backbone.norm1.weight']['lr'] == groups['decode_head.weight']['lr'] == pytest.approx(1.0)
    assert groups['backbone.stages.0.blocks.0.ss2d.out_norm.weight']['weight_decay'] == 0.0
    assert groups['backbone.stages.0.blocks.0.ss2d.in_proj.weight']['weight_decay'] == pytest.approx(0.05)
