"""Vim: equivalence with the official model on official-layout weights, conversion, variants, backbone contract.

The official forward (hustvl/Vim ``models_mamba.py`` + bimamba v2 ``mamba_simple.py``, BOTH directions) is
re-computed here in float64 with plain torch ops and the naive scan reference, on random weights that carry the
official key names and shapes.
"""
import math
import runpy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmssm.kernels.selective_scan import selective_scan_ref
from mmssm.kernels.testing import assert_close
from mmssm.models.backbones.vim import Vim, convert_vim, resize_pos_embed
from mmssm.models.layers.bimamba import MambaMixer
from mmssm.models.utils import CheckpointMismatchError
from mmssm.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmssm.testing.backbones import assert_checkpointing_keeps_gradients

REPO = Path(__file__).resolve().parents[1]
DIRECTIONS = {'': ('A_log', 'D'), '_b': ('A_b_log', 'D_b')}  # official suffix -> (A name, D name)


# ---------------------------------------------------------------- official layout and forward, re-computed

def official_shapes(embed_dims, depth, num_patches, num_classes=1000, patch_size=16, with_cls=True,
                    d_state=16, expand=2, d_conv=4):
    """Parameter names and shapes of the official VisionMamba (bimamba v2, RMSNorm, no RoPE buffers)."""
    d_inner, dt_rank = expand * embed_dims, math.ceil(embed_dims / 16)
    shapes = {'patch_embed.proj.weight': (embed_dims, 3, patch_size, patch_size),
              'patch_embed.proj.bias': (embed_dims,),
              'pos_embed': (1, num_patches + int(with_cls), embed_dims)}
    if with_cls:
        shapes['cls_token'] = (1, 1, embed_dims)
    for i in range(depth):
        prefix = f'layers.{i}.'
        shapes[prefix + 'norm.weight'] = (embed_dims,)
        shapes[prefix + 'mixer.in_proj.weight'] = (2 * d_inner, embed_dims)
        for suffix, (a_name, d_name) in DIRECTIONS.items():
            shapes[prefix + f'mixer.conv1d{suffix}.weight'] = (d_inner, 1, d_conv)
            shapes[prefix + f'mixer.conv1d{suffix}.bias'] = (d_inner,)
            shapes[prefix + f'mixer.x_proj{suffix}.weight'] = (dt_rank + 2 * d_state, d_inner)
            shapes[prefix + f'mixer.dt_proj{suffix}.weight'] = (d_inner, dt_rank)
            shapes[prefix + f'mixer.dt_proj{suffix}.bias'] = (d_inner,)
            shapes[prefix + f'mixer.{a_name}'] = (d_inner, d_state)
            shapes[prefix + f'mixer.{d_name}'] = (d_inner,)
        shapes[prefix + 'mixer.out_proj.weight'] = (embed_dims, d_inner)
    shapes['norm_f.weight'] = (embed_dims,)
    shapes['head.weight'] = (num_classes, embed_dims)
    shapes['head.bias'] = (num_classes,)
    return shapes


def random_official_state_dict(shapes):
    """Random weights at a scale that keeps 4 blocks well conditioned."""
    state = {}
    for name, shape in shapes.items():
        if name.endswith(('A_log', 'A_b_log')):
            state[name] = torch.empty(shape).uniform_(0, math.log(16))
        elif name.endswith(('norm.weight', 'norm_f.weight', '.D', '.D_b')):
            state[name] = 1 + 0.2 * torch.randn(shape)
        elif 'dt_proj' in name and name.endswith('bias'):
            state[name] = torch.empty(shape).uniform_(-5, -2)
        elif len(shape) >= 2 and name not in ('pos_embed', 'cls_token'):
            fan_in = math.prod(shape[1:])
            state[name] = torch.randn(shape) / math.sqrt(fan_in)
        else:
            state[name] = 0.2 * torch.randn(shape)
    return state


