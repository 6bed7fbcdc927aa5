"""VMamba: the equivalence contract with the official model, size/FLOP budgets and the backbone API.

The official side is written here from the official code's semantics (MzeroMiko/VMamba
classification/models/vmamba.py: VSSM, SS2D forward types v0 and v05_noz, Backbone_VSSM) with plain torch ops in
float64 and the naive scan reference, on a random state dict with the official key names and shapes.
"""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer
from mmengine.registry import DefaultScope

from mmssm.kernels.selective_scan.naive import selective_scan_ref
from mmssm.kernels.testing import assert_close
from mmssm.models.backbones.vmamba import VMamba, backbone_state_dict, convert_vmamba
from mmssm.models.layers import ss2d as ss2d_module
from mmssm.models.utils import CheckpointMismatchError, load_state_dict_checked
from mmssm.testing.backbones import assert_checkpointing_keeps_gradients
from mmssm.testing.scripts import run_script

CONVERTER = Path(__file__).resolve().parents[1] / 'tools/model_converters/vmamba2mmssm.py'
TINY_V2 = dict(embed_dims=24, depths=(1, 2, 1, 1), d_state=1, ssm_ratio=2.0)
TINY_V2_RATIO1 = dict(embed_dims=24, depths=(1, 1, 2, 1), d_state=2, ssm_ratio=1.0)
TINY_V0 = dict(embed_dims=24, depths=(1, 1, 2, 1), d_state=4, ssm_ratio=2.0, gated=True, conv_bias=True,
               mlp_ratio=0.0, patch_embed='v1', downsample='v1')
NUM_CLASSES = 7


# --------------------------------------------------------------------------------------------------------------
# the official layout and forward, independent of mmssm.models

def official_state_dict(arch, num_classes=NUM_CLASSES, out_indices=None, device='cpu', seed=0):
    """Random weights under the official VSSM key names and shapes (``Backbone_VSSM`` when out_indices)."""
    arch = VMamba.resolve_arch(arch)
    generator = torch.Generator().manual_seed(seed) if device != 'meta' else None

    def rand(*shape, scale=0.2, offset=0.0):
        if device == 'meta':
            return torch.empty(shape, device='meta')
        return torch.randn(shape, generator=generator, dtype=torch.float64) * scale + offset

    dims = [arch['embed_dims'] * 2 ** i for i in range(len(arch['depths']))]
    sd = {}
    if arch['patch_embed'] == 'v2':
        half = dims[0] // 2
        sd.update({'patch_embed.0.weight': rand(half, 3, 3, 3), 'patch_embed.0.bias': rand(half),
                   'patch_embed.2.weight': rand(half, offset=1), 'patch_embed.2.bias': rand(half),
                   'patch_embed.5.weight': rand(dims[0], half, 3, 3, scale=0.1), 'patch_embed.5.bias': rand(dims[0]),
                   'patch_embed.7.weight': rand(dims[0], offset=1), 'patch_embed.7.bias': rand(dims[0])})
    else:
        sd.update({'patch_embed.0.weight': rand(dims[0], 3, 4, 4), 'patch_embed.0.bias': rand(dims[0]),
                   'patch_embed.2.weight': rand(dims[0], offset=1), 'patch_embed.2.bias': rand(dims[0])})
    for i, (dim, depth) in enumerate(zip(dims, arch['depths'])):
        inner, rank, states = int(arch['ssm_ratio'] * dim), math.ceil(dim / 16), arch['d_state']
        for j in range(depth):
            p = f'layers.{i}.blocks.{j}.'
            sd.update({p + 'norm.weight': rand(dim, offset=1), p + 'norm.bias': rand(dim),
                       p + 'op.in_proj.weight': rand(inner * (2 if arch['gated'] else 1), dim, scale=dim ** -0.5),
                       p + 'op.conv2d.weight': rand(inner, 1, 3, 3, scale=0.3),
                       p + 'op.x_proj_weight': rand(4, rank + 2 * states, inner, scale=inner ** -0.5),
                       p + 'op.dt_projs_weight': rand(4, inner, rank, scale=rank ** -0.5),
                       p + 'op.dt_projs_bias': rand(4, inner, scale=0.5, offset=-2.5),
                       p + 'op.Ds': rand(4 * inner, scale=0.5, offset=1),
                       p + 'op.out_norm.weight': rand(inner, offset=1), p + 'op.out_norm.bias': rand(inner),
                       p + 'op.out_proj.weight': rand(dim, inner, scale=inner ** -0.5)})
            a_logs = torch.arange(1, states + 1, dtype=torch.float64).log().repeat(4 * inner, 1)
            sd[p + 'op.A_logs'] = a_logs + rand(4 * inner, states, scale=0.1) if device != 'meta' else rand(
                4 * inner, states)
            if arch['conv_bias']:
                sd[p + 'op.conv2d.bias'] = rand(inner)
            if arch['mlp_ratio'] > 0:
                hidden = int(dim * arch['mlp_ratio'])
                sd.update({p + 'norm2.weight': rand(dim, offset=1), p + 'norm2.bias': rand(dim),
                           p + 'mlp.fc1.weight': rand(hidden, dim, scale=dim ** -0.5), p + 'mlp.fc1.bias': rand(hidden),
                           p + 'mlp.fc2.weight': rand(dim, hidden, scale=hidden ** -0.5), p + 'mlp.fc2.bias': rand(dim)})
        if i < len(dims) - 1:
            p = f'layers.{i}.downsample.'
            if arch['downsample'] == 'v1':
                sd.update({p + 'norm.weight': rand(4 * dim, offset=1), p + 'norm.bias': rand(4 * dim),
                           p + 'reduction.weight': rand(dims[i + 1], 4 * dim, scale=(4 * dim) ** -0.5)})
            else:
                kernel = 3 if arch['downsample'] == 'v3' else 2
                sd.update({p + '1.weight': rand(dims[i + 1], dim, kernel, kernel, scale=0.1),
                           p + '1.bias': rand(dims[i + 1]),
                           p + '3.weight': rand(dims[i + 1], offset=1), p + '3.bias': rand(dims[i + 1])})
    if out_indices is None:
        sd.update({'classifier.norm.weight': rand(dims[-1], offset=1), 'classifier.norm.bias': rand(dims[-1]),
                   'classifier.head.weight': rand(num_classes, dims[-1]), 'classifier.head.bias': rand(num_classes)})
    else:
        for i in out_indices:
            sd.update({f'outnorm{i}.weight': rand(dims[i], offset=1), f'outnorm{i}.bias': rand(dims[i])})
    return sd


