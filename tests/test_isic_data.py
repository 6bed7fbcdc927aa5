"""ISIC 2017 / 2018 skin-lesion data in VM-UNet's protocol: the dataset (sorted files paired by position), binary mask
loading, VM-UNet's min-max stretch, the pooled-confusion ISIC metric (shared with change detection), the mmseg train
and test pipelines of VM-UNet's recipe, and the tiny ISIC maker."""
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.registry import DATASETS, MODELS, DefaultScope
from mmseg.models.segmentors.base import BaseSegmentor
from PIL import Image

from mmssm.datasets import ISICDataset, LoadBinaryLabel, MinMaxStretch
from mmssm.evaluation import ChangeDetectionMetric, ISICMetric
from mmssm.testing import make_isic

NUM_TRAIN, NUM_VAL, SIZE, NET = 3, 2, 48, 256

# VM-UNet's recipe on mmseg (the snippet of the ISIC config): mmcv reads BGR, the preprocessor turns it to RGB
TRAIN_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='mmssm.LoadBinaryLabel'),
    dict(type='mmssm.MinMaxStretch'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomFlip', prob=0.5, direction='vertical'),
    dict(type='RandomRotate', prob=0.5, degree=180, seg_pad_val=0),
    dict(type='Resize', scale=(NET, NET), keep_ratio=False),
    dict(type='PackSegInputs'),
]
TEST_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='mmssm.LoadBinaryLabel'),
    dict(type='mmssm.MinMaxStretch'),
    dict(type='Resize', scale=(NET, NET), keep_ratio=False),
    dict(type='mmssm.ResizedAsOriginal'),
    dict(type='PackSegInputs'),
]
PREPROCESSOR = dict(type='SegDataPreProcessor', mean=[0, 0, 0], std=[1, 1, 1], bgr_to_rgb=True, pad_val=0,
                    seg_pad_val=255)


def _png(path):
    return np.asarray(Image.open(path))


def _stretch(image):
    """VM-UNet's myNormalize without its (cancelling) affine part, written directly."""
    image = image.astype(np.float64)
    return (image - image.min()) / (image.max() - image.min()) * 255


def _split(split):
    return dict(img_path=f'{split}/images', seg_map_path=f'{split}/masks')


@pytest.fixture(scope='module')
def isic(tmp_path_factory):
    return Path(make_isic(tmp_path_factory.mktemp('isic'), num_train=NUM_TRAIN, num_val=NUM_VAL, size=SIZE))


@pytest.fixture
def isic_copy(isic, tmp_path):
    """A copy of the tiny dataset a test may break."""
    shutil.copytree(isic, tmp_path / 'isic')
    return tmp_path / 'isic'


# --- dataset -------------------------------------------------------------------------------------------------------

def test_dataset_pairs_sorted_images_and_masks_by_position(isic_copy):
    masks = isic_copy / 'train' / 'masks'
    # rename the masks so that no name matches, in REVERSED order: position, not name, must decide
    originals = sorted(masks.iterdir())
    for index, path in enumerate(originals):
        path.rename(masks / f'tmp_{index}.png')
    for index in range(NUM_TRAIN):
        (masks / f'tmp_{index}.png').rename(masks / f'seg_{NUM_TRAIN - 1 - index}.png')
    dataset = ISICDataset(data_root=str(isic_copy))  # the default data_prefix is the train split
    assert len(dataset) == NUM_TRAIN and dataset.metainfo['classes'] == ('background', 'lesion')
    images = sorted((isic_copy / 'train' / 'images').iterdir())
    for index in range(NUM_TRAIN):
        info = dataset.get_data_info(index)
        assert Path(info['img_path']) == images[index]
        assert Path(info['seg_map_path']) == masks / f'seg_{index}.png'  # holds the mask of image NUM_TRAIN-1-index
        assert info['seg_fields'] == [] and info['reduce_zero_label'] is False and info['label_map'] is None


