"""Every config under configs/ trains for a moment and computes its real metric on tiny generated data, on CPU.

Each config is loaded with ``mmssm.apis.load_config`` and built with ``build_runner`` exactly as tools/train.py does,
then shrunk (``mmssm.testing``): a narrow backbone from ``TINY_BACKBONES``, image sizes divided by
``SIZE_FACTORS[default_scope]``, tiny datasets in the real on-disk format, one epoch (or two iterations) at batch 2.
Configs that are identical once shrunk (T/S/B of one task differ only in the backbone) are built every time but
trained once. A config whose library (mmpretrain / mmdet / mmseg) is missing fails with load_config's message.

Adding a family: add a row to ``TINY_BACKBONES`` (backbone overrides, per-stage output channels).
Adding a task: add its metric type to ``EXPECTED_METRICS`` and its dataset maker to ``mmssm.testing.TINY_DATASETS``.
"""
import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.hooks import Hook

from mmssm.apis import build_runner, load_config
from mmssm.testing import TINY_DATASETS, make_quick, make_tiny_dataset, redirect_to_tiny_data, set_model_channels

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs'
CONFIGS = sorted(path for path in CONFIG_DIR.rglob('*.py') if '_base_' not in path.parts)

# backbone type -> (overrides that make it tiny, channels of its outputs at strides 4 / 8 / 16 / 32)
TINY_BACKBONES = {
    'mmssm.VMamba': (dict(arch=dict(embed_dims=16, depths=(1, 1, 1, 1), ssm_ratio=1.0)), (16, 32, 64, 128)),
    'mmssm.VMUNet': (dict(arch=dict(embed_dims=64, depths=(1, 1, 1, 1), decoder_depths=(1, 1, 1, 1), d_state=4)),
                     (16, )),  # one output: the decoder's, C/4 channels at full resolution
    'mmssm.MSVMUNet': (dict(arch=dict(embed_dims=16, depths=(1, 1, 1, 1)), decoder_depths=(1, 1, 1)), (16, )),
    'mmssm.Vim': (dict(arch=dict(embed_dims=16, num_layers=4)), (16, 16, 16, 16)),
    'mmssm.UMamba': (dict(arch=dict(features=(16, 32, 48), strides=(1, 2, 2), kernel_sizes=(3, 3, 3),
                                    encoder_blocks=(1, 1, 1), decoder_blocks=(1, 1), patch_size=(64, 64))),
                     (16, 32)),  # deep-supervision outputs, highest resolution first
    'mmssm.LightMUNet': (dict(arch=dict(init_filters=16, blocks_down=(1, 1, 1, 1), blocks_up=(1, 1, 1), num_groups=8)),
                         (16, )),
    'mmssm.SwinUMamba': (dict(arch=dict(stem_dims=16, embed_dims=16, depths=(1, 1, 1, 1), d_state=4)),
                         (16, 16, 32, 64)),  # deep-supervision outputs at H, H/2, H/4, H/8
    'mmssm.SwinUMambaD': (dict(arch=dict(embed_dims=16, depths=(1, 1, 1, 1), decoder_depths=(1, 1, 1), d_state=4)),
                          (16, 16, 32, 64)),  # at H, H/4, H/8, H/16
    'mmssm.SpatialMamba': (dict(arch=dict(embed_dims=(16, 32, 64, 128), depths=(1, 1, 1, 1))), (16, 32, 64, 128)),
    'mmssm.GroupMamba': (dict(arch=dict(embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1), mlp_ratios=(2, 2, 2, 2),
                                        stem_hidden_dims=8)), (16, 32, 48, 64)),
}
# distillation teacher (model.teacher) of the tiny runs; num_classes is the student's
TINY_TEACHER = dict(type='ImageClassifier', backbone=dict(type='ResNet', depth=18, base_channels=8, stem_channels=8),
                    neck=dict(type='GlobalAveragePooling'), head=dict(type='LinearClsHead', in_channels=64))