def ln_last(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[name + '.weight'], sd[name + '.bias'])


def ln_first(x, sd, name):
    return ln_last(x.permute(0, 2, 3, 1), sd, name).permute(0, 3, 1, 2)


def official_ss2d_core(x, sd, p):
    """forward_corev2 / forwardv0 core with scans=cross2d on a (B, D, H, W) map; returns (B, D, L)."""
    B, D, H, W = x.shape
    L = H * W
    K, _, R = sd[p + 'dt_projs_weight'].shape
    N = sd[p + 'A_logs'].shape[1]
    x_hwwh = torch.stack([x.reshape(B, -1, L), x.transpose(2, 3).reshape(B, -1, L)], dim=1)
    xs = torch.cat([x_hwwh, x_hwwh.flip(-1)], dim=1)  # (B, 4, D, L)
    x_dbl = torch.einsum('bkdl,kcd->bkcl', xs, sd[p + 'x_proj_weight'])
    dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
    dts = torch.einsum('bkrl,kdr->bkdl', dts, sd[p + 'dt_projs_weight'])
    ys = selective_scan_ref(xs.reshape(B, -1, L), dts.reshape(B, -1, L), -sd[p + 'A_logs'].exp(), Bs, Cs,
                            sd[p + 'Ds'], delta_bias=sd[p + 'dt_projs_bias'].reshape(-1), delta_softplus=True)
    ys = ys.view(B, K, -1, L)
    inv = ys[:, 2:4].flip(-1)
    wh = ys[:, 1].reshape(B, -1, W, H).transpose(2, 3).reshape(B, -1, L)
    invwh = inv[:, 1].reshape(B, -1, W, H).transpose(2, 3).reshape(B, -1, L)
    return ys[:, 0] + inv[:, 0] + wh + invwh


