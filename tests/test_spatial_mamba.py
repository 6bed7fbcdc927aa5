"""Spatial-Mamba: state fusion merge, official-checkpoint equivalence, parameter counts and FLOPs, backbone contract."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer

import mmssm.models  # noqa: F401 - registers the FLOP handles
from mmssm.kernels.selective_scan import selective_scan_ref
from mmssm.kernels.testing import assert_close
from mmssm.models.backbones.spatial_mamba import SpatialMamba, convert_official_spatial_mamba
from mmssm.models.layers.state_fusion import StateFusion
from mmssm.models.utils import CheckpointMismatchError
from mmssm.testing.backbones import assert_checkpointing_keeps_gradients

TINY = dict(embed_dims=(8, 16, 32, 64), depths=(1, 2, 1, 1))
PUBLISHED_PARAMS_M = {'tiny': 27, 'small': 43, 'base': 96}  # millions, rounded, 1000 classes
NUM_CLASSES = 7


# ----------------------------------------------------------------------------------------------------------------
# The official model, re-computed from its state-dict layout (EdwardChasel/Spatial-Mamba, classification/models).

def official_shapes(embed_dims, depths, num_classes, d_state=1):
    """Official key -> shape; BatchNorm running stats included."""
    shapes = {}

    def conv_layer(name, cin, cout, k, groups=1, bias=True, norm=True):
        shapes[f'{name}.conv.weight'] = (cout, cin // groups, k, k)
        if bias:
            shapes[f'{name}.conv.bias'] = (cout,)
        if norm:
            for stat in ('weight', 'bias', 'running_mean', 'running_var'):
                shapes[f'{name}.norm.{stat}'] = (cout,)
            shapes[f'{name}.norm.num_batches_tracked'] = ()

    c = embed_dims[0]
    conv_layer('patch_embed.conv1', 3, c // 2, 3, bias=False)
    conv_layer('patch_embed.conv2.0', c // 2, c // 2, 3, bias=False)
    conv_layer('patch_embed.conv2.1', c // 2, c // 2, 3, bias=False)
    conv_layer('patch_embed.conv3.0', c // 2, 4 * c, 3, bias=False)
    conv_layer('patch_embed.conv3.1', 4 * c, c, 1, bias=False)
    for i, (dims, depth) in enumerate(zip(embed_dims, depths)):
        inner, rank = 2 * dims, math.ceil(dims / 16)
        for j in range(depth):
            p = f'layers.{i}.blocks.{j}'
            for cpe in ('cpe1', 'cpe2'):
                shapes.update({f'{p}.{cpe}.weight': (dims, 1, 3, 3), f'{p}.{cpe}.bias': (dims,)})
            for ln in ('ln_1', 'ln_2'):
                shapes.update({f'{p}.{ln}.weight': (dims,), f'{p}.{ln}.bias': (dims,)})
            a = f'{p}.self_attention'
            shapes.update({
                f'{a}.in_proj.weight': (2 * inner, dims), f'{a}.conv2d.weight': (inner, 1, 3, 3),
                f'{a}.conv2d.bias': (inner,), f'{a}.x_proj_weight': (rank + 2 * d_state, inner),
                f'{a}.dt_projs_weight': (inner, rank), f'{a}.dt_projs_bias': (inner,),
                f'{a}.A_logs': (inner, d_state), f'{a}.Ds': (inner,), f'{a}.state_fusion.alpha': (3,),
                f'{a}.out_norm.weight': (inner,), f'{a}.out_norm.bias': (inner,), f'{a}.out_proj.weight': (dims, inner),
                f'{p}.mlp.fc1.weight': (4 * dims, dims), f'{p}.mlp.fc1.bias': (4 * dims,),
                f'{p}.mlp.fc2.weight': (dims, 4 * dims), f'{p}.mlp.fc2.bias': (dims,)})
            for kernel in ('kernel_3', 'kernel_3_1', 'kernel_3_2'):
                shapes[f'{a}.state_fusion.{kernel}'] = (inner, 1, 3, 3)
        if i < len(depths) - 1:
            conv_layer(f'layers.{i}.downsample.conv.0', dims, 8 * dims, 1, norm=False)
            conv_layer(f'layers.{i}.downsample.conv.1', 8 * dims, 8 * dims, 3, groups=8 * dims, norm=False)
            conv_layer(f'layers.{i}.downsample.conv.2', 8 * dims, 2 * dims, 1)
    shapes.update({'norm.weight': (embed_dims[-1],), 'norm.bias': (embed_dims[-1],),
                   'head.weight': (num_classes, embed_dims[-1]), 'head.bias': (num_classes,)})
    return shapes


def random_official_state_dict(embed_dims, depths, num_classes):
    state = {}
    for key, shape in official_shapes(embed_dims, depths, num_classes).items():
        if key.endswith('num_batches_tracked'):
            state[key] = torch.tensor(3)
        elif key.endswith('running_var'):
            state[key] = torch.rand(shape) + 0.5
        elif key.endswith(('norm.weight', 'ln_1.weight', 'ln_2.weight', 'alpha')):
            state[key] = 1 + 0.2 * torch.randn(shape)
        elif key.endswith('A_logs'):
            state[key] = 0.5 * torch.randn(shape)
        else:
            state[key] = torch.randn(shape) / math.sqrt(max(1, math.prod(shape[1:])))
    return state


def official_forward(sd, images, depths, training_fusion=False):
    """Official SpatialMamba.forward (BatchNorm with running stats); ``training_fusion`` picks the fusion path."""

    def conv_layer(name, x, stride=1, groups=1, act=True):
        weight = sd[f'{name}.conv.weight']
        x = F.conv2d(x, weight, sd.get(f'{name}.conv.bias'), stride, weight.shape[-1] // 2, groups=groups)
        if f'{name}.norm.weight' in sd:
            x = F.batch_norm(x, sd[f'{name}.norm.running_mean'], sd[f'{name}.norm.running_var'],
                             sd[f'{name}.norm.weight'], sd[f'{name}.norm.bias'], eps=1e-5)
        return F.relu(x) if act else x

    def layer_norm(name, x):
        return F.layer_norm(x, x.shape[-1:], sd[f'{name}.weight'], sd[f'{name}.bias'], eps=1e-5)

    def state_fusion(a, h):
        dims, out = h.shape[1], 0
        for alpha, kernel, dilation in zip(sd[f'{a}.state_fusion.alpha'], ('kernel_3', 'kernel_3_1', 'kernel_3_2'),
                                           (1, 3, 5)):
            weight = sd[f'{a}.state_fusion.{kernel}']
            if training_fusion:  # replicate padding, as the official training branch
                conv = F.conv2d(F.pad(h, (dilation,) * 4, mode='replicate'), weight, dilation=dilation, groups=dims)
            else:  # the official eval branch: a merged 11x11 kernel, zero padding 5 == zero-padded dilated convs
                conv = F.conv2d(h, weight, padding=dilation, dilation=dilation, groups=dims)
            out = out + alpha * conv
        return out

    def ssm(a, x):
        batch, height, width, _ = x.shape
        x, z = (x @ sd[f'{a}.in_proj.weight'].T).chunk(2, dim=-1)
        x = x.permute(0, 3, 1, 2)
        x = F.silu(F.conv2d(x, sd[f'{a}.conv2d.weight'], sd[f'{a}.conv2d.bias'], padding=1, groups=x.shape[1]))
        xs = x.flatten(2)
        x_dbl = sd[f'{a}.x_proj_weight'] @ xs
        rank = sd[f'{a}.dt_projs_weight'].shape[1]
        dts, Bs, Cs = torch.split(x_dbl, [rank, 1, 1], dim=1)
        dts = sd[f'{a}.dt_projs_weight'] @ dts
        h = selective_scan_ref(xs, dts, -torch.exp(sd[f'{a}.A_logs']), Bs, delta_bias=sd[f'{a}.dt_projs_bias'],
                               delta_softplus=True, return_states=True)
        h = state_fusion(a, h.reshape(batch, -1, height, width)).flatten(2)
        y = h * Cs + xs * sd[f'{a}.Ds'][:, None]
        y = layer_norm(f'{a}.out_norm', y.transpose(1, 2).reshape(batch, height, width, -1))
        return (y * F.silu(z)) @ sd[f'{a}.out_proj.weight'].T

    def cpe(name, x):
        conv = F.conv2d(x.permute(0, 3, 1, 2), sd[f'{name}.weight'], sd[f'{name}.bias'], padding=1, groups=x.shape[-1])
        return conv.permute(0, 2, 3, 1)

    x = conv_layer('patch_embed.conv1', images, stride=2)
    x = conv_layer('patch_embed.conv2.1', conv_layer('patch_embed.conv2.0', x), act=False) + x
    x = conv_layer('patch_embed.conv3.1', conv_layer('patch_embed.conv3.0', x, stride=2), act=False)
    x = x.permute(0, 2, 3, 1)
    for i, depth in enumerate(depths):
        for j in range(depth):
            p = f'layers.{i}.blocks.{j}'
            x = x + cpe(f'{p}.cpe1', x)
            x = x + ssm(f'{p}.self_attention', layer_norm(f'{p}.ln_1', x))
            x = x + cpe(f'{p}.cpe2', x)
            hidden = F.gelu(layer_norm(f'{p}.ln_2', x) @ sd[f'{p}.mlp.fc1.weight'].T + sd[f'{p}.mlp.fc1.bias'])
            x = x + hidden @ sd[f'{p}.mlp.fc2.weight'].T + sd[f'{p}.mlp.fc2.bias']
        if i < len(depths) - 1:
            d = f'layers.{i}.downsample.conv'
            y = conv_layer(f'{d}.0', x.permute(0, 3, 1, 2))
            y = conv_layer(f'{d}.1', y, stride=2, groups=y.shape[1])
            x = conv_layer(f'{d}.2', y, act=False).permute(0, 2, 3, 1)
    features = layer_norm('norm', x.flatten(1, 2)).mean(dim=1)
    return features @ sd['head.weight'].T + sd['head.bias']


def mmssm_logits(backbone, head_state, images):
    """mmpretrain's ImageClassifier path: backbone -> GlobalAveragePooling -> LinearClsHead."""
    features = backbone(images)[-1].mean(dim=(2, 3))
    return features @ head_state['head.fc.weight'].T + head_state['head.fc.bias']


