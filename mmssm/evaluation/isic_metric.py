"""``mmssm.ISICMetric``: VM-UNet's skin-lesion scores (ISIC 2017 / 2018) from one confusion matrix over the test set.

VM-UNet's ``engine.py`` thresholds the sigmoid output at 0.5, pools the pixels of the whole test set into ONE
confusion matrix and reports accuracy, sensitivity, specificity, DSC (= F1) and "mIoU", which is the IoU of the
LESION class only (not a mean over classes). Counting and formulas are shared with the other binary metrics
(``mmssm.evaluation.binary_metric``).
"""
from mmssm.registry import METRICS

from .binary_metric import BinaryConfusionMetric


@METRICS.register_module()
class ISICMetric(BinaryConfusionMetric):
    """``Acc``, ``Sensitivity``, ``Specificity``, ``DSC`` and ``mIoU`` (lesion IoU) in percent, VM-UNet's names.

    Reads ``pred_sem_seg`` and ``gt_sem_seg`` holding 0 (background) / 1 (lesion); see ``BinaryConfusionMetric``.
    The prediction is the model's: for a one-channel sigmoid head mmseg predicts ``sigmoid > decode_head.threshold``,
    so that head needs ``threshold=0.5`` to follow VM-UNet (mmseg's default for one channel is 0.3).

    Args:
        ignore_index: label value left out of every count (ISIC masks have none).
        collect_device, prefix: see ``mmengine.evaluator.BaseMetric``.
    """

    REPORTED = dict(Acc='accuracy', Sensitivity='recall', Specificity='specificity', DSC='F1', mIoU='IoU')
    TITLE = 'lesion class (%)'
