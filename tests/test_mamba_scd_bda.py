"""MambaSCD and MambaBDA: the equivalence contract with the official models, the converters, the semantic head and
the semantic-change segmentor.

The official side is written here from the official code's semantics (ChenHongruixuan/MambaCD
changedetection/models/STMambaSCD.py, STMambaBDA.py, SemanticDecoder.py) with plain torch ops in float64, on random
state dicts with the official key names and shapes; encoder and ChangeDecoder are test_change_mamba's.
"""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from test_change_mamba import (CHANNELS, TINY_ENCODER, bn_eval, official_change_decoder, official_classify,
                               official_encoder, official_mambabcd_state_dict, official_res_block)
from test_vmamba import official_block_v2, official_state_dict

from mmssm.kernels.testing import assert_close
from mmssm.models.backbones.vmamba import VMamba
from mmssm.models.decode_heads import ChangeMambaSemanticHead, convert_mambabda, convert_mambascd
from mmssm.models.losses import UnchangedSimilarityLoss
from mmssm.models.utils import load_state_dict_checked
from mmssm.registry import MODELS, TRANSFORMS
from mmssm.testing.scripts import run_script

CONVERTERS = Path(__file__).resolve().parents[1] / 'tools/model_converters'
SCD_CLASSES, DAMAGE_CLASSES = 7, 5  # official output_clf (SECOND land cover + no change), output_damage


# --------------------------------------------------------------------------------------------------------------
# the official layout and forward, independent of mmssm.models

def official_semantic_decoder_state_dict(arch, channels, prefix, seed, device='cpu'):
    """Random weights of one official SemanticDecoder under ``prefix`` (e.g. ``'decoder_T1.'``)."""
    dims = [VMamba.resolve_arch(arch)['embed_dims'] * 2 ** i for i in range(4)]
    generator = torch.Generator().manual_seed(seed) if device != 'meta' else None
    sd = {}

    def rand(*shape, scale=0.2, offset=0.0):
        if device == 'meta':
            return torch.empty(shape, device='meta')
        return torch.randn(shape, generator=generator, dtype=torch.float64) * scale + offset

    def batch_norm(p, width):
        sd.update({p + 'weight': rand(width, offset=1), p + 'bias': rand(width), p + 'running_mean': rand(width),
                   p + 'running_var': rand(width, scale=0.1, offset=1).abs(),
                   p + 'num_batches_tracked': torch.zeros((), dtype=torch.long, device=device)})

    def vss_block(p, block_seed):
        block = official_state_dict(dict(embed_dims=channels, depths=(1,)), out_indices=(), seed=block_seed,
                                    device=device)
        inner = 'layers.0.blocks.0.'
        sd.update({p + k[len(inner):]: v for k, v in block.items() if k.startswith(inner)})

    sd.update({prefix + 'st_block_4_semantic.0.weight': rand(channels, dims[3], 1, 1, scale=dims[3] ** -0.5),
               prefix + 'st_block_4_semantic.0.bias': rand(channels)})
    vss_block(prefix + 'st_block_4_semantic.2.', seed + 4)
    for stage in (1, 2, 3):
        vss_block(prefix + f'st_block_{stage}_semantic.1.', seed + stage)
        p = prefix + f'trans_layer_{stage}.'
        sd.update({p + '0.weight': rand(channels, dims[stage - 1], 1, 1, scale=dims[stage - 1] ** -0.5),
                   p + '0.bias': rand(channels)})
        batch_norm(p + '1.', channels)
    for stage in (0, 1, 2, 3):
        p = prefix + f'smooth_layer_{stage}_semantic.'
        for conv in ('conv1', 'conv2'):
            sd[p + conv + '.weight'] = rand(channels, channels, 3, 3, scale=0.05)
        batch_norm(p + 'bn1.', channels)
        batch_norm(p + 'bn2.', channels)
    return sd


