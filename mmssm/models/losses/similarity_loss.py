"""MambaSCD's similarity loss: the two dates' land-cover probabilities should agree where nothing changed."""
import torch.nn as nn
import torch.nn.functional as F

from mmssm.registry import MODELS


@MODELS.register_module()
class UnchangedSimilarityLoss(nn.Module):
    """Mean squared difference of softmax(logits_1) and softmax(logits_2), both zeroed outside ``mask``; the mean
    runs over ALL B x K x H x W elements, masked ones included (as ``train_MambaSCD.py`` computes it).

    Args:
        loss_weight: factor of the loss (MambaSCD: 0.5 x 0.5 = 0.25). loss_name: its key in the losses dict.
    """

    def __init__(self, loss_weight=1.0, loss_name='loss_similarity'):
        super().__init__()
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def forward(self, logits_1, logits_2, mask):
        """logits_1, logits_2: (B, K, H, W); mask: (B, H, W), true on the compared (unchanged) pixels."""
        if logits_1.shape != logits_2.shape or logits_1.dim() != 4 or mask.shape != logits_1[:, 0].shape:
            raise ValueError(f'UnchangedSimilarityLoss takes two (B, K, H, W) logits and a (B, H, W) mask, got '
                             f'{tuple(logits_1.shape)}, {tuple(logits_2.shape)} and {tuple(mask.shape)}')
        weight = mask[:, None].to(logits_1.dtype)  # (B, H, W) -> (B, 1, H, W)
        return self.loss_weight * F.mse_loss(logits_1.softmax(1) * weight, logits_2.softmax(1) * weight)

    @property
    def loss_name(self):
        return self._loss_name
