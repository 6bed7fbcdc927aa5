"""LightM-UNet 2D and 3D: the equivalence contract with the official network, the converter and its tool, size, errors.

The official side is written here from the official code's semantics (MrBlankness/LightM-UNet
``lightm-unet/nnunetv2/nets/LightMUNet.py``: MONAI Convolution / GroupNorm / UpSample(nontrainable, bilinear),
MambaLayer over mamba_ssm's Mamba, ResMambaBlock, ResUpBlock) with plain torch ops in float64, on random state dicts
with the official key names and shapes (``spatial_dims`` 2 or 3: Conv2d / Conv3d, MaxPool2d / 3d, bilinear /
trilinear); the Mamba reference is test_u_mamba's.
"""
import runpy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from test_u_mamba import OfficialWeights, data_samples, official_mamba

from mmssm.apis import network_from_checkpoint
from mmssm.kernels.testing import assert_close
from mmssm.models.backbones.light_m_unet import LightMUNet, convert_lightmunet
from mmssm.models.utils import load_state_dict_checked

REPO = Path(__file__).resolve().parents[1]
TINY = dict(init_filters=8, blocks_down=(1, 2, 1), blocks_up=(1, 2), num_groups=4)
PAPER = LightMUNet.arch_zoo['lightm-unet']