def test_dataset_errors_on_a_count_mismatch_and_bad_arguments(isic_copy):
    next((isic_copy / 'val' / 'masks').iterdir()).unlink()
    with pytest.raises(ValueError) as error:
        ISICDataset(data_root=str(isic_copy), data_prefix=_split('val'))
    message = str(error.value)
    assert f'holds {NUM_VAL} *.png image(s)' in message and f'holds {NUM_VAL - 1} *.png mask(s)' in message
    assert str(isic_copy / 'val' / 'images') in message and str(isic_copy / 'val' / 'masks') in message
    with pytest.raises(FileNotFoundError, match=str(isic_copy / 'test' / 'images')):
        ISICDataset(data_root=str(isic_copy), data_prefix=_split('test'))
    with pytest.raises(ValueError, match='ann_file'):
        ISICDataset(data_root=str(isic_copy), ann_file='train.txt')
    with pytest.raises(ValueError, match='seg_map_path'):
        ISICDataset(data_root=str(isic_copy), data_prefix=dict(img_path='train/images'))


# --- loading and stretching ----------------------------------------------------------------------------------------

def test_load_binary_label_on_isic_masks(isic, tmp_path):
    dataset = ISICDataset(data_root=str(isic), data_prefix=_split('val'))
    for index in range(NUM_VAL):
        info = dataset.get_data_info(index)
        mask = _png(info['seg_map_path'])
        assert mask.ndim == 2 and set(np.unique(mask)) == {0, 255}
        results = LoadBinaryLabel()(dict(info, ori_shape=mask.shape))
        assert results['gt_seg_map'].dtype == np.uint8 and results['seg_fields'] == ['gt_seg_map']
        assert np.array_equal(results['gt_seg_map'], (mask == 255).astype(np.uint8))
    # grey levels (resampled masks) follow VM-UNet's mask / 255 >= 0.5
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(ramp).save(tmp_path / 'ramp.png')
    label = LoadBinaryLabel()(dict(seg_map_path=str(tmp_path / 'ramp.png')))['gt_seg_map']
    assert np.array_equal(label, (ramp / 255 >= 0.5).astype(np.uint8))
    # the label must match the image FILE's size (ori_shape), not a resized one
    assert LoadBinaryLabel()(dict(seg_map_path=str(tmp_path / 'ramp.png'), ori_shape=(16, 16), img_shape=(8, 8)))
    with pytest.raises(ValueError, match='ramp.png'):
        LoadBinaryLabel()(dict(seg_map_path=str(tmp_path / 'ramp.png'), ori_shape=(16, 17)))


def test_min_max_stretch_is_the_official_normalisation(isic):
    rng = np.random.default_rng(0)
    image = _png(next((isic / 'train' / 'images').iterdir()))  # (H, W, 3) uint8
    stretched = MinMaxStretch()(dict(img=image))['img']
    assert stretched.dtype == np.float32 and stretched.shape == image.shape
    low, high = image.min(), image.max()
    assert np.allclose(stretched, (image.astype(np.float64) - low) * (255.0 / (high - low)), atol=1e-4)
    assert stretched.min() == 0 and stretched.max() == 255
    # VM-UNet: (img - mean) / std with one scalar mean and std per dataset, then the stretch; any such pair cancels
    for mean, std in [(157.561, 26.706), (149.034, 32.022), *zip(rng.uniform(-300, 300, 4), rng.uniform(0.01, 90, 4))]:
        normalised = (image - mean) / std
        official = (normalised - normalised.min()) / (normalised.max() - normalised.min()) * 255.
        assert np.allclose(stretched, official, atol=1e-3), (mean, std)
    constant = MinMaxStretch()(dict(img=np.full((4, 5, 3), 7, np.uint8)))['img']
    assert constant.dtype == np.float32 and not constant.any()


# --- metric --------------------------------------------------------------------------------------------------------

def _sample(pred, label):
    return dict(pred_sem_seg=dict(data=torch.as_tensor(pred)[None]), gt_sem_seg=dict(data=torch.as_tensor(label)[None]))


def _vmunet_scores(preds, labels):
    """VM-UNet's engine.py, in percent: one confusion matrix from the pooled pixels."""
    pred = np.concatenate([p.ravel() for p in preds]).astype(bool)
    label = np.concatenate([t.ravel() for t in labels]).astype(bool)
    tp, tn = float(np.sum(pred & label)), float(np.sum(~pred & ~label))
    fp, fn = float(np.sum(pred & ~label)), float(np.sum(~pred & label))
    return dict(Acc=100 * (tp + tn) / pred.size, Sensitivity=100 * tp / (tp + fn), Specificity=100 * tn / (tn + fp),
                DSC=100 * 2 * tp / (2 * tp + fp + fn), mIoU=100 * tp / (tp + fp + fn))


