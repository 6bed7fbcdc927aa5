"""``mmssm.SemanticChangeMetric``: SECOND semantic change detection scores in MambaCD's current protocol.

Every pixel gets a "from-to" code: 0 where the change map says unchanged, else ``(A - 1) * K + B`` with A, B the
date-1 / date-2 land-cover classes (1..K; K = 6 on SECOND, so 37 codes). One confusion matrix of predicted against
labelled codes, pooled over the test set, gives (``train_MambaSCD.py`` / ``mcd_utils.SCDD_eval_all``):

- mIoU: mean of the IoU of "no change" and of "change" (all codes > 0 merged);
- SeK: Cohen's kappa of the matrix with its (no change, no change) cell zeroed, times exp(IoU_change) / e;
- Fscd: harmonic mean of precision and recall of the exact code over the predicted / labelled changed pixels;
- OA: the code accuracy of each image, averaged over images.

The first MambaCD release scored 7 classes per date instead (SeK differs): the log names the protocol. A predicted
land cover of 0 ("unchanged", a class the training ignores) inside a predicted change gives, as in the official code,
the code of another class (date 2) or a code < 0 (date 1); the official ``SCDD_eval_all`` stops on an assertion at
a code < 0, here such pixels are left out of the matrix (as its ``fast_hist`` would) and count as wrong in OA.
"""
import math

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from mmssm.registry import METRICS

from .binary_metric import _ratio, cohen_kappa, confusion_counts, log_scores

PROTOCOL = "MambaCD's current SECOND protocol: 37 from-to classes, (A - 1) * 6 + B"


def scd_scores(confusion):
    """SeK, Fscd, mIoU, kappa_n0 and IoU_change (fractions) from the from-to confusion matrix (code 0 = no change),
    either orientation ([prediction, label] in the official code)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    both_unchanged = confusion[0, 0]
    binary = np.array([[both_unchanged, confusion[0].sum() - both_unchanged],
                       [confusion[:, 0].sum() - both_unchanged, confusion[1:, 1:].sum()]])  # no change / change
    iou = [_ratio(binary[i, i], binary[i].sum() + binary[:, i].sum() - binary[i, i]) for i in (0, 1)]
    without_no_change = confusion.copy()
    without_no_change[0, 0] = 0
    kappa_n0 = cohen_kappa(without_no_change)
    total = confusion.sum()
    true_codes = np.trace(confusion[1:, 1:])
    precision = _ratio(true_codes, total - confusion[0].sum())
    recall = _ratio(true_codes, total - confusion[:, 0].sum())
    return dict(SeK=kappa_n0 * math.exp(iou[1]) / math.e, Fscd=_ratio(2 * precision * recall, precision + recall),
                mIoU=(iou[0] + iou[1]) / 2, kappa_n0=kappa_n0, IoU_change=iou[1])


def flat_maps(sample, keys, metric):
    """{key: (H * W,) long} of the (1, H, W) maps ``keys`` of a data sample; KeyError naming the missing ones."""
    missing = [key for key in keys if key not in sample]
    if missing:
        raise KeyError(f'{metric}: {sample.get("img_path", "a sample")} has no {missing} (the model must predict the '
                       'per-date maps, e.g. mmssm.SemanticChangeEncoderDecoder, and the test pipeline load the labels '
                       'with mmssm.LoadIndexLabel and pack them with mmssm.PackMultiLabelSegInputs)')
    return {key: sample[key]['data'].reshape(-1).cpu().long() for key in keys}  # (1, H, W) -> (H * W,)


@METRICS.register_module()
class SemanticChangeMetric(BaseMetric):
    """SeK, Fscd, mIoU and OA (percent) of semantic change detection (see the module docstring).

    Reads ``pred_sem_seg`` / ``gt_sem_seg`` (change, 0 / 1) and ``pred_sem_seg_t1``, ``pred_sem_seg_t2``,
    ``gt_sem_seg_t1``, ``gt_sem_seg_t2`` (land cover 0..K) of each data sample. Labelled changed pixels must have
    land-cover labels 1..K; pixels whose change label is ``ignore_index`` are left out.

    Args:
        num_land_cover: K, the land-cover classes (6 on SECOND).
        ignore_index: change-label value left out of every count.
        collect_device, prefix: see ``mmengine.evaluator.BaseMetric``.
    """

    def __init__(self, num_land_cover=6, ignore_index=255, collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_land_cover = num_land_cover
        self.ignore_index = ignore_index

    def process(self, data_batch, data_samples):
        num_codes = self.num_land_cover ** 2 + 1
        for sample in data_samples:
            name = sample.get('img_path', 'a sample')
            maps = flat_maps(sample, ('pred_sem_seg', 'pred_sem_seg_t1', 'pred_sem_seg_t2', 'gt_sem_seg',
                                      'gt_sem_seg_t1', 'gt_sem_seg_t2'), 'SemanticChangeMetric')
            if len({m.numel() for m in maps.values()}) != 1:
                raise ValueError(f'SemanticChangeMetric: maps of {name} differ in size: '
                                 f'{ {k: m.numel() for k, m in maps.items()} }')
            valid = maps['gt_sem_seg'] != self.ignore_index
            maps = {key: m[valid] for key, m in maps.items()}
            self._check(maps, name)
            pred = self._codes(maps['pred_sem_seg'], maps['pred_sem_seg_t1'], maps['pred_sem_seg_t2'])
            label = self._codes(maps['gt_sem_seg'], maps['gt_sem_seg_t1'], maps['gt_sem_seg_t2'])
            counted = (pred >= 0) & (pred < num_codes)
            accuracy = (pred == label).double().mean().item() if pred.numel() else 0.0
            self.results.append((confusion_counts(pred[counted], label[counted], num_codes), accuracy))

    def _codes(self, change, first, second):
        """0 where unchanged, else the from-to code (A - 1) * K + B."""
        return torch.where(change == 1, (first - 1) * self.num_land_cover + second, torch.zeros_like(change))

    def _check(self, maps, name):
        k = self.num_land_cover
        for key, low, high in (('pred_sem_seg', 0, 1), ('gt_sem_seg', 0, 1), ('pred_sem_seg_t1', 0, k),
                               ('pred_sem_seg_t2', 0, k)):
            values = maps[key]
            if values.numel() and (values.min() < low or values.max() > high):
                raise ValueError(f'SemanticChangeMetric: {key} of {name} must hold {low}..{high}, got '
                                 f'{torch.unique(values).tolist()}')
        changed = maps['gt_sem_seg'] == 1
        for key in ('gt_sem_seg_t1', 'gt_sem_seg_t2'):
            values = maps[key][changed]
            if values.numel() and (values.min() < 1 or values.max() > k):
                raise ValueError(f'SemanticChangeMetric: {key} of {name} must hold land cover 1..{k} on changed '
                                 f'pixels, got {torch.unique(values).tolist()}')

    def compute_metrics(self, results):
        confusion = sum((counts for counts, _ in results), np.zeros((self.num_land_cover ** 2 + 1,) * 2, np.int64))
        scores = scd_scores(confusion)
        reported = dict(SeK=scores['SeK'], Fscd=scores['Fscd'], mIoU=scores['mIoU'],
                        OA=float(np.mean([accuracy for _, accuracy in results])))
        reported = {name: 100 * value for name, value in reported.items()}
        log_scores(f'semantic change (%), {PROTOCOL}', reported, 8)
        return reported
