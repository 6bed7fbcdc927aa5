"""Losses beyond mmseg's."""
from .dice_loss import BinaryDiceLoss, ClassDiceLoss
from .similarity_loss import UnchangedSimilarityLoss

__all__ = ['BinaryDiceLoss', 'ClassDiceLoss', 'UnchangedSimilarityLoss']