def official_classifier(name, channels, num_classes, seed, device='cpu'):
    if device == 'meta':
        return {name + '.weight': torch.empty(num_classes, channels, 1, 1, device='meta'),
                name + '.bias': torch.empty(num_classes, device='meta')}
    generator = torch.Generator().manual_seed(seed)
    return {name + '.weight': torch.randn(num_classes, channels, 1, 1, generator=generator, dtype=torch.float64),
            name + '.bias': torch.randn(num_classes, generator=generator, dtype=torch.float64)}


def official_mambascd_state_dict(arch, channels, device='cpu'):
    """STMambaSCD: encoder, decoder_bcd + main_clf_cd (2), decoder_T1, decoder_T2, aux_clf (7, shared)."""
    sd = official_mambabcd_state_dict(arch, channels, device=device, decoder='decoder_bcd', classifier='main_clf_cd')
    sd.update(official_semantic_decoder_state_dict(arch, channels, 'decoder_T1.', 100, device))
    sd.update(official_semantic_decoder_state_dict(arch, channels, 'decoder_T2.', 200, device))
    sd.update(official_classifier('aux_clf', channels, SCD_CLASSES, 300, device))
    return sd


def official_mambabda_state_dict(arch, channels, device='cpu'):
    """STMambaBDA: encoder, decoder_damage + main_clf (5), decoder_building + aux_clf (2)."""
    sd = official_mambabcd_state_dict(arch, channels, device=device, decoder='decoder_damage', classifier='main_clf',
                                      num_classes=DAMAGE_CLASSES)
    sd.update(official_semantic_decoder_state_dict(arch, channels, 'decoder_building.', 100, device))
    sd.update(official_classifier('aux_clf', channels, 2, 300, device))
    return sd


def official_semantic_decoder(sd, features, prefix):
    """SemanticDecoder.forward in eval mode (channel-first VSS blocks): (B, 128, H / 4, W / 4)."""
    p = prefix + 'st_block_4_semantic.'
    x = official_block_v2(F.conv2d(features[3], sd[p + '0.weight'], sd[p + '0.bias']), sd, p + '2.')
    for stage in (3, 2, 1):
        q = prefix + f'trans_layer_{stage}.'
        lateral = F.relu(bn_eval(F.conv2d(features[stage - 1], sd[q + '0.weight'], sd[q + '0.bias']), sd, q + '1.'))
        x = F.interpolate(x, size=lateral.shape[2:], mode='bilinear') + lateral
        x = official_res_block(x, sd, prefix + f'smooth_layer_{stage}_semantic.')
        x = official_block_v2(x, sd, prefix + f'st_block_{stage}_semantic.1.')
    return official_res_block(x, sd, prefix + 'smooth_layer_0_semantic.')


def official_mambascd(sd, pre, post, arch):
    """STMambaSCD.forward in eval mode: change (B, 2, H, W), land cover t1 and t2 (B, 7, H, W)."""
    pre_features, post_features = official_encoder(sd, pre, arch), official_encoder(sd, post, arch)
    size = pre.shape[-2:]
    change = official_classify(sd, official_change_decoder(sd, pre_features, post_features, 'decoder_bcd'),
                               'main_clf_cd', size)
    t1 = official_classify(sd, official_semantic_decoder(sd, pre_features, 'decoder_T1.'), 'aux_clf', size)
    t2 = official_classify(sd, official_semantic_decoder(sd, post_features, 'decoder_T2.'), 'aux_clf', size)
    return change, t1, t2


def official_mambabda(sd, pre, post, arch):
    """STMambaBDA.forward in eval mode: buildings (B, 2, H, W), damage (B, 5, H, W)."""
    pre_features, post_features = official_encoder(sd, pre, arch), official_encoder(sd, post, arch)
    size = pre.shape[-2:]
    building = official_classify(sd, official_semantic_decoder(sd, pre_features, 'decoder_building.'), 'aux_clf',
                                 size)
    damage = official_classify(sd, official_change_decoder(sd, pre_features, post_features, 'decoder_damage'),
                               'main_clf', size)
    return building, damage


# --------------------------------------------------------------------------------------------------------------
# ours

