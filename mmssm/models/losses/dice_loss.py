"""Dice losses of the medical U-Nets, in the forms their official code computes (mmseg's ``DiceLoss`` differs)."""
import torch
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


@MODELS.register_module()
class ClassDiceLoss(nn.Module):
    """Mean over ALL classes (background included) of 1 - Dice(softmax class c, labels == c), each Dice pooled over
    the whole batch with squared denominators: (2 sum(p g) + smooth) / (sum(p^2) + sum(g^2) + smooth).

    The TransUNet Dice term that VM-UNet (``nDiceLoss``) and MSVM-UNet (``DiceCELoss``) train Synapse with; mmseg's
    ``DiceLoss`` pools each image over all classes together instead.

    Args:
        smooth: 1e-5 in both official codes. loss_weight: factor of the loss. loss_name: its key in the losses dict.
    """

    def __init__(self, smooth=1e-5, loss_weight=1.0, loss_name='loss_dice'):
        super().__init__()
        self.smooth = smooth
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def forward(self, pred, target, weight=None, ignore_index=255, **kwargs):
        """pred: (B, C, H, W) logits; target: (B, H, W) labels in 0 .. C - 1 (``ignore_index`` left out)."""
        if pred.dim() != 4 or pred.shape[1] < 2:
            raise ValueError(f'ClassDiceLoss takes (B, C >= 2, H, W) logits, got {tuple(pred.shape)}')
        valid = (target != ignore_index).unsqueeze(1)  # (B, 1, H, W)
        prob = pred.softmax(dim=1) * valid
        classes = torch.arange(pred.shape[1], device=pred.device).view(1, -1, 1, 1)
        truth = ((target.unsqueeze(1) == classes) & valid).to(prob.dtype)  # (B, C, H, W) one-hot
        dims = (0, 2, 3)  # pooled over the batch and the pixels, per class
        dice = (2 * (prob * truth).sum(dims) + self.smooth) / (
            prob.square().sum(dims) + truth.square().sum(dims) + self.smooth)  # (C,)
        return self.loss_weight * (1 - dice).mean()

    @property
    def loss_name(self):
        return self._loss_name


@MODELS.register_module()
class NNUNetDiceLoss(nn.Module):
    """nnU-Net's soft Dice term (``MemoryEfficientSoftDiceLoss`` with softmax, ``do_bg=False``): minus the mean over
    the foreground classes of (2 sum(p g) + smooth) / (sum(p) + sum(g) + smooth), sums per image, or pooled over the
    batch with ``batch_dice`` (nnU-Net's 2D plans); ignored pixels are masked out. Under DDP nnU-Net also pools the
    batch sums over the GPUs; here each GPU pools its own batch.

    Args:
        batch_dice: pool the sums over the batch before the ratio. smooth: nnU-Net's trainers use 1e-5.
        loss_weight: factor of the loss. loss_name: its key in the losses dict.
    """

    def __init__(self, batch_dice=True, smooth=1e-5, loss_weight=1.0, loss_name='loss_dice'):
        super().__init__()
        self.batch_dice = batch_dice
        self.smooth = smooth
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def forward(self, pred, target, weight=None, ignore_index=255, **kwargs):
        """pred: (B, C, H, W) logits; target: (B, H, W) labels in 0 .. C - 1 (``ignore_index`` left out)."""
        if pred.dim() != 4 or pred.shape[1] < 2:
            raise ValueError(f'NNUNetDiceLoss takes (B, C >= 2, H, W) logits, got {tuple(pred.shape)}')
        valid = (target != ignore_index).unsqueeze(1)  # (B, 1, H, W)
        prob = (pred.softmax(dim=1) * valid)[:, 1:]  # (B, C - 1, H, W): foreground
        classes = torch.arange(1, pred.shape[1], device=pred.device).view(1, -1, 1, 1)
        truth = ((target.unsqueeze(1) == classes) & valid).to(prob.dtype)
        dims = (0, 2, 3) if self.batch_dice else (2, 3)
        dice = (2 * (prob * truth).sum(dims) + self.smooth) / (
            prob.sum(dims) + truth.sum(dims) + self.smooth).clamp_min(1e-8)  # (C - 1,) or (B, C - 1)
        return -self.loss_weight * dice.mean()

    @property
    def loss_name(self):
        return self._loss_name
