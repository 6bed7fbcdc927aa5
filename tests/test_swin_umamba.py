"""Swin-UMamba and Swin-UMamba†: the equivalence contract with the official models, their ImageNet initialisation, the
converter, sizes, nnU-Net deep supervision in mmseg.

The official side is written here from the official code's semantics (JiarunLiu/Swin-UMamba
swin_umamba/nnunetv2/nets/SwinUMamba.py: SwinUMamba with MONAI's UnetrBasicBlock / UnetrUpBlock / UnetOutBlock and
load_pretrained_ckpt; SwinUMambaD.py: VSSMEncoder, UNetResDecoder, load_pretrained_ckpt; nnUNetTrainer._build_loss)
with plain torch ops in float64, on random state dicts with the official key names and shapes; the v0 blocks are
test_vmamba's.
"""
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from test_vm_unet import legacy_names
from test_vmamba import ln_last, official_block_v0, official_state_dict

from mmssm.kernels.testing import assert_close
from mmssm.models.backbones.swin_umamba import SwinUMamba, SwinUMambaD, convert_swin_umamba
from mmssm.models.backbones.vmamba import V0_RELEASE, VMamba
from mmssm.models.utils import CheckpointMismatchError, load_state_dict_checked
from mmssm.registry import MODELS
from mmssm.testing.scripts import run_script

TINY = dict(stem_dims=8, embed_dims=16, depths=(1, 1, 2, 1), d_state=4)
TINY_D = dict(embed_dims=16, depths=(1, 1, 2, 1), decoder_depths=(1, 2, 1), d_state=4)
TOOL = Path(__file__).resolve().parents[1] / 'tools/model_converters/swinumamba2mmssm.py'


# --------------------------------------------------------------------------------------------------------------
# the official layout and forward, independent of mmssm.models

def random_tensors(seed, device):
    generator = torch.Generator().manual_seed(seed) if device != 'meta' else None

    def rand(*shape, scale=None, offset=0.0):
        if device == 'meta':
            return torch.empty(shape, device='meta')
        fan_in = shape[1] * (shape[2] * shape[3] if len(shape) == 4 else 1) if len(shape) > 1 else 25
        return torch.randn(shape, generator=generator, dtype=torch.float64) * (scale or fan_in ** -0.5) + offset
    return rand


def official_encoder_state_dict(arch, in_channels, patch, seed, device):
    """VSSMEncoder weights in the current VMamba names (``layers.i.downsample``), the patch embed p x p from
    ``in_channels``."""
    encoder_arch = dict(V0_RELEASE, embed_dims=arch['embed_dims'], depths=arch['depths'], d_state=arch['d_state'])
    sd = official_state_dict(encoder_arch, out_indices=(), seed=seed, device=device)
    sd['patch_embed.0.weight'] = random_tensors(seed + 7, device)(arch['embed_dims'], in_channels, patch, patch)
    return sd


def res_block_state_dict(rand, p, in_channels, channels):
    """MONAI UnetResBlock ('instance' norm: no parameters)."""
    sd = {p + 'conv1.conv.weight': rand(channels, in_channels, 3, 3),
          p + 'conv2.conv.weight': rand(channels, channels, 3, 3)}
    if in_channels != channels:
        sd[p + 'conv3.conv.weight'] = rand(channels, in_channels, 1, 1)
    return sd


