"""Synapse multi-organ CT in the TransUNet protocol (VM-UNet, Swin-Unet, MSVM-UNet): slice / volume loading, the
official augmentation and zooms, per-case Dice and HD95 against brute-force references, the empty-mask rules,
volume reassembly from slices in any order, the mmseg train and test pipelines end to end, and the tiny maker."""
import builtins
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.evaluator import Evaluator
from mmengine.registry import DATASETS, MODELS, DefaultScope
from mmseg.models.segmentors.base import BaseSegmentor
from scipy import ndimage

from mmssm.datasets import (SYNAPSE_META_KEYS, SYNAPSE_ORGANS, LoadSynapseSlice, RandomRot90FlipOrRotate,
                            RepeatChannels, ScipyZoom, SynapseDataset)
from mmssm.evaluation import SynapseMetric, case_scores, dice_coefficient, hd95
from mmssm.testing import make_synapse
from mmssm.testing.tiny_datasets import SYNAPSE_TEST_CASES, SYNAPSE_TRAIN_CASES

DEPTH, SIZE, NET = 4, 64, 32
TRAIN_LIST, TEST_LIST = 'lists/lists_Synapse/train.txt', 'lists/lists_Synapse/test_vol.txt'
TRAIN_PIPELINE = [
    dict(type='mmssm.LoadSynapseSlice'),
    dict(type='mmssm.RandomRot90FlipOrRotate'),
    dict(type='mmssm.ScipyZoom', size=(NET, NET)),
    dict(type='mmssm.RepeatChannels', num_channels=3),
    dict(type='PackSegInputs'),
]
TEST_PIPELINE = [
    dict(type='mmssm.LoadSynapseSlice'),
    dict(type='mmssm.ScipyZoom', size=(NET, NET), zoom_seg=False),
    dict(type='mmssm.ResizedAsOriginal'),
    dict(type='mmssm.RepeatChannels', num_channels=3),
    dict(type='PackSegInputs', meta_keys=SYNAPSE_META_KEYS),
]
PREPROCESSOR = dict(type='SegDataPreProcessor', mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0], bgr_to_rgb=False,
                    pad_val=0, seg_pad_val=255, size=(NET, NET))
# intensities of the tiny volumes: background 0 (outside) / 0.25 (body), organ c at 0.3 + 0.08 c
LEVELS = torch.tensor([0.25] + [0.3 + 0.08 * c for c in range(1, 9)])


# --- independent references ----------------------------------------------------------------------------------------

def _brute_surface(mask):
    """(N, ndim) coordinates of the voxels of ``mask`` with a face neighbour outside the mask or the array."""
    points = []
    for voxel in np.argwhere(mask):
        for axis in range(mask.ndim):
            for step in (-1, 1):
                neighbour = voxel.copy()
                neighbour[axis] += step
                if not 0 <= neighbour[axis] < mask.shape[axis] or not mask[tuple(neighbour)]:
                    points.append(voxel)
        # a voxel appended more than once is deduplicated below
    return np.unique(np.array(points, dtype=np.float64).reshape(-1, mask.ndim), axis=0)


def _percentile95(values):
    """numpy's default (linear) percentile, written out."""
    ordered = np.sort(values)
    position = 0.95 * (len(ordered) - 1)
    low = int(math.floor(position))
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _brute_hd95(pred, gt):
    a, b = _brute_surface(pred), _brute_surface(gt)
    distances = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))  # (|A|, |B|) all pairs
    return _percentile95(np.concatenate([distances.min(1), distances.min(0)]))


def _brute_case(pred, gt):
    """VM-UNet's calculate_metric_percase, with brute-force Dice and HD95."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    if pred.sum() > 0 and gt.sum() > 0:
        return 2 * np.sum(pred & gt) / (pred.sum() + gt.sum()), _brute_hd95(pred, gt)
    if pred.sum() > 0:
        return 1, 0
    return 0, 0


def _blobs(rng, shape, count):
    """A boolean mask of ``count`` random boxes and balls (some may touch the array's edge)."""
    mask = np.zeros(shape, dtype=bool)
    grid = np.indices(shape)
    for _ in range(count):
        center = [rng.uniform(-1, s) for s in shape]
        radius = [rng.uniform(0.5, max(1.0, s / 3)) for s in shape]
        distance = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radius))
        mask |= distance <= 1 if rng.random() < 0.5 else np.all([abs(g - c) <= r for g, c, r in
                                                                  zip(grid, center, radius)], axis=0)
    return mask