def build_model(task, arch=TINY_ENCODER, channels=CHANNELS, drop_path_rate=0.1, **semantic):
    """MambaSCD (``task='scd'``) or MambaBDA (``'bda'``) as a SemanticChangeEncoderDecoder."""
    dims = [arch['embed_dims'] * 2 ** i for i in range(4)]
    losses = [dict(type='mmseg.CrossEntropyLoss', avg_non_ignore=True),
              dict(type='mmseg.LovaszLoss', loss_type='multi_class', per_image=False, reduction='none')]
    head = dict(in_channels=dims, channels=channels, drop_path_rate=drop_path_rate, loss_decode=losses)
    semantic_head = dict(head, type='mmssm.ChangeMambaSemanticHead', **semantic)
    if task == 'scd':
        semantic_head.update(num_classes=SCD_CLASSES, dates=('t1', 't2'),
                             loss_similarity=dict(type='mmssm.UnchangedSimilarityLoss', loss_weight=0.25))
    else:
        semantic_head.update(num_classes=2, dates=('t1',))
    return MODELS.build(dict(
        type='mmssm.SemanticChangeEncoderDecoder',
        backbone=dict(type='mmssm.VMamba', arch=arch, out_indices=(0, 1, 2, 3)),
        decode_head=dict(head, type='mmssm.ChangeMambaHead', num_classes=2 if task == 'scd' else DAMAGE_CLASSES),
        semantic_head=semantic_head))


def _predict(model, pre, post):
    height, width = pre.shape[-2:]
    samples = [SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width)))
               for _ in range(len(pre))]
    with torch.no_grad():
        return model.predict(torch.cat([pre, post], dim=1).float(), samples)


def _stacked(results, field):
    return torch.stack([result.get(field).data for result in results])  # B x (C, H, W) -> (B, C, H, W)


def test_converted_official_mambascd_gives_official_outputs():
    pre, post = torch.randn(2, 2, 3, 36, 44, dtype=torch.float64)  # stage maps 9x11, 5x6, 3x3, 2x2
    official = official_mambascd_state_dict(TINY_ENCODER, CHANNELS)
    model = build_model('scd').eval()
    load_state_dict_checked(model, convert_mambascd(official))
    results = _predict(model, pre, post)
    change, t1, t2 = official_mambascd(official, pre, post, TINY_ENCODER)
    assert_close(_stacked(results, 'seg_logits'), change, torch.float32, name='change logits')
    assert_close(_stacked(results, 'seg_logits_t1'), t1, torch.float32, name='t1 land-cover logits')
    assert_close(_stacked(results, 'seg_logits_t2'), t2, torch.float32, name='t2 land-cover logits')
    assert torch.equal(_stacked(results, 'pred_sem_seg_t2')[:, 0], t2.argmax(1))


def test_converted_official_mambabda_gives_official_outputs():
    pre, post = torch.randn(2, 2, 3, 36, 44, dtype=torch.float64)
    official = official_mambabda_state_dict(TINY_ENCODER, CHANNELS)
    model = build_model('bda').eval()
    load_state_dict_checked(model, convert_mambabda(official))
    results = _predict(model, pre, post)
    building, damage = official_mambabda(official, pre, post, TINY_ENCODER)
    assert_close(_stacked(results, 'seg_logits'), damage, torch.float32, name='damage logits')
    assert_close(_stacked(results, 'seg_logits_t1'), building, torch.float32, name='building logits')
    assert 'pred_sem_seg_t2' not in results[0]


@pytest.mark.parametrize('convert, make, name', [(convert_mambascd, official_mambascd_state_dict, 'MambaSCD'),
                                                 (convert_mambabda, official_mambabda_state_dict, 'MambaBDA')])
def test_converters_reject_unknown_keys(convert, make, name):
    official = make(TINY_ENCODER, CHANNELS, device='meta')
    with pytest.raises(ValueError, match=rf"not official {name} keys.*'decoder\.st_block_41\.0\.weight'"):
        convert({**official, 'decoder.st_block_41.0.weight': torch.zeros(1)})  # a MambaBCD key
    with pytest.raises(ValueError, match='not official VMamba keys'):
        convert({**official, 'encoder.mystery.weight': torch.zeros(1)})