def rms_norm(x, weight, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def official_mixer(p, hidden):
    """bimamba v2: shared in_proj; each direction conv1d+SiLU, x_proj, dt_proj, scan * silu(z); mean; out_proj."""
    length = hidden.shape[1]
    xz = torch.einsum('blc,ec->bel', hidden, p['in_proj.weight'])  # (b, 2 d_inner, l)

    def direction(xz, suffix):
        a_name, d_name = DIRECTIONS[suffix]
        x, z = xz.chunk(2, dim=1)
        weight = p[f'conv1d{suffix}.weight']
        x = F.silu(F.conv1d(x, weight, p[f'conv1d{suffix}.bias'], padding=weight.shape[-1] - 1,
                            groups=x.shape[1])[..., :length])
        x_dbl = torch.einsum('bel,re->blr', x, p[f'x_proj{suffix}.weight'])
        rank, d_state = p[f'dt_proj{suffix}.weight'].shape[1], p[a_name].shape[1]
        delta = torch.einsum('blr,er->bel', x_dbl[..., :rank], p[f'dt_proj{suffix}.weight'])
        B = x_dbl[..., rank:rank + d_state].transpose(1, 2)
        C = x_dbl[..., rank + d_state:].transpose(1, 2)
        return selective_scan_ref(x, delta, -torch.exp(p[a_name]), B, C, p[d_name], z=z,
                                  delta_bias=p[f'dt_proj{suffix}.bias'], delta_softplus=True)

    y = direction(xz, '') + direction(xz.flip(-1), '_b').flip(-1)
    return torch.einsum('bel,ce->blc', y / 2, p['out_proj.weight'])


def official_rope(t, embed_dims, grid, pretrain_grid=14):
    """VisionRotaryEmbeddingFast(dim=C/2, pt_seq_len=14, ft_seq_len=grid), as in the official det/seg models."""
    dim = embed_dims // 2
    freqs = 1. / (10000 ** (torch.arange(0, dim, 2)[:dim // 2].double() / dim))
    positions = torch.arange(grid).double() / grid * pretrain_grid
    freqs = torch.repeat_interleave(positions[:, None] * freqs[None], 2, dim=-1)  # (grid, dim)
    freqs = torch.cat([freqs[:, None].expand(grid, grid, dim), freqs[None].expand(grid, grid, dim)], -1)
    freqs = freqs.reshape(grid * grid, 2 * dim)
    pairs = t.reshape(*t.shape[:-1], -1, 2)
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).reshape(t.shape)
    return t * freqs.cos() + rotated * freqs.sin()


def official_forward(state, images, stride, depth, rope_grid=None):
    """The official forward (float64); returns (cls feature after norm_f, logits, stream after every block)."""
    state = {k: v.double() for k, v in state.items()}
    x = F.conv2d(images.double(), state['patch_embed.proj.weight'], state['patch_embed.proj.bias'], stride=stride)
    x = x.flatten(2).transpose(1, 2)
    position = x.shape[1] // 2
    if 'cls_token' in state:
        x = torch.cat([x[:, :position], state['cls_token'].expand(len(x), -1, -1), x[:, position:]], dim=1)
    hidden, residual, streams = x + state['pos_embed'], None, []
    for i in range(depth):
        if rope_grid is not None:  # if_rope=True, if_rope_residual=True
            hidden = official_rope(hidden, hidden.shape[-1], rope_grid)
            residual = None if residual is None else official_rope(residual, hidden.shape[-1], rope_grid)
        residual = hidden if residual is None else residual + hidden
        mixer = {k[len(f'layers.{i}.mixer.'):]: v for k, v in state.items() if k.startswith(f'layers.{i}.mixer.')}
        hidden = official_mixer(mixer, rms_norm(residual, state[f'layers.{i}.norm.weight']))
        streams.append(residual + hidden)
    feature = rms_norm(residual + hidden, state['norm_f.weight'])[:, position]
    return feature, F.linear(feature, state['head.weight'], state['head.bias']), streams


TINY = dict(embed_dims=32, num_layers=4)


def tiny_official(grid, patch_size=8, with_cls=True, num_classes=10):
    shapes = official_shapes(32, 4, grid * grid, num_classes, patch_size, with_cls)
    return random_official_state_dict(shapes)


def build_tiny(state, tmp_path, **kwargs):
    """A tiny Vim loaded from ``state`` saved as an official checkpoint, through init_cfg Pretrained."""
    path = tmp_path / 'official.pth'
    torch.save({'model': state}, path)
    kwargs.setdefault('patch_size', 8)
    model = Vim(arch=dict(TINY, patch_stride=kwargs.pop('patch_stride', 8)),
                init_cfg=dict(type='Pretrained', checkpoint=str(path)), **kwargs)
    model.init_weights()
    return model.eval()


# ---------------------------------------------------------------- equivalence with the official model

@pytest.mark.parametrize('patch_size, stride, img', [(8, 8, 40), (16, 8, 48)])
def test_logits_and_features_match_official(tmp_path, patch_size, stride, img):
    grid = (img - patch_size) // stride + 1  # 5: odd grid, class token at 12 of 26
    state = tiny_official(grid, patch_size)
    model = build_tiny(state, tmp_path, patch_size=patch_size, patch_stride=stride, img_size=img)
    images = torch.randn(2, 3, img, img)
    feature_ref, logits_ref, _ = official_forward(state, images, stride, depth=4)
    head = convert_vim(state)
    with torch.no_grad():
        (feature,) = model(images)
    logits = F.linear(feature, head['head.fc.weight'], head['head.fc.bias'])
    assert_close(feature, feature_ref, torch.float32, name='cls feature', scale=10)
    assert_close(logits, logits_ref, torch.float32, name='logits', scale=10)
    with torch.no_grad():
        (feature_fp64,) = model.double()(images.double())  # the fp32 residual stream stays float64 here
    assert_close(feature_fp64, feature_ref, torch.float64, name='float64 cls feature')


def test_dense_features_match_official_streams(tmp_path):
    grid = 5
    state = tiny_official(grid)
    model = build_tiny(state, tmp_path, img_size=40, out_type='featmap', out_indices=(0, 1, 2, 3),
                       pyramid_scales=(1, 1, 1, 1))
    images = torch.randn(2, 3, 40, 40)
    _, _, streams = official_forward(state, images, 8, depth=4)
    with torch.no_grad():
        outs = model(images)
    for k, (out, stream) in enumerate(zip(outs, streams)):
        patches = torch.cat([stream[:, :12], stream[:, 13:]], dim=1)  # class token (index 25 // 2) removed
        norm = model.out_norms[k]
        expected = F.layer_norm(patches, (32,), norm.weight.double(), norm.bias.double(), norm.eps)
        assert_close(out, expected.transpose(1, 2).reshape(2, 32, grid, grid), torch.float32, f'stream {k}', 10)


def test_rope_dense_model_matches_official(tmp_path):
    """Official det/seg setting: no class token, RoPE on block inputs and on the residual stream."""
    grid = 4
    state = tiny_official(grid, with_cls=False)
    model = build_tiny(state, tmp_path, img_size=32, out_type='featmap', out_indices=(3,), pyramid_scales=(1,),
                       with_cls_token=False, use_rope=True, rope_residual=True)
    images = torch.randn(2, 3, 32, 32)
    _, _, streams = official_forward(state, images, 8, depth=4, rope_grid=grid)
    with torch.no_grad():
        (out,) = model(images)
    norm = model.out_norms[0]
    expected = F.layer_norm(streams[-1], (32,), norm.weight.double(), norm.bias.double(), norm.eps)
    assert_close(out, expected.transpose(1, 2).reshape(2, 32, grid, grid), torch.float32, 'rope stream', 10)


def test_mixer_is_bidirectional():
    """The first token's output depends on the last token (the official slow path would only scan forward)."""
    mixer = MambaMixer(16, num_layers=2).eval()
    tokens = torch.randn(1, 9, 16)
    changed = tokens.clone()
    changed[:, -1] += 5
    with torch.no_grad():
        delta = (mixer(changed) - mixer(tokens)).abs()
    assert delta[0, 0].max() > 1e-6
    forward_only = MambaMixer(16, bidirectional=False, num_layers=2).eval()
    with torch.no_grad():
        assert torch.equal(forward_only(changed)[:, :-1], forward_only(tokens)[:, :-1])


def test_mixer_official_init():
    mixer = MambaMixer(32, d_state=16, num_layers=24)
    reference = MambaMixer(32, d_state=16, num_layers=1)
    for scan in mixer.scans:
        assert torch.equal(scan.A_log, torch.arange(1, 17.).log().expand(64, 16))
        assert torch.equal(scan.D, torch.ones(64))
        dt = F.softplus(scan.dt_proj.bias)
        assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6
        assert scan.dt_proj.weight.abs().max() <= 2 ** -0.5  # U(+-R^-0.5), R = ceil(32 / 16)
    ratio = mixer.out_proj.weight.std() / reference.out_proj.weight.std()
    assert abs(ratio - 24 ** -0.5) < 0.05


# ---------------------------------------------------------------- checkpoints

def test_converter_rejects_unknown_keys():
    state = tiny_official(4)
    state['layers.0.mixer.gamma'] = torch.ones(32)
    with pytest.raises(ValueError, match='layers.0.mixer.gamma'):
        convert_vim(state)


def test_pretrained_of_another_depth_fails_loudly(tmp_path):
    state = official_shapes(32, 3, 16, 10, 8)
    path = tmp_path / 'depth3.pth'
    torch.save({'model': random_official_state_dict(state)}, path)
    model = Vim(arch=dict(TINY, patch_stride=8), img_size=32, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError, match='layers.3.mixer.in_proj.weight'):
        model.init_weights()


def run_converter(monkeypatch, *args):
    """tools/model_converters/vim2mmssm.py run in this process (as ``python TOOL *args``)."""
    monkeypatch.setattr(sys, 'argv', ['vim2mmssm.py', *map(str, args)])
    runpy.run_path(str(REPO / 'tools/model_converters/vim2mmssm.py'), run_name='__main__')


def test_converter_tool_writes_a_classifier_checkpoint(tmp_path, monkeypatch):
    """A Vim-Ti shaped official checkpoint -> classifier checkpoint that Vim('tiny') loads through init_cfg."""
    state = random_official_state_dict(official_shapes(192, 24, 14 * 14))
    src, dst = tmp_path / 'official.pth', tmp_path / 'mmssm.pth'
    torch.save({'model': state}, src)
    run_converter(monkeypatch, src, dst, '--arch', 'tiny')
    saved = torch.load(dst)
    converted = saved['state_dict']
    assert saved['meta']['arch'] == 'tiny'
    assert {k.split('.')[0] for k in converted} == {'backbone', 'head'}
    assert torch.equal(converted['backbone.layers.2.mixer.scans.1.A_log'], state['layers.2.mixer.A_b_log'])
    assert torch.equal(converted['head.fc.weight'], state['head.weight'])
    model = Vim('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(dst), prefix='backbone.'))
    model.init_weights()
    assert torch.equal(model.pos_embed.data, state['pos_embed'])


def test_converter_tool_rejects_another_arch(tmp_path, monkeypatch):
    state = random_official_state_dict(official_shapes(192, 24, 14 * 14))
    src, dst = tmp_path / 'official.pth', tmp_path / 'mmssm.pth'
    torch.save({'model': state}, src)
    with pytest.raises(SystemExit, match='not a Vim-small checkpoint'):
        run_converter(monkeypatch, src, dst, '--arch', 'small')
    assert not dst.exists()


def test_pretrained_pos_embed_is_resized_around_the_middle_class_entry(tmp_path):
    state = tiny_official(4)  # 16 patches + class entry at index 8
    model = build_tiny(state, tmp_path, img_size=48, out_type='featmap', with_cls_token=False)  # 6 x 6 grid
    grid = torch.cat([state['pos_embed'][:, :8], state['pos_embed'][:, 9:]], dim=1)
    grid = grid.transpose(1, 2).reshape(1, 32, 4, 4)
    expected = F.interpolate(grid, size=(6, 6), mode='bicubic', align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(model.pos_embed.data, expected)
    assert model.cls_token is None


def test_pos_embed_interpolation_keeps_the_class_entry():
    pos_embed = torch.randn(1, 26, 8)  # 5 x 5 grid + class entry at 12
    resized = resize_pos_embed(pos_embed, (5, 5), (6, 7), with_cls=True)
    assert resized.shape == (1, 43, 8)
    assert torch.equal(resized[:, 21], pos_embed[:, 12])  # 42 // 2
    assert resize_pos_embed(pos_embed, (5, 5), (5, 5), with_cls=True) is pos_embed
    model = Vim(arch=dict(TINY, patch_stride=8), img_size=32).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 56, 40))[0].shape == (1, 32)


# ---------------------------------------------------------------- variants and the backbone contract

PAPER_MILLIONS = {'tiny': 7, 'small': 26, 'base': 98}


@pytest.mark.parametrize('arch, embed_dims', [('tiny', 192), ('small', 384), ('base', 768), ('t+', 192)])
def test_param_counts_equal_the_official_models(arch, embed_dims):
    model = Vim(arch=arch)
    grid = model.grid_size[0]
    shapes = official_shapes(embed_dims, 24, grid * grid)
    official = sum(math.prod(s) for s in shapes.values())
    ours = sum(p.numel() for p in model.parameters()) + embed_dims * 1000 + 1000  # + the 1000-class linear head
    assert ours == official
    if arch in PAPER_MILLIONS:  # the paper rounds to whole millions
        assert round(ours / 1e6) == PAPER_MILLIONS[arch]


def test_arch_zoo_and_errors():
    assert Vim.arch_zoo['t'] is Vim.arch_zoo['tiny'] and Vim(arch='S+').patch_stride == 8
    with pytest.raises(ValueError, match='unknown Vim arch'):
        Vim(arch='huge')
    with pytest.raises(ValueError, match='missing keys'):
        Vim(arch=dict(embed_dims=64))
    with pytest.raises(ValueError, match='unknown keys'):
        Vim(arch=dict(TINY, heads=3))
    with pytest.raises(ValueError, match='with_cls_token'):
        Vim(arch=TINY, with_cls_token=False)
    with pytest.raises(ValueError, match='outside'):
        Vim(arch=TINY, out_indices=(4,))
    with pytest.raises(ValueError, match='images'):
        Vim(arch=TINY, img_size=32)(torch.randn(3, 32, 32))


@pytest.mark.parametrize('patch_stride, img, sizes', [(16, 64, (16, 8, 4, 2)), (8, 64, (14, 7, 3, 1))])
def test_dense_pyramid_shapes(patch_stride, img, sizes):
    model = Vim(arch=dict(TINY, patch_stride=patch_stride), img_size=img, out_type='featmap').eval()
    assert model.out_indices == (0, 1, 2, 3)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, img, img))
    assert [tuple(o.shape) for o in outs] == [(1, 32, s, s) for s in sizes]


def test_frozen_stages_survive_train():
    model = Vim(arch=TINY, img_size=32, frozen_stages=2, drop_path_rate=0.1)
    model.train()
    frozen = [model.patch_embed, model.layers[0], model.layers[1]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert not model.pos_embed.requires_grad and not model.cls_token.requires_grad
    assert not model.layers[1].training and model.layers[2].training
    assert all(p.requires_grad for p in model.layers[2].parameters())


def test_layer_depth_for_lr_decay():
    model = Vim(arch=TINY, img_size=32)
    assert model.get_layer_depth('backbone.pos_embed', 'backbone.') == (0, 6)
    assert model.get_layer_depth('backbone.patch_embed.weight', 'backbone.') == (0, 6)
    assert model.get_layer_depth('backbone.layers.2.mixer.in_proj.weight', 'backbone.') == (3, 6)
    assert model.get_layer_depth('backbone.norm_f.weight', 'backbone.') == (5, 6)
    assert model.get_layer_depth('head.fc.weight', 'backbone.') == (5, 6)


def test_gradient_checkpointing_gives_the_same_gradients():
    two_blocks = dict(arch=dict(embed_dims=32, num_layers=2, patch_stride=8), img_size=24, patch_size=8,
                      out_type='featmap', out_indices=(1, 0, 1), pyramid_scales=(1, 2, 0.5))
    assert_checkpointing_keeps_gradients(lambda with_cp: Vim(**two_blocks, with_cp=with_cp),
                                         torch.randn(2, 3, 24, 24))


def test_layer_decay_constructor_on_a_vim_segmentor():
    """The seg configs' optimizer: lr 0.92 ** (25 - depth) by block, no weight decay on 1-D params and pos_embed."""
    segmentor = torch.nn.Module()
    segmentor.backbone = Vim(arch=TINY, img_size=32, out_type='featmap', with_cls_token=False)
    segmentor.decode_head = torch.nn.Conv2d(32, 3, 1)
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='mmssm.LayerDecayOptimWrapperConstructor',
        optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05)),
        paramwise_cfg=dict(layer_decay_rate=0.92, flat_decay_mult=0.0, custom_keys={'pos_embed': dict(decay_mult=0.)})))
    groups = {g['param_name']: g for g in constructor(segmentor).optimizer.param_groups}
    assert groups['backbone.pos_embed']['lr'] == pytest.approx(1e-4 * 0.92 ** 5)
    assert groups['backbone.pos_embed']['weight_decay'] == 0
    assert groups['backbone.layers.1.mixer.in_proj.weight']['lr'] == pytest.approx(1e-4 * 0.92 ** 3)
    assert groups['backbone.layers.1.mixer.in_proj.weight']['weight_decay'] == 0.05
    assert groups['backbone.layers.1.mixer.scans.1.D']['weight_decay'] == 0
    assert groups['decode_head.weight']['lr'] == pytest.approx(1e-4)


def test_rope_model_supports_module_apply():
    """Initialisers walk the model with nn.Module.apply (mmengine, mmdet): the RoPE module must not shadow it."""
    model = Vim(arch=TINY, img_size=32, patch_size=8, out_type='featmap', out_indices=(1, 3), pyramid_scales=(2, 1),
                with_cls_token=False, use_rope=True)
    visited = []
    model.apply(visited.append)
    assert model.rope in visited
    assert all(out.isfinite().all() for out in model(torch.randn(1, 3, 32, 32)))
