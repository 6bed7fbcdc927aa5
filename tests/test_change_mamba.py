"""ChangeMamba (MambaBCD): the equivalence contract with the official model, the converter and the siamese segmentor.

The official side is written here from the official code's semantics (ChenHongruixuan/MambaCD
changedetection/models/MambaBCD.py and ChangeDecoder.py: STMambaBCD, ChangeDecoder, ResBlock) with plain torch ops
in float64, on a random state dict with the official key names and shapes; the encoder is test_vmamba's
official Backbone_VSSM.
"""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_vmamba import official_block_v2, official_forward, official_state_dict

from mmssm.kernels.testing import assert_close
from mmssm.models.backbones.vmamba import VMamba
from mmssm.models.decode_heads import ChangeMambaHead, convert_changemamba
from mmssm.models.utils import load_state_dict_checked
from mmssm.registry import MODELS
from mmssm.testing.scripts import run_script

CONVERTER = Path(__file__).resolve().parents[1] / 'tools/model_converters/changemamba2mmssm.py'
TINY_ENCODER = dict(embed_dims=16, depths=(1, 1, 1, 1))  # the v2 release settings: d_state 1, ssm_ratio 2
CHANNELS = 16  # the decoder's width (128 in MambaCD)


# --------------------------------------------------------------------------------------------------------------
# the official layout and forward, independent of mmssm.models

def official_mambabcd_state_dict(arch, channels, seed=0, device='cpu', decoder='decoder', classifier='main_clf',
                                 num_classes=2):
    """Random weights under STMambaBCD's key names: ``encoder.*`` (Backbone_VSSM), ``decoder.*``, ``main_clf.*``
    (MambaSCD / MambaBDA name their ChangeDecoder and its classifier ``decoder`` and ``classifier``)."""
    sd = {'encoder.' + k: v for k, v in official_state_dict(arch, out_indices=(0, 1, 2, 3), seed=seed,
                                                             device=device).items()}
    dims = [VMamba.resolve_arch(arch)['embed_dims'] * 2 ** i for i in range(4)]
    generator = torch.Generator().manual_seed(seed + 1) if device != 'meta' else None

    def rand(*shape, scale=0.2, offset=0.0):
        if device == 'meta':
            return torch.empty(shape, device='meta')
        return torch.randn(shape, generator=generator, dtype=torch.float64) * scale + offset

    def batch_norm(p, width):
        sd.update({p + 'weight': rand(width, offset=1), p + 'bias': rand(width), p + 'running_mean': rand(width),
                   p + 'running_var': rand(width, scale=0.1, offset=1).abs(),
                   p + 'num_batches_tracked': torch.zeros((), dtype=torch.long, device=device)})

    for stage, dim in enumerate(dims, start=1):
        for relation, in_channels in (('1', 2 * dim), ('2', dim), ('3', dim)):
            p = f'{decoder}.st_block_{stage}{relation}.'
            sd.update({p + '0.weight': rand(channels, in_channels, 1, 1, scale=in_channels ** -0.5),
                       p + '0.bias': rand(channels)})
            block = official_state_dict(dict(embed_dims=channels, depths=(1,)), out_indices=(),
                                        seed=seed + 10 * stage + int(relation), device=device)
            sd.update({p + '2.' + k[len('layers.0.blocks.0.'):]: v for k, v in block.items()
                       if k.startswith('layers.0.blocks.0.')})
        sd.update({f'{decoder}.fuse_layer_{stage}.0.weight': rand(channels, 5 * channels, 1, 1, scale=0.1),
                   f'{decoder}.fuse_layer_{stage}.0.bias': rand(channels)})
        batch_norm(f'{decoder}.fuse_layer_{stage}.1.', channels)
    for stage in (1, 2, 3):
        p = f'{decoder}.smooth_layer_{stage}.'
        for conv in ('conv1', 'conv2'):
            sd[p + conv + '.weight'] = rand(channels, channels, 3, 3, scale=0.05)
        batch_norm(p + 'bn1.', channels)
        batch_norm(p + 'bn2.', channels)
    sd.update({f'{classifier}.weight': rand(num_classes, channels, 1, 1), f'{classifier}.bias': rand(num_classes)})
    return sd