@pytest.mark.parametrize('script, make, dropped, ours', [
    ('mambascd2mmssm.py', official_mambascd_state_dict, 'decoder_T2.trans_layer_2.1.running_var',
     r'decoders\.1\.laterals\.1\.bn\.running_var'),
    ('mambabda2mmssm.py', official_mambabda_state_dict, 'decoder_building.smooth_layer_0_semantic.conv1.weight',
     r'decoders\.0\.out_smooth\.conv1\.weight')])
def test_converter_tools_check_every_part(tmp_path, script, make, dropped, ours):
    official = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in make('tiny-s2l4', 128, device='meta').items()}
    src, dst = tmp_path / 'official.pth', tmp_path / 'converted.pth'
    torch.save(official, src)  # the official training scripts save the bare state dict
    run_script(CONVERTERS / script, src, dst, '--arch', 'tiny-s2l4')
    state_dict = torch.load(dst, map_location='cpu')['state_dict']
    assert {k.split('.')[0] for k in state_dict} == {'backbone', 'decode_head', 'semantic_head'}
    assert 'semantic_head.conv_seg.weight' in state_dict and 'decode_head.conv_seg.weight' in state_dict

    del official[dropped]
    torch.save(official, src)
    with pytest.raises(SystemExit, match=ours):
        run_script(CONVERTERS / script, src, dst, '--arch', 'tiny-s2l4')


def test_semantic_head_rejects_bad_arguments_and_inputs():
    head = ChangeMambaSemanticHead(in_channels=(16, 32, 64, 128), channels=CHANNELS)
    maps = [torch.randn(3, c, s, s) for c, s in zip((16, 32, 64, 128), (8, 4, 2, 1))]
    with pytest.raises(ValueError, match=r'both dates stacked along the batch.*\[3, 3, 3, 3\]'):
        head(maps)
    with pytest.raises(ValueError, match='four encoder stages'):
        ChangeMambaSemanticHead(in_channels=(16, 32, 64))
    with pytest.raises(ValueError, match=r"distinct dates of \('t1', 't2'\), got \('t1', 't3'\)"):
        ChangeMambaSemanticHead(in_channels=(16, 32, 64, 128), dates=('t1', 't3'))
    with pytest.raises(ValueError, match='loss_similarity compares both dates'):
        ChangeMambaSemanticHead(in_channels=(16, 32, 64, 128), dates=('t1',),
                                loss_similarity=dict(type='mmssm.UnchangedSimilarityLoss'))
    with pytest.raises(ValueError, match="test_cfg mode must be 'whole', got 'slide'"):
        MODELS.build(dict(type='mmssm.SemanticChangeEncoderDecoder', test_cfg=dict(mode='slide'),
                          backbone=dict(type='mmssm.VMamba', arch=TINY_ENCODER, out_indices=(0, 1, 2, 3)),
                          decode_head=dict(type='mmssm.ChangeMambaHead', in_channels=(16, 32, 64, 128)),
                          semantic_head=dict(type='mmssm.ChangeMambaSemanticHead', in_channels=(16, 32, 64, 128))))
    with pytest.raises(ValueError, match=r'two \(B, K, H, W\) logits and a \(B, H, W\) mask'):
        UnchangedSimilarityLoss()(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4), torch.ones(1, 4, 5, dtype=bool))


def _samples(size, fields, crop=None):
    """Data samples with random labels: {field: number of classes}; ``crop`` leaves the date maps unpadded."""
    samples = []
    for _ in range(2):
        sample = SegDataSample()
        for field, classes in fields.items():
            shape = crop if crop and field != 'gt_sem_seg' else size
            sample.set_data({field: PixelData(data=torch.randint(0, classes, (1, *shape)))})
        sample.set_metainfo(dict(img_shape=size, ori_shape=size))
        samples.append(sample)
    return samples


def test_missing_date_label_is_named():
    model = build_model('bda', drop_path_rate=0.0).train()
    with pytest.raises(KeyError, match=r'no gt_sem_seg_t1.*mmssm\.LoadIndexLabel'):
        model.loss(torch.randn(2, 6, 32, 32), _samples((32, 32), dict(gt_sem_seg=DAMAGE_CLASSES)))


