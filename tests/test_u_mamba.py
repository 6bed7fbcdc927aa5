"""U-Mamba 2D and 3D: the equivalence contract with the official networks, the converter and its tool, sizes,
errors, training.

The official side is written here from the official code's semantics (bowang-lab/U-Mamba
``umamba/nnunetv2/nets/UMambaBot_2d.py`` / ``UMambaEnc_2d.py`` / ``UMambaBot_3d.py`` / ``UMambaEnc_3d.py``:
BasicResBlock, nnU-Net's BasicBlockD / ConvDropoutNormReLU, MambaLayer over mamba_ssm's Mamba, UNetResDecoder with deep
supervision) with plain torch ops in float64, on random state dicts with the official key names and shapes,
duplicates included. The 3D nets differ from the 2D ones in two places: U-Mamba_Enc 3D has a Mamba layer after every
stage, and both 3D decoders concatenate the full-resolution skip at their last stage.
"""
import math
import runpy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import DefaultScope

from mmssm.apis import network_from_checkpoint, predict_volume
from mmssm.kernels.selective_scan import selective_scan_ref
from mmssm.kernels.testing import assert_close
from mmssm.models.backbones.u_mamba import UMamba, convert_umamba, plan_from_nnunet
from mmssm.models.decode_heads import DeepSupervisionHead, nnunet_scale_weights
from mmssm.models.layers.autocast import run_in_float32
from mmssm.models.utils import CheckpointMismatchError, load_state_dict_checked

REPO = Path(__file__).resolve().parents[1]
BOT_PLAN = dict(features=(8, 16, 24, 32), strides=(1, 2, 2, 2), kernel_sizes=(3, 3, 3, 3),
                encoder_blocks=(2, 2, 2, 2), decoder_blocks=(2, 2, 2), patch_size=(32, 32))
# 3 stages at 16 x 16: Mamba after stages 0 (256 pixels > 8 channels: pixel tokens) and 2 (16 pixels <= 24 channels:
# channel tokens); a non-square kernel and stride on the way
ENC_PLAN = dict(features=(8, 16, 24), strides=(1, 2, (2, 2)), kernel_sizes=(3, (3, 1), 3),
                encoder_blocks=(2, 3, 2), decoder_blocks=(2, 2), patch_size=(16, 16))
# 3D: an anisotropic first downsampling (1, 2, 2) and a (1, 3, 3) kernel; Bot at 16^3
BOT_PLAN_3D = dict(features=(4, 8, 12), strides=(1, (1, 2, 2), 2), kernel_sizes=(3, (1, 3, 3), 3),
                   encoder_blocks=(2, 2, 2), decoder_blocks=(2, 2), patch_size=(16, 16, 16))
# Enc 3D at 8^3: Mamba after all three stages; stage 2 (2^3 = 8 voxels <= 32 channels) scans channel tokens
ENC_PLAN_3D = dict(features=(8, 16, 32), strides=(1, 2, 2), kernel_sizes=(3, 3, 3), encoder_blocks=(2, 1, 2),
                   decoder_blocks=(2, 2), patch_size=(8, 8, 8))
NUM_CLASSES = 3


# --------------------------------------------------------------------------------------------------------------
# the official layout and forward, independent of mmssm.models

def ntuple(v, dims):
    return (v, ) * dims if isinstance(v, int) else tuple(v)


def spatial_dims(plan):
    return len(plan['patch_size'])