def load_converted(official, **kwargs):
    converted = convert_official_spatial_mamba(official)
    backbone = SpatialMamba(arch=TINY, **kwargs)
    backbone.load_state_dict({k[len('backbone.'):]: v for k, v in converted.items() if k.startswith('backbone.')})
    return backbone.eval(), {k: v for k, v in converted.items() if k.startswith('head.')}


# ----------------------------------------------------------------------------------------------------------------

def test_state_fusion_merged_kernel_equals_the_three_convs():
    fusion = StateFusion(6)
    with torch.no_grad():
        fusion.weight.normal_()
        fusion.alpha.normal_()
    h = torch.randn(2, 6, 13, 17)
    separate = fusion.forward_separate(h)
    assert_close(fusion.forward_merged(h, 'replicate'), separate, torch.float32)
    zero_padded = fusion.forward_merged(h, 'zeros')
    r = fusion.merged_radius
    assert r == 5 and fusion.merged_kernel().shape == (6, 1, 11, 11)
    assert_close(zero_padded[..., r:-r, r:-r], separate[..., r:-r, r:-r], torch.float32)
    assert (zero_padded - separate).abs().amax() > 1e-2  # the official eval path differs at the borders
    fusion.eval()
    assert torch.equal(fusion(h), zero_padded)
    fusion.eval_fusion = 'merged_replicate_pad'
    assert torch.equal(fusion(h), fusion.forward_merged(h, 'replicate'))
    with pytest.raises(ValueError, match='eval_fusion'):
        StateFusion(6, eval_fusion='zeros')


