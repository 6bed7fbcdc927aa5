"""MSVM-UNet: the equivalence contract with the official model, its ImageNet initialisation and the converter.

The official side is written here from the official code's semantics (gndlwch2w/msvm-unet model/__init__.py,
encoder.py, decoder.py: MSVMUNet, Encoder (VMamba v2 stage outputs), UpBlock (LKPE, concat, Linear2d, MSVSS with the
MS-MLP), FLKPE) with plain torch ops in float64, on a random state dict with the official key names and shapes; the
VMamba v2 pieces are test_vmamba's.
"""
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_change_mamba import bn_eval
from test_vmamba import ln_first, ln_last, official_block_v2, official_ss2d_core, official_state_dict

from mmssm.kernels.testing import assert_close
from mmssm.models.backbones.msvm_unet import MSVMUNet, convert_msvmunet
from mmssm.models.backbones.vmamba import VMamba
from mmssm.models.utils import load_state_dict_checked
from mmssm.registry import MODELS
from mmssm.testing.scripts import run_script

TINY = dict(embed_dims=16, depths=(1, 1, 2, 1))  # VMamba v2 release settings: d_state 1, ssm_ratio 2
DECODER_DEPTHS = (1, 2, 1)
KERNELS = (1, 3, 5)
STEM = {'patch_embed.0.': 'encoder.layer0.0.', 'patch_embed.2.': 'encoder.layer0.2.',
        'patch_embed.5.': 'encoder.layer1.0.', 'patch_embed.7.': 'encoder.layer1.2.'}


# --------------------------------------------------------------------------------------------------------------
# the official layout and forward, independent of mmssm.models