class OfficialWeights:
    """Builds an official state dict key by key (random float64, or meta tensors for counting)."""

    def __init__(self, seed=0, meta=False, dims=2):
        self.sd, self.meta, self.dims = {}, meta, dims
        self.generator = torch.Generator().manual_seed(seed)

    def rand(self, *shape, scale=0.3, offset=0.0):
        if self.meta:
            return torch.empty(shape, device='meta')
        return torch.randn(shape, generator=self.generator, dtype=torch.float64) * scale + offset

    def conv(self, p, cin, cout, k):
        k = ntuple(k, self.dims)
        self.sd[p + 'weight'] = self.rand(cout, cin, *k, scale=(cin * math.prod(k)) ** -0.5)
        self.sd[p + 'bias'] = self.rand(cout, scale=0.1)

    def norm(self, p, c):
        self.sd[p + 'weight'], self.sd[p + 'bias'] = self.rand(c, offset=1.0), self.rand(c, scale=0.1)

    def res_block(self, p, cin, cout, k):  # BasicResBlock(use_1x1conv=True)
        self.conv(p + 'conv1.', cin, cout, k), self.norm(p + 'norm1.', cout)
        self.conv(p + 'conv2.', cout, cout, k), self.norm(p + 'norm2.', cout)
        self.conv(p + 'conv3.', cin, cout, 1)

    def block_d(self, p, c, k):  # BasicBlockD: ConvDropoutNormReLU registers conv / norm twice
        for j in (1, 2):
            self.conv(f'{p}conv{j}.conv.', c, c, k), self.norm(f'{p}conv{j}.norm.', c)
            for part, index in (('conv', 0), ('norm', 1)):
                for name in ('weight', 'bias'):
                    self.sd[f'{p}conv{j}.all_modules.{index}.{name}'] = self.sd[f'{p}conv{j}.{part}.{name}']

    def stage(self, p, cin, cout, k, blocks):
        self.res_block(p + '0.', cin, cout, k)
        for j in range(1, blocks):
            self.block_d(f'{p}{j}.', cout, k)

    def mamba_layer(self, p, d):  # MambaLayer: LayerNorm + mamba_ssm Mamba(d, 16, 4, 2)
        inner, rank = 2 * d, math.ceil(d / 16)
        self.norm(p + 'norm.', d)
        m = p + 'mamba.'
        self.sd[m + 'in_proj.weight'] = self.rand(2 * inner, d, scale=d ** -0.5)
        self.sd[m + 'conv1d.weight'] = self.rand(inner, 1, 4, scale=0.5)
        self.sd[m + 'conv1d.bias'] = self.rand(inner, scale=0.1)
        self.sd[m + 'x_proj.weight'] = self.rand(rank + 32, inner, scale=inner ** -0.5)
        self.sd[m + 'dt_proj.weight'] = self.rand(inner, rank, scale=rank ** -0.5)
        self.sd[m + 'dt_proj.bias'] = self.rand(inner, scale=0.5, offset=-3.0)
        a_log = torch.arange(1, 17, dtype=torch.float64).log().expand(inner, 16)
        self.sd[m + 'A_log'] = self.rand(inner, 16) if self.meta else a_log + self.rand(inner, 16, scale=0.1)
        self.sd[m + 'D'] = self.rand(inner, offset=1.0)
        self.sd[m + 'out_proj.weight'] = self.rand(d, inner, scale=inner ** -0.5)


def official_blocks(plan):
    """The official constructors' rule over the plan's block numbers."""
    n = len(plan['features'])
    enc = [b if s < math.ceil(n / 2) else 1 for s, b in enumerate(plan['encoder_blocks'])]
    dec = [b if s < math.ceil((n - 1) / 2 + 0.5) else 1 for s, b in enumerate(plan['decoder_blocks'])]
    return enc, dec


