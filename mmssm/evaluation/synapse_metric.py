"""``mmssm.SynapseMetric``: the TransUNet Synapse protocol (the published numbers of TransUNet, Swin-Unet, VM-UNet,
MSVM-UNet): per-case, per-organ Dice and HD95 on whole 3D volumes. The same protocol scores ACDC (MT-UNet's split,
MSVM-UNet's ``eval.py`` / ``inference.py``: each ED / ES volume a case, classes RV, Myo, LV): the metric takes its
class names from the dataset (``mmssm.ACDCDataset``), so one class serves both; the name stays for the configs.

The official ``test_single_volume`` (VM-UNet ``utils.py``) zooms each slice to the network size (cubic), takes the
argmax there, zooms it back to the slice size with NEAREST interpolation (``scipy.ndimage.zoom`` order 0), stacks
the slices into the (D, H, W) prediction and scores every organ c = 1..8 of the case with ``calculate_metric_percase``
on ``prediction == c`` and ``label == c``:

- both non-empty: medpy's ``dc`` (Dice) and ``hd95`` without voxel spacing (distances in voxels);
- prediction non-empty, label empty: Dice 1, HD95 0;
- prediction empty (label empty or not): Dice 0, HD95 0.

medpy's HD95 is the 95th percentile (numpy's linear interpolation) of BOTH directed surface-distance sets pooled;
a surface is a mask minus its binary erosion by the face-connected (6-neighbour in 3D) structure, voxels on the
array's edge included; a surface voxel's distance is the Euclidean distance to the nearest surface voxel of the
other mask. The scores are averaged over the cases per organ, then over the organs.

Here the metric receives the slices one at a time from mmseg's test loop (``mmssm.SynapseDataset`` lists each
volume as slices), zooms each argmax back to its label's size (order 0) at once, keeps both compressed, and
rebuilds the volumes in ``compute_metrics`` (on rank 0 after the results are gathered, so distributed evaluation
works; slices may arrive in any order).
"""
import zlib
from collections import defaultdict

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmssm.datasets.slice_transforms import ACDC_STRUCTURES, SYNAPSE_ORGANS
from mmssm.registry import METRICS

from .surface_distance import dice_coefficient, hd95

VOLUME_KEYS = ('case_name', 'slice_index', 'num_slices')
# class names by number of classes (with the background) for a metric without dataset_meta, as the official
# CLASS_COLOR_MAPS (MSVM-UNet utils.py)
DEFAULT_CLASS_NAMES = {len(SYNAPSE_ORGANS) + 1: SYNAPSE_ORGANS, len(ACDC_STRUCTURES) + 1: ACDC_STRUCTURES}


def case_scores(pred, gt):
    """(Dice, HD95) of one organ of one case by the official rules (``calculate_metric_percase``)."""
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.any() and gt.any():
        return dice_coefficient(pred, gt), hd95(pred, gt)
    if pred.any():
        return 1.0, 0.0  # organ predicted where the label has none
    return 0.0, 0.0  # nothing predicted (also when the label has nothing)


def volume_scores(prediction, label, num_classes):
    """(num_classes - 1, 2) array of (Dice, HD95) for the labels 1 .. num_classes - 1 of one case's volumes."""
    return np.array([case_scores(prediction == value, label == value) for value in range(1, num_classes)],
                    dtype=np.float64)


def _pack(array):
    return array.shape, zlib.compress(np.ascontiguousarray(array, dtype=np.uint8).tobytes(), 1)


def _unpack(packed):
    shape, data = packed
    return np.frombuffer(zlib.decompress(data), dtype=np.uint8).reshape(shape)