def official_state_dict(arch, in_channels=3, num_classes=2, seed=0, meta=False, dims=2):
    w = OfficialWeights(seed, meta, dims)
    sd, f, one, three = w.sd, arch['init_filters'], (1, ) * dims, (3, ) * dims

    def mamba_projection(p, cin, cout):
        w.mamba_layer(p, cin)
        sd[p + 'proj.weight'], sd[p + 'proj.bias'] = w.rand(cout, cin, scale=cin ** -0.5), w.rand(cout, scale=0.1)
        sd[p + 'skip_scale'] = w.rand(1, offset=1.0)

    sd['convInit.0.conv.weight'] = w.rand(in_channels, 1, *three, scale=0.3)
    sd['convInit.1.conv.weight'] = w.rand(f, in_channels, *one, scale=in_channels ** -0.5)
    for i, blocks in enumerate(arch['blocks_down']):
        c = f * 2 ** i
        if i > 0:
            mamba_projection(f'down_layers.{i}.0.0.', c // 2, c)
        for j in range(1, blocks + 1):
            w.norm(f'down_layers.{i}.{j}.norm1.', c), w.norm(f'down_layers.{i}.{j}.norm2.', c)
            mamba_projection(f'down_layers.{i}.{j}.conv1.', c, c), mamba_projection(f'down_layers.{i}.{j}.conv2.', c, c)
    num_up = len(arch['blocks_up'])
    for i, blocks in enumerate(arch['blocks_up']):
        c = f * 2 ** (num_up - i) // 2
        sd[f'up_samples.{i}.0.conv.weight'] = w.rand(c, 2 * c, *one, scale=(2 * c) ** -0.5)
        for j in range(blocks):
            p = f'up_layers.{i}.{j}.'
            w.norm(p + 'norm1.', c), w.norm(p + 'norm2.', c)
            sd[p + 'conv.0.conv.weight'] = w.rand(c, 1, *three, scale=0.3)
            sd[p + 'conv.1.conv.weight'] = w.rand(c, c, *one, scale=c ** -0.5)
            sd[p + 'skip_scale'] = w.rand(1, offset=1.0)
    w.norm('conv_final.0.', f)
    sd['conv_final.2.0.conv.weight'], sd['conv_final.2.0.conv.bias'] = w.rand(f, 1, *one, offset=1.0), w.rand(f)
    sd['conv_final.2.1.conv.weight'] = w.rand(num_classes, f, *one, scale=f ** -0.5)
    sd['conv_final.2.1.conv.bias'] = w.rand(num_classes, scale=0.1)
    return sd


def official_layer(sd, p, x):
    """MambaLayer: flatten, LN, Mamba + skip_scale * x, the same LN, Linear."""
    B, C = x.shape[:2]
    flat = x.reshape(B, C, -1).transpose(-1, -2)
    ln = (C,), sd[p + 'norm.weight'], sd[p + 'norm.bias']
    y = official_mamba(sd, p + 'mamba.', F.layer_norm(flat, *ln)) + sd[p + 'skip_scale'] * flat
    y = F.linear(F.layer_norm(y, *ln), sd[p + 'proj.weight'], sd[p + 'proj.bias'])
    return y.transpose(-1, -2).reshape(B, -1, *x.shape[2:])


def gn(sd, p, x, groups):
    return F.group_norm(x, groups, sd[p + 'weight'], sd[p + 'bias'], eps=1e-5)


def dwsep(sd, p, x, bias=False):
    c = x.shape[1]
    k = sd[p + '0.conv.weight'].shape[-1]
    conv = F.conv3d if x.dim() == 5 else F.conv2d
    x = conv(x, sd[p + '0.conv.weight'], sd.get(p + '0.conv.bias') if bias else None, padding=k // 2, groups=c)
    return conv(x, sd[p + '1.conv.weight'], sd.get(p + '1.conv.bias') if bias else None)


def official_lightmunet(sd, x, arch):
    g, dims = arch['num_groups'], x.dim() - 2
    max_pool, conv = (F.max_pool3d, F.conv3d) if dims == 3 else (F.max_pool2d, F.conv2d)
    x = dwsep(sd, 'convInit.', x)
    down = []
    for i, blocks in enumerate(arch['blocks_down']):
        if i > 0:
            x = max_pool(official_layer(sd, f'down_layers.{i}.0.0.', x), 2)
        for j in range(1, blocks + 1):
            p = f'down_layers.{i}.{j}.'
            y = official_layer(sd, p + 'conv1.', F.relu(gn(sd, p + 'norm1.', x, g)))
            x = official_layer(sd, p + 'conv2.', F.relu(gn(sd, p + 'norm2.', y, g))) + x
        down.append(x)
    down.reverse()
    for i, blocks in enumerate(arch['blocks_up']):
        x = conv(x, sd[f'up_samples.{i}.0.conv.weight'])
        mode = 'trilinear' if dims == 3 else 'bilinear'  # MONAI's UpSample(NONTRAINABLE), interp LINEAR
        x = F.interpolate(x, scale_factor=2, mode=mode, align_corners=False) + down[i + 1]
        for j in range(blocks):
            p = f'up_layers.{i}.{j}.'
            y = dwsep(sd, p + 'conv.', F.relu(gn(sd, p + 'norm1.', x, g))) + sd[p + 'skip_scale'] * x
            x = F.relu(gn(sd, p + 'norm2.', y, g))
    return dwsep(sd, 'conv_final.2.', F.relu(gn(sd, 'conv_final.0.', x, g)), bias=True)


def split(converted):
    return ({k[9:]: v for k, v in converted.items() if k.startswith('backbone.')},
            {k[len('decode_head.conv_seg.'):]: v for k, v in converted.items() if k.startswith('decode_head.')})


def test_logits_match_official():
    sd = official_state_dict(TINY)
    images = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    backbone_weights, head_weights = split(convert_lightmunet({'network_weights': sd}))
    model = LightMUNet(TINY).double()
    load_state_dict_checked(model, backbone_weights)
    conv_seg = torch.nn.Conv2d(8, 2, 1).double()
    load_state_dict_checked(conv_seg, head_weights)
    assert_close(conv_seg(model(images)[0]), official_lightmunet(sd, images, TINY), torch.float64)


def test_3d_logits_match_official():
    sd = official_state_dict(TINY, in_channels=1, num_classes=3, dims=3)
    volumes = torch.randn(2, 1, 8, 12, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    backbone_weights, head_weights = split(convert_lightmunet({'network_weights': sd}))
    model = LightMUNet(TINY, in_channels=1, spatial_dims=3).double()
    load_state_dict_checked(model, backbone_weights)
    conv_seg = torch.nn.Conv3d(8, 3, 1).double()
    load_state_dict_checked(conv_seg, head_weights)
    logits = conv_seg(model(volumes)[0])
    assert logits.shape == (2, 3, 8, 12, 16)
    assert_close(logits, official_lightmunet(sd, volumes, TINY), torch.float64)


def test_3d_param_count_equals_the_official_model():
    """The trainer's settings in 3D (1 CT channel, 3 classes as LiTS's background / liver / tumour): every official
    tensor has our shape; the 3x3x3 depthwise kernels add 18 weights per channel to the 2D count's."""
    sd = official_state_dict(PAPER, in_channels=1, num_classes=3, meta=True, dims=3)
    backbone_weights, head_weights = split(convert_lightmunet(sd))
    with torch.device('meta'):
        model = LightMUNet(in_channels=1, spatial_dims=3)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in backbone_weights.items()}
    total = sum(p.numel() for p in model.parameters()) + sum(v.numel() for v in head_weights.values())
    assert total == sum(v.numel() for v in sd.values())
    depthwise = 1 + sum(32 * 2 ** (2 - i) for i in range(3))  # the stem's and the up blocks' 3x3(x3) kernels
    assert total - sum(v.numel() for v in official_state_dict(PAPER, 1, 3, meta=True).values()) == 18 * depthwise


def test_param_count_equals_the_official_model():
    """The official code at its trainer's settings (init_filters 32, blocks 1-2-2-4 / 1-1-1, 3 channels, 2 classes)
    has 5.01M parameters, not the ~1M of the paper and README: the eight d_model-256 Mamba layers of the last
    stage hold 4M."""
    sd = official_state_dict(PAPER, meta=True)
    backbone_weights, head_weights = split(convert_lightmunet(sd))
    with torch.device('meta'):
        model = LightMUNet()
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in backbone_weights.items()}
    total = sum(p.numel() for p in model.parameters()) + sum(v.numel() for v in head_weights.values())
    assert total == sum(v.numel() for v in sd.values()) == 5_011_765


def test_converter_rejects_unknown_keys():
    sd = official_state_dict(TINY)
    with pytest.raises(ValueError, match=r'convert_lightmunet: 1 keys are not official LightM-UNet keys'):
        convert_lightmunet(dict(sd, **{'down_layers.1.0.0.mamba.extra': torch.zeros(1)}))


def test_converter_tool(tmp_path, monkeypatch):
    sd = official_state_dict(TINY)
    src, dst = tmp_path / 'checkpoint_final.pth', tmp_path / 'mmssm.pth'
    torch.save(dict(network_weights=sd, trainer_name='nnUNetTrainerLightMUNet'), src)
    monkeypatch.setattr(sys, 'argv', ['lightmunet2mmssm.py', str(src), str(dst)])
    with pytest.raises(SystemExit, match='is not a LightMUNet-lightm-unet checkpoint'):  # a TINY file
        runpy.run_path(str(REPO / 'tools/model_converters/lightmunet2mmssm.py'), run_name='__main__')
    assert not dst.exists()


def test_3d_converter_tool_reads_channels_and_dims(tmp_path, monkeypatch):
    sd = official_state_dict(PAPER, in_channels=1, num_classes=3, dims=3)
    src, dst = tmp_path / 'checkpoint_final.pth', tmp_path / 'mmssm.pth'
    torch.save(dict(network_weights=sd, trainer_name='nnUNetTrainerLightMUNet'), src)
    monkeypatch.setattr(sys, 'argv', ['lightmunet2mmssm.py', str(src), str(dst)])
    runpy.run_path(str(REPO / 'tools/model_converters/lightmunet2mmssm.py'), run_name='__main__')
    assert torch.load(dst)['meta']['build_kwargs'] == dict(in_channels=1, spatial_dims=3)
    network = network_from_checkpoint(dst)
    assert network.backbone.spatial_dims == 3 and network.classifier.weight.shape == (3, 32, 1, 1, 1)
    assert torch.equal(network.classifier.weight, sd['conv_final.2.1.conv.weight'].float())


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match='multiples of 4'):
        LightMUNet(TINY)(torch.randn(1, 3, 16, 18))
    with pytest.raises(ValueError, match=r'expects \(batch, 1, D, H, W\) volumes'):
        LightMUNet(TINY, in_channels=1, spatial_dims=3)(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r'expects \(batch, 3, H, W\) images'):
        LightMUNet(TINY)(torch.randn(1, 3, 16, 16, 16))
    with pytest.raises(ValueError, match='spatial_dims must be 2 or 3'):
        LightMUNet(TINY, spatial_dims=1)
    with pytest.raises(ValueError, match='arch needs exactly'):
        LightMUNet(dict(TINY, blocks_up=(1,)))


