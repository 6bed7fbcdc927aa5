"""GroupMamba: official-checkpoint equivalence, parameter counts, backbone contract, hard distillation."""
import math
import re

import pytest
import torch
import torch.nn.functional as F

from mmssm.kernels.selective_scan import selective_scan_ref
from mmssm.kernels.testing import assert_close
from mmssm.models.backbones.group_mamba import GroupMamba, convert_official_group_mamba
from mmssm.models.layers.group_mamba_layer import ModulatedGroupMamba
from mmssm.models.utils import CheckpointMismatchError
from mmssm.testing.backbones import assert_checkpointing_keeps_gradients

TINY = dict(embed_dims=(16, 32, 48, 64), depths=(1, 2, 1, 1), mlp_ratios=(2, 2, 2, 3), stem_hidden_dims=8)
PUBLISHED_PARAMS_M = {'tiny': 23, 'small': 34, 'base': 57}  # millions, rounded, 1000 classes, without dist_head
NUM_CLASSES = 5


# ----------------------------------------------------------------------------------------------------------------
# The official model, re-computed from its state-dict layout (Amshaker/GroupMamba, classification/models).

def official_shapes(embed_dims, depths, mlp_ratios, stem_hidden_dims, num_classes):
    """Official key -> shape; BatchNorm running stats included."""
    shapes, h = {}, stem_hidden_dims

    def layer_norm(name, dims):
        shapes.update({f'{name}.weight': (dims,), f'{name}.bias': (dims,)})

    def linear(name, cin, cout, bias=True):
        shapes[f'{name}.weight'] = (cout, cin)
        if bias:
            shapes[f'{name}.bias'] = (cout,)

    def group_mamba_layer(name, dims):
        g = dims // 4
        rank = math.ceil(g / 16)
        linear(f'{name}.fc1', dims, dims // 16)
        linear(f'{name}.fc2', dims // 16, dims)
        layer_norm(f'{name}.norm', dims)
        linear(f'{name}.proj', dims, dims)
        shapes[f'{name}.skip_scale'] = (1,)
        for k in range(1, 5):
            m = f'{name}.mamba_g{k}'
            linear(f'{m}.in_proj', g, 2 * g, bias=False)
            shapes.update({f'{m}.conv2d.weight': (g, 1, 3, 3), f'{m}.conv2d.bias': (g,),
                           f'{m}.x_proj_weight': (1, rank + 2, g), f'{m}.dt_projs_weight': (1, g, rank),
                           f'{m}.dt_projs_bias': (1, g), f'{m}.A_logs': (g, 1), f'{m}.Ds': (g,)})
            layer_norm(f'{m}.out_norm', g)
            linear(f'{m}.out_proj', g, g, bias=False)

    for k, (cin, kernel) in enumerate(((3, 7), (h, 3), (h, 3))):
        shapes[f'patch_embed1.conv.{3 * k}.weight'] = (h, cin, kernel, kernel)
        for stat in ('weight', 'bias', 'running_mean', 'running_var'):
            shapes[f'patch_embed1.conv.{3 * k + 1}.{stat}'] = (h,)
        shapes[f'patch_embed1.conv.{3 * k + 1}.num_batches_tracked'] = ()
    for i, (dims, depth, ratio) in enumerate(zip(embed_dims, depths, mlp_ratios)):
        cin = h if i == 0 else embed_dims[i - 1]
        shapes.update({f'patch_embed{i + 1}.proj.weight': (dims, cin, 3, 3), f'patch_embed{i + 1}.proj.bias': (dims,)})
        layer_norm(f'patch_embed{i + 1}.norm', dims)
        hidden = int(dims * ratio)
        for j in range(depth):
            b = f'block{i + 1}.{j}'
            group_mamba_layer(f'{b}.attn', dims)
            layer_norm(f'{b}.norm2', dims)
            linear(f'{b}.mlp.fc1', dims, hidden)
            shapes.update({f'{b}.mlp.dwconv.dwconv.weight': (hidden, 1, 3, 3), f'{b}.mlp.dwconv.dwconv.bias': (hidden,)})
            linear(f'{b}.mlp.fc2', hidden, dims)
        layer_norm(f'norm{i + 1}', dims)
    dims = embed_dims[-1]
    group_mamba_layer('post_network.0.attn', dims)
    layer_norm('post_network.0.norm1', dims)
    layer_norm('post_network.0.norm2', dims)
    linear('post_network.0.mlp.fc1', dims, int(dims * mlp_ratios[-1]))
    linear('post_network.0.mlp.fc2', int(dims * mlp_ratios[-1]), dims)
    linear('head', dims, num_classes)
    linear('dist_head', dims, num_classes)
    return shapes


def random_official_state_dict(num_classes=NUM_CLASSES, **arch):
    state = {}
    for key, shape in official_shapes(**arch, num_classes=num_classes).items():
        if key.endswith('num_batches_tracked'):
            state[key] = torch.tensor(3)
        elif key.endswith('running_var'):
            state[key] = torch.rand(shape) + 0.5
        elif key.endswith(('norm.weight', 'norm1.weight', 'norm2.weight', 'skip_scale')) or \
                re.search(r'(\.1|\.4|\.7|norm\d)\.weight$', key):
            state[key] = 1 + 0.2 * torch.randn(shape)
        elif key.endswith('A_logs'):
            state[key] = 0.5 * torch.randn(shape)
        else:
            state[key] = torch.randn(shape) / math.sqrt(max(1, math.prod(shape[1:])))
    return state


# The official single-route scans (csms6s.CrossScan_k / CrossMerge_k forward), written out.
OFFICIAL_SCANS = {
    1: lambda x: x.flatten(2),
    2: lambda x: x.transpose(2, 3).flatten(2),
    3: lambda x: x.flatten(2).flip(-1),
    4: lambda x: x.transpose(2, 3).flatten(2).flip(-1),
}
OFFICIAL_MERGES = {
    1: lambda y, h, w: y,
    2: lambda y, h, w: y.unflatten(-1, (w, h)).transpose(2, 3).flatten(2),
    3: lambda y, h, w: y.flip(-1),
    4: lambda y, h, w: y.unflatten(-1, (w, h)).transpose(2, 3).flatten(2).flip(-1),
}


def official_forward(sd, images, depths):
    """Official GroupMamba.forward in eval mode: (head + dist_head) / 2."""

    def layer_norm(name, x, eps):
        return F.layer_norm(x, x.shape[-1:], sd[f'{name}.weight'], sd[f'{name}.bias'], eps=eps)

    def linear(name, x):
        return F.linear(x, sd[f'{name}.weight'], sd.get(f'{name}.bias'))

    def ss2d(m, x, route):
        batch, height, width, _ = x.shape
        x, z = linear(f'{m}.in_proj', x).chunk(2, dim=-1)
        x = x.permute(0, 3, 1, 2)
        x = F.silu(F.conv2d(x, sd[f'{m}.conv2d.weight'], sd[f'{m}.conv2d.bias'], padding=1, groups=x.shape[1]))
        xs = OFFICIAL_SCANS[route](x)[:, None]  # (B, 1, D, L)
        x_dbl = torch.einsum('bkdl,kcd->bkcl', xs, sd[f'{m}.x_proj_weight'])
        rank = sd[f'{m}.dt_projs_weight'].shape[-1]
        dts, Bs, Cs = torch.split(x_dbl, [rank, 1, 1], dim=2)
        dts = torch.einsum('bkrl,kdr->bkdl', dts, sd[f'{m}.dt_projs_weight'])
        ys = selective_scan_ref(xs.flatten(1, 2), dts.flatten(1, 2), -torch.exp(sd[f'{m}.A_logs']), Bs, Cs,
                                sd[f'{m}.Ds'], delta_bias=sd[f'{m}.dt_projs_bias'].flatten(), delta_softplus=True)
        y = OFFICIAL_MERGES[route](ys, height, width).transpose(1, 2).reshape(batch, height, width, -1)
        y = layer_norm(f'{m}.out_norm', y, 1e-5) * F.silu(z)
        return linear(f'{m}.out_proj', y)

    def group_mamba_layer(a, x):
        x = layer_norm(f'{a}.norm', x, 1e-5)
        affinity = torch.sigmoid(linear(f'{a}.fc2', F.relu(linear(f'{a}.fc1', x.mean(dim=(1, 2))))))
        y = torch.cat([ss2d(f'{a}.mamba_g{k + 1}', part, k + 1) for k, part in enumerate(x.chunk(4, dim=-1))], -1)
        y = y * sd[f'{a}.skip_scale'] * x * affinity[:, None, None, :]
        return linear(f'{a}.proj', layer_norm(f'{a}.norm', y, 1e-5))

    x = images
    for k in range(3):
        x = F.conv2d(x, sd[f'patch_embed1.conv.{3 * k}.weight'], stride=2 if k == 0 else 1, padding=3 if k == 0 else 1)
        bn = f'patch_embed1.conv.{3 * k + 1}'
        x = F.relu(F.batch_norm(x, sd[f'{bn}.running_mean'], sd[f'{bn}.running_var'], sd[f'{bn}.weight'],
                                sd[f'{bn}.bias'], eps=1e-5))
    for i, depth in enumerate(depths):
        x = F.conv2d(x, sd[f'patch_embed{i + 1}.proj.weight'], sd[f'patch_embed{i + 1}.proj.bias'], 2, 1)
        x = layer_norm(f'patch_embed{i + 1}.norm', x.permute(0, 2, 3, 1), 1e-5)
        for j in range(depth):
            b = f'block{i + 1}.{j}'
            x = x + group_mamba_layer(f'{b}.attn', x)
            hidden = linear(f'{b}.mlp.fc1', layer_norm(f'{b}.norm2', x, 1e-6)).permute(0, 3, 1, 2)
            hidden = F.conv2d(hidden, sd[f'{b}.mlp.dwconv.dwconv.weight'], sd[f'{b}.mlp.dwconv.dwconv.bias'],
                              padding=1, groups=hidden.shape[1])
            x = x + linear(f'{b}.mlp.fc2', F.gelu(hidden.permute(0, 2, 3, 1)))
        if i < len(depths) - 1:
            x = layer_norm(f'norm{i + 1}', x, 1e-6).permute(0, 3, 1, 2)
    cls = x.mean(dim=(1, 2), keepdim=True)
    cls = cls + layer_norm('post_network.0.norm1', group_mamba_layer('post_network.0.attn', cls), 1e-6)
    hidden = F.gelu(linear('post_network.0.mlp.fc1', layer_norm('post_network.0.norm2', cls, 1e-6)))
    cls = cls + linear('post_network.0.mlp.fc2', hidden)
    features = layer_norm(f'norm{len(depths)}', cls.flatten(1), 1e-6)
    return (linear('head', features) + linear('dist_head', features)) / 2


def load_converted(official, **kwargs):
    converted = convert_official_group_mamba(official)
    backbone = GroupMamba(arch=TINY, out_type='cls_token', **kwargs)
    backbone.load_state_dict({k[len('backbone.'):]: v for k, v in converted.items() if k.startswith('backbone.')})
    return backbone.eval(), {k: v for k, v in converted.items() if k.startswith('head.')}


# ----------------------------------------------------------------------------------------------------------------

def test_converted_official_checkpoint_reproduces_the_official_forward():
    official = random_official_state_dict(**TINY)
    images = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        backbone, head = load_converted(official)
        features = backbone(images)[-1]
        logits = (F.linear(features, head['head.fc.weight'], head['head.fc.bias'])
                  + F.linear(features, head['head.dist_fc.weight'], head['head.dist_fc.bias'])) / 2
        assert_close(logits, official_forward(official, images, TINY['depths']), torch.float32, scale=10)


def test_group_layer_routes_differ_and_layer_norm_is_shared():
    layer = ModulatedGroupMamba(32)
    assert [g.routes for g in layer.groups] == [('h',), ('v',), ('h_flip',), ('v_flip',)]
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in layer.children()) == 1  # used before and after the groups
    x = torch.randn(2, 5, 7, 32, requires_grad=True)
    layer(x).sum().backward()
    assert layer.skip_scale.grad.abs() > 0 and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='route groups'):
        ModulatedGroupMamba(30)


