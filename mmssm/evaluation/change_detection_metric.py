"""``mmssm.ChangeDetectionMetric``: binary change-detection scores from one confusion matrix over the whole test set.

This is the MambaCD / Open-CD protocol: pixels of all images are pooled (no per-image averaging), pixels whose
label is ``ignore_index`` are left out, and the scores are those of the CHANGED class (label 1).
"""
import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmssm.registry import METRICS

METRIC_NAMES = ('precision', 'recall', 'F1', 'IoU', 'OA', 'kappa')


def _ratio(numerator, denominator):
    """numerator / denominator, 0.0 when the denominator is 0 (an empty class gives 0, never NaN)."""
    return numerator / denominator if denominator else 0.0


def change_scores(confusion):
    """Scores in percent from a 2x2 confusion matrix ``confusion[label, prediction]`` (0 unchanged, 1 changed).

    precision TP / (TP + FP), recall TP / (TP + FN), F1 2TP / (2TP + FP + FN) (their harmonic mean), IoU
    TP / (TP + FP + FN), OA (TP + TN) / N, kappa (OA - pe) / (1 - pe) with pe the chance agreement of the label and
    prediction marginals. A ratio whose denominator is 0 (nothing predicted or labelled as changed, no valid pixel,
    or pe = 1 when label and prediction are one and the same class everywhere) is 0.
    """
    (tn, fp), (fn, tp) = np.asarray(confusion, dtype=np.float64)
    total = tn + fp + fn + tp
    accuracy = _ratio(tp + tn, total)
    chance = _ratio((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp), total * total)
    scores = dict(precision=_ratio(tp, tp + fp), recall=_ratio(tp, tp + fn), F1=_ratio(2 * tp, 2 * tp + fp + fn),
                  IoU=_ratio(tp, tp + fp + fn), OA=accuracy, kappa=_ratio(accuracy - chance, 1 - chance))
    return {name: 100 * float(value) for name, value in scores.items()}


@METRICS.register_module()
class ChangeDetectionMetric(BaseMetric):
    """Precision, recall, F1, IoU of the changed class, overall accuracy and Cohen's kappa, all in percent.

    Reads ``pred_sem_seg.data`` and ``gt_sem_seg.data`` (1, H, W) of each data sample; both must hold 0 / 1 (the
    label may also hold ``ignore_index``). Confusion counts are kept per sample, so distributed evaluation drops
    the samples a sampler repeated to fill the last batch.

    Args:
        ignore_index: label value left out of every count.
        collect_device, prefix: see ``mmengine.evaluator.BaseMetric``.
    """

    def __init__(self, ignore_index=255, collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ignore_index = ignore_index

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'].reshape(-1).cpu().long()  # (1, H, W) -> (H * W,)
            label = sample['gt_sem_seg']['data'].reshape(-1).cpu().long()
            if pred.shape != label.shape:
                raise ValueError(f'prediction has {pred.numel()} pixels, label {label.numel()}: '
                                 f'{sample.get("img_path", "")}')
            valid = label != self.ignore_index
            pred, label = pred[valid], label[valid]
            for name, values in (('prediction', pred), ('label', label)):
                if values.numel() and (values.min() < 0 or values.max() > 1):
                    raise ValueError(f'ChangeDetectionMetric needs {name} values 0 / 1 (and ignore_index '
                                     f'{self.ignore_index} in labels), got {torch.unique(values).tolist()} in '
                                     f'{sample.get("img_path", "a sample")}')
            counts = torch.bincount(label * 2 + pred, minlength=4)  # index label * 2 + prediction
            self.results.append(counts.reshape(2, 2).numpy())  # (4,) -> (2, 2) [label, prediction]

    def compute_metrics(self, results):
        scores = change_scores(sum(results, np.zeros((2, 2), dtype=np.int64)))
        header = ' | '.join(f'{name:>9}' for name in METRIC_NAMES)
        values = ' | '.join(f'{scores[name]:9.2f}' for name in METRIC_NAMES)
        print_log(f'changed class (%):\n{header}\n{values}', logger='current')
        return scores
