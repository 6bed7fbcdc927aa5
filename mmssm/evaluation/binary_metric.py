"""Binary segmentation scores from ONE 2x2 confusion matrix pooled over the whole test set.

``BinaryConfusionMetric`` counts, per sample, the pixels of each (label, prediction) pair of a 0 / 1 prediction and
label, leaving out labels equal to ``ignore_index``; ``binary_scores`` turns the summed counts into every score the
protocols quote. Subclasses only pick and name the scores they report:

| metric | protocol | reports |
|---|---|---|
| ``mmssm.ChangeDetectionMetric`` | MambaCD / Open-CD change detection | precision, recall, F1, IoU, OA, kappa |
| ``mmssm.ISICMetric`` | VM-UNet skin lesions (ISIC 2017 / 2018) | Acc, Sensitivity, Specificity, DSC, mIoU |

Pixels of all images are pooled (no per-image averaging); the scores are those of the foreground class (label 1).
``cohen_kappa``, ``confusion_counts`` and ``log_scores`` also serve the multi-class confusion matrices of
``SemanticChangeMetric`` and ``DamageAssessmentMetric``.
"""
import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

SCORE_NAMES = ('accuracy', 'precision', 'recall', 'specificity', 'F1', 'IoU', 'kappa')


def _ratio(numerator, denominator):
    """numerator / denominator, 0.0 when the denominator is 0 (an empty class gives 0, never NaN)."""
    return numerator / denominator if denominator else 0.0


def cohen_kappa(confusion):
    """Cohen's kappa of a square confusion matrix; 0 when it is empty or the chance agreement is 1."""
    confusion = np.asarray(confusion, dtype=np.float64)
    total = confusion.sum()
    if not total:
        return 0.0
    observed = np.trace(confusion) / total
    chance = float(confusion.sum(1) @ confusion.sum(0)) / total ** 2
    return _ratio(observed - chance, 1 - chance)


def confusion_counts(rows, columns, num_classes):
    """The (num_classes, num_classes) numpy matrix of pair counts [row value, column value] of two flat integer
    tensors holding 0 .. num_classes - 1."""
    counts = torch.bincount(rows * num_classes + columns, minlength=num_classes ** 2)
    return counts.reshape(num_classes, num_classes).numpy()  # (num_classes ** 2,) -> [row, column]


def log_scores(title, scores, width):
    """Log ``scores`` (name -> value) as a two-line table under ``title``, columns ``width`` characters wide."""
    header = ' | '.join(f'{name:>{width}}' for name in scores)
    values = ' | '.join(f'{value:{width}.2f}' for value in scores.values())
    print_log(f'{title}:\n{header}\n{values}', logger='current')


def binary_scores(confusion):
    """Scores in percent (keys ``SCORE_NAMES``) from a 2x2 confusion matrix ``confusion[label, prediction]``.

    With 1 the foreground: accuracy (TP + TN) / N, precision TP / (TP + FP), recall (sensitivity) TP / (TP + FN),
    specificity TN / (TN + FP), F1 (Dice, DSC) 2TP / (2TP + FP + FN), IoU TP / (TP + FP + FN) (foreground only),
    kappa (accuracy - pe) / (1 - pe) with pe the chance agreement of the label and prediction marginals. A ratio whose
    denominator is 0 (e.g. no foreground predicted or labelled, no valid pixel, or pe = 1 when label and prediction
    are one and the same class everywhere) is 0, as in VM-UNet's and MambaCD's code.
    """
    (tn, fp), (fn, tp) = np.asarray(confusion, dtype=np.float64)
    scores = dict(accuracy=_ratio(tp + tn, tn + fp + fn + tp), precision=_ratio(tp, tp + fp),
                  recall=_ratio(tp, tp + fn), specificity=_ratio(tn, tn + fp), F1=_ratio(2 * tp, 2 * tp + fp + fn),
                  IoU=_ratio(tp, tp + fp + fn), kappa=cohen_kappa(confusion))
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
            self.results.append(confusion_counts(label, pred, 2))  # [label, prediction]

    def compute_metrics(self, results):
        scores = binary_scores(sum(results, np.zeros((2, 2), dtype=np.int64)))
        reported = {name: scores[key] for name, key in self.REPORTED.items()}
        log_scores(self.TITLE, reported, 11)
        return reported