def official_block_v2(x, sd, p):
    """VSSBlock, channel-first (ln2d), SS2D forward type v05_noz."""
    h = ln_first(x, sd, p + 'norm')
    h = F.conv2d(h, sd[p + 'op.in_proj.weight'][:, :, None, None])
    h = F.silu(F.conv2d(h, sd[p + 'op.conv2d.weight'], sd.get(p + 'op.conv2d.bias'), padding=1, groups=h.shape[1]))
    y = official_ss2d_core(h, sd, p + 'op.').reshape(h.shape)
    y = F.conv2d(ln_first(y, sd, p + 'op.out_norm'), sd[p + 'op.out_proj.weight'][:, :, None, None])
    x = x + y
    h = ln_first(x, sd, p + 'norm2')
    h = F.conv2d(F.gelu(F.conv2d(h, sd[p + 'mlp.fc1.weight'][:, :, None, None], sd[p + 'mlp.fc1.bias'])),
                 sd[p + 'mlp.fc2.weight'][:, :, None, None], sd[p + 'mlp.fc2.bias'])
    return x + h


def official_block_v0(x, sd, p):
    """VSSBlock, channel-last (ln), SS2D forward type v0 (gated, no MLP); x: (B, H, W, C)."""
    B, H, W, _ = x.shape
    h = F.linear(ln_last(x, sd, p + 'norm'), sd[p + 'op.in_proj.weight'])
    h, z = h.chunk(2, dim=-1)
    h = h.permute(0, 3, 1, 2)
    h = F.silu(F.conv2d(h, sd[p + 'op.conv2d.weight'], sd[p + 'op.conv2d.bias'], padding=1, groups=h.shape[1]))
    y = official_ss2d_core(h, sd, p + 'op.').transpose(1, 2)  # (B, L, D)
    y = ln_last(y, sd, p + 'op.out_norm').reshape(B, H, W, -1) * F.silu(z)
    return x + F.linear(y, sd[p + 'op.out_proj.weight'])