def official_swin_umamba_state_dict(arch, in_channels=1, num_classes=4, seed=0, device='cpu'):
    """Random SwinUMamba weights, the encoder's under ``vssm_encoder.`` in the current VMamba names."""
    rand = random_tensors(seed + 1, device)
    stem = arch['stem_dims']
    dims = [arch['embed_dims'] * 2 ** i for i in range(4)]
    widths = [stem, *dims]  # feat_size; hidden_size = feat_size[4]
    sd = {'vssm_encoder.' + k: v
          for k, v in official_encoder_state_dict(arch, stem, 2, seed, device).items()}
    sd.update({'stem.0.weight': rand(stem, in_channels, 7, 7), 'stem.0.bias': rand(stem, scale=0.2),
               'stem.1.weight': rand(stem, scale=0.2, offset=1), 'stem.1.bias': rand(stem, scale=0.2)})
    for i, (c_in, c) in enumerate(zip([in_channels, *widths], widths)):
        sd.update(res_block_state_dict(rand, f'encoder{i + 1}.layer.', c_in, c))
    for n, (c_in, c) in zip((6, 5, 4, 3, 2), zip([widths[4], *widths[:0:-1]], widths[::-1])):
        sd[f'decoder{n}.transp_conv.conv.weight'] = rand(c_in, c, 2, 2, scale=c_in ** -0.5)
        sd.update(res_block_state_dict(rand, f'decoder{n}.conv_block.', 2 * c, c))
    sd.update(res_block_state_dict(rand, 'decoder1.layer.', stem, stem))
    for i in range(4):
        sd.update({f'out_layers.{i}.conv.conv.weight': rand(num_classes, widths[i], 1, 1),
                   f'out_layers.{i}.conv.conv.bias': rand(num_classes, scale=0.2)})
    return sd


def official_swin_umamba_d_state_dict(arch, in_channels=3, num_classes=4, seed=0, device='cpu'):
    """Random SwinUMambaD weights (vss_args patch_size 4; decoder_args features_per_stage = dims), the decoder's
    VSS layers with ``decoder_depths`` blocks (2 in the official)."""
    rand = random_tensors(seed + 1, device)
    dims = [arch['embed_dims'] * 2 ** i for i in range(4)]
    sd = {'vssm_encoder.' + k: v
          for k, v in official_encoder_state_dict(arch, in_channels, 4, seed, device).items()}
    for s, depth in enumerate(arch['decoder_depths']):
        below, skip = dims[3 - s], dims[2 - s]
        sd.update({f'decoder.expand_layers.{s}.expand.weight': rand(2 * below, below),
                   f'decoder.expand_layers.{s}.norm.weight': rand(skip, scale=0.2, offset=1),
                   f'decoder.expand_layers.{s}.norm.bias': rand(skip, scale=0.2),
                   f'decoder.concat_back_dim.{s}.weight': rand(skip, 2 * skip),
                   f'decoder.concat_back_dim.{s}.bias': rand(skip, scale=0.2),
                   f'decoder.seg_layers.{s}.weight': rand(num_classes, skip, 1, 1),
                   f'decoder.seg_layers.{s}.bias': rand(num_classes, scale=0.2)})
        blocks = official_state_dict(dict(V0_RELEASE, embed_dims=skip, depths=(depth,), d_state=arch['d_state']),
                                     out_indices=(), seed=seed + 10 + s, device=device)
        sd.update({f'decoder.stages.{s}.' + k[len('layers.0.'):]: v for k, v in blocks.items()
                   if k.startswith('layers.0.blocks.')})
    sd.update({'decoder.expand_layers.3.expand.weight': rand(16 * dims[0], dims[0]),
               'decoder.expand_layers.3.norm.weight': rand(dims[0], scale=0.2, offset=1),
               'decoder.expand_layers.3.norm.bias': rand(dims[0], scale=0.2),
               'decoder.seg_layers.3.weight': rand(num_classes, dims[0], 1, 1),
               'decoder.seg_layers.3.bias': rand(num_classes, scale=0.2)})
    return sd


def as_released(sd):
    """The names of the official model (and of ``network_weights``): ``ln_1`` / ``self_attention`` in blocks,
    ``patch_embed.proj`` / ``norm``, the encoder's ``downsamples.i`` beside its ``layers``."""
    return {re.sub(r'layers\.(\d+)\.downsample\.', r'downsamples.\1.', k): v for k, v in legacy_names(sd).items()}


def official_vssm_encoder(sd, x, depths, patch):
    """VSSMEncoder.forward without its first entry: the (B, C_i, H_i, W_i) output of every stage."""
    x = F.conv2d(x, sd['patch_embed.0.weight'], sd['patch_embed.0.bias'], stride=patch).permute(0, 2, 3, 1)
    x = ln_last(x, sd, 'patch_embed.2')
    outs = []
    for i, depth in enumerate(depths):
        for j in range(depth):
            x = official_block_v0(x, sd, f'layers.{i}.blocks.{j}.')
        outs.append(x.permute(0, 3, 1, 2))
        if i < len(depths) - 1:  # PatchMerging2D
            x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
            x = F.linear(ln_last(x, sd, f'layers.{i}.downsample.norm'), sd[f'layers.{i}.downsample.reduction.weight'])
    return outs