# model type -> narrow necks / heads, fewer proposals; an untrained detector keeps all its (low) scores so that
# COCO mAP is computed on real detections
TINY_HEADS = {
    'MaskRCNN': dict(
        neck=dict(out_channels=16),
        rpn_head=dict(in_channels=16, feat_channels=16),
        roi_head=dict(bbox_roi_extractor=dict(out_channels=16), bbox_head=dict(in_channels=16, fc_out_channels=32),
                      mask_roi_extractor=dict(out_channels=16), mask_head=dict(in_channels=16, conv_out_channels=16)),
        train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100), rcnn=dict(sampler=dict(num=64))),
        test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100), rcnn=dict(score_thr=0.0))),
    'EncoderDecoder': dict(decode_head=dict(channels=16), auxiliary_head=dict(channels=16)),
    'mmssm.SiameseEncoderDecoder': dict(decode_head=dict(channels=16)),
    'mmssm.SemanticChangeEncoderDecoder': dict(decode_head=dict(channels=16), semantic_head=dict(channels=16)),
}
# default_scope -> divisor of image sizes in pipelines (224 -> 32, 1333x800 -> 83x50, 512 crops -> 64)
SIZE_FACTORS = {'mmpretrain': 7, 'mmdet': 16, 'mmseg': 8}
# in-memory datasets: fewer samples
TINY_IN_MEMORY = {'mmssm.DemoShapes': dict(num_samples=4)}
# evaluator type -> metric names it must report
EXPECTED_METRICS = {
    'Accuracy': ('accuracy/top1', ),
    'CocoMetric': ('coco/bbox_mAP', 'coco/segm_mAP'),
    'IoUMetric': ('mIoU', ),
    'ChangeDetectionMetric': ('precision', 'recall', 'F1', 'IoU', 'OA', 'kappa'),
    'SemanticChangeMetric': ('SeK', 'Fscd', 'mIoU', 'OA'),
    'DamageAssessmentMetric': ('F1_loc', 'F1_clf', 'F1_oa', 'F1_no_damage', 'F1_destroyed'),
    'ISICMetric': ('Acc', 'Sensitivity', 'Specificity', 'DSC', 'mIoU'),
    'SynapseMetric': ('mDice', 'mHD95'),
    'DiceNSDMetric': ('DSC', 'NSD'),
}
SIGNED_METRICS = {'kappa', 'SeK'}  # metrics in percent that range over [-100, 100]
# backbone type -> the multiple its shrunk image sizes must be (U-Nets: skips meet maps upsampled from 1/32)
SIZE_MULTIPLES = {'mmssm.VMUNet': 32, 'mmssm.MSVMUNet': 32, 'mmssm.UMamba': 4, 'mmssm.LightMUNet': 8,
                  'mmssm.SwinUMamba': 32, 'mmssm.SwinUMambaD': 32}

# what decides whether two shrunk configs run the same way
SIGNATURE_KEYS = ('model', 'train_dataloader', 'val_dataloader', 'val_evaluator', 'train_cfg', 'optim_wrapper',
                  'param_scheduler', 'custom_hooks')

_trained = {}  # shrunk config text without the backbone -> metrics of its run


class _RecordMetrics(Hook):
    """Keeps the metrics of the last validation pass."""

    def __init__(self):
        self.metrics = None

    def after_val_epoch(self, runner, metrics=None):
        self.metrics = metrics


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('tiny_data'))


