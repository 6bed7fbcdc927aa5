"""Metrics registered in ``mmssm.registry.METRICS``."""
from .change_detection_metric import ChangeDetectionMetric, change_scores

__all__ = ['ChangeDetectionMetric', 'change_scores']