def test_converted_official_checkpoint_reproduces_the_official_forward():
    official = random_official_state_dict(TINY['embed_dims'], TINY['depths'], NUM_CLASSES)
    images = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        backbone, head = load_converted(official)
        assert_close(mmssm_logits(backbone, head, images), official_forward(official, images, TINY['depths']),
                     torch.float32, scale=10)
        backbone, head = load_converted(official, eval_fusion='separate')
        expected = official_forward(official, images, TINY['depths'], training_fusion=True)
        assert_close(mmssm_logits(backbone, head, images), expected, torch.float32, scale=10)
        backbone.stages[1].blocks[0].ssm.state_fusion.eval_fusion = 'merged_replicate_pad'
        assert_close(mmssm_logits(backbone, head, images), expected, torch.float32, scale=10)


def test_converter_fails_loudly_on_foreign_keys():
    official = random_official_state_dict(TINY['embed_dims'], TINY['depths'], NUM_CLASSES)
    with pytest.raises(KeyError, match='not official'):
        convert_official_spatial_mamba({**official, 'absolute_pos_embed': torch.ones(1)})
    del official['layers.0.blocks.0.self_attention.state_fusion.kernel_3_1']
    with pytest.raises(KeyError, match='kernels'):
        convert_official_spatial_mamba(official)


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
def test_parameter_counts_match_the_official_models(arch):
    with torch.device('meta'):
        backbone = SpatialMamba(arch)
    spec = SpatialMamba.arch_zoo[arch]
    official = sum(math.prod(shape) for key, shape in official_shapes(spec['embed_dims'], spec['depths'], 1000).items()
                   if 'running' not in key and 'num_batches' not in key)
    ours = sum(p.numel() for p in backbone.parameters()) + 1000 * (spec['embed_dims'][-1] + 1)  # + LinearClsHead
    assert ours == official
    assert abs(ours / 1e6 - PUBLISHED_PARAMS_M[arch]) <= 0.5  # published numbers are rounded to 1M


