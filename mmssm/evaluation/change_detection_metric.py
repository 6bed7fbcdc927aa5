"""``mmssm.ChangeDetectionMetric``: binary change-detection scores from one confusion matrix over the whole test set.

This is the MambaCD / Open-CD protocol: pixels of all images are pooled (no per-image averaging), pixels whose
label is ``ignore_index`` are left out, and the scores are those of the CHANGED class (label 1). Counting and
formulas are shared with the other binary metrics (``mmssm.evaluation.binary_metric``).
"""
from mmssm.registry import METRICS

from .binary_metric import BinaryConfusionMetric


@METRICS.register_module()
class ChangeDetectionMetric(BinaryConfusionMetric):
    """Precision, recall, F1, IoU of the changed class, overall accuracy and Cohen's kappa, all in percent.

    Reads ``pred_sem_seg`` and ``gt_sem_seg`` holding 0 (unchanged) / 1 (changed); see ``BinaryConfusionMetric``.

    Args:
        ignore_index: label value left out of every count.
        collect_device, prefix: see ``mmengine.evaluator.BaseMetric``.
    """

    REPORTED = dict(precision='precision', recall='recall', F1='F1', IoU='IoU', OA='accuracy', kappa='kappa')
    TITLE = 'changed class (%)'
