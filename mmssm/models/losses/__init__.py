"""Losses beyond mmseg's."""
from .dice_loss import BinaryDiceLoss, ClassDiceLoss, NNUNetDiceLoss

__all__ = ['BinaryDiceLoss', 'ClassDiceLoss', 'NNUNetDiceLoss']
