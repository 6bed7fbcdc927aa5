"""``mmssm.DiceNSDMetric``: per-image Dice (DSC) and normalized surface Dice (NSD) of 2D label maps, in the protocol of
U-Mamba's evaluation scripts (``evaluation/endoscopy_DSC_Eval.py``, ``endoscopy_NSD_Eval.py``), the metric of its 2D
Endoscopy / Microscopy results and of the other nnU-Net-based 2D models here (Swin-UMamba reuses it).

Per image, over the foreground classes present in the label OR the prediction:

- present in the label: DSC = 2 |P & G| / (|P| + |G|); NSD at ``nsd_tolerance`` pixels (spacing 1), 0 when nothing
  is predicted;
- predicted but absent from the label: DSC 0, NSD 0.

The image's score is the mean over those classes, the reported ``DSC`` / ``NSD`` the mean over the images (percent).
An image where neither label nor prediction has any foreground is skipped (the official scripts assert it never
happens) and counted in the log. ``DSC.<class>`` / ``NSD.<class>`` average each class over the images where it is
present in the label or the prediction. NSD is the official one of a 2D mask taken as a one-pixel-deep volume, whose
surface covers the whole mask (:func:`mmssm.evaluation.surface_distance.normalized_surface_dice`).
"""
import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmssm.registry import METRICS

from .surface_distance import dice_coefficient, normalized_surface_dice


def image_scores(pred, label, classes, tolerance):
    """{class value: (DSC, NSD)} for the foreground ``classes`` present in ``label`` or ``pred`` of one image."""
    scores = {}
    for value in classes:
        in_pred, in_label = pred == value, label == value
        if not in_label.any():
            if in_pred.any():
                scores[value] = (0.0, 0.0)
            continue
        nsd = normalized_surface_dice(in_pred, in_label, tolerance) if in_pred.any() else 0.0
        scores[value] = (dice_coefficient(in_pred, in_label), nsd)
    return scores


@METRICS.register_module()
class DiceNSDMetric(BaseMetric):
    """Mean per-image DSC and NSD (percent) and per class ``DSC.<class>``, ``NSD.<class>``.

    Args:
        nsd_tolerance: NSD tolerance in pixels (U-Mamba's Endoscopy evaluation: 2).
        ignore_index: label value left out (its pixels count as background in the prediction and the label).
        collect_device, prefix: see ``mmengine.evaluator.BaseMetric``.

    Reads per data sample ``pred_sem_seg`` and ``gt_sem_seg`` (one size: predict at the label's size, mmseg's
    default); the class names come from the dataset (``mmssm.NNUNetRaw2DDataset``'s dataset.json labels).
    """

    def __init__(self, nsd_tolerance=2.0, ignore_index=255, collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if nsd_tolerance < 0:
            raise ValueError(f'DiceNSDMetric: nsd_tolerance must be >= 0 pixels, got {nsd_tolerance}')
        self.nsd_tolerance, self.ignore_index = nsd_tolerance, ignore_index

    def process(self, data_batch, data_samples):
        classes = range(1, len(self.dataset_meta['classes'])) if self.dataset_meta else None
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'][0].cpu().numpy()
            label = sample['gt_sem_seg']['data'][0].cpu().numpy()
            if pred.shape != label.shape:
                raise ValueError(f'DiceNSDMetric: prediction {pred.shape} and label {label.shape} differ in size')
            ignored = label == self.ignore_index
            pred, label = np.where(ignored, 0, pred), np.where(ignored, 0, label)
            values = classes or range(1, int(max(pred.max(), label.max())) + 1)
            self.results.append(image_scores(pred, label, values, self.nsd_tolerance))

    def compute_metrics(self, results):
        scored = [scores for scores in results if scores]
        if not scored:
            raise ValueError('DiceNSDMetric: no image has foreground in its label or prediction')
        if len(scored) < len(results):
            print_log(f'DiceNSDMetric: {len(results) - len(scored)} of {len(results)} images have no foreground in '
                      'label and prediction and are not scored', logger='current')
        per_image = np.array([np.mean(list(scores.values()), axis=0) for scores in scored])  # (images, 2)
        metrics = dict(DSC=100 * float(per_image[:, 0].mean()), NSD=100 * float(per_image[:, 1].mean()))
        names = (self.dataset_meta or {}).get('classes')
        values = sorted({value for scores in scored for value in scores})
        for kind, column in (('DSC', 0), ('NSD', 1)):
            for value in values:
                name = str(names[value]).replace(' ', '_') if names and value < len(names) else f'class{value}'
                metrics[f'{kind}.{name}'] = 100 * float(np.mean([s[value][column] for s in scored if value in s]))
        return metrics
