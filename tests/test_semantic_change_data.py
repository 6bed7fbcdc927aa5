"""Semantic change detection (SECOND) and building damage assessment (xBD) data: datasets in MambaCD's layouts,
class-index labels, relabelling, packing of the per-date maps, and the SCD / BDA metrics against hand counts."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.dataset import Compose
from mmengine.registry import DATASETS, DefaultScope
from PIL import Image

from mmssm.datasets import LoadIndexLabel, MapLabelValues, SECONDDataset, XBDDataset
from mmssm.evaluation import DamageAssessmentMetric, SemanticChangeMetric
from mmssm.testing import make_second, make_xbd

SIZE = 48


def _png(path):
    return np.asarray(Image.open(path))


def _second_prefix(split):
    return dict(img_path=f'{split}/T1', img_path2=f'{split}/T2', seg_map_path=f'{split}/GT_CD',
                seg_map_path_t1=f'{split}/GT_T1', seg_map_path_t2=f'{split}/GT_T2')


@pytest.fixture(scope='module')
def second(tmp_path_factory):
    return Path(make_second(tmp_path_factory.mktemp('second'), num_train=3, num_val=2, size=SIZE))


@pytest.fixture(scope='module')
def xbd(tmp_path_factory):
    return Path(make_xbd(tmp_path_factory.mktemp('xbd'), num_train=3, num_val=2, size=SIZE))


SECOND_LOAD = [dict(type='mmssm.LoadImagePairFromFile'), dict(type='mmssm.LoadBinaryLabel'),
               dict(type='mmssm.LoadIndexLabel', path_key='seg_map_path_t1', field='gt_seg_map_t1'),
               dict(type='mmssm.LoadIndexLabel', path_key='seg_map_path_t2', field='gt_seg_map_t2')]


def _build(dataset):
    with DefaultScope.overwrite_default_scope('mmseg'):
        return DATASETS.build(dataset)


# --- datasets ------------------------------------------------------------------------------------------------------

def test_second_dataset_reads_the_list_and_all_five_folders(second):
    dataset = SECONDDataset(data_root=str(second), data_prefix=_second_prefix('train'), ann_file='train_list.txt')
    assert len(dataset) == 3 and dataset.metainfo['land_cover_classes'][5] == 'building'
    info = dataset.get_data_info(1)
    folders = {'img_path': 'T1', 'img_path2': 'T2', 'seg_map_path': 'GT_CD', 'seg_map_path_t1': 'GT_T1',
               'seg_map_path_t2': 'GT_T2'}
    assert {key: Path(info[key]).parent.name for key in folders} == folders
    assert {Path(info[key]).name for key in folders} == {'00002.png'}


def test_second_dataset_names_a_missing_land_cover_map(second, tmp_path):
    make_second(tmp_path, num_train=3, num_val=2, size=SIZE)
    (tmp_path / 'train' / 'GT_T2' / '00003.png').unlink()
    with pytest.raises(FileNotFoundError, match=r'date-2 land-cover label.*GT_T2/00003\.png'):
        SECONDDataset(data_root=str(tmp_path), data_prefix=_second_prefix('train'))
    with pytest.raises(ValueError, match='seg_map_path_t1'):
        SECONDDataset(data_root=str(tmp_path), data_prefix=dict(img_path='a', img_path2='b', seg_map_path='c'))


def test_second_pipeline_packs_the_three_labels_aligned(second):
    """Crop, flips and rotation move both dates and all three labels; the training relabelling ignores land cover
    0. In the tiny data the land cover is non-zero exactly where the change mask is set."""
    pipeline = SECOND_LOAD + [
        dict(type='RandomCrop', crop_size=(32, 32)), dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='RandomFlip', prob=0.5, direction='vertical'), dict(type='mmssm.RandomRotate90', prob=0.75),
        dict(type='mmssm.MapLabelValues', mapping={0: 255}, fields=('gt_seg_map_t1', 'gt_seg_map_t2')),
        dict(type='mmssm.PackMultiLabelSegInputs')]
    dataset = _build(dict(type='mmssm.SECONDDataset', data_root=str(second), data_prefix=_second_prefix('train'),
                          ann_file='train_list.txt', pipeline=pipeline))
    np.random.seed(0)
    for _ in range(3):
        for index in range(len(dataset)):
            sample = dataset[index]['data_samples']
            change = sample.gt_sem_seg.data[0]
            t1, t2 = sample.gt_sem_seg_t1.data[0], sample.gt_sem_seg_t2.data[0]
            assert change.shape == t1.shape == t2.shape == (32, 32) and t1.dtype == torch.int64
            assert torch.equal(t1 == 255, change == 0) and torch.equal(t2 == 255, change == 0)
            assert ((t1[change == 1] != t2[change == 1]) & (t1[change == 1] <= 6)).all()


def test_second_labels_load_as_stored(second):
    info = SECONDDataset(data_root=str(second), data_prefix=_second_prefix('test')).get_data_info(0)
    results = Compose(SECOND_LOAD)(dict(info))
    assert np.array_equal(results['gt_seg_map_t1'], _png(info['seg_map_path_t1']))
    assert np.array_equal(results['gt_seg_map'], _png(info['seg_map_path']) // 255)
    assert results['seg_fields'] == ['gt_seg_map', 'gt_seg_map_t1', 'gt_seg_map_t2']


def test_xbd_dataset_pairs_images_and_targets(xbd):
    dataset = XBDDataset(data_root=str(xbd), data_prefix=dict(img_path='train/images', seg_map_path='train/targets'),
                         ann_file='train.txt')
    assert len(dataset) == 3 and dataset.metainfo['classes'][4] == 'destroyed'
    info = dataset.get_data_info(0)
    assert Path(info['img_path']).name == 'tiny-disaster_00000000_pre_disaster.png'
    assert Path(info['img_path2']).name == 'tiny-disaster_00000000_post_disaster.png'
    assert Path(info['seg_map_path']).name == 'tiny-disaster_00000000_post_disaster_target.png'
    assert Path(info['seg_map_path_t1']).name == 'tiny-disaster_00000000_pre_disaster_target.png'
    results = Compose([dict(type='mmssm.LoadImagePairFromFile'), dict(type='mmssm.LoadIndexLabel'),
                       dict(type='mmssm.LoadIndexLabel', path_key='seg_map_path_t1', field='gt_seg_map_t1')])(info)
    damage, buildings = results['gt_seg_map'], results['gt_seg_map_t1']
    assert set(np.unique(damage)) <= {0, 1, 2, 3, 4, 255} and 255 in damage
    assert np.array_equal(buildings == 1, damage > 0) and set(np.unique(buildings)) == {0, 1}


def test_xbd_dataset_reads_the_masks_layout_and_names_missing_files(xbd, tmp_path):
    for path in (xbd / 'test' / 'targets').iterdir():  # MambaCD's dataset code: masks/<name>_{pre,post}_disaster.png
        target = tmp_path / 'test' / 'masks' / path.name.replace('_target', '')
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    (tmp_path / 'test' / 'images').symlink_to(xbd / 'test' / 'images')
    prefix = dict(img_path='test/images', seg_map_path='test/masks')
    dataset = XBDDataset(data_root=str(tmp_path), data_prefix=prefix, target_suffix='.png')
    assert len(dataset) == 2 and dataset.get_data_info(1)['seg_map_path'].endswith('masks/tiny-disaster_00000001_'
                                                                                     'post_disaster.png')
    (tmp_path / 'test' / 'masks' / 'tiny-disaster_00000001_pre_disaster.png').unlink()
    with pytest.raises(FileNotFoundError, match=r'building target.*tiny-disaster_00000001_pre_disaster\.png'):
        XBDDataset(data_root=str(tmp_path), data_prefix=prefix, target_suffix='.png')
    with pytest.raises(ValueError, match='seg_map_path'):
        XBDDataset(data_root=str(tmp_path), data_prefix=dict(img_path='test/images'))


# --- label transforms ----------------------------------------------------------------------------------------------

def test_index_label_reads_grey_or_equal_channels_and_rejects_colour(tmp_path):
    index = np.array([[0, 1, 2], [3, 4, 255]], np.uint8)
    Image.fromarray(index).save(tmp_path / 'grey.png')
    Image.fromarray(np.repeat(index[..., None], 3, axis=2)).save(tmp_path / 'rgb.png')  # (H, W) -> (H, W, 3)
    for name in ('grey.png', 'rgb.png'):
        results = LoadIndexLabel(field='gt_seg_map_t1')(dict(seg_map_path=str(tmp_path / name)))
        assert np.array_equal(results['gt_seg_map_t1'], index) and results['seg_fields'] == ['gt_seg_map_t1']
    colour = np.zeros((2, 3, 3), np.uint8)
    colour[0, 0] = (0, 128, 0)  # SECOND's RGB low vegetation
    Image.fromarray(colour).save(tmp_path / 'colour.png')
    with pytest.raises(ValueError, match='colour image'):
        LoadIndexLabel()(dict(seg_map_path=str(tmp_path / 'colour.png')))
    with pytest.raises(ValueError, match='grey.png'):
        LoadIndexLabel()(dict(seg_map_path=str(tmp_path / 'grey.png'), img_shape=(3, 3)))


def test_map_label_values_maps_once_and_names_missing_fields():
    label = np.array([[0, 1, 2]], np.uint8)
    results = MapLabelValues({0: 1, 1: 0})(dict(gt_seg_map=label))
    assert results['gt_seg_map'].tolist() == [[1, 0, 2]]  # a swap: new values are not mapped again
    with pytest.raises(KeyError, match='gt_seg_map_t2'):
        MapLabelValues({0: 255}, fields=('gt_seg_map_t2',))(dict(gt_seg_map=label))


# --- semantic change metric ----------------------------------------------------------------------------------------

def _maps(**arrays):
    return {key: dict(data=torch.as_tensor(np.asarray(value))[None]) for key, value in arrays.items()}


def _scd_sample(change, t1, t2, gt_change, gt_t1, gt_t2):
    return _maps(pred_sem_seg=change, pred_sem_seg_t1=t1, pred_sem_seg_t2=t2, gt_sem_seg=gt_change,
                 gt_sem_seg_t1=gt_t1, gt_sem_seg_t2=gt_t2)


def test_semantic_change_metric_matches_hand_counts():
    """Two images of 1x6 pixels; codes written out by hand: 0 unchanged, (A - 1) * 6 + B changed."""
    first = _scd_sample(change=[[1, 1, 1, 0, 0, 1]], t1=[[1, 2, 3, 4, 5, 6]], t2=[[2, 2, 1, 4, 5, 6]],
                        gt_change=[[1, 1, 0, 0, 1, 1]], gt_t1=[[1, 2, 0, 0, 3, 6]], gt_t2=[[2, 3, 0, 0, 4, 5]])
    # predicted codes: 2, 8, 13, 0, 0, 36; labelled: 2, 9, 0, 0, 16, 35
    second = _scd_sample(change=[[0, 0, 1, 1, 0, 0]], t1=[[1, 1, 2, 2, 1, 1]], t2=[[1, 1, 2, 6, 1, 1]],
                         gt_change=[[0, 1, 1, 255, 0, 0]], gt_t1=[[0, 4, 2, 2, 0, 0]], gt_t2=[[0, 1, 2, 5, 0, 0]])
    # predicted codes: 0, 0, 8, (ignored), 0, 0; labelled: 0, 19, 8, (ignored), 0, 0
    pairs = [(2, 2), (8, 9), (13, 0), (0, 0), (0, 16), (36, 35), (0, 0), (0, 19), (8, 8), (0, 0), (0, 0)]
    n = len(pairs)  # 11 pixels
    # no change / change: both unchanged 4, predicted unchanged but changed 2, predicted changed but unchanged 1,
    # both changed 4 (of which 2 with the right code)
    iou_unchanged, iou_change = 4 / (4 + 2 + 1), 4 / (4 + 2 + 1)
    # kappa with the (0, 0) cell zeroed: 7 pixels left, 2 on the diagonal (2->2, 8->8)
    remaining = [(p, t) for p, t in pairs if (p, t) != (0, 0)]
    observed = sum(p == t for p, t in remaining) / len(remaining)
    chance = sum(sum(p == c for p, _ in remaining) * sum(t == c for _, t in remaining)
                 for c in range(37)) / len(remaining) ** 2
    kappa_n0 = (observed - chance) / (1 - chance)
    precision, recall = 2 / 5, 2 / 6  # right codes / predicted changed, / labelled changed
    accuracies = [2 / 6, 4 / 5]  # per image: codes equal (2, 0 | 0, 8, 0, 0)
    metric = SemanticChangeMetric()
    metric.process(None, [first, second])
    scores = metric.compute_metrics(metric.results)
    assert n == 11
    assert scores['mIoU'] == pytest.approx(100 * (iou_unchanged + iou_change) / 2)
    assert scores['SeK'] == pytest.approx(100 * kappa_n0 * math.exp(iou_change) / math.e)
    assert scores['Fscd'] == pytest.approx(100 * 2 * precision * recall / (precision + recall))
    assert scores['OA'] == pytest.approx(100 * sum(accuracies) / 2)


def test_semantic_change_metric_rejects_bad_maps():
    metric = SemanticChangeMetric()
    with pytest.raises(ValueError, match=r'gt_sem_seg_t1 .* land cover 1\.\.6 on changed pixels, got \[0\]'):
        metric.process(None, [_scd_sample([[1]], [[1]], [[2]], [[1]], [[0]], [[2]])])
    with pytest.raises(ValueError, match=r'pred_sem_seg_t2 .* 0\.\.6, got \[7\]'):
        metric.process(None, [_scd_sample([[1]], [[1]], [[7]], [[1]], [[1]], [[2]])])
    with pytest.raises(ValueError, match='differ in size'):
        metric.process(None, [_scd_sample([[1, 0]], [[1]], [[2]], [[1]], [[1]], [[2]])])


# --- damage assessment metric --------------------------------------------------------------------------------------

def _bda_sample(loc, gt_loc, damage, gt_damage):
    return _maps(pred_sem_seg_t1=loc, gt_sem_seg_t1=gt_loc, pred_sem_seg=damage, gt_sem_seg=gt_damage)


def _f1(tp, fp, fn):
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def test_damage_assessment_metric_matches_hand_counts():
    sample = _bda_sample(loc=[[1, 1, 0, 1, 1, 1, 1, 0, 1, 1]], gt_loc=[[1, 1, 1, 0, 1, 1, 1, 1, 1, 0]],
                         damage=[[1, 2, 0, 4, 3, 3, 4, 2, 1, 1]], gt_damage=[[1, 2, 1, 0, 3, 4, 4, 255, 2, 0]])
    # localisation: TP 6 (pixels 0, 1, 4, 5, 6, 8), FP 2 (3, 9), FN 2 (2, 7)
    f1_loc = _f1(6, 2, 2)
    # damage on labelled buildings (pixels 0, 1, 2, 4, 5, 6, 8; pixel 7 is unclassified):
    # (label, prediction) = (1, 1), (2, 2), (1, 0), (3, 3), (4, 3), (4, 4), (2, 1)
    per_level = [_f1(1, 1, 1), _f1(1, 0, 1), _f1(1, 1, 0), _f1(1, 0, 1)]  # levels 1..4: (tp, fp, fn)
    f1_clf = 4 / sum(1 / f for f in per_level)
    metric = DamageAssessmentMetric()
    metric.process(None, [sample])
    scores = metric.compute_metrics(metric.results)
    assert scores['F1_loc'] == pytest.approx(100 * f1_loc)
    for level, f1 in zip(('no_damage', 'minor_damage', 'major_damage', 'destroyed'), per_level):
        assert scores[f'F1_{level}'] == pytest.approx(100 * f1, abs=1e-4)  # the official 1e-7 epsilons
    assert scores['F1_clf'] == pytest.approx(100 * f1_clf, abs=1e-4)
    assert scores['F1_oa'] == pytest.approx(100 * (0.3 * f1_loc + 0.7 * f1_clf), abs=1e-4)


def test_damage_assessment_metric_zero_level_and_bad_values():
    metric = DamageAssessmentMetric()
    metric.process(None, [_bda_sample([[1, 1]], [[1, 1]], [[1, 2]], [[1, 2]])])  # levels 3 and 4 never seen
    scores = metric.compute_metrics(metric.results)
    assert scores['F1_loc'] == pytest.approx(100) and scores['F1_clf'] == 0
    assert scores['F1_oa'] == pytest.approx(30)
    with pytest.raises(ValueError, match=r'damage label .* 0\.\.4 .* got \[5\]'):
        metric.process(None, [_bda_sample([[1]], [[1]], [[1]], [[5]])])
    with pytest.raises(ValueError, match=r'loc prediction .* 0\.\.1'):
        metric.process(None, [_bda_sample([[2]], [[1]], [[1]], [[1]])])


def test_metrics_name_missing_per_date_maps():
    scd = _scd_sample([[1]], [[1]], [[2]], [[1]], [[1]], [[2]])
    del scd['gt_sem_seg_t2']
    with pytest.raises(KeyError, match=r"SemanticChangeMetric: .*\['gt_sem_seg_t2'\].*mmssm\.LoadIndexLabel"):
        SemanticChangeMetric().process(None, [scd])
    bda = _bda_sample([[1]], [[1]], [[1]], [[1]])
    del bda['pred_sem_seg_t1']
    with pytest.raises(KeyError, match=r"DamageAssessmentMetric: .*\['pred_sem_seg_t1'\].*SemanticChangeEncoderDecoder"):
        DamageAssessmentMetric().process(None, [bda])