def official_forward(sd, x, arch, out_indices=None):
    """VSSM logits, or Backbone_VSSM features (NCHW) when out_indices is given."""
    arch = VMamba.resolve_arch(arch)
    channel_first = arch['patch_embed'] == 'v2'
    if channel_first:
        x = ln_first(F.conv2d(x, sd['patch_embed.0.weight'], sd['patch_embed.0.bias'], stride=2, padding=1),
                     sd, 'patch_embed.2')
        x = F.conv2d(F.gelu(x), sd['patch_embed.5.weight'], sd['patch_embed.5.bias'], stride=2, padding=1)
        x = ln_first(x, sd, 'patch_embed.7')
    else:
        x = F.conv2d(x, sd['patch_embed.0.weight'], sd['patch_embed.0.bias'], stride=4).permute(0, 2, 3, 1)
        x = ln_last(x, sd, 'patch_embed.2')
    outs = []
    for i, depth in enumerate(arch['depths']):
        for j in range(depth):
            block = official_block_v2 if channel_first else official_block_v0
            x = block(x, sd, f'layers.{i}.blocks.{j}.')
        if out_indices is not None and i in out_indices:
            outs.append(ln_first(x, sd, f'outnorm{i}') if channel_first
                        else ln_last(x, sd, f'outnorm{i}').permute(0, 3, 1, 2))
        if i == len(arch['depths']) - 1:
            break
        p = f'layers.{i}.downsample.'
        if channel_first:
            kernel = sd[p + '1.weight'].shape[-1]
            x = ln_first(F.conv2d(x, sd[p + '1.weight'], sd[p + '1.bias'], stride=2, padding=(kernel - 1) // 2),
                         sd, p + '3')
        else:
            H, W = x.shape[1:3]
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
            x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
            x = F.linear(ln_last(x, sd, p + 'norm'), sd[p + 'reduction.weight'])
    if out_indices is not None:
        return outs
    x = ln_first(x, sd, 'classifier.norm') if channel_first else ln_last(x, sd, 'classifier.norm').permute(0, 3, 1, 2)
    return F.linear(x.mean(dim=(2, 3)), sd['classifier.head.weight'], sd['classifier.head.bias'])


# --------------------------------------------------------------------------------------------------------------
# ours

def our_logits(backbone, head_state, x):
    """Our classifier: backbone (last out norm) -> global average pool -> LinearClsHead fc."""
    feature = backbone(x)[-1].mean(dim=(2, 3))  # (batch, C)
    return F.linear(feature, head_state['head.fc.weight'], head_state['head.fc.bias'])


def split_classifier(state_dict):
    backbone = {k[len('backbone.'):]: v for k, v in state_dict.items() if k.startswith('backbone.')}
    head = {k: v.float() for k, v in state_dict.items() if k.startswith('head.')}
    assert len(backbone) + len(head) == len(state_dict)
    return backbone, head


@pytest.mark.parametrize('arch', [TINY_V2, TINY_V2_RATIO1, TINY_V0], ids=['v2', 'v2-ratio1', 'v0'])
def test_converted_official_checkpoint_gives_official_outputs(arch):
    images = torch.randn(2, 3, 36, 44, dtype=torch.float64)  # odd stage sizes 9x11 -> 5x6 -> 3x3 -> 2x2

    official_cls = official_state_dict(arch)
    backbone_weights, head_weights = split_classifier(convert_vmamba({'model': official_cls}))
    classifier_backbone = VMamba(arch).eval()
    load_state_dict_checked(classifier_backbone, backbone_weights)
    with torch.no_grad():
        logits = our_logits(classifier_backbone, head_weights, images.float())
    assert_close(logits, official_forward(official_cls, images, arch), torch.float32, name='logits')

    out_indices = (0, 1, 2, 3)
    official_dense = official_state_dict(arch, out_indices=out_indices, seed=1)
    dense_backbone = VMamba(arch, out_indices=out_indices).eval()
    load_state_dict_checked(dense_backbone, backbone_state_dict(official_dense))
    with torch.no_grad():
        features = dense_backbone(images.float())
    expected = official_forward(official_dense, images, arch, out_indices=out_indices)
    assert len(features) == len(expected) == 4
    for level, (ours, theirs) in enumerate(zip(features, expected)):
        assert_close(ours, theirs, torch.float32, name=f'feature {level}')


def test_converter_accepts_legacy_names_and_conv_shaped_projections():
    current = official_state_dict(TINY_V0)
    legacy = {}
    for key, value in current.items():
        key = key.replace('.norm.', '.ln_1.').replace('.op.', '.self_attention.') if '.blocks.' in key else key
        key = {'patch_embed.0.weight': 'patch_embed.proj.weight', 'patch_embed.0.bias': 'patch_embed.proj.bias',
               'patch_embed.2.weight': 'patch_embed.norm.weight', 'patch_embed.2.bias': 'patch_embed.norm.bias'
               }.get(key, key)
        key = key.replace('classifier.norm.', 'norm.').replace('classifier.head.', 'head.')
        if key.endswith(('in_proj.weight', 'out_proj.weight', 'reduction.weight')):
            value = value[:, :, None, None]
        legacy[key] = value
    assert any('ln_1' in k for k in legacy) and 'head.weight' in legacy
    expected = convert_vmamba(current)
    converted = convert_vmamba(legacy)
    assert converted.keys() == expected.keys()
    for key in expected:
        assert torch.equal(converted[key], expected[key]), key
    with pytest.raises(ValueError, match="not official VMamba keys.*'pos_embed', 'layers.0.mystery.weight'"):
        convert_vmamba({**current, 'pos_embed': torch.zeros(1), 'layers.0.mystery.weight': torch.zeros(1)})


def run_converter_tool(*args):
    """tools/model_converters/vmamba2mmssm.py run in this process (as ``python TOOL *args``)."""
    run_script(CONVERTER, *args)


def test_converter_tool_writes_an_mmpretrain_checkpoint(tmp_path):
    official = {k: torch.zeros(v.shape) for k, v in official_state_dict('tiny', 1000, device='meta').items()}
    src, dst = tmp_path / 'vssm_tiny.pth', tmp_path / 'converted.pth'
    torch.save({'model': official, 'epoch': 300}, src)
    run_converter_tool(src, dst, '--arch', 'tiny')
    checkpoint = torch.load(dst, map_location='cpu')
    assert set(checkpoint) == {'state_dict', 'meta'}
    keys = set(checkpoint['state_dict'])
    assert {'head.fc.weight', 'head.fc.bias', 'backbone.norm3.weight'} <= keys
    assert all(k.startswith(('backbone.', 'head.fc.')) for k in keys)
    backbone, _ = split_classifier(checkpoint['state_dict'])
    load_state_dict_checked(VMamba('tiny'), backbone)

    del official['layers.2.blocks.3.op.Ds']
    torch.save({'model': official}, src)
    with pytest.raises(SystemExit, match='stages.2.blocks.3.ss2d.Ds'):
        run_converter_tool(src, dst, '--arch', 'tiny')


# --------------------------------------------------------------------------------------------------------------
# sizes

# (arch, params (M) and GFLOPs published with the official release)
RELEASES = [('tiny', 30, 4.9), ('small', 50, 8.7), ('base', 89, 15.4),
            ('v0-tiny', 22.9, 5.6), ('v0-small', 44.4, 11.2), ('v0-base', 76.2, 18.0)]


@pytest.mark.parametrize('arch, paper_m, _', RELEASES)
def test_param_counts_match_official(arch, paper_m, _):
    official = sum(v.numel() for v in official_state_dict(arch, num_classes=1000, device='meta').values())
    with torch.device('meta'):
        backbone = VMamba(arch)
    ours = sum(p.numel() for p in backbone.parameters()) + 1000 * backbone.dims[-1] + 1000  # + head.fc
    print(f'VMamba-{arch}: official {official / 1e6:.2f}M, ours {ours / 1e6:.2f}M')
    assert abs(ours - official) <= 0.005 * official
    assert round(official / 1e6) == round(paper_m)


@pytest.mark.parametrize('arch, _, paper_gflops', RELEASES)
def test_flops_match_official(arch, _, paper_gflops):
    """mmengine's FlopAnalyzer (fvcore's convention, the scans counted by ``mmssm.analysis`` as the official
    ``flops_selective_scan_fn``) on the backbone, plus the classifier's pooling (1 per element) and fc."""
    backbone = VMamba(arch).eval()
    analyzer = FlopAnalyzer(backbone, (torch.randn(1, 3, 224, 224), ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    channels = backbone.dims[-1]
    gflops = (analyzer.total() + channels * 7 * 7 + channels * 1000) / 1e9
    print(f'VMamba-{arch}: {gflops:.2f} GFLOPs at 224x224 (official {paper_gflops})')
    assert abs(gflops - paper_gflops) <= 0.02 * paper_gflops


# --------------------------------------------------------------------------------------------------------------
# backbone API and errors

def test_unknown_arch_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown VMamba arch 'huge'.*'tiny'.*'v0-base'"):
        VMamba('huge')
    with pytest.raises(TypeError, match='VMamba: arch must be a name or a dict, got int'):
        VMamba(3)
    with pytest.raises(ValueError, match='unknown keys'):
        VMamba(dict(embed_dims=16, depths=(1, 1), mlp_hidden=3))


def test_wrong_input_channels_is_a_clear_error():
    with pytest.raises(ValueError, match=r'expects \(batch, 3, H, W\).*\(1, 4, 32, 32\)'):
        VMamba(TINY_V2)(torch.randn(1, 4, 32, 32))


def test_pretrained_checkpoint_mismatch_lists_keys(tmp_path):
    official = official_state_dict(TINY_V2)
    del official['layers.1.blocks.0.op.A_logs']
    official['layers.1.blocks.0.op.Ds'] = torch.zeros(3)
    path = tmp_path / 'broken.pth'
    torch.save({'model': official}, path)
    backbone = VMamba(TINY_V2, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError) as info:
        backbone.init_weights()
    assert info.value.missing == ['stages.1.blocks.0.ss2d.A_logs']
    assert 'stages.1.blocks.0.ss2d.Ds: (3,) vs (384,)' in str(info.value)


def test_pretrained_loads_official_and_converted_checkpoints(tmp_path):
    official = official_state_dict(TINY_V2)
    torch.save({'model': official}, tmp_path / 'official.pth')
    dense = VMamba(TINY_V2, out_indices=(0, 1, 2, 3),
                   init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'official.pth')))
    dense.init_weights()
    assert torch.allclose(dense.norm3.weight, official['classifier.norm.weight'].float())
    assert torch.equal(dense.norm0.weight, torch.ones(24))  # not in a classification checkpoint: left at init
    torch.save({'state_dict': {k: v.float() for k, v in convert_vmamba(official).items()}}, tmp_path / 'ours.pth')
    backbone = VMamba(TINY_V2, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'ours.pth'),
                                             prefix='backbone.'))
    backbone.init_weights()
    key = 'layers.1.blocks.1.op.x_proj_weight'
    assert torch.allclose(backbone.stages[1].blocks[1].ss2d.x_proj_weight, official[key].float())


