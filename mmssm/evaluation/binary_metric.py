"""Binary segmentation scores from ONE 2x2 confusion matrix pooled over the whole test set.

``BinaryConfusionMetric`` counts, per sample, the pixels of each (label, prediction) pair of a 0 / 1 prediction and
label, leaving out labels equal to ``ignore_index``; ``binary_scores`` turns the summed counts into every score the
protocols quote. Subclasses only pick and name the scores they report:

| metric | protocol | reports |
|---|---|---|
| ``mmssm.ChangeDetectionMetric`` | MambaCD / Open-CD change detection | precision, recall, F1, IoU, OA, kappa |
| ``mmssm.ISICMetric`` | VM-UNet skin lesions (ISIC 2017 / 2018) | Acc, Sensitivity, Specificity, DSC, mIoU |

Pixels of all images are pooled (no per-image averaging); the scores are those of the foreground class (label 1).
"""
import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

SCORE_NAMES = ('accuracy', 'precision', 'recall', 'specificity', 'F1', 'IoU', 'kappa')


def _ratio(numerator, denominator):
    """numerator / denominator, 0.0 when the denominator is 0 (an empty class gives 0, never NaN)."""
    return numerator / denominator if denominator else 0.0


def binary_scores(confusion):
    """Scores in percent (keys ``SCORE_NAMES``) from a 2x2 confusion matrix ``confusion[label, prediction]``.

    With 1 the foreground: accuracy (TP + TN) / N, precision TP / (TP + FP), recall (sensitivity) TP / (TP + FN),
    specificity TN / (TN + FP), F1 (Dice, DSC) 2TP / (2TP + FP + FN), IoU TP / (TP + FP + FN) (foreground only),
    kappa (accuracy - pe) / (1 - pe) with pe the chance agreement of the label and prediction marginals. A ratio whose
    denominator is 0 (e.g. no foreground predicted or labelled, no valid pixel, or pe = 1 when label and prediction
    are one and the same class everywhere) is 0, as in VM-UNet's and MambaCD's code.
    """
    (tn, fp), (fn, tp) = np.asarray(confusion, dtype=np.float64)
    total = tn + fp + fn + tp
    accuracy = _ratio(tp + tn, total)
    chance = _ratio((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp), total * total)
    scores = dict(accuracy=accuracy, precision=_ratio(tp, tp + fp), recall=_ratio(tp, tp + fn),
                  specificity=_ratio(tn, tn + fp), F1=_ratio(2 * tp, 2 * tp + fp + fn), IoU=_ratio(tp, tp + fp + fn),
                  kappa=_ratio(accuracy - chance, 1 - chance))
    return {name: 100 * float(value) for name, value in scores.items()}


class BinaryConfusionMetric(BaseMetric):
    """Pooled binary confusion counts; a subclass sets ``REPORTED`` (reported name -> ``binary_scores`` key, in the
    order of the log table) and ``TITLE`` (the log table's title).

    Reads ``pred_sem_seg.data`` and ``gt_sem_seg.data`` (1, H, W) of each data sample; both must hold 0 / 1 (the label
    may also hold ``ignore_index``) and have the same number of pixels. Counts are kept per sample, so distributed
    evaluation drops the samples a sampler repeated to fill the last batch.

    Args:
        ignore_index: label value left out of every count.
        collect_device, prefix: see ``mmengine.evaluator.BaseMetric``.
    """

    REPORTED = {}
    TITLE = 'foreground class (%)'

    def __init__(self, ignore_index=255, collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        unknown = set(self.REPORTED.values()) - set(SCORE_NAMES)
        if not self.REPORTED or unknown:
            raise TypeError(f'{type(self).__name__}.REPORTED must map reported names to scores of {SCORE_NAMES}'
                            f'{f", unknown {sorted(unknown)}" if unknown else ""}')
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
                    raise ValueError(f'{type(self).__name__} needs {name} values 0 / 1 (and ignore_index '
                                     f'{self.ignore_index} in labels), got {torch.unique(values).tolist()} in '
                                     f'{sample.get("img_path", "a sample")}')
            counts = torch.bincount(label * 2 + pred, minlength=4)  # index label * 2 + prediction
            self.results.append(counts.reshape(2, 2).numpy())  # (4,) -> (2, 2) [label, prediction]

    def compute_metrics(self, results):
        scores = binary_scores(sum(results, np.zeros((2, 2), dtype=np.int64)))
        reported = {name: scores[key] for name, key in self.REPORTED.items()}
        header = ' | '.join(f'{name:>11}' for name in reported)
        values = ' | '.join(f'{value:11.2f}' for value in reported.values())
        print_log(f'{self.TITLE}:\n{header}\n{values}', logger='current')
        return reported
