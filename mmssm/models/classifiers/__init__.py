"""Classifiers and heads beyond mmpretrain's: DeiT-style hard distillation with a teacher built from a config."""
from .hard_distillation import DistilledLinearClsHead, HardDistillationClassifier

__all__ = ['DistilledLinearClsHead', 'HardDistillationClassifier']
