"""Metrics registered in ``mmssm.registry.METRICS``; the binary ones share ``binary_metric``'s counting and formulas,
``SynapseMetric`` scores 3D volumes (per-case Dice and HD95) in the TransUNet protocol: Synapse CT and ACDC MRI."""
from .binary_metric import SCORE_NAMES, BinaryConfusionMetric, binary_scores
from .change_detection_metric import ChangeDetectionMetric
from .isic_metric import ISICMetric
from .synapse_metric import SynapseMetric, case_scores, dice_coefficient, hd95, volume_scores

__all__ = ['BinaryConfusionMetric', 'ChangeDetectionMetric', 'ISICMetric', 'SCORE_NAMES', 'SynapseMetric',
           'binary_scores', 'case_scores', 'dice_coefficient', 'hd95', 'volume_scores']
