"""Losses beyond mmseg's."""
from .dice_loss import BinaryDiceLoss, ClassDiceLoss

__all__ = ['BinaryDiceLoss', 'ClassDiceLoss']
