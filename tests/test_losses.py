"""The medical U-Nets' losses against their official formulas, written here independently."""
import pytest
import torch

from mmssm.kernels.testing import assert_close
from mmssm.registry import MODELS


def official_transunet_dice(logits, labels, smooth=1e-5):
    """VM-UNet's nDiceLoss / MSVM-UNet's multiclass_dice_loss with softmax: a loop over classes."""
    prob, loss = logits.softmax(dim=1), 0.0
    for c in range(logits.shape[1]):
        p, g = prob[:, c], (labels == c).double()
        loss = loss + 1 - (2 * (p * g).sum() + smooth) / ((p * p).sum() + (g * g).sum() + smooth)
    return loss / logits.shape[1]


def test_class_dice_is_the_transunet_dice_and_ignores_ignored_pixels():
    loss = MODELS.build(dict(type='mmssm.ClassDiceLoss', loss_weight=0.6))
    logits = torch.randn(3, 9, 12, 10, dtype=torch.float64)
    labels = torch.randint(0, 9, (3, 12, 10))
    assert_close(loss(logits, labels), 0.6 * official_transunet_dice(logits, labels), torch.float64, name='dice')
    ignored = labels.clone()
    ignored[:, :4] = 255  # the same as cropping those rows away
    assert_close(loss(logits, ignored), 0.6 * official_transunet_dice(logits[:, :, 4:], labels[:, 4:]),
                 torch.float64, name='dice with ignored pixels')
    mmseg = MODELS.build(dict(type='mmseg.DiceLoss', use_sigmoid=False, eps=1e-5, loss_weight=0.6))
    assert not torch.allclose(mmseg(logits, labels), loss(logits, labels))


def test_binary_dice_is_vm_unets_per_image_dice():
    loss = MODELS.build(dict(type='mmssm.BinaryDiceLoss'))
    logits = torch.randn(4, 1, 9, 7, dtype=torch.float64)
    labels = torch.randint(0, 2, (4, 9, 7))
    prob, truth = logits.sigmoid().flatten(1), labels.flatten(1).double()
    dice = (2 * (prob * truth).sum(1) + 1) / (prob.sum(1) + truth.sum(1) + 1)
    assert_close(loss(logits, labels), 1 - dice.mean(), torch.float64, name='binary dice')


@pytest.mark.parametrize('batch_dice', [True, False])
def test_soft_dice_is_nnunets_soft_dice(batch_dice):
    logits = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    labels = torch.randint(0, 4, (3, 8, 8))
    labels[:, :2] = 255  # nnU-Net: ignored pixels out of every sum (loss_mask), their target set to 0
    mask = (labels != 255)[:, None]
    x = logits.softmax(1)[:, 1:]
    y = torch.zeros_like(logits).scatter_(1, torch.where(labels == 255, 0, labels)[:, None], 1)[:, 1:]
    sums = [(x * y * mask).sum((2, 3)), (x * mask).sum((2, 3)), (y * mask).sum((2, 3))]
    if batch_dice:
        sums = [s.sum(0) for s in sums]
    intersect, sum_pred, sum_gt = sums
    official = -((2 * intersect + 1e-5) / torch.clip(sum_gt + sum_pred + 1e-5, 1e-8)).mean()
    loss = MODELS.build(dict(type='mmssm.SoftDiceLoss', batch_dice=batch_dice))
    assert_close(loss(logits, labels), official, torch.float64, name='Dice')
