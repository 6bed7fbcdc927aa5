"""Losses beyond mmseg's."""
from .dice_loss import BinaryDiceLoss, ClassDiceLoss, SoftDiceLoss
from .similarity_loss import UnchangedSimilarityLoss

__all__ = ['BinaryDiceLoss', 'ClassDiceLoss', 'SoftDiceLoss', 'UnchangedSimilarityLoss']