def _official_prediction(volume, predict):
    """VM-UNet's test_single_volume: zoom each slice to NET (cubic), predict, zoom the argmax back (nearest)."""
    prediction = np.zeros(volume.shape, dtype=np.int64)
    for index, plane in enumerate(volume):
        x, y = plane.shape
        small = ndimage.zoom(plane, (NET / x, NET / y), order=3)
        out = predict(torch.from_numpy(small)[None, None].float()).argmax(1)[0].numpy()
        prediction[index] = ndimage.zoom(out, (x / NET, y / NET), order=0)
    return prediction


def _intensity_logits(inputs):
    """A stand-in network: class scores from the first channel's distance to the organ intensities."""
    return -(inputs[:, :1] - LEVELS[None, :, None, None]) ** 2  # (N, 9, H, W)


# --- metric: Dice, HD95, empty masks -------------------------------------------------------------------------------

@pytest.mark.parametrize('shape', [(5, 9, 8), (12, 10), (3, 14, 11)])
def test_dice_and_hd95_match_brute_force_surfaces_and_pairwise_distances(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(12):
        pred, gt = _blobs(rng, shape, rng.integers(1, 4)), _blobs(rng, shape, rng.integers(1, 4))
        if not pred.any() or not gt.any():
            continue
        assert math.isclose(dice_coefficient(pred, gt), 2 * np.sum(pred & gt) / (pred.sum() + gt.sum()))
        assert math.isclose(hd95(pred, gt), _brute_hd95(pred, gt), rel_tol=1e-12, abs_tol=1e-12)
        assert math.isclose(hd95(pred, gt), hd95(gt, pred), rel_tol=1e-12)  # symmetric: both sets pooled


def test_hd95_pools_both_directed_distance_sets_before_the_percentile():
    # gt: a block; pred: the same block and a far 3x3x3 cube. 26 of pred's 322 surface voxels (8%) are far from gt,
    # 26 of the 618 pooled distances (4%): medpy's pooled 95th percentile is 0, the larger of the two directed
    # percentiles (MONAI's rule) is not
    gt = np.zeros((12, 30, 30), dtype=bool)
    gt[1:9, 1:9, 1:9] = True
    pred = gt.copy()
    pred[4:7, 20:23, 20:23] = True
    assert hd95(pred, gt) == _brute_hd95(pred, gt) == 0.0
    a, b = _brute_surface(pred), _brute_surface(gt)
    distances = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    assert len(a) == 322 and len(b) == 296
    assert max(_percentile95(distances.min(1)), _percentile95(distances.min(0))) > 10
    # moved far inside a larger volume (the computation crops to the masks): the same distances
    big_pred, big_gt = np.zeros((20, 60, 50), dtype=bool), np.zeros((20, 60, 50), dtype=bool)
    big_pred[5:17, 20:50, 10:40], big_gt[5:17, 20:50, 10:40] = pred, np.roll(gt, 2, axis=2)
    assert math.isclose(hd95(big_pred, big_gt), _brute_hd95(pred, np.roll(gt, 2, axis=2)), rel_tol=1e-12)


def test_case_scores_follow_the_official_empty_mask_rules():
    rng = np.random.default_rng(3)
    something = _blobs(rng, (4, 6, 6), 2)
    assert something.any()
    nothing = np.zeros_like(something)
    assert case_scores(something, nothing) == (1.0, 0.0)  # predicted, label empty
    assert case_scores(nothing, nothing) == (0.0, 0.0)  # both empty: Dice 0, not 1
    assert case_scores(nothing, something) == (0.0, 0.0)  # missed organ: Dice 0, HD95 0
    dice, distance = case_scores(something, something)
    assert dice == 1.0 and distance == 0.0
    with pytest.raises(ValueError, match='non-empty'):
        hd95(something, nothing)


# --- metric: volumes from slices -----------------------------------------------------------------------------------

def _slice_samples(case, prediction, label, pred_size=None):
    """Data samples (dicts, as the Evaluator passes them) of the slices of one case."""
    samples = []
    for index in range(len(label)):
        pred = prediction[index] if pred_size is None else prediction[index][:pred_size, :pred_size]
        samples.append(dict(case_name=case, slice_index=index, num_slices=len(label), img_shape=pred.shape,
                            pred_sem_seg=dict(data=torch.as_tensor(pred, dtype=torch.int64)[None]),
                            gt_sem_seg=dict(data=torch.as_tensor(label[index], dtype=torch.int64)[None])))
    return samples


def _cases(seed=5, classes=4):
    """Three cases of (pred, label) volumes; organ 2 is absent from the label and the prediction of case 'b'."""
    rng = np.random.default_rng(seed)
    cases = {}
    for case, shape in (('a', (4, 12, 12)), ('b', (3, 12, 12)), ('c', (5, 12, 12))):
        label, pred = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
        for value in range(1, classes):
            if case == 'b' and value == 2:
                continue
            label[_blobs(rng, shape, 1)] = value
            pred[_blobs(rng, shape, 1)] = value
        cases[case] = (pred, label)
    return cases


def test_metric_averages_per_case_then_per_organ_with_slices_in_any_order():
    classes = ('background', 'liver', 'spleen', 'left kidney')
    cases = _cases(classes=len(classes))
    samples = [s for case, (pred, label) in cases.items() for s in _slice_samples(case, pred, label)]
    order = np.random.default_rng(0).permutation(len(samples))

    metric = SynapseMetric()
    metric.dataset_meta = dict(classes=classes)
    for chunk in np.array_split(order, 4):  # batches of shuffled slices
        metric.process(None, [samples[i] for i in chunk])
    scores = metric.evaluate(len(samples))

    per_case = {case: [_brute_case(pred == v, label == v) for v in range(1, len(classes))]
                for case, (pred, label) in cases.items()}
    table = np.array(list(per_case.values()), dtype=np.float64)  # (cases, organs, 2)
    organs = ('liver', 'spleen', 'left_kidney')
    assert list(scores) == ['mDice', 'mHD95', *(f'Dice.{o}' for o in organs), *(f'HD95.{o}' for o in organs)]
    for k, organ in enumerate(organs):
        assert math.isclose(scores[f'Dice.{organ}'], 100 * table[:, k, 0].mean(), rel_tol=1e-12)
        assert math.isclose(scores[f'HD95.{organ}'], table[:, k, 1].mean(), rel_tol=1e-12, abs_tol=1e-12)
    assert math.isclose(scores['mDice'], 100 * table[:, :, 0].mean(), rel_tol=1e-12)
    assert math.isclose(scores['mHD95'], table[:, :, 1].mean(), rel_tol=1e-12)
    # case 'b' has no spleen at all: it counts with Dice 0 (the mean is over all cases, not those with the organ)
    assert per_case['b'][1] == (0, 0)
    assert math.isclose(scores['Dice.spleen'], 100 * (table[0, 1, 0] + table[2, 1, 0]) / 3, rel_tol=1e-12)
    # scores are per case: one volume pooled from all cases would give another Dice
    pooled_pred = np.concatenate([p for p, _ in cases.values()])
    pooled_label = np.concatenate([t for _, t in cases.values()])
    pooled = np.mean([_brute_case(pooled_pred == v, pooled_label == v)[0] for v in range(1, len(classes))])
    assert not math.isclose(100 * pooled, scores['mDice'], rel_tol=1e-6)

    # distributed: two ranks each process every other slice; their gathered results give the same scores
    ranks = [SynapseMetric(), SynapseMetric()]
    for rank in ranks:
        rank.dataset_meta = dict(classes=classes)
    for position, index in enumerate(order):
        ranks[position % 2].process(None, [samples[index]])
    gathered = [r for pair in zip(*(rank.results for rank in ranks)) for r in pair]
    gathered += ranks[0].results[len(ranks[1].results):]
    gathered.append(gathered[0])  # a slice repeated by the sampler to fill a batch counts once
    assert ranks[0].compute_metrics(gathered) == scores


def test_metric_needs_every_slice_and_the_volume_keys():
    cases = _cases()
    pred, label = cases['a']
    samples = _slice_samples('a', pred, label)
    metric = SynapseMetric(num_classes=4)
    metric.process(None, samples[:1] + samples[2:])  # slice 1 never arrives
    with pytest.raises(ValueError, match=r'case a has 4 slices, 1 did not arrive \(e.g. \[1\]\)'):
        metric.evaluate(len(samples) - 1)
    incomplete = dict(samples[0])
    del incomplete['slice_index']
    with pytest.raises(KeyError, match='slice_index'):
        SynapseMetric().process(None, [incomplete])
    assert SynapseMetric().organs == SYNAPSE_ORGANS and SynapseMetric(num_classes=3).organs == ('class1', 'class2')


def test_metric_zooms_the_argmax_back_with_nearest_neighbour():
    rng = np.random.default_rng(2)
    small = rng.integers(0, 4, size=(3, 8, 8))
    label = np.stack([ndimage.zoom(plane, (20 / 8, 20 / 8), order=0) for plane in small])  # (3, 20, 20)
    assert label.shape == (3, 20, 20)
    metric = SynapseMetric(num_classes=4)
    metric.process(None, _slice_samples('x', small, label))
    scores = metric.evaluate(3)
    present = [v for v in range(1, 4) if (label == v).any()]
    assert scores['mDice'] == pytest.approx(100 * len(present) / 3) and scores['mHD95'] == 0.0
    # a prediction already at the label's size that is not the network's input size means mmseg resized logits
    warned = SynapseMetric(num_classes=4)
    warned.process(None, [dict(s, img_shape=(8, 8)) for s in _slice_samples('x', label, label)])
    assert warned._warned_resized


# --- loading, augmentation, zoom -----------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def synapse(tmp_path_factory):
    return Path(make_synapse(tmp_path_factory.mktemp('synapse'), depth=DEPTH, size=SIZE, volume_format='npz'))


def _read_npz(path):
    with np.load(path) as arrays:
        return arrays['image'], arrays['label']


def test_dataset_lists_training_slices_and_test_volumes_slice_by_slice(synapse):
    train = SynapseDataset(data_root=str(synapse))
    assert len(train) == 2 * DEPTH and train.metainfo['classes'] == ('background', *SYNAPSE_ORGANS)
    first = train.get_data_info(0)
    assert first['img_path'] == first['seg_map_path'] == str(synapse / 'train_npz' / 'case0005_slice000.npz')
    assert first['case_name'] == 'case0005' and 'slice_index' not in first
    test = SynapseDataset(data_root=str(synapse), ann_file=TEST_LIST, data_prefix=dict(img_path='test_vol_h5'),
                          volumes=True)
    infos = [test.get_data_info(i) for i in range(len(test))]
    assert [(i['case_name'], i['slice_index'], i['num_slices']) for i in infos] == [
        (case, k, DEPTH) for case in SYNAPSE_TEST_CASES[:2] for k in range(DEPTH)]
    assert infos[0]['img_path'] == str(synapse / 'test_vol_h5' / 'case0001.npz')  # no .npy.h5 here: the .npz
    with pytest.raises(FileNotFoundError, match=r'case0001.*tried .*case0001\.npy\.h5'):
        SynapseDataset(data_root=str(synapse), ann_file=TEST_LIST, data_prefix=dict(img_path='test_vol_h5'),
                       volumes=True, img_suffix='.npy.h5')
    with pytest.raises(FileNotFoundError, match='8 of the 8 slices'):
        SynapseDataset(data_root=str(synapse), data_prefix=dict(img_path='test_vol_h5'))  # wrong folder
    with pytest.raises(ValueError, match='reduce_zero_label'):
        SynapseDataset(data_root=str(synapse), reduce_zero_label=True)


def test_load_synapse_slice_reads_slice_files_and_volume_slices(synapse):
    loader = LoadSynapseSlice()
    image, label = _read_npz(synapse / 'train_npz' / 'case0006_slice002.npz')
    results = loader(dict(img_path=str(synapse / 'train_npz' / 'case0006_slice002.npz')))
    assert results['img'].shape == (SIZE, SIZE, 1) and results['img'].dtype == np.float32
    assert np.array_equal(results['img'][..., 0], image) and results['gt_seg_map'].dtype == np.uint8
    assert np.array_equal(results['gt_seg_map'], label) and results['seg_fields'] == ['gt_seg_map']
    assert results['img_shape'] == results['ori_shape'] == (SIZE, SIZE)
    volume, labels = _read_npz(synapse / 'test_vol_h5' / 'case0002.npz')
    for index in (3, 0, 2):
        results = loader(dict(img_path=str(synapse / 'test_vol_h5' / 'case0002.npz'), slice_index=index))
        assert np.array_equal(results['img'][..., 0], volume[index])
        assert np.array_equal(results['gt_seg_map'], labels[index])


def test_hdf5_volumes_need_h5py_and_say_how_to_install_it(synapse, tmp_path, monkeypatch):
    path = tmp_path / 'case0001.npy.h5'
    path.write_bytes(b'not read')
    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == 'h5py':
            raise ImportError('No module named h5py')
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, 'h5py', raising=False)
    monkeypatch.setattr(builtins, '__import__', no_h5py)
    with pytest.raises(ImportError, match='pip install h5py'):
        LoadSynapseSlice()(dict(img_path=str(path), slice_index=0))