def official_mamba_stages(plan, variant):
    """{stage: (dim, channel_token)} as UMambaBot / ResidualMambaEncoder set them (3D: every stage)."""
    n, f, dims = len(plan['features']), plan['features'], spatial_dims(plan)
    if variant == 'bot':
        return {n - 1: (f[-1], False)}
    size, stages = list(plan['patch_size']), {}
    for s in range(n):
        size = [i // j for i, j in zip(size, ntuple(plan['strides'][s], dims))]
        if dims == 3 or (s % 2 == 1) ^ (n % 2 == 1):
            token = math.prod(size) <= f[s]
            stages[s] = (math.prod(size) if token else f[s], token)
    return stages


def official_state_dict(plan, variant, in_channels=3, num_classes=NUM_CLASSES, seed=0, meta=False):
    dims = spatial_dims(plan)
    w = OfficialWeights(seed, meta, dims)
    f, k, n = plan['features'], plan['kernel_sizes'], len(plan['features'])
    enc, dec = official_blocks(plan)
    w.stage('encoder.stem.', in_channels, f[0], k[0], enc[0])
    for s in range(n):
        w.stage(f'encoder.stages.{s}.', f[max(s - 1, 0)], f[s], k[s], enc[s])
    for s, (dim, _) in official_mamba_stages(plan, variant).items():
        w.mamba_layer('mamba_layer.' if variant == 'bot' else f'encoder.mamba_layers.{s}.', dim)
    for s in range(1, n):
        below, skip = f[-s], f[-(s + 1)]
        w.conv(f'decoder.upsample_layers.{s - 1}.conv.', below, skip, 1)
        concat = s < n - 1 or dims == 3  # the 3D decoder also concatenates the full-resolution skip
        w.stage(f'decoder.stages.{s - 1}.', 2 * skip if concat else skip, skip, k[-(s + 1)], dec[s - 1])
        w.conv(f'decoder.seg_layers.{s - 1}.', skip, num_classes, 1)
    w.sd.update({'decoder.' + key: v for key, v in w.sd.items() if key.startswith('encoder.')})  # decoder.encoder
    return w.sd


def conv(sd, p, x, stride=1):
    weight = sd[p + 'weight']
    conv_nd = F.conv3d if weight.dim() == 5 else F.conv2d
    padding = [(s - 1) // 2 for s in weight.shape[2:]]
    return conv_nd(x, weight, sd[p + 'bias'], ntuple(stride, weight.dim() - 2), padding)


def inorm(sd, p, x):
    return F.instance_norm(x, weight=sd[p + 'weight'], bias=sd[p + 'bias'], eps=1e-5)


def lrelu(x):
    return F.leaky_relu(x, 0.01)


def official_stage(sd, p, x, stride, blocks):
    q = p + '0.'  # BasicResBlock
    y = lrelu(inorm(sd, q + 'norm1.', conv(sd, q + 'conv1.', x, stride)))
    y = inorm(sd, q + 'norm2.', conv(sd, q + 'conv2.', y))
    x = lrelu(y + conv(sd, q + 'conv3.', x, stride))
    for j in range(1, blocks):  # BasicBlockD through all_modules
        q = f'{p}{j}.conv'
        y = lrelu(inorm(sd, q + '1.all_modules.1.', conv(sd, q + '1.all_modules.0.', x)))
        x = lrelu(inorm(sd, q + '2.all_modules.1.', conv(sd, q + '2.all_modules.0.', y)) + x)
    return x


def official_mamba(sd, p, h):
    """mamba_ssm's Mamba (one direction) on (b, l, d)."""
    length = h.shape[1]
    x, z = torch.einsum('bld,ed->bel', h, sd[p + 'in_proj.weight']).chunk(2, dim=1)
    x = F.silu(F.conv1d(x, sd[p + 'conv1d.weight'], sd[p + 'conv1d.bias'], padding=3, groups=x.shape[1])[..., :length])
    x_dbl = torch.einsum('bel,re->blr', x, sd[p + 'x_proj.weight'])
    rank = sd[p + 'dt_proj.weight'].shape[1]
    dt, B, C = x_dbl.split([rank, 16, 16], dim=-1)
    delta = torch.einsum('blr,er->bel', dt, sd[p + 'dt_proj.weight'])
    y = selective_scan_ref(x, delta, -torch.exp(sd[p + 'A_log']), B.transpose(1, 2), C.transpose(1, 2), sd[p + 'D'],
                           z=z, delta_bias=sd[p + 'dt_proj.bias'], delta_softplus=True)
    return torch.einsum('bel,de->bld', y, sd[p + 'out_proj.weight'])


def official_mamba_layer(sd, p, x, channel_token):
    B, C = x.shape[:2]
    flat = x.reshape(B, C, -1) if channel_token else x.reshape(B, C, -1).transpose(1, 2)
    flat = F.layer_norm(flat, flat.shape[-1:], sd[p + 'norm.weight'], sd[p + 'norm.bias'])
    out = official_mamba(sd, p + 'mamba.', flat)
    return (out if channel_token else out.transpose(1, 2)).reshape(x.shape)


def official_umamba(sd, x, plan, variant):
    """The deep-supervision outputs, highest resolution first."""
    n, dims = len(plan['features']), spatial_dims(plan)
    enc, dec = official_blocks(plan)
    mambas = official_mamba_stages(plan, variant)
    x = official_stage(sd, 'encoder.stem.', x, 1, enc[0])
    skips = []
    for s in range(n):
        x = official_stage(sd, f'encoder.stages.{s}.', x, plan['strides'][s], enc[s])
        if s in mambas:
            x = official_mamba_layer(sd, 'mamba_layer.' if variant == 'bot' else f'encoder.mamba_layers.{s}.', x,
                                     mambas[s][1])
        skips.append(x)
    x, outputs = skips[-1], []
    for s in range(n - 1):
        scale = tuple(float(v) for v in ntuple(plan['strides'][-1 - s], dims))
        x = F.interpolate(x, scale_factor=scale, mode='nearest')
        x = conv(sd, f'decoder.upsample_layers.{s}.conv.', x)
        if s < n - 2 or dims == 3:
            x = torch.cat((x, skips[-(s + 2)]), 1)
        x = official_stage(sd, f'decoder.stages.{s}.', x, 1, dec[s])
        outputs.append(conv(sd, f'decoder.seg_layers.{s}.', x))
    return outputs[::-1]


# --------------------------------------------------------------------------------------------------------------

def build_converted(sd, plan, variant, in_channels=3):
    converted = convert_umamba({'network_weights': sd})
    backbone = UMamba(plan, mamba=variant, in_channels=in_channels).double()
    load_state_dict_checked(backbone, {k[9:]: v for k, v in converted.items() if k.startswith('backbone.')})
    head = DeepSupervisionHead(backbone.out_channels, backbone.out_channels[0], NUM_CLASSES,
                               scale_weights=(1.0,) * len(backbone.out_channels),
                               spatial_dims=backbone.spatial_dims).double()
    load_state_dict_checked(head, {k[12:]: v for k, v in converted.items() if k.startswith('decode_head.')})
    return backbone, head


@pytest.mark.parametrize('variant, plan, size', [('bot', BOT_PLAN, (32, 64)), ('enc', ENC_PLAN, (16, 16))])
def test_deep_supervision_logits_match_official(variant, plan, size):
    sd = official_state_dict(plan, variant)
    images = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = official_umamba(sd, images, plan, variant)
    backbone, head = build_converted(sd, plan, variant)
    actual = head(backbone(images))
    assert len(actual) == len(expected) == len(plan['features']) - 1
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert_close(a, e, torch.float64, name=f'scale {i}')
    assert_close(head.predict([f.clone() for f in backbone(images)], [dict(img_shape=size)] * 2, None), expected[0],
                 torch.float64, name='prediction')


@pytest.mark.parametrize('variant, plan, size', [('bot', BOT_PLAN_3D, (16, 16, 16)), ('enc', ENC_PLAN_3D, (8, 8, 8))])
def test_3d_deep_supervision_logits_match_official(variant, plan, size):
    sd = official_state_dict(plan, variant, in_channels=1)
    volumes = torch.randn(2, 1, *size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = official_umamba(sd, volumes, plan, variant)
    backbone, head = build_converted(sd, plan, variant, in_channels=1)
    actual = head(backbone(volumes))
    assert backbone.spatial_dims == 3 and len(actual) == len(expected) == 2
    assert actual[0].shape == (2, NUM_CLASSES, *size)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape
        assert_close(a, e, torch.float64, name=f'scale {i}')


def test_3d_layout_differs_from_2d_as_the_official_nets():
    """Enc 3D: Mamba after every stage (2D: alternate ones); 3D decoders concatenate the full-resolution skip."""
    enc3d = UMamba(ENC_PLAN_3D, mamba='enc', in_channels=1)
    assert [(layer.dims, layer.channel_token) for layer in enc3d.encoder.mamba_layers] == [
        (8, False), (16, False), (8, True)]
    assert enc3d.fixed_size == (8, 8, 8) and enc3d.size_multiple == (4, 4, 4)
    assert enc3d.decoder.stages[-1][0].conv1.in_channels == 2 * 8
    assert UMamba(ENC_PLAN, mamba='enc').decoder.stages[-1][0].conv1.in_channels == 8
    bot3d = UMamba(BOT_PLAN_3D, mamba='bot', in_channels=1)
    assert isinstance(bot3d.encoder.stages[1][0].conv1, torch.nn.Conv3d)
    assert bot3d.encoder.stages[1][0].conv1.kernel_size == (1, 3, 3) and bot3d.size_multiple == (2, 4, 4)
    assert bot3d.fixed_size is None


def test_enc_scans_channel_tokens_where_the_patch_map_is_small():
    layers = UMamba(ENC_PLAN, mamba='enc').encoder.mamba_layers
    assert [getattr(layer, 'channel_token', None) for layer in layers] == [False, None, True]
    assert layers[2].dims == 4 * 4 and layers[0].dims == 8


@pytest.mark.parametrize('arch, variant', [('nnunet-2d-320', 'bot'), ('nnunet-2d-320', 'enc'),
                                           ('nnunet-2d-512', 'bot'), ('nnunet-3d-128', 'bot'),
                                           ('nnunet-3d-128', 'enc')])
def test_param_counts_equal_the_official_models(arch, variant):
    plan = UMamba.arch_zoo[arch]
    official = official_state_dict(plan, variant, meta=True)
    sd = convert_umamba({k: v for k, v in official.items()  # without the duplicates (meta tensors do not compare)
                         if '.all_modules.' not in k and not k.startswith('decoder.encoder.')})
    with torch.device('meta'):
        backbone = UMamba(arch, mamba=variant)
    ours = sum(p.numel() for p in backbone.parameters())
    assert ours == sum(v.numel() for k, v in sd.items() if k.startswith('backbone.'))
    assert {k: tuple(v.shape) for k, v in backbone.state_dict().items()} == {
        k[9:]: tuple(v.shape) for k, v in sd.items() if k.startswith('backbone.')}


def test_plan_from_nnunet_plans_file():
    plans = {'configurations': {'2d': dict(
        UNet_base_num_features=32, unet_max_num_features=512, conv_kernel_sizes=[[3, 3]] * 3,
        pool_op_kernel_sizes=[[1, 1], [2, 2], [2, 1]], n_conv_per_stage_encoder=[2, 2, 2],
        n_conv_per_stage_decoder=[2, 2], patch_size=[64, 32])}}
    plan = plan_from_nnunet(plans)
    assert plan == dict(features=(32, 64, 128), strides=((1, 1), (2, 2), (2, 1)), kernel_sizes=((3, 3),) * 3,
                        encoder_blocks=(2, 2, 2), decoder_blocks=(2, 2), patch_size=(64, 32))
    assert UMamba(plan).size_multiple == (4, 2)
    with pytest.raises(ValueError, match="configuration '3d_fullres'"):
        plan_from_nnunet(plans, '3d_fullres')


def nnunet_3d_plans(plan):
    """An nnUNetPlans.json dict whose 3d_fullres configuration is ``plan`` (features doubling from 8, at most 32)."""
    return {'configurations': {'3d_fullres': dict(
        UNet_base_num_features=plan['features'][0], unet_max_num_features=max(plan['features']),
        conv_kernel_sizes=[list(ntuple(k, 3)) for k in plan['kernel_sizes']],
        pool_op_kernel_sizes=[list(ntuple(s, 3)) for s in plan['strides']],
        n_conv_per_stage_encoder=list(plan['encoder_blocks']), n_conv_per_stage_decoder=list(plan['decoder_blocks']),
        patch_size=list(plan['patch_size']))}}


def test_plan_from_nnunet_3d_fullres():
    plans = nnunet_3d_plans(ENC_PLAN_3D)
    plan = plan_from_nnunet(plans, '3d_fullres')
    assert plan == dict(ENC_PLAN_3D, strides=((1, 1, 1), (2, 2, 2), (2, 2, 2)), kernel_sizes=((3, 3, 3),) * 3)
    assert UMamba(plan).spatial_dims == 3
    plans['configurations']['3d_fullres']['conv_kernel_sizes'][1] = [3, 3]
    with pytest.raises(ValueError, match='neither 2D nor 3D throughout'):
        plan_from_nnunet(plans, '3d_fullres')


def test_plan_from_nnunet_resolves_inherits_from():
    """nnU-Net's PlansManager resolves ``inherits_from`` (e.g. 3d_cascade_fullres from 3d_fullres), the child's keys
    overriding the parent's; get_umamba_*_from_plans builds from the resolved configuration."""
    plans = nnunet_3d_plans(ENC_PLAN_3D)
    plans['configurations']['3d_cascade_fullres'] = dict(inherits_from='3d_fullres', n_conv_per_stage_decoder=[1, 1])
    plans['configurations']['3d_cascade_bs4'] = dict(inherits_from='3d_cascade_fullres', batch_size=4)
    expected = dict(plan_from_nnunet(plans, '3d_fullres'), decoder_blocks=(1, 1))
    assert plan_from_nnunet(plans, '3d_cascade_fullres') == plan_from_nnunet(plans, '3d_cascade_bs4') == expected
    plans['configurations']['3d_fullres']['inherits_from'] = '3d_cascade_bs4'
    with pytest.raises(ValueError, match='circular inherits_from'):
        plan_from_nnunet(plans, '3d_cascade_bs4')


def test_converter_rejects_unknown_keys_and_altered_duplicates():
    sd = official_state_dict(ENC_PLAN, 'enc')
    with pytest.raises(ValueError, match=r'convert_umamba: 1 keys are not official U-Mamba keys.*extra'):
        convert_umamba(dict(sd, extra=torch.zeros(1)))
    altered = dict(sd)
    altered['decoder.encoder.stem.0.conv1.weight'] = sd['encoder.stem.0.conv1.weight'] + 1
    with pytest.raises(ValueError, match='decoder.encoder.stem.0.conv1.weight is not a copy'):
        convert_umamba(altered)
    backbone = UMamba(ENC_PLAN, mamba='bot')  # the Enc weights do not fit a Bot model
    weights = {k[9:]: v for k, v in convert_umamba(sd).items() if k.startswith('backbone.')}
    with pytest.raises(CheckpointMismatchError, match='11 unexpected keys'):
        load_state_dict_checked(backbone, weights)


def run_converter(monkeypatch, *args):
    monkeypatch.setattr(sys, 'argv', ['umamba2mmssm.py', *map(str, args)])
    runpy.run_path(str(REPO / 'tools/model_converters/umamba2mmssm.py'), run_name='__main__')


def test_converter_tool_reads_the_plan_and_variant_from_the_checkpoint(tmp_path, monkeypatch):
    plan = BOT_PLAN
    plans = {'configurations': {'2d': dict(
        UNet_base_num_features=8, unet_max_num_features=32, conv_kernel_sizes=[[3, 3]] * 4,
        pool_op_kernel_sizes=[[1, 1]] + [[2, 2]] * 3, n_conv_per_stage_encoder=[2] * 4,
        n_conv_per_stage_decoder=[2] * 3, patch_size=[32, 32])}}
    plan = dict(plan, features=(8, 16, 32, 32))
    sd = official_state_dict(plan, 'bot')
    src, dst = tmp_path / 'checkpoint_final.pth', tmp_path / 'mmssm.pth'
    torch.save(dict(network_weights=sd, init_args=dict(plans=plans, configuration='2d'),
                    trainer_name='nnUNetTrainerUMambaBot'), src)
    run_converter(monkeypatch, src, dst)
    saved = torch.load(dst)
    assert saved['meta']['mamba'] == 'bot' and saved['meta']['arch']['features'] == (8, 16, 32, 32)
    assert torch.equal(saved['state_dict']['backbone.encoder.mamba_layers.3.mamba.scans.0.A_log'],
                       sd['mamba_layer.mamba.A_log'])
    assert torch.equal(saved['state_dict']['decode_head.seg_layers.0.weight'], sd['decoder.seg_layers.2.weight'])
    with pytest.raises(SystemExit, match='not a U-Mamba \\(enc\\) checkpoint'):
        run_converter(monkeypatch, src, dst, '--mamba', 'enc')


def test_3d_bad_inputs_are_clear_errors():
    model = UMamba(BOT_PLAN_3D, mamba='bot', in_channels=1)
    with pytest.raises(ValueError, match=r'expects \(batch, 1, D, H, W\) volumes with D, H and W multiples of 2 x 4'):
        model(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r'multiples of 2 x 4 x 4'):
        model(torch.randn(1, 1, 16, 16, 18))
    with pytest.raises(ValueError, match=r'expects \(batch, 3, H, W\) images'):
        UMamba(ENC_PLAN, mamba='enc')(torch.randn(1, 3, 16, 16, 16))
    with pytest.raises(ValueError, match=r"channel tokens at the plan's patch size \(8, 8, 8\)"):
        UMamba(ENC_PLAN_3D, mamba='enc', in_channels=1)(torch.randn(1, 1, 16, 16, 16))
    with pytest.raises(ValueError, match='spatial_dims 2 does not fit the plan'):
        UMamba(BOT_PLAN_3D, spatial_dims=2)
    with pytest.raises(ValueError, match='spatial_dims None does not fit the plan'):
        UMamba(dict(BOT_PLAN_3D, kernel_sizes=(3, (3, 3), 3)))


def test_converter_tool_takes_a_3d_fullres_checkpoint_and_predicts_a_volume(tmp_path, monkeypatch):
    """The tool reads the 3d_fullres plan and the Enc variant from checkpoint_final.pth; the converted network's
    whole-volume prediction of a patch-size volume (one window) is the official forward's full-resolution logits."""
    sd = official_state_dict(ENC_PLAN_3D, 'enc', in_channels=1)
    src, dst = tmp_path / 'checkpoint_final.pth', tmp_path / 'mmssm.pth'
    torch.save(dict(network_weights=sd, init_args=dict(plans=nnunet_3d_plans(ENC_PLAN_3D), configuration='3d_fullres'),
                    trainer_name='nnUNetTrainerUMambaEnc'), src)
    run_converter(monkeypatch, src, dst)
    meta = torch.load(dst)['meta']
    assert (meta['mamba'], meta['in_channels'], meta['num_classes']) == ('enc', 1, NUM_CLASSES)
    assert meta['arch']['patch_size'] == (8, 8, 8)
    network = network_from_checkpoint(dst).double()
    volume = torch.randn(1, 8, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    logits = predict_volume(network, volume, meta['arch']['patch_size'])
    assert_close(logits.double(), official_umamba(sd, volume[None], ENC_PLAN_3D, 'enc')[0][0], torch.float32)
    with pytest.raises(SystemExit, match='not a U-Mamba \\(bot\\) checkpoint'):
        run_converter(monkeypatch, src, dst, '--mamba', 'bot')


def test_bad_inputs_are_clear_errors():
    model = UMamba(ENC_PLAN, mamba='enc')
    with pytest.raises(ValueError, match=r'expects \(batch, 3, H, W\) images with H and W multiples of 4 x 4'):
        model(torch.randn(1, 3, 16, 18))
    with pytest.raises(ValueError, match=r'expects \(batch, 3, H, W\)'):
        model(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"channel tokens at the plan's patch size \(16, 16\)"):
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="mamba must be 'bot' or 'enc'"):
        UMamba(ENC_PLAN, mamba='both')
    with pytest.raises(ValueError, match='needs 3 strides'):
        UMamba(dict(ENC_PLAN, strides=(1, 2)))
    with pytest.raises(ValueError, match=r"missing \['patch_size'\]"):
        UMamba({k: v for k, v in ENC_PLAN.items() if k != 'patch_size'})
    with pytest.raises(ValueError, match='channels \\(16\\) must equal in_channels\\[0\\]'):
        DeepSupervisionHead((8, 16), 16, 2)


def test_mamba_layers_run_in_float32_under_autocast():
    layer = UMamba(ENC_PLAN, mamba='enc').encoder.mamba_layers[0]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = layer(torch.randn(1, 8, 16, 16, dtype=torch.bfloat16))
        assert run_in_float32(torch.sin, torch.ones(1, dtype=torch.float16)).dtype == torch.float32
    assert out.dtype == torch.float32


def test_nnunet_scale_weights():
    assert nnunet_scale_weights(1) == (1.0,)
    assert nnunet_scale_weights(3) == pytest.approx((2 / 3, 1 / 3, 0.0))
    assert sum(nnunet_scale_weights(7)) == pytest.approx(1.0) and nnunet_scale_weights(7)[-1] == 0


def segmentor(plan=BOT_PLAN):
    from mmseg.models.segmentors import EncoderDecoder
    with DefaultScope.overwrite_default_scope('mmseg'):
        return EncoderDecoder(
            backbone=dict(type='mmssm.UMamba', arch=plan, mamba='bot'),
            decode_head=dict(type='mmssm.DeepSupervisionHead', in_channels=plan['features'][:-1],
                             channels=plan['features'][0], num_classes=NUM_CLASSES,
                             loss_decode=[dict(type='CrossEntropyLoss', loss_weight=1.0),
                                          dict(type='mmssm.SoftDiceLoss', loss_weight=1.0)]),
            data_preprocessor=dict(type='SegDataPreProcessor', size=(32, 32)),
            test_cfg=dict(mode='whole'))


def data_samples(labels):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for label in labels:
        sample = SegDataSample(metainfo=dict(img_shape=tuple(label.shape), pad_shape=tuple(label.shape)))
        sample.gt_sem_seg = PixelData(data=label[None])
        samples.append(sample)
    return samples


def test_training_step_reaches_every_weighted_parameter():
    """Every parameter gets a gradient except the lowest-resolution classifier, whose nnU-Net weight is 0."""
    model = segmentor()
    model.init_weights()
    labels = torch.randint(0, NUM_CLASSES, (2, 32, 32))
    losses = model.loss(torch.randn(2, 3, 32, 32), data_samples(labels))
    assert set(losses) == {'decode.loss_ce', 'decode.loss_dice', 'decode.acc_seg'}
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    no_grad = sorted(n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0)
    assert no_grad == ['decode_head.seg_layers.2.bias', 'decode_head.seg_layers.2.weight']


def test_deep_supervision_loss_is_the_weighted_sum_over_downsampled_labels():
    model = segmentor()
    head = model.decode_head
    labels = torch.randint(0, NUM_CLASSES, (2, 32, 32))
    features = model.backbone(torch.randn(2, 3, 32, 32))
    logits = head(features)
    losses = head.loss_by_feat(logits, data_samples(labels))
    expected = 0.0
    for weight, scale_logits, step in zip(nnunet_scale_weights(3), logits, (1, 2, 4)):
        if weight:
            label = labels[:, step // 2::step, step // 2::step] if step > 1 else labels  # centre pixel of each block
            expected = expected + weight * F.cross_entropy(scale_logits, label)
    assert losses['loss_ce'].item() == pytest.approx(expected.item(), rel=1e-5)