def monai_res_block(x, sd, p):
    """UnetResBlock: convs without bias, InstanceNorm without affine, LeakyReLU(0.01)."""
    out = F.leaky_relu(F.instance_norm(F.conv2d(x, sd[p + 'conv1.conv.weight'], padding=1)), 0.01)
    out = F.instance_norm(F.conv2d(out, sd[p + 'conv2.conv.weight'], padding=1))
    if p + 'conv3.conv.weight' in sd:
        x = F.instance_norm(F.conv2d(x, sd[p + 'conv3.conv.weight']))
    return F.leaky_relu(out + x, 0.01)


def official_swin_umamba(sd, x_in, arch):
    """SwinUMamba.forward with deep supervision: logits at H, H/2, H/4, H/8."""
    encoder = {k[len('vssm_encoder.'):]: v for k, v in sd.items() if k.startswith('vssm_encoder.')}
    x1 = F.conv2d(x_in, sd['stem.0.weight'], sd['stem.0.bias'], stride=2, padding=3)
    x1 = F.instance_norm(x1, weight=sd['stem.1.weight'], bias=sd['stem.1.bias'], eps=1e-5)
    vss_outs = [x1, *official_vssm_encoder(encoder, x1, arch['depths'], 2)]
    enc = [monai_res_block(f, sd, f'encoder{i + 1}.layer.') for i, f in enumerate([x_in, *vss_outs[:4]])]
    dec = vss_outs[4]
    decoded = []
    for n, skip in zip((6, 5, 4, 3, 2), enc[::-1]):
        up = F.conv_transpose2d(dec, sd[f'decoder{n}.transp_conv.conv.weight'], stride=2)
        dec = monai_res_block(torch.cat([up, skip], dim=1), sd, f'decoder{n}.conv_block.')
        decoded.append(dec)  # dec4, dec3, dec2, dec1, dec0
    feat_out = [monai_res_block(dec, sd, 'decoder1.layer.'), decoded[3], decoded[2], decoded[1]]
    return [F.conv2d(f, sd[f'out_layers.{i}.conv.conv.weight'], sd[f'out_layers.{i}.conv.conv.bias'])
            for i, f in enumerate(feat_out)]