def test_hdf5_volumes_read_like_the_official_code(tmp_path):
    pytest.importorskip('h5py')
    root = Path(make_synapse(tmp_path, depth=3, size=24, volume_format='h5'))
    import h5py
    dataset = SynapseDataset(data_root=str(root), ann_file=TEST_LIST, data_prefix=dict(img_path='test_vol_h5'),
                             volumes=True)
    assert len(dataset) == 2 * 3 and dataset.get_data_info(0)['img_path'].endswith('case0001.npy.h5')
    with h5py.File(root / 'test_vol_h5' / 'case0002.npy.h5') as volume:
        image, label = volume['image'][:], volume['label'][:]
    results = LoadSynapseSlice()(dataset.get_data_info(4))  # case0002 slice 1
    assert np.array_equal(results['img'][..., 0], image[1]) and np.array_equal(results['gt_seg_map'], label[1])


def test_augmentation_moves_image_and_label_together_as_the_official_branches():
    rng = np.random.default_rng(0)
    label = np.zeros((21, 21), np.uint8)
    label[3:9, 2:17] = 1
    label[9:18, 12:16] = 2
    label[15:19, 3:6] = 3
    image = (0.05 + 0.1 * label + 0.01 * rng.random(label.shape)).astype(np.float32)
    dihedral = [np.flip(np.rot90(label, k), axis) for k in range(4) for axis in (0, 1)]
    rotations = {angle: ndimage.rotate(label, angle, order=0, reshape=False) for angle in range(-20, 20)}
    np.random.seed(1)
    for branch in (dict(rot_flip_prob=1.0), dict(rot_flip_prob=0.0, rotate_prob=1.0)):
        transform = RandomRot90FlipOrRotate(**branch)
        for _ in range(6):
            out = transform(dict(img=image[..., None].copy(), gt_seg_map=label.copy(), seg_fields=['gt_seg_map']))
            img, seg = out['img'][..., 0], out['gt_seg_map']
            assert out['img'].shape == (21, 21, 1) and img.dtype == np.float32 and seg.dtype == np.uint8
            inside = img > 0  # the rotation pads the image with 0 and the label with 0 (background)
            assert np.array_equal(np.round((img[inside] - 0.05) * 10), seg[inside]) and not seg[~inside].any()
            if 'rotate_prob' in branch:
                assert any(np.array_equal(seg, rotated) for rotated in rotations.values())
            else:
                assert any(np.array_equal(seg, candidate) for candidate in dihedral) and inside.all()
    # branch frequencies 0.5 / 0.25 / 0.25 and the official angle range randint(-20, 20)
    default = RandomRot90FlipOrRotate()
    draws = [default._draw() for _ in range(4000)]
    kinds = [d[0] if d else None for d in draws]
    assert abs(kinds.count('rot_flip') / 4000 - 0.5) < 0.03 and abs(kinds.count('rotate') / 4000 - 0.25) < 0.03
    angles = {d[1] for d in draws if d and d[0] == 'rotate'}
    assert min(angles) == -20 and max(angles) == 19
    assert {d[1] for d in draws if d and d[0] == 'rot_flip'} == {0, 1, 2, 3}


