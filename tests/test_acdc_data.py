"""ACDC cardiac MRI as MSVM-UNet trains and tests it (MT-UNet's release): the dataset's slice and volume listing,
the 'img' / 'label' arrays, the float32 cast, the mmseg train and test pipelines, and SynapseMetric's per-volume
scores against an independent run of the official procedure (eval.py's eval_single_volume + utils.py's
calc_dice_gpu, inference.py's HD95 rules) on the tiny data; the tiny maker's layout."""
import io
import math
import zipfile
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
from test_synapse_data import _brute_hd95  # medpy's hd95 by brute force

from mmssm.datasets import ACDC_STRUCTURES, VOLUME_META_KEYS, ACDCDataset, LoadSynapseSlice, volume_depth
from mmssm.evaluation import SynapseMetric
from mmssm.testing import make_acdc
from mmssm.testing.tiny_datasets import ACDC_LEVELS, ACDC_TEST_CASES, ACDC_TRAIN_CASES, ACDC_VALID_CASES

DEPTH, SIZE, NET = 4, 40, 32
HEIGHT, WIDTH = SIZE, SIZE + SIZE // 4  # make_acdc's slices are not square
TRAIN_LIST, VALID_LIST, TEST_LIST = (f'lists/lists_ACDC/{split}.txt' for split in ('train', 'valid', 'test'))
TRAIN_PIPELINE = [
    dict(type='mmssm.LoadSynapseSlice', to_float32=True),
    dict(type='mmssm.RandomRot90FlipOrRotate'),
    dict(type='mmssm.ScipyZoom', size=(NET, NET)),
    dict(type='mmssm.RepeatChannels', num_channels=3),
    dict(type='PackSegInputs'),
]
TEST_PIPELINE = [
    dict(type='mmssm.LoadSynapseSlice', to_float32=True),
    dict(type='mmssm.ScipyZoom', size=(NET, NET), zoom_seg=False),
    dict(type='mmssm.ResizedAsOriginal'),
    dict(type='mmssm.RepeatChannels', num_channels=3),
    dict(type='PackSegInputs', meta_keys=VOLUME_META_KEYS),
]
# the MSVM-UNet config's normalisation: transforms.Normalize([0.5], [0.5])
PREPROCESSOR = dict(type='SegDataPreProcessor', mean=[0.5] * 3, std=[0.5] * 3, bgr_to_rgb=False, pad_val=0,
                    seg_pad_val=255, size=(NET, NET))
# class intensities of the tiny images after that normalisation
LEVELS = (torch.tensor(ACDC_LEVELS) - 0.5) / 0.5
# the official test volumes of the tiny data: patient k has DEPTH + k % 2 slices; the second one's ES lacks the RV
VOLUMES = [(f'{case}_volume_{phase}', DEPTH + k % 2) for k, case in enumerate(ACDC_TEST_CASES[:2]) for phase in
           ('ED', 'ES')]


def _stand_in(inputs):
    """A stand-in network on normalised inputs: class scores from the first channel's distance to the class levels."""
    return -(inputs[:, :1] - LEVELS[None, :, None, None]) ** 2  # (N, 4, H, W)


def _read(path):
    with np.load(path) as arrays:
        return arrays['img'], arrays['label']


# --- the official procedure, written out independently -------------------------------------------------------------

def _official_dice(pred, gt):
    """utils.py calc_dice_gpu: medpy-style Dice when both are non-empty, 1 for a prediction on an empty label,
    else 0."""
    if pred.sum() > 0 and gt.sum() > 0:
        return 2.0 * np.logical_and(pred, gt).sum() / (pred.sum() + gt.sum())
    return 1.0 if pred.sum() > 0 else 0.0


def _official_hd95(pred, gt):
    """inference.py calc_metric_per_case's HD95: medpy's hd95 when both are non-empty, else 0."""
    return _brute_hd95(pred, gt) if pred.sum() > 0 and gt.sum() > 0 else 0.0