def test_out_indices_shapes_and_norms():
    backbone = VMamba(TINY_V2, out_indices=(1, -1)).eval()
    features = backbone(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape) for f in features] == [(1, 48, 8, 12), (1, 192, 2, 3)]
    assert hasattr(backbone, 'norm1') and hasattr(backbone, 'norm3') and not hasattr(backbone, 'norm0')
    normalized = features[0].mean(dim=1)  # LN over channels with unit weight, zero bias -> zero channel mean
    assert normalized.abs().max() < 1e-5


def test_frozen_stages_stay_frozen_after_train():
    backbone = VMamba(TINY_V2, out_indices=(0, 1, 2, 3), frozen_stages=2)
    backbone.train()
    frozen = [backbone.patch_embed, backbone.stages[0], backbone.stages[1], backbone.norm0, backbone.norm1]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(not m.training for m in frozen)
    assert all(p.requires_grad for p in backbone.stages[2].parameters()) and backbone.stages[2].training
    backbone(torch.randn(1, 3, 32, 32))[-1].sum().backward()
    assert backbone.stages[0].blocks[0].ss2d.A_logs.grad is None
    assert backbone.stages[2].blocks[0].ss2d.A_logs.grad is not None


def test_gradient_checkpointing_gives_the_same_gradients():
    assert_checkpointing_keeps_gradients(lambda with_cp: VMamba(TINY_V2, with_cp=with_cp),
                                         torch.randn(1, 3, 32, 32))