def official_msvmunet_state_dict(arch, decoder_depths, num_classes=9, seed=0, device='cpu'):
    """Random MSVMUNet weights under the official names (``encoder.*``, ``decoder.*``)."""
    dims = [arch['embed_dims'] * 2 ** i for i in range(4)][::-1]
    sd = {}
    for key, value in official_state_dict(arch, out_indices=(), seed=seed, device=device).items():
        for old, new in STEM.items():
            key = new + key[len(old):] if key.startswith(old) else key
        key = re.sub(r'^layers\.(\d+)\.downsample\.', r'encoder.downsamples.\1.', key)  # split out of the stages
        sd[re.sub(r'^layers\.', 'encoder.layers.', key)] = value
    generator = torch.Generator().manual_seed(seed + 1) if device != 'meta' else None

    def rand(*shape, scale=0.2, offset=0.0):
        if device == 'meta':
            return torch.empty(shape, device='meta')
        return torch.randn(shape, generator=generator, dtype=torch.float64) * scale + offset

    def lkpe(p, in_channels, expanded, out_channels):
        sd.update({p + 'expand.0.weight': rand(expanded, in_channels, 1, 1, scale=in_channels ** -0.5),
                   p + 'expand.0.bias': rand(expanded), p + 'expand.1.weight': rand(expanded, offset=1),
                   p + 'expand.1.bias': rand(expanded), p + 'expand.1.running_mean': rand(expanded),
                   p + 'expand.1.running_var': rand(expanded, scale=0.1, offset=1).abs(),
                   p + 'expand.1.num_batches_tracked': torch.zeros((), dtype=torch.long, device=device),
                   p + 'expand.3.weight': rand(expanded, 1, 3, 3, scale=0.3), p + 'expand.3.bias': rand(expanded),
                   p + 'norm.weight': rand(out_channels, offset=1), p + 'norm.bias': rand(out_channels)})

    for i, depth in enumerate(decoder_depths):
        p = f'decoder.layers.{i}.'
        in_channels, out = dims[i], dims[i + 1]
        lkpe(p + 'up.', in_channels, 2 * in_channels, in_channels // 2)
        sd.update({p + 'concat_layer.weight': rand(out, 2 * out, scale=(2 * out) ** -0.5),
                   p + 'concat_layer.bias': rand(out)})
        blocks = official_state_dict(dict(embed_dims=out, depths=(depth,), ssm_ratio=1.0), out_indices=(),
                                     seed=seed + 10 + i, device=device)
        for key, value in blocks.items():
            if key.startswith('layers.0.blocks.'):
                sd[p + 'vss_layer.' + key[len('layers.0.'):]] = value
        for j in range(depth):
            for k, size in enumerate(KERNELS):
                sd[p + f'vss_layer.blocks.{j}.mlp.multiscale_conv.dw_convs.{k}.weight'] = rand(
                    4 * out, 1, size, size, scale=0.3)
    c0 = dims[-1]
    lkpe('decoder.out_layers.0.', c0, 16 * c0, c0)
    sd.update({'decoder.out_layers.0.out.weight': rand(num_classes, c0, 1, 1),
               'decoder.out_layers.0.out.bias': rand(num_classes)})
    return sd


def conv1x1(x, sd, p, bias=True):
    return F.conv2d(x, sd[p + 'weight'] if sd[p + 'weight'].dim() == 4 else sd[p + 'weight'][:, :, None, None],
                    sd.get(p + 'bias') if bias else None)


def official_msvss_block(x, sd, p):
    """VSSBlock v05_noz, channel-first, with MS_MLP: fc1 -> GELU -> x + sum of depthwise convs -> fc2."""
    h = conv1x1(ln_first(x, sd, p + 'norm'), sd, p + 'op.in_proj.', bias=False)
    h = F.silu(F.conv2d(h, sd[p + 'op.conv2d.weight'], padding=1, groups=h.shape[1]))
    y = official_ss2d_core(h, sd, p + 'op.').reshape(h.shape)
    x = x + conv1x1(ln_first(y, sd, p + 'op.out_norm'), sd, p + 'op.out_proj.', bias=False)
    h = F.gelu(conv1x1(ln_first(x, sd, p + 'norm2'), sd, p + 'mlp.fc1.'))
    h = h + sum(F.conv2d(h, sd[p + f'mlp.multiscale_conv.dw_convs.{k}.weight'], padding=size // 2,
                         groups=h.shape[1]) for k, size in enumerate(KERNELS))
    return x + conv1x1(h, sd, p + 'mlp.fc2.')


def official_lkpe(x, sd, p, scale):
    """(F)LKPE: expand convs, 'b h w (p1 p2 c) -> b (h p1) (w p2) c', LayerNorm."""
    x = F.conv2d(F.relu(bn_eval(conv1x1(x, sd, p + 'expand.0.'), sd, p + 'expand.1.')), sd[p + 'expand.3.weight'],
                 sd[p + 'expand.3.bias'], padding=1, groups=sd[p + 'expand.3.weight'].shape[0])
    x = x.permute(0, 2, 3, 1)
    B, H, W, C = x.shape
    x = x.reshape(B, H, W, scale, scale, C // scale ** 2).permute(0, 1, 3, 2, 4, 5)
    x = ln_last(x.reshape(B, H * scale, W * scale, C // scale ** 2), sd, p + 'norm')
    return x.permute(0, 3, 1, 2)


def official_msvmunet(sd, x, arch, decoder_depths):
    """MSVMUNet.forward: logits (B, num_classes, H, W)."""
    x = ln_first(F.conv2d(x, sd['encoder.layer0.0.weight'], sd['encoder.layer0.0.bias'], stride=2, padding=1), sd,
                 'encoder.layer0.2')
    x = F.conv2d(F.gelu(x), sd['encoder.layer1.0.weight'], sd['encoder.layer1.0.bias'], stride=2, padding=1)
    x = ln_first(x, sd, 'encoder.layer1.2')
    features = []
    for i, depth in enumerate(arch['depths']):
        for j in range(depth):
            x = official_block_v2(x, sd, f'encoder.layers.{i}.blocks.{j}.')
        features.append(x)
        if i < 3:
            p = f'encoder.downsamples.{i}.'
            x = ln_first(F.conv2d(x, sd[p + '1.weight'], sd[p + '1.bias'], stride=2, padding=1), sd, p + '3')
    out, skips = features[-1], features[-2::-1]
    for i, depth in enumerate(decoder_depths):
        p = f'decoder.layers.{i}.'
        out = conv1x1(torch.cat([official_lkpe(out, sd, p + 'up.', 2), skips[i]], dim=1), sd, p + 'concat_layer.')
        for j in range(depth):
            out = official_msvss_block(out, sd, p + f'vss_layer.blocks.{j}.')
    out = official_lkpe(out, sd, 'decoder.out_layers.0.', 4)
    return conv1x1(out, sd, 'decoder.out_layers.0.out.')


# --------------------------------------------------------------------------------------------------------------
# ours

def build_segmentor(arch, decoder_depths, num_classes=9):
    c0 = arch['embed_dims']
    return MODELS.build(dict(
        type='mmseg.EncoderDecoder',
        backbone=dict(type='mmssm.MSVMUNet', arch=arch, decoder_depths=decoder_depths),
        decode_head=dict(type='mmseg.FCNHead', in_channels=c0, channels=c0, num_convs=0, concat_input=False,
                         dropout_ratio=0.0, num_classes=num_classes,
                         loss_decode=dict(type='mmseg.CrossEntropyLoss'))))


def test_converted_official_checkpoint_gives_official_logits():
    images = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    official = official_msvmunet_state_dict(TINY, DECODER_DEPTHS)
    model = build_segmentor(TINY, DECODER_DEPTHS).eval()
    lightning = {'state_dict': {'_model.' + k: v for k, v in official.items()}, 'epoch': 299}
    load_state_dict_checked(model, convert_msvmunet(lightning))
    with torch.no_grad():
        ours = model.encode_decode(images.float(), [dict(img_shape=(64, 96))])
    assert_close(ours, official_msvmunet(official, images, TINY, DECODER_DEPTHS), torch.float32, name='logits')


def test_converter_rejects_unknown_keys():
    official = official_msvmunet_state_dict(TINY, DECODER_DEPTHS, device='meta')
    with pytest.raises(ValueError, match=r"not official MSVM-UNet keys.*'decoder\.layers\.0\.mystery\.weight'"):
        convert_msvmunet({**official, 'decoder.layers.0.mystery.weight': torch.zeros(1)})


def test_param_count_matches_official():
    arch = VMamba.resolve_arch('tiny')
    official = sum(v.numel() for k, v in official_msvmunet_state_dict(arch, (2, 2, 2), device='meta').items()
                   if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked')))  # parameters only
    with torch.device('meta'):
        model = build_segmentor(arch, (2, 2, 2))
    assert sum(p.numel() for p in model.parameters()) == official


def test_pretrained_init_fills_the_encoder(tmp_path):
    imagenet = official_state_dict(TINY, num_classes=5)  # an official VMamba classification checkpoint
    path = tmp_path / 'vssm_tiny.pth'
    torch.save({'model': imagenet}, path)
    model = MSVMUNet(TINY, decoder_depths=DECODER_DEPTHS, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert torch.equal(model.encoder.stages[2].blocks[1].ss2d.A_logs, imagenet['layers.2.blocks.1.op.A_logs'].float())
    del imagenet['layers.1.blocks.0.op.Ds']
    torch.save({'model': imagenet}, path)
    with pytest.raises(ValueError, match=r'stages\.1\.blocks\.0\.ss2d\.Ds'):
        MSVMUNet(TINY, decoder_depths=DECODER_DEPTHS, init_cfg=dict(type='Pretrained', checkpoint=str(path))
                 ).init_weights()


def test_decoder_keeps_the_pytorch_default_init():
    # the official VSSM trunc-normal-initialises its Linears (zero biases); the official Decoder applies no init
    model = MSVMUNet(TINY, decoder_depths=DECODER_DEPTHS)
    model.init_weights()
    assert not model.encoder.stages[0].blocks[0].mlp.fc1.bias.any()
    for linear in (model.decoder[0].concat_proj, model.decoder[1].blocks[0].mlp.fc1):
        bound = linear.in_features ** -0.5  # nn.Linear's default: U(-bound, bound) weights and biases
        assert linear.bias.any() and linear.weight.abs().max() <= bound
        assert linear.weight.std() > 0.8 * bound / 3 ** 0.5  # not trunc-normal(0.02)


def test_config_checkpoint_fits_the_encoder():
    # the official code loads vssm1_tiny_0230s_ckpt_epoch_264.pth (VMamba-T [s1l8]); its README's
    # vssm_tiny_0230_ckpt_epoch_262.pth is VMamba-T [s2l5] (2-2-5-2, ssm_ratio 2), which does not fit the encoder
    from mmssm.apis import load_config
    root = Path(__file__).resolve().parents[1]
    backbone = load_config(str(root / 'configs/msvm_unet/msvm-unet_1xb32-300e_synapse-224x224.py')).model.backbone
    arch = VMamba.resolve_arch(backbone.arch)
    row = f"| {'-'.join(map(str, arch['depths']))} | {arch['embed_dims']} | {arch['ssm_ratio']} |"
    release = [line for line in (root / 'configs/vmamba/README.md').read_text().splitlines() if row in line]
    assert len(release) == 1
    assert Path(backbone.init_cfg.checkpoint).name == re.search(r'\[(\S+\.pth)\]', release[0])[1]


def test_converter_tool_writes_an_mmseg_checkpoint(tmp_path):
    tool = Path(__file__).resolve().parents[1] / 'tools/model_converters/msvmunet2mmssm.py'
    arch = VMamba.resolve_arch('tiny')
    official = {'_model.' + k: torch.zeros(v.shape, dtype=v.dtype)
                for k, v in official_msvmunet_state_dict(arch, (2, 2, 2), device='meta').items()}
    src, dst = tmp_path / 'epoch=299.ckpt', tmp_path / 'converted.pth'
    torch.save({'state_dict': official, 'epoch': 299}, src)
    run_script(tool, src, dst)
    load_state_dict_checked(build_segmentor(arch, (2, 2, 2)), torch.load(dst, map_location='cpu')['state_dict'])
    del official['_model.decoder.layers.2.up.expand.1.running_var']
    torch.save({'state_dict': official}, src)
    with pytest.raises(SystemExit, match=r'decoder\.2\.up\.expand\.1\.running_var'):
        run_script(tool, src, dst)


def test_input_must_be_a_multiple_of_32():
    with pytest.raises(ValueError, match=r'MSVMUNet expects \(batch, 3, H, W\) images with H and W multiples of 32'):
        MSVMUNet(TINY, decoder_depths=DECODER_DEPTHS)(torch.randn(1, 3, 64, 48))