def _official_volume(path):
    """eval.py eval_single_volume on one test file (dataset_acdc.py reads it as float32): per slice zoom to NET
    (cubic), Normalize(0.5, 0.5), the network, the argmax zoomed back (nearest); Dice / HD95 per class 1..3."""
    image, label = _read(path)
    image, label = image.astype(np.float32), label.astype(np.float32)
    prediction = np.zeros_like(label)
    for depth in range(image.shape[0]):
        plane = image[depth]
        h, w = plane.shape
        small = ndimage.zoom(plane, (NET / h, NET / w), order=3)
        inputs = ((torch.from_numpy(small) - 0.5) / 0.5)[None, None].float()
        out = torch.argmax(torch.softmax(_stand_in(inputs.repeat(1, 3, 1, 1)), dim=1), dim=1)[0].numpy()
        prediction[depth] = ndimage.zoom(out, (h / NET, w / NET), order=0)
    return [(_official_dice(prediction == c, label == c), _official_hd95(prediction == c, label == c))
            for c in range(1, 4)]


# --- dataset and loading -------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def acdc(tmp_path_factory):
    return Path(make_acdc(tmp_path_factory.mktemp('acdc'), num_train=2, num_valid=1, num_test=2, depth=DEPTH,
                          size=SIZE))


def test_dataset_lists_slices_and_test_volumes_slice_by_slice(acdc):
    train = ACDCDataset(data_root=str(acdc))  # defaults: lists/lists_ACDC/train.txt, train/
    assert train.metainfo['classes'] == ('background', 'RV', 'Myo', 'LV')
    listed = (acdc / TRAIN_LIST).read_text().split()
    assert len(train) == len(listed) == 2 * DEPTH + 2 * (DEPTH + 1)  # both phases, patient 2 one slice more
    first = train.get_data_info(0)
    assert first['img_path'] == first['seg_map_path'] == str(acdc / 'train' / 'case_001_sliceED_0.npz')
    assert first['case_name'] == 'case_001_volume_ED' and 'slice_index' not in first
    assert first['array_keys'] == ('img', 'label')
    assert {train.get_data_info(i)['case_name'] for i in range(len(train))} == {
        f'{case}_volume_{phase}' for case in ACDC_TRAIN_CASES[:2] for phase in ('ED', 'ES')}
    valid = ACDCDataset(data_root=str(acdc), ann_file=VALID_LIST, data_prefix=dict(img_path='valid'))
    assert len(valid) == 2 * DEPTH and valid.get_data_info(0)['case_name'] == f'{ACDC_VALID_CASES[0]}_volume_ED'

    test = ACDCDataset(data_root=str(acdc), ann_file=TEST_LIST, data_prefix=dict(img_path='test'), volumes=True)
    infos = [test.get_data_info(i) for i in range(len(test))]
    assert [(i['case_name'], i['slice_index'], i['num_slices']) for i in infos] == [
        (case, k, depth) for case, depth in VOLUMES for k in range(depth)]
    assert infos[0]['img_path'] == str(acdc / 'test' / 'case_002_volume_ED.npz')
    assert volume_depth(infos[-1]['img_path'], keys=('img', 'label')) == DEPTH + 1

    with pytest.raises(FileNotFoundError, match=r'ACDCDataset: 18 of the 18 slices'):
        ACDCDataset(data_root=str(acdc), data_prefix=dict(img_path='valid'))  # wrong folder
    with pytest.raises(ValueError, match='reduce_zero_label'):
        ACDCDataset(data_root=str(acdc), reduce_zero_label=True)
    with pytest.raises(ValueError, match=r"dict\(img_path='train'\)"):
        ACDCDataset(data_root=str(acdc), data_prefix=dict(seg_map_path='train'))
    with pytest.raises(KeyError, match=r"no array 'image'.*\['img', 'label'\]"):  # Synapse's array names
        ACDCDataset(data_root=str(acdc), ann_file=TEST_LIST, data_prefix=dict(img_path='test'), volumes=True,
                    array_keys=('image', 'label'))