def test_dense_outputs_and_pretrained_loading(tmp_path):
    official = random_official_state_dict(TINY['embed_dims'], TINY['depths'], NUM_CLASSES)
    path = tmp_path / 'official.pth'
    torch.save({'model': official}, path)
    backbone = SpatialMamba(TINY, out_indices=(0, 1, 2, 3), init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    backbone.init_weights()
    assert torch.equal(backbone.stages[2].blocks[0].ssm.A_log, official['layers.2.blocks.0.self_attention.A_logs'])
    assert torch.equal(backbone.norm3.weight, official['norm.weight'])
    outs = backbone.eval()(torch.randn(1, 3, 64, 32))
    assert [tuple(o.shape) for o in outs] == [(1, 8, 16, 8), (1, 16, 8, 4), (1, 32, 4, 2), (1, 64, 2, 1)]

    converted = tmp_path / 'mmssm.pth'  # what tools/model_converters/spatialmamba2mmssm.py writes
    torch.save({'state_dict': convert_official_spatial_mamba(official)}, converted)
    dense = SpatialMamba(TINY, out_indices=(0, 1, 2),
                         init_cfg=dict(type='Pretrained', checkpoint=str(converted), prefix='backbone.'))
    dense.init_weights()  # norm3 of the checkpoint is not built, norm0-2 start fresh
    assert torch.equal(dense.stages[1].downsample[2].norm.running_var,
                       official['layers.1.downsample.conv.2.norm.running_var'])

    torch.save({'model': {k: v for k, v in official.items() if 'blocks.0.mlp' not in k}}, path)
    with pytest.raises(CheckpointMismatchError, match='missing'):
        SpatialMamba(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


def test_frozen_stages_checkpointing_and_layer_depth():
    backbone = SpatialMamba(TINY, out_indices=(1, 3), frozen_stages=2, drop_path_rate=0.1)
    backbone.train()
    assert not backbone.patch_embed.training and not backbone.stages[1].training and backbone.stages[2].training
    assert not any(p.requires_grad for p in backbone.stages[1].parameters())
    assert not backbone.norm1.weight.requires_grad and backbone.norm3.weight.requires_grad
    assert backbone.get_layer_depth('backbone.patch_embed.conv1.conv.weight', 'backbone.') == (0, 7)
    assert backbone.get_layer_depth('backbone.stages.1.blocks.1.ssm.D', 'backbone.') == (3, 7)
    assert backbone.get_layer_depth('backbone.stages.1.downsample.0.conv.weight', 'backbone.') == (3, 7)
    assert backbone.get_layer_depth('head.fc.weight', 'backbone.') == (6, 7)

    assert_checkpointing_keeps_gradients(lambda with_cp: SpatialMamba(TINY, with_cp=with_cp),
                                         torch.randn(1, 3, 32, 32))


def test_arch_errors():
    with torch.device('meta'):
        assert SpatialMamba('s').depths == (2, 4, 21, 5)
    with pytest.raises(KeyError, match='unknown SpatialMamba arch'):
        SpatialMamba('huge')
    with pytest.raises(KeyError, match='custom arch'):
        SpatialMamba(dict(embed_dims=(8, 16, 32, 64)))
    with pytest.raises(ValueError, match='doubles'):
        SpatialMamba(dict(embed_dims=(8, 16, 24, 32), depths=(1, 1, 1, 1)))
    with pytest.raises(ValueError, match='out_indices'):
        SpatialMamba(TINY, out_indices=(4,))


PUBLISHED_GFLOPS = dict(tiny=4.5, small=7.1, base=15.8)  # official README, ImageNet-1k table, 224x224


@pytest.mark.parametrize('arch', ['tiny'])  # small / base: 7.114 / 15.796, ~25 s each
def test_flops_match_official(arch):
    """The official ``SpatialMamba.flops()`` traces the model in train mode, so it counts the state fusion as its
    three dilated 3x3 depthwise convs (``eval_fusion='separate'`` here; the merged 11x11 kernel counts 121 per
    element instead of 27) and the states-returning scan as ``7 L D N``; plus the classifier's pooling and fc."""
    backbone = SpatialMamba(arch, eval_fusion='separate').eval()
    analyzer = FlopAnalyzer(backbone, (torch.randn(1, 3, 224, 224), ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    channels = backbone.embed_dims[-1]
    gflops = (analyzer.total() + channels * 7 * 7 + channels * 1000) / 1e9
    print(f'Spatial-Mamba-{arch}: {gflops:.3f} GFLOPs at 224x224 (official {PUBLISHED_GFLOPS[arch]})')
    assert abs(gflops - PUBLISHED_GFLOPS[arch]) <= 0.02 * PUBLISHED_GFLOPS[arch]