@pytest.mark.parametrize('task', ['scd', 'bda'])
def test_training_step_reaches_every_parameter(task):
    model = build_model(task, drop_path_rate=0.0).train()  # no block dropped
    fields = (dict(gt_sem_seg=2, gt_sem_seg_t1=SCD_CLASSES, gt_sem_seg_t2=SCD_CLASSES) if task == 'scd' else
              dict(gt_sem_seg=DAMAGE_CLASSES, gt_sem_seg_t1=2))
    samples = _samples((64, 64), fields, crop=(60, 62))  # date maps padded to 64x64 with 255 by the segmentor
    losses = model.loss(torch.randn(2, 6, 64, 64), samples)  # the deepest maps 2x2: every scan has two steps
    expected = {'decode.loss_ce', 'decode.loss_lovasz', 'semantic.loss_ce_t1', 'semantic.loss_lovasz_t1'}
    if task == 'scd':
        expected |= {'semantic.loss_ce_t2', 'semantic.loss_lovasz_t2', 'semantic.loss_similarity'}
    assert expected == {k for k in losses if 'loss' in k}
    assert all(s.gt_sem_seg_t1.shape == (64, 64) and (s.gt_sem_seg_t1.data[0, 60:] == 255).all() for s in samples)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    untouched = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not untouched, untouched


def test_similarity_loss_is_the_masked_mean_squared_difference():
    logits_1, logits_2 = torch.randn(2, 2, 3, 4, 5, dtype=torch.float64)
    mask = torch.rand(2, 4, 5) > 0.5
    p, q = logits_1.softmax(1), logits_2.softmax(1)
    squared = sum(((p[b, :, i, j] - q[b, :, i, j]) ** 2).sum().item() for b, i, j in mask.nonzero().tolist())
    expected = 0.25 * squared / logits_1.numel()  # the mean runs over every element, masked ones included
    loss = UnchangedSimilarityLoss(loss_weight=0.25)(logits_1, logits_2, mask)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert UnchangedSimilarityLoss().loss_name == 'loss_similarity'


# --------------------------------------------------------------------------------------------------------------
# the training recipes of the configs against train_MambaSCD.py / train_MambaBDA.py

CONFIGS = Path(__file__).resolve().parents[1] / 'configs/_base_'


def official_lovasz_softmax(logits, labels, ignore=255):
    """lovasz_loss.lovasz_softmax(F.softmax(logits, 1), labels, ignore=255): classes present, one flat batch."""
    probas = logits.softmax(1).permute(0, 2, 3, 1).flatten(0, 2)  # (B, C, H, W) -> (B * H * W, C)
    labels = labels.flatten()
    probas, labels = probas[labels != ignore], labels[labels != ignore]
    losses = []
    for c in range(probas.shape[1]):
        fg = (labels == c).to(probas.dtype)
        if fg.sum() == 0:
            continue
        errors, order = (fg - probas[:, c]).abs().sort(descending=True)
        fg_sorted = fg[order]
        jaccard = 1 - (fg.sum() - fg_sorted.cumsum(0)) / (fg.sum() + (1 - fg_sorted).cumsum(0))
        losses.append(errors @ torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]]))
    return sum(losses) / len(losses)


