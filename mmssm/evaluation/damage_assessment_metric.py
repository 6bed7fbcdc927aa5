"""``mmssm.DamageAssessmentMetric``: xBD building damage assessment scores in MambaCD's (xView2's) protocol.

Two confusion matrices pooled over the test set (``train_MambaBDA.py`` / ``utils_func/metrics.py``):

- localisation, over all pixels: F1_loc of the building class, 2PR / (P + R);
- damage, over the labelled building pixels only (pre-event target 1): for each damage level 1..4 (no / minor /
  major damage, destroyed) F1 = 2PR / (P + R), with P = TP / (TP + FP + 1e-7), R = TP / (TP + FN + 1e-7) and 1e-7
  added to P + R, as the official code computes it; a predicted background (0) on a building is a miss;
- F1_clf = harmonic mean of the four damage F1 (0 when one is 0); F1_oa = 0.3 F1_loc + 0.7 F1_clf.

Labels equal to ``ignore_index`` (255: unclassified buildings) are left out.
"""
import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from mmssm.registry import METRICS

from .binary_metric import binary_scores, confusion_counts, log_scores
from .semantic_change_metric import flat_maps

DAMAGE_LEVELS = ('no_damage', 'minor_damage', 'major_damage', 'destroyed')
EPS = 1e-7  # the official damage-F1 epsilon


def damage_f1(confusion):
    """F1 of damage levels 1..4 from the 5x5 ``confusion[label, prediction]``, with the official epsilons."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)[1:]
    precision = tp / (confusion.sum(0)[1:] + EPS)
    recall = tp / (confusion.sum(1)[1:] + EPS)
    return 2 * precision * recall / (precision + recall + EPS)


def harmonic_mean(values):
    return 0.0 if np.any(values <= 0) else len(values) / float(np.sum(1.0 / values))


@METRICS.register_module()
class DamageAssessmentMetric(BaseMetric):
    """F1_loc, the four damage F1, F1_clf and F1_oa (percent); see the module docstring.

    Reads ``pred_sem_seg`` / ``gt_sem_seg`` (damage 0..4, label also ``ignore_index``) and ``pred_sem_seg_t1`` /
    ``gt_sem_seg_t1`` (buildings 0 / 1) of each data sample.

    Args:
        ignore_index: label value left out of every count.
        collect_device, prefix: see ``mmengine.evaluator.BaseMetric``.
    """

    def __init__(self, ignore_index=255, collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ignore_index = ignore_index

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            name = sample.get('img_path', 'a sample')
            maps = flat_maps(sample, ('pred_sem_seg', 'gt_sem_seg', 'pred_sem_seg_t1', 'gt_sem_seg_t1'),
                             'DamageAssessmentMetric')
            if len({m.numel() for m in maps.values()}) != 1:
                raise ValueError(f'DamageAssessmentMetric: maps of {name} differ in size: '
                                 f'{ {k: m.numel() for k, m in maps.items()} }')
            located = maps['gt_sem_seg_t1'] != self.ignore_index
            building = maps['gt_sem_seg_t1'] == 1
            rated = building & (maps['gt_sem_seg'] != self.ignore_index)
            pairs = dict(loc=(maps['gt_sem_seg_t1'][located], maps['pred_sem_seg_t1'][located], 2),
                         damage=(maps['gt_sem_seg'][rated], maps['pred_sem_seg'][rated], 5))
            counts = {}
            for part, (label, pred, classes) in pairs.items():
                for role, values in (('label', label), ('prediction', pred)):
                    if values.numel() and (values.min() < 0 or values.max() >= classes):
                        raise ValueError(f'DamageAssessmentMetric: {part} {role} of {name} must hold 0..{classes - 1}'
                                         f' (labels also {self.ignore_index}), got {torch.unique(values).tolist()}')
                counts[part] = confusion_counts(label, pred, classes)  # [label, prediction]
            self.results.append(counts)

    def compute_metrics(self, results):
        loc = sum((r['loc'] for r in results), np.zeros((2, 2), np.int64))
        damage = sum((r['damage'] for r in results), np.zeros((5, 5), np.int64))
        f1_loc = binary_scores(loc)['F1'] / 100
        per_level = damage_f1(damage)
        f1_clf = harmonic_mean(per_level)
        reported = dict(F1_loc=f1_loc, F1_clf=f1_clf, F1_oa=0.3 * f1_loc + 0.7 * f1_clf,
                        **{f'F1_{level}': float(f1) for level, f1 in zip(DAMAGE_LEVELS, per_level)})
        reported = {name: 100 * value for name, value in reported.items()}
        log_scores('building damage (%), xView2 / MambaCD protocol', reported, 15)
        return reported