def test_drop_path_is_linear_over_all_blocks_and_only_in_training():
    backbone = VMamba(TINY_V2, drop_path_rate=0.4)
    rates = [block.drop_path.p for stage in backbone.stages for block in stage.blocks]
    assert rates == pytest.approx([0.4 * i / 4 for i in range(5)])
    images = torch.randn(2, 3, 32, 32)
    backbone.eval()
    assert torch.equal(backbone(images)[-1], backbone(images)[-1])


def test_layer_depth_orders_embed_blocks_and_norms():
    backbone = VMamba(TINY_V2, out_indices=(0, 3))
    depth = backbone.get_layer_depth
    assert depth('backbone.patch_embed.conv1.weight', 'backbone.') == (0, 7)
    assert depth('backbone.stages.0.blocks.0.ss2d.A_logs', 'backbone.') == (1, 7)
    assert depth('backbone.stages.1.blocks.1.mlp.fc1.weight', 'backbone.') == (3, 7)
    assert depth('backbone.stages.1.downsample.conv.weight', 'backbone.') == (3, 7)
    assert depth('backbone.stages.3.blocks.0.norm1.weight', 'backbone.') == (5, 7)
    assert depth('backbone.norm0.weight', 'backbone.') == (6, 7)
    assert depth('neck.lateral_convs.0.weight', 'backbone.') == (6, 7)
    names = [n for n, _ in backbone.named_parameters()]
    depths = [depth(n)[0] for n in names]
    assert depths[0] == 0 and max(depths) == 6


def test_init_weights_gives_the_official_init():
    backbone = VMamba(TINY_V2)
    backbone.init_weights()
    ss2d = backbone.stages[1].blocks[0].ss2d
    assert torch.equal(ss2d.A_logs, torch.zeros_like(ss2d.A_logs))  # log(1) for d_state 1
    assert torch.equal(ss2d.Ds, torch.ones_like(ss2d.Ds))
    dt = F.softplus(ss2d.dt_projs_bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6 and dt.min() < 0.01 < dt.max()
    assert ss2d.dt_projs_weight.abs().max() <= ss2d.dt_rank ** -0.5
    assert ss2d.in_proj.weight.std().item() == pytest.approx(0.02, rel=0.2)
    assert torch.equal(ss2d.out_norm.weight, torch.ones_like(ss2d.out_norm.weight))


def test_image_classifier_with_converted_checkpoint():
    mmpretrain_models = pytest.importorskip('mmpretrain.models')
    arch = TINY_V2
    official = official_state_dict(arch)
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # unscoped types are mmpretrain's, whatever ran before
        classifier = mmpretrain_models.ImageClassifier(
            backbone=dict(type='mmssm.VMamba', arch=arch),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=192)).eval()
    load_state_dict_checked(classifier, {k: v.float() for k, v in convert_vmamba(official).items()})
    images = torch.randn(2, 3, 32, 40, dtype=torch.float64)
    with torch.no_grad():
        logits = classifier(images.float(), mode='tensor')
    assert_close(logits, official_forward(official, images, arch), torch.float32, name='logits')