def test_converter_fails_loudly_on_foreign_keys():
    official = random_official_state_dict(**TINY)
    with pytest.raises(KeyError, match='not official GroupMamba'):
        convert_official_group_mamba({**official, 'cls_token': torch.ones(1)})


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
def test_parameter_counts_match_the_official_models(arch):
    with torch.device('meta'):
        backbone = GroupMamba(arch, out_type='cls_token')
    spec = GroupMamba.arch_zoo[arch]
    official = sum(math.prod(shape) for key, shape in official_shapes(**spec, num_classes=1000).items()
                   if 'running' not in key and 'num_batches' not in key)
    head = 1000 * (spec['embed_dims'][-1] + 1)
    ours = sum(p.numel() for p in backbone.parameters()) + 2 * head  # + head and dist_head
    assert ours == official
    assert abs((ours - head) / 1e6 - PUBLISHED_PARAMS_M[arch]) <= 0.5  # published numbers are rounded to 1M


def test_dense_outputs_and_pretrained_loading(tmp_path):
    official = random_official_state_dict(**TINY)
    path = tmp_path / 'official.pth'
    torch.save({'model': official}, path)
    backbone = GroupMamba(TINY, out_indices=(0, 1, 2, 3), init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    backbone.init_weights()
    assert not hasattr(backbone, 'class_block')
    assert torch.equal(backbone.stages[2].blocks[0].mixer.groups[3].A_logs, official['block3.0.attn.mamba_g4.A_logs'])
    outs = backbone.eval()(torch.randn(1, 3, 64, 32))
    assert [tuple(o.shape) for o in outs] == [(1, 16, 16, 8), (1, 32, 8, 4), (1, 48, 4, 2), (1, 64, 2, 1)]

    converted = tmp_path / 'mmssm.pth'  # what tools/model_converters/groupmamba2mmssm.py writes
    torch.save({'state_dict': convert_official_group_mamba(official)}, converted)
    dense = GroupMamba(TINY, out_indices=(0, 1, 2, 3),
                       init_cfg=dict(type='Pretrained', checkpoint=str(converted), prefix='backbone.'))
    dense.init_weights()
    assert torch.equal(dense.norm3.weight, official['norm4.weight'])

    torch.save({'model': {k: v for k, v in official.items() if not k.startswith('block2.1.')}}, path)
    with pytest.raises(CheckpointMismatchError, match='missing'):
        GroupMamba(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


def test_frozen_stages_checkpointing_and_layer_depth():
    backbone = GroupMamba(TINY, out_indices=(1, 3), frozen_stages=2, drop_path_rate=0.1)
    backbone.train()
    assert not backbone.patch_embed.training and not backbone.stages[1].training and backbone.stages[2].training
    assert not any(p.requires_grad for p in backbone.stages[1].parameters())
    assert not backbone.norm1.weight.requires_grad and backbone.norm2.weight.requires_grad
    assert backbone.get_layer_depth('backbone.patch_embed.proj.weight', 'backbone.') == (0, 7)
    assert backbone.get_layer_depth('backbone.stages.1.blocks.1.mixer.proj.weight', 'backbone.') == (3, 7)
    assert backbone.get_layer_depth('backbone.stages.1.downsample.proj.weight', 'backbone.') == (2, 7)
    assert backbone.get_layer_depth('backbone.norm1.weight', 'backbone.') == (3, 7)
    assert backbone.get_layer_depth('backbone.norm3.weight', 'backbone.') == (6, 7)

    assert_checkpointing_keeps_gradients(lambda with_cp: GroupMamba(TINY, with_cp=with_cp),
                                         torch.randn(1, 3, 32, 32))


def test_arch_errors():
    with torch.device('meta'):
        assert GroupMamba('t').depths == (3, 4, 9, 3)
    with pytest.raises(KeyError, match='unknown GroupMamba arch'):
        GroupMamba('huge')
    with pytest.raises(KeyError, match='custom arch'):
        GroupMamba(dict(embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1)))
    with pytest.raises(ValueError, match='out_type'):
        GroupMamba(TINY, out_type='avg')


def test_hard_distillation_loss_prediction_and_teacher_isolation():
    from mmpretrain.structures import DataSample

    from mmssm.models.classifiers import HardDistillationClassifier

    num_classes = 6
    student = dict(backbone=dict(type='mmssm.GroupMamba', arch=TINY, out_indices=(3, ), out_type='cls_token'),
                   head=dict(type='mmssm.DistilledLinearClsHead', num_classes=num_classes, in_channels=64))
    teacher = dict(model=dict(
        type='ImageClassifier', backbone=dict(type='ResNet', depth=18, base_channels=8, stem_channels=8),
        neck=dict(type='GlobalAveragePooling'), head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=64)))
    model = HardDistillationClassifier(teacher=teacher, alpha=0.3, **student)
    assert not any(k.startswith('teacher') for k in model.state_dict())
    assert not any(p is q for p in model.parameters() for q in model.teacher.parameters())

    images = torch.randn(3, 3, 32, 32)
    samples = [DataSample().set_gt_label(label) for label in (0, 4, 2)]
    losses = model.loss(images, samples)
    cls_score, dist_score = model.head.forward_pair(model.extract_feat(images))
    teacher_labels = model.teacher(images, mode='tensor').argmax(dim=1)
    labels = torch.tensor([0, 4, 2])
    assert torch.allclose(losses['loss_cls'], 0.7 * F.cross_entropy(cls_score, labels))
    assert torch.allclose(losses['loss_distill'], 0.3 * F.cross_entropy(dist_score, teacher_labels))
    sum(losses.values()).backward()
    assert model.head.dist_fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.teacher.parameters())

    model.eval()
    with torch.no_grad():
        cls_score, dist_score = model.head.forward_pair(model.extract_feat(images))
        assert torch.allclose(model(images, mode='tensor'), (cls_score + dist_score) / 2)
    with pytest.raises(ValueError, match='exactly one'):
        HardDistillationClassifier(teacher=dict(checkpoint='x.pth'), **student)