def bn_eval(x, sd, p):
    return F.batch_norm(x, sd[p + 'running_mean'], sd[p + 'running_var'], sd[p + 'weight'], sd[p + 'bias'])


def official_st_block(x, sd, p):
    """Sequential(Conv2d 1x1, Identity, VSSBlock, Identity) of a channel-first encoder."""
    return official_block_v2(F.conv2d(x, sd[p + '0.weight'], sd[p + '0.bias']), sd, p + '2.')


def official_stage(pre, post, sd, stage, decoder='decoder'):
    B, C, H, W = pre.shape
    p = f'{decoder}.st_block_{stage}'
    p1 = official_st_block(torch.cat([pre, post], dim=1), sd, p + '1.')
    interleaved = pre.new_empty(B, C, H, 2 * W)
    interleaved[:, :, :, ::2] = pre
    interleaved[:, :, :, 1::2] = post
    p2 = official_st_block(interleaved, sd, p + '2.')
    side_by_side = pre.new_empty(B, C, H, 2 * W)
    side_by_side[:, :, :, 0:W] = pre
    side_by_side[:, :, :, W:] = post
    p3 = official_st_block(side_by_side, sd, p + '3.')
    fused = torch.cat([p1, p2[:, :, :, ::2], p2[:, :, :, 1::2], p3[:, :, :, 0:W], p3[:, :, :, W:]], dim=1)
    q = f'{decoder}.fuse_layer_{stage}.'
    return F.relu(bn_eval(F.conv2d(fused, sd[q + '0.weight'], sd[q + '0.bias']), sd, q + '1.'))


def official_res_block(x, sd, p):
    out = F.relu(bn_eval(F.conv2d(x, sd[p + 'conv1.weight'], padding=1), sd, p + 'bn1.'))
    out = bn_eval(F.conv2d(out, sd[p + 'conv2.weight'], padding=1), sd, p + 'bn2.')
    return F.relu(out + x)


def official_encoder(sd, image, arch):
    """Backbone_VSSM.forward of the ``encoder.*`` weights: four stage maps."""
    encoder = {k[len('encoder.'):]: v for k, v in sd.items() if k.startswith('encoder.')}
    return official_forward(encoder, image, arch, out_indices=(0, 1, 2, 3))


def official_change_decoder(sd, pre_features, post_features, decoder='decoder'):
    """ChangeDecoder.forward in eval mode: (B, 128, H / 4, W / 4)."""
    x = official_stage(pre_features[3], post_features[3], sd, 4, decoder)
    for stage in (3, 2, 1):
        shallower = official_stage(pre_features[stage - 1], post_features[stage - 1], sd, stage, decoder)
        x = F.interpolate(x, size=shallower.shape[2:], mode='bilinear') + shallower
        x = official_res_block(x, sd, f'{decoder}.smooth_layer_{stage}.')
    return x


def official_classify(sd, x, classifier, size):
    """A 1x1-conv classifier, then bilinear to the input ``size``."""
    return F.interpolate(F.conv2d(x, sd[classifier + '.weight'], sd[classifier + '.bias']), size=size, mode='bilinear')


def official_mambabcd(sd, pre, post, arch):
    """STMambaBCD.forward in eval mode: logits (B, 2, H, W)."""
    x = official_change_decoder(sd, official_encoder(sd, pre, arch), official_encoder(sd, post, arch))
    return official_classify(sd, x, 'main_clf', pre.shape[-2:])


# --------------------------------------------------------------------------------------------------------------
# ours