def _config_losses(config, logits, labels):
    """The summed losses of a base config's two heads on logits {'': change / damage, date: per date} and raw labels
    {'': ..., date: ...} (B, H, W), relabelled by the config's training pipeline."""
    cfg = Config.fromfile(str(CONFIGS / config))
    results = {'gt_seg_map' + (f'_{k}' if k else ''): v.numpy().astype('uint8') for k, v in labels.items()}
    for transform in cfg.train_pipeline:
        if transform['type'] == 'mmssm.MapLabelValues':
            results = TRANSFORMS.build(transform)(results)
    samples = [SegDataSample() for _ in range(len(logits['']))]
    for key, value in results.items():
        field = key.replace('gt_seg_map', 'gt_sem_seg')
        for sample, label in zip(samples, torch.as_tensor(value).long()):
            sample.set_data({field: PixelData(data=label[None])})  # (H, W) -> (1, H, W)
    dims = (16, 32, 64, 128)
    with DefaultScope.overwrite_default_scope('mmseg'):
        decode = MODELS.build(dict(cfg.model.decode_head, in_channels=dims, channels=16))
        semantic = MODELS.build(dict(cfg.model.semantic_head, in_channels=dims, channels=16))
    losses = decode.loss_by_feat(logits[''], samples)
    losses.update(semantic.loss_by_feat({date: logits[date] for date in semantic.dates}, samples))
    return sum(v for k, v in losses.items() if 'loss' in k)


def test_mambascd_config_loss_is_the_official_training_loss():
    """train_MambaSCD.py: land cover 0 -> 255, CE_cd + 0.5 (CE_t1 + CE_t2 + 0.5 similarity) + 0.75 (Lovasz_cd +
    0.5 (Lovasz_t1 + Lovasz_t2)), the similarity on the pixels whose date-1 label is then 255."""
    generator = torch.Generator().manual_seed(0)
    change = torch.randint(0, 2, (2, 8, 8), generator=generator)
    t1 = torch.randint(1, 7, (2, 8, 8), generator=generator) * change  # 0 where unchanged
    t2 = torch.randint(1, 7, (2, 8, 8), generator=generator) * change
    logits = {'': torch.randn(2, 2, 8, 8, generator=generator),
              't1': torch.randn(2, 7, 8, 8, generator=generator),
              't2': torch.randn(2, 7, 8, 8, generator=generator)}
    ours = _config_losses('mambascd_1xb16-50k_second-256x256.py', logits, {'': change, 't1': t1, 't2': t2})
    t1, t2 = t1.masked_fill(t1 == 0, 255), t2.masked_fill(t2 == 0, 255)
    mask = (t1 == 255)[:, None].float()
    similarity = F.mse_loss(logits['t1'].softmax(1) * mask, logits['t2'].softmax(1) * mask)
    ce = {k: F.cross_entropy(logits[k], label, ignore_index=255) for k, label in (('', change), ('t1', t1), ('t2', t2))}
    lovasz = {k: official_lovasz_softmax(logits[k], label) for k, label in (('', change), ('t1', t1), ('t2', t2))}
    official = (ce[''] + 0.5 * (ce['t1'] + ce['t2'] + 0.5 * similarity)
                + 0.75 * (lovasz[''] + 0.5 * (lovasz['t1'] + lovasz['t2'])))
    assert ours.item() == pytest.approx(official.item(), rel=1e-5)  # mmseg's Lovasz runs in float32


def test_mambabda_config_loss_is_the_official_training_loss():
    """train_MambaBDA.py / DamageAssessmentDatset: damage 0 -> 255 (training only), buildings as they are;
    CE_loc + CE_damage + 0.5 Lovasz_loc + 0.75 Lovasz_damage."""
    generator = torch.Generator().manual_seed(0)
    buildings = torch.randint(0, 2, (2, 8, 8), generator=generator)
    damage = torch.randint(1, 5, (2, 8, 8), generator=generator) * buildings
    damage[0, 0, :3] = 255  # unclassified
    logits = {'': torch.randn(2, 5, 8, 8, generator=generator),
              't1': torch.randn(2, 2, 8, 8, generator=generator)}
    ours = _config_losses('mambabda_1xb16-50k_xbd-256x256.py', logits, {'': damage, 't1': buildings})
    damage = damage.masked_fill(damage == 0, 255)
    official = (F.cross_entropy(logits['t1'], buildings, ignore_index=255)
                + F.cross_entropy(logits[''], damage, ignore_index=255)
                + 0.5 * official_lovasz_softmax(logits['t1'], buildings)
                + 0.75 * official_lovasz_softmax(logits[''], damage))
    assert ours.item() == pytest.approx(official.item(), rel=1e-5)  # mmseg's Lovasz runs in float32
