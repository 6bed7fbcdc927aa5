"""Metrics registered in ``mmssm.registry.METRICS``; the binary ones share ``binary_metric``'s counting and formulas,
``SemanticChangeMetric`` (SECOND) and ``DamageAssessmentMetric`` (xBD) follow MambaCD, ``SynapseMetric`` scores 3D
volumes (per-case Dice and HD95) in the TransUNet protocol: Synapse CT and ACDC MRI."""
from .binary_metric import SCORE_NAMES, BinaryConfusionMetric, binary_scores
from .change_detection_metric import ChangeDetectionMetric
from .damage_assessment_metric import DamageAssessmentMetric, damage_f1
from .isic_metric import ISICMetric
from .semantic_change_metric import SemanticChangeMetric, scd_scores
from .synapse_metric import SynapseMetric, case_scores, dice_coefficient, hd95, volume_scores

__all__ = ['BinaryConfusionMetric', 'ChangeDetectionMetric', 'DamageAssessmentMetric', 'ISICMetric', 'SCORE_NAMES',
           'SemanticChangeMetric', 'SynapseMetric', 'binary_scores', 'case_scores', 'damage_f1', 'dice_coefficient',
           'hd95', 'scd_scores', 'volume_scores']
