"""Metrics registered in ``mmssm.registry.METRICS``; the binary ones share ``binary_metric``'s counting and formulas,
``SynapseMetric`` scores 3D volumes (per-case Dice and HD95) in the TransUNet protocol: Synapse CT and ACDC MRI;
``DiceNSDMetric`` scores 2D label maps per image (Dice, normalized surface Dice) in U-Mamba's protocol. The mask scores
live in ``surface_distance``."""
from .binary_metric import SCORE_NAMES, BinaryConfusionMetric, binary_scores
from .change_detection_metric import ChangeDetectionMetric
from .dice_nsd_metric import DiceNSDMetric
from .isic_metric import ISICMetric
from .surface_distance import dice_coefficient, hd95, normalized_surface_dice, surface_distances
from .synapse_metric import SynapseMetric, case_scores, volume_scores

__all__ = ['BinaryConfusionMetric', 'ChangeDetectionMetric', 'DiceNSDMetric', 'ISICMetric', 'SCORE_NAMES',
           'SynapseMetric', 'binary_scores', 'case_scores', 'dice_coefficient', 'hd95', 'normalized_surface_dice',
           'surface_distances', 'volume_scores']