def build_segmentor(arch, channels, drop_path_rate=0.1):
    dims = [arch['embed_dims'] * 2 ** i for i in range(4)]
    return MODELS.build(dict(
        type='mmssm.SiameseEncoderDecoder',
        backbone=dict(type='mmssm.VMamba', arch=arch, out_indices=(0, 1, 2, 3)),
        decode_head=dict(type='mmssm.ChangeMambaHead', in_channels=dims, channels=channels,
                         drop_path_rate=drop_path_rate,
                         loss_decode=dict(type='mmseg.CrossEntropyLoss', avg_non_ignore=True))))


def test_converted_official_checkpoint_gives_official_change_logits():
    pre, post = torch.randn(2, 2, 3, 36, 44, dtype=torch.float64)  # stage maps 9x11, 5x6, 3x3, 2x2
    official = official_mambabcd_state_dict(TINY_ENCODER, CHANNELS)
    model = build_segmentor(TINY_ENCODER, CHANNELS).eval()
    load_state_dict_checked(model, convert_changemamba(official))
    with torch.no_grad():
        ours = model.encode_decode(torch.cat([pre, post], dim=1).float(), [dict(img_shape=(36, 44))])
    assert_close(ours, official_mambabcd(official, pre, post, TINY_ENCODER), torch.float32, name='change logits')


def test_converter_rejects_unknown_keys():
    official = official_mambabcd_state_dict(TINY_ENCODER, CHANNELS, device='meta')
    with pytest.raises(ValueError, match=r"not official MambaBCD keys.*'decoder\.st_block_44\.0\.weight'"):
        convert_changemamba({**official, 'decoder.st_block_44.0.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match='not official VMamba keys'):
        convert_changemamba({**official, 'encoder.mystery.weight': torch.zeros(1)})


def test_converter_tool_checks_encoder_and_decoder(tmp_path):
    official = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in
                official_mambabcd_state_dict('tiny-s2l4', 128, device='meta').items()}
    src, dst = tmp_path / 'MambaBCD_Tiny.pth', tmp_path / 'converted.pth'
    torch.save(official, src)  # the official training script saves the bare state dict
    run_script(CONVERTER, src, dst, '--arch', 'tiny-s2l4')
    state_dict = torch.load(dst, map_location='cpu')['state_dict']
    assert {k.split('.')[0] for k in state_dict} == {'backbone', 'decode_head'}
    assert 'decode_head.conv_seg.weight' in state_dict and 'backbone.norm3.weight' in state_dict

    del official['decoder.smooth_layer_2.bn1.running_var']
    torch.save(official, src)
    with pytest.raises(SystemExit, match=r'smooths\.1\.bn1\.running_var'):
        run_script(CONVERTER, src, dst, '--arch', 'tiny-s2l4')


def test_head_and_segmentor_reject_unpaired_inputs():
    head = ChangeMambaHead(in_channels=(16, 32, 64, 128), channels=CHANNELS)
    maps = [torch.randn(3, c, s, s) for c, s in zip((16, 32, 64, 128), (8, 4, 2, 1))]
    with pytest.raises(ValueError, match=r'both dates stacked along the batch.*\[3, 3, 3, 3\]'):
        head(maps)
    with pytest.raises(ValueError, match='four encoder stages'):
        ChangeMambaHead(in_channels=(16, 32, 64))
    model = build_segmentor(TINY_ENCODER, CHANNELS)
    with pytest.raises(ValueError, match=r'stacked along channels \(B, 2 \* C, H, W\), got \(1, 3, 32, 32\)'):
        model.extract_feat(torch.randn(1, 3, 32, 32))


def test_training_step_reaches_every_parameter():
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    model = build_segmentor(TINY_ENCODER, CHANNELS, drop_path_rate=0.0).train()  # no block dropped
    pairs = torch.randn(2, 6, 64, 64)  # the deepest maps 2x2: a scan of one step would leave A without gradient
    samples = []
    for _ in range(2):
        sample = SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, 2, (1, 64, 64))))
        sample.set_metainfo(dict(img_shape=(64, 64), ori_shape=(64, 64)))
        samples.append(sample)
    losses = model.loss(pairs, samples)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    untouched = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not untouched, untouched
