"""nnU-Net raw 2D data (``mmssm.NNUNetRaw2DDataset`` + ``LoadNNUNetImage`` + ``ZScoreNormalize``) on tiny synthetic
files, and ``mmssm.DiceNSDMetric`` / the surface scores against numbers worked out by hand."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mmssm.datasets.nnunet_raw import LoadNNUNetImage, NNUNetRaw2DDataset, ZScoreNormalize
from mmssm.evaluation import DiceNSDMetric, dice_coefficient, normalized_surface_dice
from mmssm.testing import make_nnunet_raw_2d


def write_two_channel_set(root, labels=None, second_channel=True):
    """Two grey channel files per case (_0000, _0001) as in a multi-modal set, TIF-free PNGs of 16-bit values."""
    root.mkdir(parents=True, exist_ok=True)
    meta = dict(channel_names={'0': 'T1', '1': 'T2'}, labels=labels or dict(background=0, organ=1),
                numTraining=2, file_ending='.png')
    (root / 'dataset.json').write_text(json.dumps(meta))
    for folder in ('imagesTr', 'labelsTr'):
        (root / folder).mkdir(exist_ok=True)
    for case in ('b', 'a'):
        for channel in range(2 if second_channel else 1):
            Image.fromarray(np.full((8, 12), 1000 * (channel + 1), np.uint16)).save(
                root / 'imagesTr' / f'{case}_{channel:04d}.png')
        Image.fromarray(np.eye(8, 12, dtype=np.uint8)).save(root / 'labelsTr' / f'{case}.png')
    return root


def test_dataset_reads_layout_and_dataset_json(tmp_path):
    root = make_nnunet_raw_2d(tmp_path / 'tiny', num_train=3, num_test=2)
    train = NNUNetRaw2DDataset(data_root=root)
    test = NNUNetRaw2DDataset(data_root=root, split='Ts', test_mode=True)
    assert train.metainfo['classes'] == ('background', 'shape')
    assert len(train) == 3 and len(test) == 2
    info = train.get_data_info(0)
    assert info['case'] == 'tiny_tr000' and info['channel_paths'] == [info['img_path']]
    assert info['seg_map_path'].endswith('labelsTr/tiny_tr000.png') and info['num_channels'] == 3
    results = LoadNNUNetImage().transform(dict(info))
    assert results['img'].shape == (64, 64, 3) and results['img'].dtype == np.float32
    rgb = np.asarray(Image.open(info['img_path']).convert('RGB'), dtype=np.float32)
    assert np.array_equal(results['img'], rgb)  # R, G, B in file order
    normalized = ZScoreNormalize().transform(results)['img']
    assert np.allclose(normalized.mean(axis=(0, 1)), 0, atol=1e-5)
    assert np.allclose(normalized.std(axis=(0, 1)), 1, atol=1e-4)


def test_channel_files_are_stacked_in_order(tmp_path):
    dataset = NNUNetRaw2DDataset(data_root=str(write_two_channel_set(tmp_path / 'two')))
    assert [dataset.get_data_info(i)['case'] for i in range(2)] == ['a', 'b']
    img = LoadNNUNetImage().transform(dict(dataset.get_data_info(0)))['img']
    assert img.shape == (8, 12, 2) and img[0, 0].tolist() == [1000, 2000]  # 16-bit values kept


def test_errors_name_the_problem(tmp_path):
    dataset = NNUNetRaw2DDataset(data_root=str(write_two_channel_set(tmp_path / 'one', second_channel=False)))
    with pytest.raises(ValueError, match='1 channels in 1 file\\(s\\), dataset.json names 2'):
        LoadNNUNetImage().transform(dict(dataset.get_data_info(0)))
    with pytest.raises(ValueError, match='region-based labels'):
        NNUNetRaw2DDataset(data_root=str(write_two_channel_set(tmp_path / 'r', labels=dict(background=0, x=[1, 2]))))
    with pytest.raises(ValueError, match=r'label values must be 0 .. 1, got \[0, 2\]'):
        NNUNetRaw2DDataset(data_root=str(write_two_channel_set(tmp_path / 'g', labels=dict(background=0, x=2))))
    root = write_two_channel_set(tmp_path / 'm')
    (root / 'labelsTr' / 'a.png').unlink()
    with pytest.raises(FileNotFoundError, match='case a has no label'):
        NNUNetRaw2DDataset(data_root=str(root))
    with pytest.raises(ValueError, match="split must be 'Tr' or 'Ts'"):
        NNUNetRaw2DDataset(data_root=str(root), split='Val')
    with pytest.raises(ValueError, match=r"reads \['data_prefix'\]"):
        NNUNetRaw2DDataset(data_root=str(root), data_prefix=dict(img_path='x'))


def square(top, left, size=4, shape=(10, 10)):
    mask = np.zeros(shape, bool)
    mask[top:top + size, left:left + size] = True
    return mask


# U-Mamba's 2D NSD weighs the 2x2 windows of a one-pixel-deep mask by their marching-cubes areas: one pixel in the
# window (a corner), two side by side (an edge), four (inside)
CORNER, EDGE = 3 ** 0.5 / 8, 2 ** 0.5 / 2
SQUARE_AREA = 4 * CORNER + 12 * EDGE + 9  # a 4x4 square: 5 x 5 windows
SQUARE_SIDE_AREA = 2 * CORNER + 3 * EDGE  # its outermost column of windows
SHIFTED_SQUARE_NSD = 1 - SQUARE_SIDE_AREA / SQUARE_AREA


def test_surface_scores_by_hand():
    """Two 4x4 squares one column apart: all windows but one side column of each lie on the other's windows, that
    column 1 px off; a 2x2 square inside a 4x4 one: all its windows and the 3 x 3 inner ones of the 4x4 coincide;
    two pixels 3 px apart: 2 of the 4 corner windows of each at 2 px, the others at 3 px."""
    gt, pred = square(2, 2), square(2, 3)
    assert dice_coefficient(pred, gt) == pytest.approx(2 * 12 / 32)
    assert normalized_surface_dice(pred, gt, 0) == pytest.approx(SHIFTED_SQUARE_NSD)
    assert normalized_surface_dice(pred, gt, 0.99) == pytest.approx(SHIFTED_SQUARE_NSD)
    assert normalized_surface_dice(pred, gt, 1) == pytest.approx(1.0)
    assert normalized_surface_dice(gt, gt, 0) == 1.0
    inner_area = 4 * CORNER + 4 * EDGE + 1  # a 2x2 square: 3 x 3 windows, all on the 4x4 square's inner ones
    assert normalized_surface_dice(square(4, 2, size=2), square(3, 1), 0) == pytest.approx(
        (inner_area + 9) / (inner_area + SQUARE_AREA))
    dot, dot_apart = square(4, 4, size=1), square(4, 7, size=1)
    assert normalized_surface_dice(dot, dot_apart, 1.99) == 0
    assert normalized_surface_dice(dot, dot_apart, 2) == pytest.approx(0.5)
    assert normalized_surface_dice(dot, dot_apart, 3) == pytest.approx(1.0)
    with pytest.raises(ValueError, match='two non-empty masks'):
        normalized_surface_dice(pred, np.zeros_like(gt), 1)


def sample(pred, label):
    return dict(pred_sem_seg=dict(data=torch.from_numpy(pred)[None]),
                gt_sem_seg=dict(data=torch.from_numpy(label)[None]))


def test_metric_follows_the_per_image_protocol():
    metric = DiceNSDMetric(nsd_tolerance=0.5)
    metric.dataset_meta = dict(classes=('background', 'round', 'angular'))
    label1 = square(2, 2).astype(np.int64)
    pred1 = square(2, 3).astype(np.int64) + 2 * square(7, 7, size=2)  # class 1 shifted + a spurious class 2
    label2 = 2 * square(1, 1).astype(np.int64)
    empty = np.zeros((10, 10), np.int64)
    label2_ignored = label2.copy()
    label2_ignored[0, :] = 255
    metric.process({}, [sample(pred1, label1), sample(empty, label2_ignored), sample(empty, empty)])
    scores = metric.compute_metrics(metric.results)
    # image 1: class 1 (DSC .75, NSD SHIFTED_SQUARE_NSD) and class 2 (predicted only: 0, 0); image 2: class 2
    # missed (0, 0); image 3: nothing anywhere, not scored
    assert scores['DSC'] == pytest.approx(100 * (0.75 / 2 + 0) / 2)
    assert scores['NSD'] == pytest.approx(100 * (SHIFTED_SQUARE_NSD / 2 + 0) / 2)
    assert scores['DSC.round'] == pytest.approx(75)
    assert scores['NSD.round'] == pytest.approx(100 * SHIFTED_SQUARE_NSD)
    assert scores['DSC.angular'] == 0 and scores['NSD.angular'] == 0
    with pytest.raises(ValueError, match='no image has foreground'):
        metric.compute_metrics([{}])
    with pytest.raises(ValueError, match='nsd_tolerance must be >= 0'):
        DiceNSDMetric(nsd_tolerance=-1)