def test_scipy_zoom_is_cubic_for_images_and_nearest_for_labels():
    rng = np.random.default_rng(4)
    image = rng.random((20, 20)).astype(np.float32)
    label = rng.integers(0, 9, size=(20, 20)).astype(np.uint8)
    out = ScipyZoom(size=(8, 12))(dict(img=image[..., None], gt_seg_map=label, seg_fields=['gt_seg_map']))
    assert out['img'].shape == (8, 12, 1) and out['img_shape'] == (8, 12)
    assert np.array_equal(out['img'][..., 0], ndimage.zoom(image, (8 / 20, 12 / 20), order=3))
    assert np.array_equal(out['gt_seg_map'], ndimage.zoom(label, (8 / 20, 12 / 20), order=0))
    kept = ScipyZoom(size=8, zoom_seg=False)(dict(img=image[..., None], gt_seg_map=label, seg_fields=['gt_seg_map']))
    assert kept['img'].shape == (8, 8, 1) and kept['gt_seg_map'] is label
    planes = image[..., None]
    same = ScipyZoom(size=20)(dict(img=planes, gt_seg_map=label, seg_fields=['gt_seg_map']))
    assert same['img'] is planes and same['gt_seg_map'] is label  # at the size already: no resampling
    doubled = ScipyZoom(size=(8, 12))(dict(img=image[..., None].astype(np.float64)))['img']  # zoomed as stored
    assert doubled.dtype == np.float32
    assert np.array_equal(doubled[..., 0], ndimage.zoom(image.astype(np.float64), (8 / 20, 12 / 20), order=3)
                          .astype(np.float32))
    tripled = RepeatChannels(3)(dict(img=out['img']))['img']
    assert tripled.shape == (8, 12, 3) and all(np.array_equal(tripled[..., c], out['img'][..., 0]) for c in range(3))


