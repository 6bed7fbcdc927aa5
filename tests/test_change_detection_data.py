"""Change-detection data: LEVIR-CD dataset, pair / label loading, 90-degree rotation, mmseg augmentation of the
6-channel pair, the changed-class metric and the tiny LEVIR-CD maker."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.dataset import Compose
from mmengine.evaluator import Evaluator
from mmengine.registry import DATASETS, DefaultScope
from PIL import Image

from mmssm.datasets import LEVIRCDDataset, LoadBinaryLabel, LoadImagePairFromFile, RandomRotate90
from mmssm.evaluation import ChangeDetectionMetric
from mmssm.testing import make_levir_cd

NUM_TRAIN, SIZE = 3, 48


def _prefix(split):
    return dict(img_path=f'{split}/A', img_path2=f'{split}/B', seg_map_path=f'{split}/label')


def _png(path):
    return np.asarray(Image.open(path))


@pytest.fixture(scope='module')
def levir(tmp_path_factory):
    return Path(make_levir_cd(tmp_path_factory.mktemp('levir'), num_train=NUM_TRAIN, num_val=2, size=SIZE))


@pytest.fixture
def levir_copy(levir, tmp_path):
    """A copy of the tiny dataset a test may break."""
    make_levir_cd(tmp_path, num_train=NUM_TRAIN, num_val=2, size=SIZE)
    return tmp_path


def _load(info):
    return LoadBinaryLabel()(LoadImagePairFromFile()(dict(info)))


# --- dataset -------------------------------------------------------------------------------------------------------

def test_dataset_lists_matching_triples(levir):
    dataset = LEVIRCDDataset(data_root=str(levir), data_prefix=_prefix('train'))
    assert len(dataset) == NUM_TRAIN and dataset.metainfo['classes'] == ('unchanged', 'changed')
    for index in range(NUM_TRAIN):
        info = dataset.get_data_info(index)
        paths = [Path(info[key]) for key in ('img_path', 'img_path2', 'seg_map_path')]
        assert [p.parent for p in paths] == [levir / 'train' / folder for folder in ('A', 'B', 'label')]
        assert len({p.name for p in paths}) == 1 and all(p.is_file() for p in paths)
        assert info['seg_fields'] == [] and info['reduce_zero_label'] is False and info['label_map'] is None


def test_dataset_reads_a_list_file(levir_copy):
    (levir_copy / 'val.txt').write_text('val_2\nval_1.png\n')
    dataset = LEVIRCDDataset(data_root=str(levir_copy), data_prefix=_prefix('val'), ann_file='val.txt')
    assert [Path(dataset.get_data_info(i)['img_path']).name for i in range(2)] == ['val_2.png', 'val_1.png']


@pytest.mark.parametrize('folder', ['B', 'label'])
def test_dataset_names_the_missing_partner(levir_copy, folder):
    missing = levir_copy / 'train' / folder / 'train_2.png'
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=str(missing)):
        LEVIRCDDataset(data_root=str(levir_copy), data_prefix=_prefix('train'))


def test_dataset_names_a_missing_date1_image_and_folder(levir_copy):
    missing = levir_copy / 'train' / 'A' / 'train_1.png'
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=str(missing)):
        LEVIRCDDataset(data_root=str(levir_copy), data_prefix=_prefix('train'))
    with pytest.raises(FileNotFoundError, match=str(levir_copy / 'nowhere' / 'A')):
        LEVIRCDDataset(data_root=str(levir_copy), data_prefix=_prefix('nowhere'))
    with pytest.raises(ValueError, match='img_path2'):
        LEVIRCDDataset(data_root=str(levir_copy), data_prefix=dict(img_path='train/A', seg_map_path='train/label'))


# --- loading -------------------------------------------------------------------------------------------------------

def test_loading_stacks_the_dates_and_binarises_the_label(levir):
    dataset = LEVIRCDDataset(data_root=str(levir), data_prefix=_prefix('train'))
    info = dataset.get_data_info(0)
    results = _load(info)
    image, label = results['img'], results['gt_seg_map']
    assert image.shape == (SIZE, SIZE, 6) and image.dtype == np.uint8 and results['img_shape'] == (SIZE, SIZE)
    assert results['ori_shape'] == (SIZE, SIZE)
    assert np.array_equal(image[..., :3], _png(info['img_path'])) and np.array_equal(image[..., 3:],
                                                                                       _png(info['img_path2']))
    mask = _png(info['seg_map_path'])
    assert set(np.unique(mask)) == {0, 255}
    assert label.dtype == np.uint8 and np.array_equal(label, (mask == 255).astype(np.uint8))
    assert results['seg_fields'] == ['gt_seg_map']


def test_rgb_label_is_read_as_grey_and_sizes_are_checked(tmp_path):
    grey = np.zeros((6, 8), np.uint8)
    grey[1:3, 2:7] = 255
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(tmp_path / 'rgb.png')  # (H, W) -> (H, W, 3)
    results = LoadBinaryLabel()(dict(seg_map_path=str(tmp_path / 'rgb.png')))
    assert np.array_equal(results['gt_seg_map'], grey // 255)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / 'a.png')
    Image.fromarray(np.zeros((6, 9, 3), np.uint8)).save(tmp_path / 'b.png')
    with pytest.raises(ValueError, match='b.png'):
        LoadImagePairFromFile()(dict(img_path=str(tmp_path / 'a.png'), img_path2=str(tmp_path / 'b.png')))
    with pytest.raises(ValueError, match='rgb.png'):
        LoadBinaryLabel()(dict(seg_map_path=str(tmp_path / 'rgb.png'), img_shape=(6, 9)))


# --- rotation ------------------------------------------------------------------------------------------------------

def _coordinate_pair(height=5, width=7):
    """An image whose pixel (y, x) holds y and x, and a label holding y * width + x (the same source position)."""
    y, x = np.mgrid[:height, :width]  # (H, W) each
    image = np.stack([y, x, y, x, y, x], axis=-1).astype(np.uint8)  # (H, W, 6)
    return dict(img=image, gt_seg_map=(y * width + x).astype(np.uint8), seg_fields=['gt_seg_map'],
                img_shape=(height, width))


def test_random_rotate90_turns_image_and_label_together():
    height, width = 5, 7
    # counter-clockwise by k quarter turns: output pixel (i, j) comes from this source (y, x)
    sources = {1: lambda i, j: (j, width - 1 - i), 2: lambda i, j: (height - 1 - i, width - 1 - j),
               3: lambda i, j: (height - 1 - j, i)}
    seen = set()
    for seed in range(12):
        np.random.seed(seed)
        results = RandomRotate90(prob=1.0)(_coordinate_pair(height, width))
        image, label = results['img'], results['gt_seg_map']
        assert image.flags.c_contiguous and label.flags.c_contiguous
        assert results['img_shape'] == image.shape[:2] == label.shape
        k = next(k for k, source in sources.items() if tuple(image[0, 0, :2]) == source(0, 0))
        seen.add(k)
        for i, j in np.ndindex(*label.shape):
            y, x = sources[k](i, j)
            assert tuple(image[i, j]) == (y, x) * 3 and label[i, j] == y * width + x
    assert seen == {1, 2, 3}
    unchanged = RandomRotate90(prob=0.0)(_coordinate_pair())
    assert np.array_equal(unchanged['img'], _coordinate_pair()['img'])


# --- mmseg augmentation and packing on the 6-channel pair ----------------------------------------------------------

def _mmseg_pipeline(*transforms):
    with DefaultScope.overwrite_default_scope('mmseg'):
        return Compose([dict(type='mmssm.LoadImagePairFromFile'), dict(type='mmssm.LoadBinaryLabel'), *transforms,
                        dict(type='PackSegInputs')])


@pytest.mark.parametrize('direction', ['horizontal', 'vertical'])
def test_mmseg_flip_moves_both_dates_and_the_label(levir, direction):
    info = LEVIRCDDataset(data_root=str(levir), data_prefix=_prefix('train')).get_data_info(1)
    packed = _mmseg_pipeline(dict(type='RandomFlip', prob=1.0, direction=direction))(dict(info))
    axis = 1 if direction == 'horizontal' else 0
    pair = np.concatenate([_png(info['img_path']), _png(info['img_path2'])], axis=2)  # (H, W, 6)
    expected = np.flip(pair, axis).transpose(2, 0, 1)  # (H, W, 6) -> (6, H, W)
    assert np.array_equal(packed['inputs'].numpy(), expected)
    label = packed['data_samples'].gt_sem_seg.data[0].numpy()
    assert np.array_equal(label, np.flip(_png(info['seg_map_path']) // 255, axis))


def test_mambacd_augmentation_keeps_the_dates_aligned_with_the_label(levir):
    """Crop, flips and rotation on the tiny pairs, whose label is exactly where the two dates differ."""
    crop = SIZE * 3 // 4
    pipeline = [dict(type='mmssm.LoadImagePairFromFile'), dict(type='mmssm.LoadBinaryLabel'),
                dict(type='RandomCrop', crop_size=(crop, crop), cat_max_ratio=0.75),
                dict(type='RandomFlip', prob=0.5, direction='horizontal'),
                dict(type='RandomFlip', prob=0.5, direction='vertical'),
                dict(type='mmssm.RandomRotate90', prob=0.75), dict(type='PackSegInputs')]
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(dict(type='mmssm.LEVIRCDDataset', data_root=str(levir), data_prefix=_prefix('train'),
                                      pipeline=pipeline))
    np.random.seed(0)
    flipped = 0
    for _ in range(4):
        for index in range(len(dataset)):
            packed = dataset[index]
            image = packed['inputs'].numpy()  # (6, crop, crop)
            label = packed['data_samples'].gt_sem_seg.data[0].numpy()
            assert image.shape == (6, crop, crop) and label.shape == (crop, crop)
            assert np.array_equal(label, np.any(image[:3] != image[3:], axis=0))
            flipped += packed['data_samples'].flip
    assert flipped > 0


# --- metric --------------------------------------------------------------------------------------------------------

def _sample(pred, label):
    return dict(pred_sem_seg=dict(data=torch.as_tensor(pred)[None]), gt_sem_seg=dict(data=torch.as_tensor(label)[None]))


def _expected(preds, labels):
    """Scores in percent from boolean pixel counts, kappa from its closed form over the 2x2 counts."""
    pred = np.concatenate([p.ravel() for p in preds])
    label = np.concatenate([t.ravel() for t in labels])
    valid = label != 255
    tp = np.sum((pred == 1) & (label == 1) & valid)
    fp = np.sum((pred == 1) & (label == 0) & valid)
    fn = np.sum((pred == 0) & (label == 1) & valid)
    tn = np.sum((pred == 0) & (label == 0) & valid)
    tp, fp, fn, tn = (float(v) for v in (tp, fp, fn, tn))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    kappa = 2 * (tp * tn - fn * fp) / ((tp + fp) * (fp + tn) + (tp + fn) * (fn + tn))
    return dict(precision=100 * precision, recall=100 * recall, F1=100 * 2 * precision * recall / (precision + recall),
                IoU=100 * tp / (tp + fp + fn), OA=100 * (tp + tn) / valid.sum(), kappa=100 * kappa)


def test_metric_pools_one_confusion_matrix_and_ignores_255():
    rng = np.random.default_rng(0)
    sizes = [(8, 11), (5, 7), (13, 4), (9, 9), (6, 10)]
    labels = [np.where(rng.random(s) < 0.1, 255, rng.random(s) < 0.3).astype(np.uint8) for s in sizes]
    preds = [(rng.random(s) < 0.4).astype(np.uint8) for s in sizes]
    with DefaultScope.overwrite_default_scope('mmseg'):
        evaluator = Evaluator(dict(type='mmssm.ChangeDetectionMetric'))
    for batch in ([0, 1], [2], [3, 4]):
        evaluator.process([_sample(preds[i], labels[i]) for i in batch])
    scores = evaluator.evaluate(len(sizes))
    expected = _expected(preds, labels)
    assert scores.keys() == expected.keys()
    for name, value in expected.items():
        assert math.isclose(scores[name], value, rel_tol=1e-12), (name, scores[name], value)
    # the 255 pixels really are left out: predicting them all wrong changes nothing
    flipped = [np.where(t == 255, 1 - p, p) for p, t in zip(preds, labels)]
    metric = ChangeDetectionMetric()
    metric.process(None, [_sample(p, t) for p, t in zip(flipped, labels)])
    assert metric.evaluate(len(sizes)) == pytest.approx(scores, rel=1e-12)


def test_metric_is_zero_not_nan_without_changed_predictions():
    label = np.zeros((6, 6), np.uint8)
    label[:2] = 1
    metric = ChangeDetectionMetric()
    metric.process(None, [_sample(np.zeros_like(label), label)])
    scores = metric.evaluate(1)
    assert {name: scores[name] for name in ('precision', 'recall', 'F1', 'IoU', 'kappa')} == dict.fromkeys(
        ('precision', 'recall', 'F1', 'IoU', 'kappa'), 0.0)
    assert scores['OA'] == pytest.approx(100 * 24 / 36)
    metric.process(None, [_sample(np.zeros_like(label), np.zeros_like(label))])  # no change anywhere: pe = 1
    assert all(math.isfinite(v) for v in metric.evaluate(1).values())
    with pytest.raises(ValueError, match='0 / 1'):
        metric.process(None, [_sample(np.full((2, 2), 2), np.zeros((2, 2)))])


# --- tiny dataset --------------------------------------------------------------------------------------------------

def test_make_levir_cd_is_deterministic_with_labels_where_the_dates_differ(levir, tmp_path):
    again = Path(make_levir_cd(tmp_path / 'again', num_train=NUM_TRAIN, num_val=2, size=SIZE))
    files = sorted(p.relative_to(levir) for p in levir.rglob('*.png'))
    assert files == sorted(p.relative_to(again) for p in again.rglob('*.png'))
    assert all((levir / f).read_bytes() == (again / f).read_bytes() for f in files)
    other = Path(make_levir_cd(tmp_path / 'other', num_train=NUM_TRAIN, num_val=2, size=SIZE, seed=1))
    assert (other / files[0]).read_bytes() != (levir / files[0]).read_bytes()
    for split, count in (('train', NUM_TRAIN), ('val', 2), ('test', 2)):
        names = sorted(p.name for p in (levir / split / 'A').iterdir())
        assert names == [f'{split}_{i + 1}.png' for i in range(count)]
        for name in names:
            first, second = (_png(levir / split / folder / name) for folder in ('A', 'B'))
            mask = Image.open(levir / split / 'label' / name)
            assert mask.mode == 'L' and first.shape == second.shape == (SIZE, SIZE, 3)
            changed = np.any(first != second, axis=-1)
            assert 0 < changed.mean() < 1 and np.array_equal(np.asarray(mask), np.where(changed, 255, 0))