def official_patch_expand(x, sd, p, scale):
    """PatchExpand / FinalPatchExpand_X4: (B, C, H, W) -> Linear, 'b h w (p1 p2 c) -> b (h p1) (w p2) c', LN."""
    x = F.linear(x.permute(0, 2, 3, 1), sd[p + 'expand.weight'])
    B, H, W, C = x.shape
    x = x.reshape(B, H, W, scale, scale, C // scale ** 2).permute(0, 1, 3, 2, 4, 5)
    return ln_last(x.reshape(B, H * scale, W * scale, C // scale ** 2), sd, p + 'norm')


def official_swin_umamba_d(sd, x, arch):
    """SwinUMambaD.forward with deep supervision (UNetResDecoder): logits at H, H/4, H/8, H/16."""
    encoder = {k[len('vssm_encoder.'):]: v for k, v in sd.items() if k.startswith('vssm_encoder.')}
    skips = [x, *official_vssm_encoder(encoder, x, arch['depths'], 4)]
    lres_input, seg_outputs = skips[-1], []
    for s in range(4):
        y = official_patch_expand(lres_input, sd, f'decoder.expand_layers.{s}.', 4 if s == 3 else 2)
        if s < 3:
            y = torch.cat([y, skips[-(s + 2)].permute(0, 2, 3, 1)], dim=-1)
            y = F.linear(y, sd[f'decoder.concat_back_dim.{s}.weight'], sd[f'decoder.concat_back_dim.{s}.bias'])
            for j in range(arch['decoder_depths'][s]):
                y = official_block_v0(y, sd, f'decoder.stages.{s}.blocks.{j}.')
        y = y.permute(0, 3, 1, 2)
        seg_outputs.append(F.conv2d(y, sd[f'decoder.seg_layers.{s}.weight'], sd[f'decoder.seg_layers.{s}.bias']))
        lres_input = y
    return seg_outputs[::-1]


def official_load_pretrained(model_sd, imagenet, skip_params, skip_patch_embed):
    """load_pretrained_ckpt of either file: {official model key: tensor} of what it copies from ``ckpt['model']``."""
    loaded = {}
    for k, v in imagenet.items():
        if k in skip_params or (skip_patch_embed and 'patch_embed' in k):
            continue
        kr = re.sub(r'layers\.(\d+)\.downsample', r'downsamples.\1', f'vssm_encoder.{k}')
        if kr in model_sd:
            assert v.shape == model_sd[kr].shape
            loaded[kr] = v
    return loaded


def imagenet_file(arch, path, in_channels=3, **overrides):
    """A Vanilla VMamba v0 ImageNet checkpoint as released (``vssmtiny_dp01_ckpt_epoch_292.pth``: old names)."""
    vmamba = dict(V0_RELEASE, embed_dims=arch['embed_dims'], depths=arch['depths'], d_state=arch['d_state'])
    sd = official_state_dict(dict(vmamba, **overrides), num_classes=5, seed=3)
    sd['patch_embed.0.weight'] = random_tensors(4, 'cpu')(arch['embed_dims'], in_channels, 4, 4)
    sd = {k.replace('classifier.', ''): v for k, v in legacy_names(sd).items()}  # norm.*, head.*
    torch.save({'model': sd, 'epoch': 292}, path)
    return sd


# --------------------------------------------------------------------------------------------------------------
# ours

VARIANTS = {
    'Swin-UMamba': (SwinUMamba, TINY, 1, official_swin_umamba_state_dict, official_swin_umamba),
    'Swin-UMamba-D': (SwinUMambaD, TINY_D, 3, official_swin_umamba_d_state_dict, official_swin_umamba_d),
}


def build_segmentor(variant, arch, in_channels, num_classes=4, losses=None):
    backbone_cls = VARIANTS[variant][0]
    backbone = dict(type=f'mmssm.{backbone_cls.__name__}', arch=arch, in_channels=in_channels, drop_path_rate=0.0)
    with torch.device('meta'):
        widths = backbone_cls(arch, in_channels).out_channels
    return MODELS.build(dict(
        type='mmseg.EncoderDecoder', backbone=backbone,
        decode_head=dict(type='mmssm.DeepSupervisionHead', in_channels=widths, channels=widths[0],
                         num_classes=num_classes,
                         loss_decode=losses or dict(type='mmseg.CrossEntropyLoss', avg_non_ignore=True))))


@pytest.mark.parametrize('variant', VARIANTS)
def test_converted_official_checkpoint_gives_official_logits(variant):
    _, arch, in_channels, official_sd, official_forward = VARIANTS[variant]
    images = torch.randn(2, in_channels, 64, 96, dtype=torch.float64)  # deepest maps 2x3
    official = official_sd(arch, in_channels)
    model = build_segmentor(variant, arch, in_channels).eval()
    load_state_dict_checked(model, convert_swin_umamba({'network_weights': as_released(official), 'epoch': 1}))
    expected = official_forward(official, images, arch)
    with torch.no_grad():
        maps = model.backbone(images.float())
        ours = [layer(x) for layer, x in zip(model.decode_head.seg_layers, maps)]  # every scale, weight 0 included
        prediction = model.encode_decode(images.float(), [dict(img_shape=(64, 96))])
    assert [tuple(x.shape[2:]) for x in ours] == [tuple(x.shape[2:]) for x in expected]
    for scale, (mine, theirs) in enumerate(zip(ours, expected)):
        assert_close(mine, theirs, torch.float32, name=f'logits at scale {scale}')
    assert_close(prediction, expected[0], torch.float32, name='prediction')


def test_converter_rejects_unknown_keys():
    released = as_released(official_swin_umamba_state_dict(TINY, device='meta'))
    with pytest.raises(ValueError, match=r"not official Swin-UMamba keys.*'decoder7\.transp_conv\.conv\.weight'"):
        convert_swin_umamba({**released, 'decoder7.transp_conv.conv.weight': torch.zeros(1)})


@pytest.mark.parametrize('variant', VARIANTS)
def test_imagenet_init_maps_the_keys_the_official_code_maps(variant, tmp_path):
    backbone_cls, arch, in_channels, official_sd, _ = VARIANTS[variant]
    path = tmp_path / 'vmamba_tiny_e292.pth'
    imagenet = imagenet_file(arch, path)
    skip = ['norm.weight', 'norm.bias', 'head.weight', 'head.bias']
    if backbone_cls is SwinUMamba:  # the stem's
        skip += ['patch_embed.proj.weight', 'patch_embed.proj.bias',
                 'patch_embed.norm.weight', 'patch_embed.norm.weight']
    official_model = as_released(official_sd(arch, in_channels, device='meta'))
    skip_patch_embed = backbone_cls is SwinUMambaD and imagenet['patch_embed.proj.weight'].shape[1] != in_channels
    loaded = official_load_pretrained(official_model, imagenet, skip, skip_patch_embed)
    expected = convert_swin_umamba(loaded)  # our names of what the official code copies
    model = backbone_cls(arch, in_channels=in_channels, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    ours = {'backbone.' + k: v for k, v in model.state_dict().items()}
    assert expected and all(torch.equal(ours[k], v.float()) for k, v in expected.items())
    copied = {k for k, v in ours.items() if k.startswith('backbone.encoder.') and any(
        v.shape == w.shape and torch.equal(v, w.float()) for w in imagenet.values())}
    assert copied == set(expected)  # nothing else of the encoder came from the file
    if backbone_cls is SwinUMamba:  # the official skip list names the norm weight twice: its bias is loaded
        assert 'backbone.encoder.patch_embed.norm1.bias' in expected
        assert 'backbone.encoder.patch_embed.norm1.weight' not in expected


def test_swin_umamba_d_skips_the_patch_embed_for_other_input_channels(tmp_path):
    path = tmp_path / 'vmamba_tiny_e292.pth'
    imagenet = imagenet_file(TINY_D, path)
    model = SwinUMambaD(TINY_D, in_channels=1, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert model.encoder.patch_embed.conv1.weight.shape == (16, 1, 4, 4)
    assert not torch.equal(model.encoder.patch_embed.norm1.weight, imagenet['patch_embed.norm.weight'].float())
    assert torch.equal(model.encoder.stages[3].blocks[0].ss2d.Ds,
                       imagenet['layers.3.blocks.0.self_attention.Ds'].float())


def test_imagenet_init_rejects_mismatched_checkpoints(tmp_path):
    path = tmp_path / 'imagenet.pth'
    imagenet = imagenet_file(TINY, path)
    del imagenet['layers.2.blocks.1.self_attention.A_logs']
    torch.save({'model': imagenet}, path)
    with pytest.raises(CheckpointMismatchError, match=r'missing keys:\n\s+stages\.2\.blocks\.1\.ss2d\.A_logs'):
        SwinUMamba(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    imagenet_file(dict(TINY, depths=(1, 1, 3, 1)), path)  # deeper than the model: the official passes it silently
    with pytest.raises(CheckpointMismatchError, match=r'unexpected keys:\n\s+stages\.2\.blocks\.2\.'):
        SwinUMambaD(TINY_D, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    imagenet_file(TINY, path, d_state=2)  # another VMamba
    with pytest.raises(CheckpointMismatchError, match=r'shape mismatches.*\n\s+stages\.0\.blocks\.0\.ss2d\.A_logs'):
        SwinUMamba(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


@pytest.mark.parametrize('variant, num_classes, millions', [('Swin-UMamba', 14, 59.89), ('Swin-UMamba-D', 14, 27.50)])
def test_param_count_matches_official(variant, num_classes, millions):
    backbone_cls, _, _, official_sd, _ = VARIANTS[variant]
    arch = next(iter(backbone_cls.arch_zoo.values()))
    arch = dict(arch, d_state=16)
    official = sum(v.numel() for v in official_sd(arch, 1, num_classes, device='meta').values())
    with torch.device('meta'):
        model = build_segmentor(variant, next(iter(backbone_cls.arch_zoo)), 1, num_classes)
    assert sum(p.numel() for p in model.parameters()) == official
    assert round(official / 1e6, 2) == millions  # paper (AbdomenMR, 14 classes): 60M and 28M


@pytest.mark.parametrize('variant', VARIANTS)
def test_training_step_reaches_every_parameter_with_nnunet_weights(variant):
    _, arch, in_channels, _, _ = VARIANTS[variant]
    model = build_segmentor(variant, arch, in_channels, num_classes=3).train()
    images = torch.randn(2, in_channels, 32, 64)
    labels = torch.randint(0, 3, (2, 32, 64))
    labels[0, :4] = 255  # ignored
    samples = [SegDataSample(gt_sem_seg=PixelData(data=label[None])) for label in labels]
    losses = model.loss(images, samples)
    # nnU-Net: weights 1 / 2**i, the lowest resolution dropped, normalised
    weights = torch.tensor([1 / 2 ** i for i in range(4)])
    weights[-1] = 0
    weights = weights / weights.sum()
    logits = model.decode_head(model.backbone(images))  # None for the coarsest scale: weight 0
    expected = sum(w * F.cross_entropy(x, F.interpolate(labels[:, None].float(), x.shape[2:],
                                                        mode='nearest-exact').long()[:, 0], ignore_index=255)
                   for w, x in zip(weights, logits) if w > 0)
    assert_close(losses['decode.loss_ce'], expected, torch.float32, name='deep-supervision CE')
    losses['decode.loss_ce'].backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None]
    assert silent == ['decode_head.seg_layers.3.weight', 'decode_head.seg_layers.3.bias']  # weight 0, as nnU-Net's


def test_head_names_maps_of_the_wrong_width():
    head = MODELS.build(dict(type='mmssm.DeepSupervisionHead', in_channels=(8, 16), channels=8, num_classes=3))
    with pytest.raises(ValueError, match=r'maps of \[8, 16\] channels \(highest resolution first\), got \[16, 8\]'):
        head([torch.zeros(1, 16, 4, 4), torch.zeros(1, 8, 2, 2)])


def test_arch_errors_and_input_checks():
    with pytest.raises(ValueError, match='needs stem_dims'):
        SwinUMamba(dict(embed_dims=16, depths=(1, 1, 1, 1)))
    with pytest.raises(ValueError, match='4 encoder stages'):
        SwinUMamba(dict(TINY, depths=(1, 1, 1)))
    with pytest.raises(ValueError, match=r'three decoder_depths \(got \(1, 1\)\)'):
        SwinUMambaD(dict(TINY_D, decoder_depths=(1, 1)))
    with pytest.raises(ValueError, match=r'unknown keys \[.mlp_ratios.\]'):
        SwinUMambaD(dict(TINY_D, mlp_ratios=4.0))
    with pytest.raises(ValueError, match=r'expects \(batch, 1, H, W\) images with H and W multiples of 32'):
        SwinUMamba(TINY)(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r'multiples of 32.*got \(1, 3, 64, 48\)'):
        SwinUMambaD(TINY_D, in_channels=3)(torch.randn(1, 3, 64, 48))
    assert isinstance(SwinUMamba(TINY).encoder, VMamba) and isinstance(SwinUMambaD(TINY_D).encoder, VMamba)


def test_converter_tool_writes_an_mmseg_checkpoint(tmp_path):
    official = as_released({k: torch.zeros(v.shape) for k, v in official_swin_umamba_d_state_dict(
        dict(SwinUMambaD.arch_zoo['swin-umamba-d'], d_state=16), 1, 5, device='meta').items()})
    src, dst = tmp_path / 'checkpoint_final.pth', tmp_path / 'converted.pth'
    torch.save({'network_weights': official, 'trainer_name': 'nnUNetTrainerSwinUMambaD', 'current_epoch': 1000}, src)
    run_script(TOOL, src, dst)
    converted = torch.load(dst, map_location='cpu')
    assert converted['meta']['model'] == 'SwinUMambaD' and converted['meta']['num_classes'] == 5
    assert {k.split('.')[0] for k in converted['state_dict']} == {'backbone', 'decode_head'}
    del official['decoder.stages.1.blocks.0.self_attention.Ds']
    torch.save({'network_weights': official}, src)
    with pytest.raises(SystemExit, match=r'missing keys:\n\s+decoder\.1\.blocks\.0\.ss2d\.Ds'):
        run_script(TOOL, src, dst)


@pytest.mark.parametrize('name, millions', [('swin-umamba_nnunet-2d-1000e.py', 59.89),
                                            ('swin-umamba-d_nnunet-2d-1000e.py', 27.50)])
def test_base_configs_build_the_paper_models(name, millions):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    config = Config.fromfile(Path(__file__).resolve().parents[1] / 'configs/_base_' / name)  # no scope: a _base_
    model_cfg = dict(config.model, backbone=dict(config.model.backbone, init_cfg=None))
    with torch.device('meta'), DefaultScope.overwrite_default_scope('mmseg'):  # the scope of the dataset configs
        model = MODELS.build(model_cfg)
    assert tuple(model_cfg['decode_head']['in_channels']) == model.backbone.out_channels
    assert model.backbone.encoder.depths == (2, 2, 9, 2) and model.backbone.encoder.arch['d_state'] == 16
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == millions
    assert [hook['module'] for hook in config.custom_hooks] == ['backbone.encoder.stages']  # patch embed trains


def test_swin_umamba_d_init_as_official():
    """get_swin_umamba_d_from_plans: VSSMEncoder._init_weights (trunc-normal Linear) reaches the encoder only, the
    decoder's Linear layers keep torch's default; InitWeights_He(1e-2) then reaches every conv."""
    torch.manual_seed(0)
    model = SwinUMambaD(TINY_D)
    model.init_weights()
    encoder_proj = model.encoder.stages[2].blocks[0].ss2d.in_proj.weight  # (256, 64)
    decoder_proj = model.decoder[0].blocks[0].ss2d.in_proj.weight  # (256, 64)
    assert abs(encoder_proj.std().item() - 0.02) < 0.002
    assert abs(decoder_proj.std().item() - (3 * 64) ** -0.5) < 0.005  # nn.Linear's kaiming_uniform(a=sqrt(5))
    assert model.decoder[0].fuse.bias.abs().min() > 0  # nn.Linear's uniform bias, not zeros
    conv = model.decoder[0].blocks[0].ss2d.conv2d  # depthwise 3x3 over 128 channels: fan in 9
    assert abs(conv.weight.std().item() - (2 / (1 + 1e-4) / 9) ** 0.5) < 0.03 and not conv.bias.any()


@pytest.mark.parametrize('name, he_init', [('swin-umamba_nnunet-2d-1000e.py', False),
                                           ('swin-umamba-d_nnunet-2d-1000e.py', True)])
def test_base_configs_init_the_output_convs_as_official(name, he_init):
    """Swin-UMamba's MONAI UnetOutBlocks keep torch's default init; Swin-UMamba†'s seg_layers get InitWeights_He."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    config = Config.fromfile(Path(__file__).resolve().parents[1] / 'configs/_base_' / name)
    with DefaultScope.overwrite_default_scope('mmseg'):
        head = MODELS.build(config.model.decode_head)
    torch.manual_seed(0)
    head.init_weights()
    conv = head.seg_layers[0]  # 1x1 over 48 or 96 channels
    fan_in = conv.in_channels
    if he_init:
        assert not conv.bias.any() and abs(conv.weight.std().item() - (2 / (1 + 1e-4) / fan_in) ** 0.5) < 0.03
    else:
        assert conv.bias.abs().min() > 0 and abs(conv.weight.std().item() - (3 * fan_in) ** -0.5) < 0.015