def test_loader_reads_the_img_arrays_of_slices_and_volumes_as_float32(acdc, tmp_path):
    train = ACDCDataset(data_root=str(acdc))
    loader = LoadSynapseSlice(to_float32=True)
    info = train.get_data_info(5)  # case_001_sliceES_1
    image, label = _read(info['img_path'])
    results = loader(dict(info))
    assert results['img'].shape == (HEIGHT, WIDTH, 1) and results['img'].dtype == np.float32
    assert np.array_equal(results['img'][..., 0], image) and np.array_equal(results['gt_seg_map'], label)
    assert results['gt_seg_map'].dtype == np.uint8 and results['img_shape'] == results['ori_shape'] == (HEIGHT, WIDTH)
    test = ACDCDataset(data_root=str(acdc), ann_file=TEST_LIST, data_prefix=dict(img_path='test'), volumes=True)
    volume, labels = _read(acdc / 'test' / 'case_003_volume_ED.npz')
    for index in (8, 9, 10):  # the slices 0, 1, 2 of the third volume
        results = loader(dict(test.get_data_info(index)))
        assert np.array_equal(results['img'][..., 0], volume[index - 8])
        assert np.array_equal(results['gt_seg_map'], labels[index - 8])

    # a float64 file: cast to float32 as the official loader (before any zoom), or kept with to_float32=False
    path = tmp_path / 'case_100_sliceED_0.npz'
    np.savez(path, img=image.astype(np.float64) / 3, label=label.astype(np.float32))  # a float label too
    cast = LoadSynapseSlice(to_float32=True)(dict(img_path=str(path), array_keys=('img', 'label')))
    assert cast['img'].dtype == np.float32 and np.array_equal(cast['img'][..., 0], (image.astype(np.float64) / 3)
                                                              .astype(np.float32))
    assert cast['gt_seg_map'].dtype == np.uint8 and np.array_equal(cast['gt_seg_map'], label)
    assert LoadSynapseSlice()(dict(img_path=str(path), array_keys=('img', 'label')))['img'].dtype == np.float64
    # explicit key names win over the item's; a file without them says which it has
    assert LoadSynapseSlice(img_key='img')(dict(img_path=str(path)))['img'].shape == (HEIGHT, WIDTH, 1)
    with pytest.raises(KeyError, match=r"no array 'image' \(it has \['img', 'label'\]\)"):
        LoadSynapseSlice()(dict(img_path=str(path)))  # Synapse's default names


def test_train_pipeline_gives_three_equal_channels_and_an_aligned_label(acdc):
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(dict(type='mmssm.ACDCDataset', data_root=str(acdc), pipeline=TRAIN_PIPELINE))
        preprocessor = MODELS.build(PREPROCESSOR)
    np.random.seed(0)
    layouts = set()
    for _ in range(8):
        packed = dataset[2]
        inputs, label = packed['inputs'], packed['data_samples'].gt_sem_seg.data[0]
        assert inputs.shape == (3, NET, NET) and label.shape == (NET, NET) and set(label.unique().tolist()) <= {
            0, 1, 2, 3}
        assert torch.equal(inputs[0], inputs[1]) and torch.equal(inputs[0], inputs[2])
        batch = preprocessor(dict(inputs=[inputs], data_samples=[packed['data_samples']]), training=True)
        guessed = _stand_in(batch['inputs']).argmax(1)[0]
        assert (guessed == label).float().mean() > 0.8  # edges: cubic image against nearest label
        layouts.add(label.numpy().tobytes())
    assert len(layouts) >= 3


# --- test pipeline + metric against the official procedure ---------------------------------------------------------

