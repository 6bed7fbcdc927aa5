"""Metrics registered in ``mmssm.registry.METRICS``; the binary ones share ``binary_metric``'s counting and formulas,
``SemanticChangeMetric`` (SECOND) and ``DamageAssessmentMetric`` (xBD) follow MambaCD, ``SynapseMetric`` scores 3D
volumes (per-case Dice and HD95) in the TransUNet protocol: Synapse CT and ACDC MRI; ``DiceNSDMetric`` scores 2D label
maps per image (Dice, normalized surface Dice) in U-Mamba's protocol. The mask scores live in ``surface_distance``."""
from .binary_metric import SCORE_NAMES, BinaryConfusionMetric, binary_scores
from .change_detection_metric import ChangeDetectionMetric
from .damage_assessment_metric import DamageAssessmentMetric, damage_f1
from .dice_nsd_metric import DiceNSDMetric
from .isic_metric import ISICMetric
from .semantic_change_metric import SemanticChangeMetric, scd_scores
from .surface_distance import dice_coefficient, hd95, normalized_surface_dice, surface_distances
from .synapse_metric import SynapseMetric, case_scores, volume_scores

__all__ = ['BinaryConfusionMetric', 'ChangeDetectionMetric', 'DamageAssessmentMetric', 'DiceNSDMetric', 'ISICMetric',
           'SCORE_NAMES', 'SemanticChangeMetric', 'SynapseMetric', 'binary_scores', 'case_scores', 'damage_f1',
           'dice_coefficient', 'hd95', 'normalized_surface_dice', 'scd_scores', 'surface_distances', 'volume_scores']
