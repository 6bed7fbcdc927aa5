"""Losses beyond mmseg's."""
from .dice_loss import BinaryDiceLoss, ClassDiceLoss, SoftDiceLoss

__all__ = ['BinaryDiceLoss', 'ClassDiceLoss', 'SoftDiceLoss']