# --- mmseg pipelines end to end ------------------------------------------------------------------------------------

def test_train_pipeline_gives_three_equal_channels_and_an_aligned_label(synapse):
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(dict(type='mmssm.SynapseDataset', data_root=str(synapse), pipeline=TRAIN_PIPELINE))
        preprocessor = MODELS.build(PREPROCESSOR)
    np.random.seed(0)
    layouts = set()
    for _ in range(10):
        packed = dataset[3]
        inputs, label = packed['inputs'], packed['data_samples'].gt_sem_seg.data[0]
        assert inputs.shape == (3, NET, NET) and inputs.dtype == torch.float32 and label.shape == (NET, NET)
        assert torch.equal(inputs[0], inputs[1]) and torch.equal(inputs[0], inputs[2])
        guessed = _intensity_logits(inputs[None]).argmax(1)[0]
        assert (guessed == label).float().mean() > 0.85  # edges: cubic image against nearest label
        layouts.add(label.numpy().tobytes())
        batch = preprocessor(dict(inputs=[inputs], data_samples=[packed['data_samples']]), training=True)
        assert torch.equal(batch['inputs'][0], inputs)  # mean 0, std 1, no channel swap
    assert len(layouts) >= 4


def test_test_pipeline_and_metric_reproduce_the_official_volume_scores(synapse):
    """Dataset slices -> test pipeline -> data preprocessor -> mmseg's postprocessing -> SynapseMetric, against
    VM-UNet's test_single_volume + calculate_metric_percase on the volume files (brute-force Dice / HD95)."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(dict(type='mmssm.SynapseDataset', data_root=str(synapse), ann_file=TEST_LIST,
                                      data_prefix=dict(img_path='test_vol_h5'), volumes=True,
                                      pipeline=TEST_PIPELINE))
        preprocessor = MODELS.build(PREPROCESSOR)
        evaluator = Evaluator(dict(type='mmssm.SynapseMetric'))
    evaluator.dataset_meta = dataset.metainfo
    model = SimpleNamespace(align_corners=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=pseudo_collate)  # batches cross cases
    for data in loader:
        batch = preprocessor(data, training=False)
        sample = batch['data_samples'][0]
        assert sample.ori_shape == sample.img_shape == (NET, NET) and sample.gt_sem_seg.shape == (SIZE, SIZE)
        predicted = BaseSegmentor.postprocess_result(model, _intensity_logits(batch['inputs']),
                                                     batch['data_samples'])
        assert predicted[0].pred_sem_seg.shape == (NET, NET)  # the argmax at the network size
        evaluator.process(predicted, data)
    scores = evaluator.evaluate(len(dataset))

    table = []
    for case in SYNAPSE_TEST_CASES[:2]:
        volume, label = _read_npz(synapse / 'test_vol_h5' / f'{case}.npz')
        prediction = _official_prediction(volume, lambda x: _intensity_logits(x.repeat(1, 3, 1, 1)))
        table.append([_brute_case(prediction == v, label == v) for v in range(1, 9)])
    table = np.array(table, dtype=np.float64)  # (cases, organs, 2)
    assert 0 < scores['mDice'] < 100 and scores['mHD95'] > 0  # a non-trivial prediction
    assert math.isclose(scores['mDice'], 100 * table[:, :, 0].mean(), rel_tol=1e-9)
    assert math.isclose(scores['mHD95'], table[:, :, 1].mean(), rel_tol=1e-9)
    for k, organ in enumerate(SYNAPSE_ORGANS):
        assert math.isclose(scores[f'Dice.{organ}'], 100 * table[:, k, 0].mean(), rel_tol=1e-9), organ
        assert math.isclose(scores[f'HD95.{organ}'], table[:, k, 1].mean(), rel_tol=1e-9, abs_tol=1e-9), organ


# --- tiny dataset --------------------------------------------------------------------------------------------------

def test_make_synapse_writes_the_release_layout_deterministically(synapse, tmp_path):
    again = Path(make_synapse(tmp_path / 'again', depth=DEPTH, size=SIZE, volume_format='npz'))
    files = sorted(p.relative_to(synapse) for p in synapse.rglob('*') if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob('*') if p.is_file())
    assert all((synapse / f).read_bytes() == (again / f).read_bytes() for f in files)
    train_names = (synapse / TRAIN_LIST).read_text().split()
    assert train_names == [f'{case}_slice{k:03d}' for case in SYNAPSE_TRAIN_CASES[:2] for k in range(DEPTH)]
    assert (synapse / TEST_LIST).read_text().split() == list(SYNAPSE_TEST_CASES[:2])
    present = set()
    for case in SYNAPSE_TEST_CASES[:2]:
        image, label = _read_npz(synapse / 'test_vol_h5' / f'{case}.npz')
        assert image.shape == label.shape == (DEPTH, SIZE, SIZE) and image.dtype == np.float32
        assert label.dtype == np.uint8 and 0 <= image.min() and image.max() <= 1
        organs = set(np.unique(label).tolist()) - {0}
        assert len(organs) == 7  # one organ missing: the metric meets empty labels
        present |= organs
    assert present == set(range(1, 9))  # every organ somewhere
    # the training slices are the slices of whole training volumes
    stacked = np.stack([_read_npz(synapse / 'train_npz' / f'{name}.npz')[1] for name in train_names[:DEPTH]])
    assert stacked.shape == (DEPTH, SIZE, SIZE) and len(np.unique(stacked)) > 3