def _shrink(cfg, data_dir, work_dir):
    backbone = cfg.model.backbone
    if backbone.type not in TINY_BACKBONES:
        raise KeyError(f'no tiny version of backbone {backbone.type!r}: add a row to TINY_BACKBONES in {__file__}')
    overrides, channels = TINY_BACKBONES[backbone.type]
    backbone.update(overrides, init_cfg=None)  # no pretrained checkpoint in the tests
    if 'teacher' in cfg.model:  # distillation: a tiny random teacher with the student's classes
        cfg.model.teacher = dict(model=dict(TINY_TEACHER, head=dict(TINY_TEACHER['head'],
                                                                    num_classes=cfg.model.head.num_classes)))
    set_model_channels(cfg.model, channels)
    heads = TINY_HEADS.get(cfg.model.type, {})
    cfg.merge_from_dict(dict(model={k: v for k, v in heads.items() if cfg.model.get(k)}))  # the heads it has
    redirect_to_tiny_data(cfg, data_dir, TINY_IN_MEMORY)
    make_quick(cfg, work_dir, SIZE_FACTORS[cfg.default_scope], SIZE_MULTIPLES.get(backbone.type, 1))


def _signature(cfg):
    """What a shrunk run depends on, as text, without the backbone (where arch variants of one task differ)."""
    run = Config({key: copy.deepcopy(cfg.get(key)) for key in SIGNATURE_KEYS})
    run.model.pop('backbone')
    return run.pretty_text


@pytest.mark.parametrize('config_path', CONFIGS, ids=[str(p.relative_to(CONFIG_DIR)) for p in CONFIGS])
def test_config_trains_and_evaluates(config_path, data_dir, tmp_path):
    cfg = load_config(str(config_path), work_dir=str(tmp_path))
    _shrink(cfg, data_dir, str(tmp_path))
    runner = build_runner(cfg)
    assert sum(p.numel() for p in runner.model.backbone.parameters()) > 0
    signature = _signature(cfg)
    if signature in _trained:
        return  # trained already as another arch variant of the same task
    recorder = _RecordMetrics()
    runner.register_hook(recorder)
    runner.train()

    assert recorder.metrics, 'validation produced no metrics'
    evaluators = cfg.val_evaluator if isinstance(cfg.val_evaluator, list) else [cfg.val_evaluator]
    for evaluator in evaluators:
        kind = evaluator.type.split('.')[-1]
        assert kind in EXPECTED_METRICS, f'add the metrics of {kind} to EXPECTED_METRICS'
        for name in EXPECTED_METRICS[kind]:
            assert name in recorder.metrics, f'{name} missing from {sorted(recorder.metrics)}'
            lowest = -100 if name in SIGNED_METRICS else 0  # kappa of an untrained model may be below chance
            assert math.isfinite(recorder.metrics[name]) and recorder.metrics[name] >= lowest, recorder.metrics
    _trained[signature] = recorder.metrics


@pytest.mark.parametrize('maker', sorted(TINY_DATASETS), ids=str)
def test_tiny_dataset_is_deterministic(maker, tmp_path):
    first = make_tiny_dataset(maker, tmp_path / 'first')
    second = make_tiny_dataset(maker, tmp_path / 'second')
    files = sorted(p.relative_to(first) for p in Path(first).rglob('*') if p.is_file())
    assert files == sorted(p.relative_to(second) for p in Path(second).rglob('*') if p.is_file())
    assert files and all((Path(first) / f).read_bytes() == (Path(second) / f).read_bytes() for f in files)


def test_tiny_coco_boxes_and_areas_match_the_masks(tmp_path):
    root = Path(make_tiny_dataset('mmdet.CocoDataset', tmp_path))
    content = json.loads((root / 'annotations' / 'instances_val2017.json').read_text())
    assert {image['file_name'] for image in content['images']} == {p.name for p in (root / 'val2017').iterdir()}
    for annotation in content['annotations']:
        xy = np.asarray(annotation['segmentation'][0]).reshape(-1, 2)  # [x0, y0, x1, y1, ...] -> (V, 2)
        x, y, w, h = annotation['bbox']
        assert np.allclose([x, y, x + w, y + h], [*xy.min(0), *xy.max(0)], atol=0.02)
        assert 0 < annotation['area'] <= w * h
