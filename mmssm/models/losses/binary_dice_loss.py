"""Dice loss of a one-channel sigmoid segmentation head (VM-UNet's BceDiceLoss Dice term)."""
import torch.nn as nn

from mmssm.registry import MODELS


@MODELS.register_module()
class BinaryDiceLoss(nn.Module):
    """1 - Dice(sigmoid(logits), labels == 1) per image, with ``smooth`` added to both sides, averaged over the batch.

    For mmseg heads with ``out_channels=1``. mmseg 1.2.2's ``DiceLoss`` cannot stand in: with one output channel it
    one-hot encodes the labels and keeps channel 0, so it scores the lesion probability against the BACKGROUND mask.

    Args:
        smooth: added to the numerator (2 |P G|) and the denominator (|P| + |G|); VM-UNet uses 1.
        loss_weight: factor of the loss. loss_name: its key in the losses dict (must start with ``loss_``).
    """

    def __init__(self, smooth=1.0, loss_weight=1.0, loss_name='loss_dice'):
        super().__init__()
        self.smooth = smooth
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def forward(self, pred, target, weight=None, ignore_index=255, **kwargs):
        """pred: (B, 1, H, W) logits; target: (B, H, W) labels 0 / 1 (``ignore_index`` left out)."""
        if pred.dim() != 4 or pred.shape[1] != 1:
            raise ValueError(f'BinaryDiceLoss takes one-channel logits (B, 1, H, W), got {tuple(pred.shape)}')
        valid = (target != ignore_index).flatten(1)  # (B, H*W)
        prob = pred.sigmoid().flatten(1) * valid
        truth = ((target == 1).flatten(1) & valid).to(prob.dtype)
        dice = (2 * (prob * truth).sum(1) + self.smooth) / (prob.sum(1) + truth.sum(1) + self.smooth)  # (B,)
        return self.loss_weight * (1 - dice).mean()

    @property
    def loss_name(self):
        return self._loss_name