def test_isic_metric_pools_one_confusion_matrix_over_process_calls():
    rng = np.random.default_rng(1)
    sizes = [(8, 11), (5, 7), (13, 4), (9, 9), (6, 10)]
    labels = [(rng.random(s) < 0.3).astype(np.uint8) for s in sizes]
    preds = [np.where(rng.random(s) < 0.8, t, 1 - t).astype(np.uint8) for t, s in zip(labels, sizes)]
    with DefaultScope.overwrite_default_scope('mmseg'):
        evaluator = Evaluator(dict(type='mmssm.ISICMetric'))
    for batch in ([0, 1], [2], [3, 4]):
        evaluator.process([_sample(preds[i], labels[i]) for i in batch])
    scores = evaluator.evaluate(len(sizes))
    expected = _vmunet_scores(preds, labels)
    assert list(scores) == list(expected)
    for name, value in expected.items():
        assert math.isclose(scores[name], value, rel_tol=1e-12), (name, scores[name], value)
    # per-image averaging would give something else: the counts really are pooled
    per_image = np.mean([_vmunet_scores([p], [t])['DSC'] for p, t in zip(preds, labels)])
    assert not math.isclose(per_image, scores['DSC'], rel_tol=1e-6)
    # one shared implementation: the change-detection metric's F1 / IoU / recall / OA are the same numbers
    change = ChangeDetectionMetric()
    change.process(None, [_sample(p, t) for p, t in zip(preds, labels)])
    cd = change.evaluate(len(sizes))
    assert (cd['F1'], cd['IoU'], cd['recall'], cd['OA']) == (scores['DSC'], scores['mIoU'], scores['Sensitivity'],
                                                           scores['Acc'])


def test_isic_metric_is_zero_not_nan_on_empty_classes():
    metric = ISICMetric()
    metric.process(None, [_sample(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))])  # no lesion anywhere
    assert metric.evaluate(1) == dict(Acc=100.0, Sensitivity=0.0, Specificity=100.0, DSC=0.0, mIoU=0.0)
    with pytest.raises(ValueError, match='ISICMetric needs prediction values 0 / 1'):
        metric.process(None, [_sample(np.full((2, 2), 2), np.zeros((2, 2)))])


# --- mmseg pipelines -----------------------------------------------------------------------------------------------

def _pattern_dataset(root, size=40):
    """One image in the ISIC layout: an asymmetric L-shaped "lesion" of one colour on a background of another."""
    mask = np.zeros((size, size), np.uint8)
    mask[6:30, 8:15] = 255  # vertical bar
    mask[24:30, 8:34] = 255  # foot to the right
    image = np.where(mask[..., None] > 0, np.array([220, 120, 40]), np.array([30, 60, 90])).astype(np.uint8)
    for split in ('train', 'val'):
        for folder, array, name in (('images', image, 'ISIC_0000000.png'), ('masks', mask, 'ISIC_0000000_mask.png')):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / split / folder / name)
    return image, mask // 255


def test_train_pipeline_keeps_the_label_aligned_through_flips_and_rotations(tmp_path):
    _pattern_dataset(tmp_path)
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(dict(type='mmssm.ISICDataset', data_root=str(tmp_path), pipeline=TRAIN_PIPELINE))
    np.random.seed(0)
    layouts, rotated = set(), 0
    for _ in range(12):
        packed = dataset[0]
        inputs, label = packed['inputs'].numpy(), packed['data_samples'].gt_sem_seg.data[0].numpy()
        assert inputs.shape == (3, NET, NET) and inputs.dtype == np.float32 and label.shape == (NET, NET)
        assert set(np.unique(label)) <= {0, 1}
        assert 0 <= inputs.min() and inputs.max() <= 255 + 1e-3
        # stretched lesion red (RGB 220 -> 255) sits in channel 2 (mmcv reads BGR); background red and padding are 0
        lesion_in_image = inputs[2] > 127.5
        agreement = np.mean(lesion_in_image == label.astype(bool))
        assert agreement > 0.975, agreement  # only edge pixels (bilinear image, nearest label) may disagree
        assert np.mean(lesion_in_image == np.flip(label, 1).astype(bool)) < 0.95  # the check can tell
        layouts.add(label.tobytes())
        # stretched green is 40 on the background, 0 only in the padding a rotation by a free angle leaves
        rotated += bool(min(inputs[1, 0, 0], inputs[1, 0, -1], inputs[1, -1, 0], inputs[1, -1, -1]) < 20)
    assert len(layouts) >= 4 and 0 < rotated < 12  # flips and free rotations did happen