# --------------------------------------------------------------------------------------------------------------
# SS2D on its own (also used with one route per group by GroupMamba)

@pytest.mark.parametrize('routes', [('h',), ('v_flip',), ('h', 'v')])
def test_ss2d_single_and_partial_routes_match_the_route_composition(routes):
    from mmssm.kernels import cross_merge, cross_scan, selective_scan
    layer = ss2d_module.SS2D(12, d_state=3, ssm_ratio=1.5, routes=routes).eval()
    assert layer.x_proj_weight.shape == (len(routes), layer.dt_rank + 6, 18) and layer.dt_rank == 1
    x = torch.randn(2, 12, 5, 7)
    with torch.no_grad():
        h = F.silu(layer.conv2d(layer.in_proj(x)))
        xs = cross_scan(h, routes)  # (2, K, 18, 35)
        x_dbl = torch.einsum('bkdl,kcd->bkcl', xs, layer.x_proj_weight)
        dts, Bs, Cs = torch.split(x_dbl, [1, 3, 3], dim=2)
        dts = torch.einsum('bkrl,kdr->bkdl', dts, layer.dt_projs_weight)
        ys = selective_scan(xs.flatten(1, 2), dts.flatten(1, 2), -layer.A_logs.exp(), Bs, Cs, layer.Ds,
                            delta_bias=layer.dt_projs_bias.flatten(), delta_softplus=True)
        y = cross_merge(ys.unflatten(1, (len(routes), 18)), 5, 7, routes)
        expected = layer.out_proj(layer.out_norm(y))
        assert_close(layer(x), expected, torch.float32)


def test_ss2d_gated_form_and_argument_errors():
    gated = ss2d_module.SS2D(16, d_state=16, gated=True, conv_bias=True)
    assert gated.in_proj.weight.shape == (64, 16) and gated.conv2d.bias is not None
    x = torch.randn(1, 16, 4, 4, requires_grad=True)
    gated(x).sum().backward()
    assert x.grad.abs().sum() > 0 and gated.A_logs.grad is not None
    with pytest.raises(ValueError, match=r'routes must be a non-empty subset'):
        ss2d_module.SS2D(16, routes=('diagonal',))
    with pytest.raises(ValueError, match=r'SS2D\(16\) expects \(batch, 16, H, W\), got \(1, 8, 4, 4\)'):
        gated(torch.randn(1, 8, 4, 4))


def test_compiles_as_one_graph_on_the_cuda_path(monkeypatch):
    """torch.compile(fullgraph=True) under autocast with the ops CUDA runs (fused SS2D core, LayerNorm2d kernel; the
    Triton interpreter runs them here): one graph, and the same outputs and gradients as eager."""
    from mmssm.kernels.layer_norm import layer_norm_2d_fused
    from mmssm.kernels.ss2d import ss2d_scan_fused
    from mmssm.models.layers import norm as norm_module
    monkeypatch.setattr(norm_module, 'layer_norm_2d', lambda x, w, b, eps, out_dtype=None: layer_norm_2d_fused(
        x, w, b, eps, out_dtype))
    monkeypatch.setattr(ss2d_module, 'ss2d_scan', lambda *a, routes, out_dtype=None: ss2d_scan_fused(*a, routes=routes))
    model, x = VMamba(dict(embed_dims=8, depths=(1, 1)), out_indices=(1,)), torch.randn(2, 3, 16, 16)
    results = []
    for run in (model, torch.compile(model, fullgraph=True, backend='aot_eager')):
        model.zero_grad()
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = run(x)[0]
        out.float().square().sum().backward()
        results.append([out.float()] + [p.grad.clone() for p in model.parameters()])
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager)