def test_mamba_runs_in_float32_under_autocast():
    model = LightMUNet(TINY)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert model.stages[1].downsample(torch.randn(1, 8, 8, 8)).dtype == torch.float32


def test_training_step_reaches_every_parameter():
    from mmseg.models.segmentors import EncoderDecoder
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = EncoderDecoder(
            backbone=dict(type='mmssm.LightMUNet', arch=TINY),
            decode_head=dict(type='FCNHead', in_channels=8, channels=8, num_convs=0, concat_input=False,
                             dropout_ratio=0.0, num_classes=2,
                             loss_decode=[dict(type='CrossEntropyLoss'), dict(type='mmssm.SoftDiceLoss')]),
            data_preprocessor=dict(type='SegDataPreProcessor', size=(16, 16)))
    losses = model.loss(torch.randn(2, 3, 16, 16), data_samples(torch.randint(0, 2, (2, 16, 16))))
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]


def test_config_follows_the_official_trainer():
    """nnUNetTrainerLightMUNet keeps its repository's nnUNetTrainer.num_epochs = 100 (x 250 iterations) and
    PyTorch's init of the final conv (no nnU-Net He init, no mmseg conv_seg init)."""
    cfg = Config.fromfile(next((REPO / 'configs' / 'light_m_unet').glob('lightm-unet_*.py')))
    assert cfg.train_cfg.max_iters == 100 * 250 == cfg.param_scheduler[0]['end']
    assert cfg.model.decode_head.init_cfg is None