def test_test_pipeline_and_metric_reproduce_the_official_per_volume_scores(acdc):
    """Dataset slices -> test pipeline -> data preprocessor -> mmseg's postprocessing -> SynapseMetric (class names
    from the dataset), against eval_single_volume / calc_metric_per_case on the volume files."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(dict(type='mmssm.ACDCDataset', data_root=str(acdc), ann_file=TEST_LIST,
                                      data_prefix=dict(img_path='test'), volumes=True, pipeline=TEST_PIPELINE))
        preprocessor = MODELS.build(PREPROCESSOR)
        evaluator = Evaluator(dict(type='mmssm.SynapseMetric'))  # num_classes left at 9: dataset_meta decides
    evaluator.dataset_meta = dataset.metainfo
    model = SimpleNamespace(align_corners=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=pseudo_collate)  # batches cross volumes
    for data in loader:
        batch = preprocessor(data, training=False)
        sample = batch['data_samples'][0]
        assert sample.img_shape == (NET, NET) and sample.gt_sem_seg.shape == (HEIGHT, WIDTH)
        predicted = BaseSegmentor.postprocess_result(model, _stand_in(batch['inputs']), batch['data_samples'])
        evaluator.process(predicted, data)
    scores = evaluator.evaluate(len(dataset))

    assert list(scores) == ['mDice', 'mHD95', *(f'Dice.{c}' for c in ACDC_STRUCTURES),
                            *(f'HD95.{c}' for c in ACDC_STRUCTURES)]
    table = np.array([_official_volume(acdc / 'test' / f'{case}.npz') for case, _ in VOLUMES])  # (4 volumes, 3, 2)
    # the ES volume without an RV meets the empty-label rule: the stand-in predicts RV on the LV / Myo edges (cubic
    # overshoot), so Dice 1 and HD95 0 for it
    assert tuple(table[3, 0]) == (1.0, 0.0)
    assert 0 < scores['mDice'] < 100 and scores['mHD95'] > 0  # a non-trivial prediction
    assert math.isclose(scores['mDice'], 100 * table[:, :, 0].mean(), rel_tol=1e-9)
    assert math.isclose(scores['mHD95'], table[:, :, 1].mean(), rel_tol=1e-9)
    for k, name in enumerate(ACDC_STRUCTURES):
        assert math.isclose(scores[f'Dice.{name}'], 100 * table[:, k, 0].mean(), rel_tol=1e-9), name
        assert math.isclose(scores[f'HD95.{name}'], table[:, k, 1].mean(), rel_tol=1e-9, abs_tol=1e-9), name
    assert SynapseMetric(num_classes=4).organs == ACDC_STRUCTURES  # the names without dataset_meta as well


# --- tiny dataset --------------------------------------------------------------------------------------------------

def test_make_acdc_writes_the_release_layout_deterministically(acdc, tmp_path):
    again = Path(make_acdc(tmp_path / 'again', num_train=2, num_valid=1, num_test=2, depth=DEPTH, size=SIZE))
    files = sorted(p.relative_to(acdc) for p in acdc.rglob('*') if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob('*') if p.is_file())
    assert all((acdc / f).read_bytes() == (again / f).read_bytes() for f in files)
    for split, listed in (('train', TRAIN_LIST), ('valid', VALID_LIST), ('test', TEST_LIST)):
        names = (acdc / listed).read_text().split()
        assert names == sorted(names) and all(name.endswith('.npz') for name in names)
        assert sorted(names) == sorted(p.name for p in (acdc / split).iterdir())
    assert (acdc / TEST_LIST).read_text().split() == [f'{case}.npz' for case, _ in VOLUMES]
    for (case, depth) in VOLUMES:
        path = acdc / 'test' / f'{case}.npz'
        with zipfile.ZipFile(path) as archive:
            assert sorted(archive.namelist()) == ['img.npy', 'label.npy']
        image, label = _read(path)
        assert image.shape == label.shape == (depth, HEIGHT, WIDTH) and image.dtype == np.float32
        assert label.dtype == np.uint8 and 0 <= image.min() and image.max() <= 1
        expected = {0, 2, 3} if case == 'case_003_volume_ES' else {0, 1, 2, 3}
        assert set(np.unique(label).tolist()) == expected
    # a training volume's slices: consecutive indices, every class, the LV pool smaller at ES
    phases = {}
    for phase in ('ED', 'ES'):
        phases[phase] = np.stack([_read(acdc / 'train' / f'case_001_slice{phase}_{k}.npz')[1] for k in range(DEPTH)])
        assert set(np.unique(phases[phase]).tolist()) == {0, 1, 2, 3}
    assert (phases['ES'] == 3).sum() < (phases['ED'] == 3).sum()
    with np.load(io.BytesIO((acdc / 'valid' / 'case_019_sliceED_0.npz').read_bytes())) as arrays:
        assert arrays.files == ['img', 'label'] and arrays['img'].shape == (HEIGHT, WIDTH)
