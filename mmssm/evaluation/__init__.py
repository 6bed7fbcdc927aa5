"""Metrics registered in ``mmssm.registry.METRICS``; the binary ones share ``binary_metric``'s counting and formulas."""
from .binary_metric import SCORE_NAMES, BinaryConfusionMetric, binary_scores
from .change_detection_metric import ChangeDetectionMetric
from .isic_metric import ISICMetric

__all__ = ['BinaryConfusionMetric', 'ChangeDetectionMetric', 'ISICMetric', 'SCORE_NAMES', 'binary_scores']