def test_test_pipeline_feeds_rgb_and_is_scored_at_network_size(tmp_path):
    """Packed sample -> data preprocessor (RGB, mean 0, std 1) -> mmseg's postprocessing -> ISICMetric."""
    image, _ = _pattern_dataset(tmp_path)
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(dict(type='mmssm.ISICDataset', data_root=str(tmp_path), pipeline=TEST_PIPELINE,
                                      data_prefix=_split('val')))
        preprocessor = MODELS.build(PREPROCESSOR)
    packed = dataset[0]
    sample = packed['data_samples']
    assert sample.ori_shape == sample.img_shape == (NET, NET) and sample.gt_sem_seg.shape == (NET, NET)
    batch = preprocessor(dict(inputs=[packed['inputs']], data_samples=[sample]), training=False)
    inputs = batch['inputs'][0].numpy()  # (3, NET, NET) RGB
    stretched = _stretch(image)  # (H, W, 3) of the RGB file, as VM-UNet's PIL loader gives
    for y, x in [(15, 10), (27, 30), (2, 2), (38, 38)]:  # inside the lesion or the background, far from edges
        assert np.allclose(inputs[:, y * NET // image.shape[0], x * NET // image.shape[0]], stretched[y, x],
                           atol=1e-3), (y, x)
    assert np.mean((sample.gt_sem_seg.data[0].numpy() > 0) == (inputs[0] > 127.5)) > 0.98
    # a model's one-channel logits go through mmseg's postprocessing: the prediction comes back at 256 x 256
    label = sample.gt_sem_seg.data[0]
    logits = torch.where(label > 0, 2.0, -2.0)[None, None].float()  # (1, 1, NET, NET)
    logits[..., :NET // 4, :] = -logits[..., :NET // 4, :]  # wrong in the top quarter
    model = SimpleNamespace(align_corners=False, decode_head=SimpleNamespace(threshold=0.5))
    predicted = BaseSegmentor.postprocess_result(model, logits, batch['data_samples'])[0]
    assert predicted.pred_sem_seg.shape == (NET, NET)
    metric = ISICMetric()
    metric.process(None, [predicted.to_dict()])
    pred = predicted.pred_sem_seg.data[0].numpy().astype(np.uint8)
    assert np.array_equal(pred[NET // 4:], label.numpy()[NET // 4:])
    assert metric.evaluate(1) == pytest.approx(_vmunet_scores([pred], [label.numpy()]), rel=1e-12)


# --- tiny dataset --------------------------------------------------------------------------------------------------

def test_make_isic_is_deterministic_in_the_real_layout(isic, tmp_path):
    again = Path(make_isic(tmp_path / 'again', num_train=NUM_TRAIN, num_val=NUM_VAL, size=SIZE))
    files = sorted(p.relative_to(isic) for p in isic.rglob('*.png'))
    assert files == sorted(p.relative_to(again) for p in again.rglob('*.png'))
    assert all((isic / f).read_bytes() == (again / f).read_bytes() for f in files)
    other = Path(make_isic(tmp_path / 'other', num_train=NUM_TRAIN, num_val=NUM_VAL, size=SIZE, seed=1))
    assert (other / files[0]).read_bytes() != (isic / files[0]).read_bytes()
    ids = []
    for split, count in (('train', NUM_TRAIN), ('val', NUM_VAL)):
        images = sorted((isic / split / 'images').iterdir())
        masks = sorted((isic / split / 'masks').iterdir())
        assert len(images) == len(masks) == count
        for image_path, mask_path in zip(images, masks):
            assert mask_path.name == image_path.stem + '_segmentation.png' and image_path.name.startswith('ISIC_')
            ids.append(image_path.stem)
            image, mask = Image.open(image_path), Image.open(mask_path)
            assert image.mode == 'RGB' and mask.mode == 'L' and image.size == mask.size == (SIZE, SIZE)
            lesion = np.asarray(mask) == 255
            assert set(np.unique(np.asarray(mask))) == {0, 255} and 0 < lesion.mean() < 1
            # the shapes are brighter than the background in every channel: the mask is the union of the shapes
            pixels = np.asarray(image)
            assert pixels[lesion].min(axis=-1).min() > pixels[~lesion].max(axis=-1).mean()
    assert len(set(ids)) == len(ids)  # ids are unique across the splits