@METRICS.register_module()
class SynapseMetric(BaseMetric):
    """Mean Dice ``mDice`` (percent) and mean HD95 ``mHD95`` (voxels) over the organs, each the mean over the cases,
    and per organ ``Dice.<organ>`` and ``HD95.<organ>``; the organs (any foreground classes: ACDC's RV, Myo, LV) are
    the dataset's classes after 'background'.

    Reads per data sample ``pred_sem_seg`` (the argmax at the network size: keep mmseg from resizing the logits with
    ``mmssm.ResizedAsOriginal`` in the test pipeline), ``gt_sem_seg`` (the label slice at the file's size) and the
    meta keys ``case_name``, ``slice_index``, ``num_slices`` (``SynapseDataset`` / ``ACDCDataset`` items; pack them with
    ``PackSegInputs(meta_keys=...)``). Every slice of every case must arrive once (the copies a distributed sampler
    adds to fill its last batch are dropped).

    Args:
        num_classes: classes including the background, used when the metric has no ``dataset_meta`` (the runner
            sets it from the dataset); organ names then are ``SYNAPSE_ORGANS`` for 9 classes, ``ACDC_STRUCTURES``
            for 4, else 'class1' ... .
        collect_device, prefix: see ``mmengine.evaluator.BaseMetric``.
    """

    def __init__(self, num_classes=9, collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_classes = num_classes
        self._warned_resized = False

    @property
    def organs(self):
        classes = (self.dataset_meta or {}).get('classes')
        if classes:
            return tuple(str(name).replace(' ', '_') for name in classes[1:])
        if self.num_classes in DEFAULT_CLASS_NAMES:
            return DEFAULT_CLASS_NAMES[self.num_classes]
        return tuple(f'class{value}' for value in range(1, self.num_classes))

    def process(self, data_batch, data_samples):
        from scipy import ndimage
        for sample in data_samples:
            missing = [key for key in VOLUME_KEYS if key not in sample]
            if missing:
                raise KeyError(f'SynapseMetric needs the meta keys {VOLUME_KEYS} of each slice, missing {missing}: '
                               'use mmssm.SynapseDataset or mmssm.ACDCDataset (volumes=True) and add them to '
                               'meta_keys of PackSegInputs')
            pred = sample['pred_sem_seg']['data'][0].cpu().numpy()  # (1, h, w) -> (h, w)
            label = sample['gt_sem_seg']['data'][0].cpu().numpy()
            if tuple(pred.shape) != tuple(sample.get('img_shape', pred.shape)) and not self._warned_resized:
                self._warned_resized = True
                print_log(f'SynapseMetric: the prediction is {tuple(pred.shape)}, the network input was '
                          f'{tuple(sample["img_shape"])}: mmseg resized the logits (bilinear) before the argmax. '
                          'The protocol zooms the argmax back with nearest: put mmssm.ResizedAsOriginal after '
                          'the zoom in the test pipeline', logger='current', level=30)
            if pred.shape != label.shape:  # the official zoom(out, (x / 224, y / 224), order=0)
                factors = (label.shape[0] / pred.shape[0], label.shape[1] / pred.shape[1])
                pred = ndimage.zoom(pred, factors, order=0)
                if pred.shape != label.shape:
                    raise ValueError(f'{sample["case_name"]} slice {sample["slice_index"]}: zooming the prediction '
                                     f'gave {pred.shape}, the label is {label.shape}')
            for name, values in (('prediction', pred), ('label', label)):
                if values.size and (values.min() < 0 or values.max() > 255):
                    raise ValueError(f'SynapseMetric needs {name} values in 0..255, got {values.min()}..'
                                     f'{values.max()}')
            self.results.append(dict(case=str(sample['case_name']), index=int(sample['slice_index']),
                                     depth=int(sample['num_slices']), pred=_pack(pred), label=_pack(label)))

    def compute_metrics(self, results):
        if not results:
            raise ValueError('SynapseMetric received no slices')
        slices = defaultdict(dict)
        for result in results:
            slices[result['case']].setdefault(result['index'], result)  # a repeated slice counts once
        num_classes = len(self.organs) + 1
        per_case = {}
        for case in sorted(slices):
            received = slices[case]
            depth = next(iter(received.values()))['depth']
            absent = sorted(set(range(depth)) - set(received))
            if absent or len(received) != depth:
                raise ValueError(f'SynapseMetric: case {case} has {depth} slices, {len(absent)} did not arrive '
                                 f'(e.g. {absent[:5]}) and indices {sorted(set(received) - set(range(depth)))[:5]} '
                                 'are out of range')
            prediction = np.stack([_unpack(received[index]['pred']) for index in range(depth)])
            label = np.stack([_unpack(received[index]['label']) for index in range(depth)])
            per_case[case] = volume_scores(prediction, label, num_classes)
            dice, distance = per_case[case].mean(axis=0)
            print_log(f'case {case}: mean Dice {dice:.4f}, mean HD95 {distance:.4f}', logger='current')
        per_organ = np.mean(list(per_case.values()), axis=0)  # (organs, 2): mean over the cases
        metrics = dict(mDice=100 * float(per_organ[:, 0].mean()), mHD95=float(per_organ[:, 1].mean()))
        for organ, (dice, distance) in zip(self.organs, per_organ):
            metrics[f'Dice.{organ}'] = 100 * float(dice)
        for organ, (dice, distance) in zip(self.organs, per_organ):
            metrics[f'HD95.{organ}'] = float(distance)
        width = max(len('organ'), *(len(organ) for organ in self.organs))
        rows = [f'{organ:>{width}} | {100 * dice:8.2f} | {distance:8.2f}' for organ, (dice, distance)
                in zip(self.organs, per_organ)]
        print_log(f'{len(per_case)} cases (Dice %, HD95 voxels):\n{"organ":>{width}} | {"Dice":>8} | '
                  f'{"HD95":>8}\n' + '\n'.join(rows) + f'\n{"mean":>{width}} | {metrics["mDice"]:8.2f} | '
                  f'{metrics["mHD95"]:8.2f}', logger='current')
        return metrics
