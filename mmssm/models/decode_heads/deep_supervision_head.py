"""nnU-Net-style deep supervision for mmseg: one 1x1 classifier per decoder scale, losses weighted per scale.

For U-Net backbones that return their decoder maps finest first (Swin-UMamba, Swin-UMamba†). ``conv_seg`` classifies
the finest map, the only one used for prediction; ``aux_segs`` the coarser ones, used in training only.
"""
import torch.nn as nn
import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.losses import accuracy

from mmssm.registry import MODELS


def nnunet_deep_supervision_weights(num_scales):
    """nnU-Net's loss weights, finest first: 1 / 2**i, the coarsest set to 0, normalised to sum 1."""
    if num_scales < 2:
        raise ValueError(f'deep supervision needs at least two scales, got {num_scales}')
    weights = [1 / 2 ** i for i in range(num_scales - 1)] + [0.0]
    return tuple(w / sum(weights) for w in weights)


@MODELS.register_module()
class DeepSupervisionHead(BaseDecodeHead):
    """A 1x1 conv (with bias) per decoder map; in training every scale is scored against the labels brought to its
    size by nearest-neighbour sampling at pixel centres (``'nearest-exact'``, nnU-Net's order-0 resize of the
    targets), each of ``loss_decode`` weighted per scale by :func:`nnunet_deep_supervision_weights` (the coarsest
    scale gets 0, so its classifier takes no gradient, as in nnU-Net).

    Args:
        in_channels: channels of the backbone's maps, finest first (e.g. ``SwinUMamba(...).out_channels``).
        kwargs: :class:`BaseDecodeHead`'s (``num_classes``, ``loss_decode``, ``dropout_ratio``, ...); ``channels``,
            ``in_index`` and ``input_transform`` follow from ``in_channels``.
    """

    def __init__(self, in_channels, **kwargs):
        in_channels = list(in_channels)
        fixed = {'channels', 'in_index', 'input_transform'} & set(kwargs)
        if fixed:
            raise ValueError(f'DeepSupervisionHead sets {sorted(fixed)} from in_channels; leave them out')
        super().__init__(in_channels, in_channels[0], in_index=list(range(len(in_channels))),
                         input_transform='multiple_select', **kwargs)
        self.aux_segs = nn.ModuleList(nn.Conv2d(c, self.out_channels, 1) for c in in_channels[1:])
        self.scale_weights = nnunet_deep_supervision_weights(len(in_channels))

    def _check(self, inputs):
        widths = [x.shape[1] for x in inputs]
        if widths != self.in_channels:
            raise ValueError(f'DeepSupervisionHead expects maps of {self.in_channels} channels (finest first), '
                             f'got {widths}')

    def forward(self, inputs):
        """The finest map's logits (batch, num_classes, H, W): the prediction."""
        self._check(inputs)
        return self.cls_seg(inputs[0])

    def forward_all_scales(self, inputs):
        """Logits of every map, finest first: what the loss sees."""
        self._check(inputs)
        return [conv(x if self.dropout is None else self.dropout(x))
                for conv, x in zip([self.conv_seg, *self.aux_segs], inputs)]

    def loss(self, inputs, batch_data_samples, train_cfg):
        return self.loss_by_feat(self.forward_all_scales(inputs), batch_data_samples)

    def loss_by_feat(self, seg_logits, batch_data_samples):
        """seg_logits: per-scale logits, finest first; the labels must have the finest scale's size."""
        seg_label = self._stack_batch_gt(batch_data_samples)  # (batch, 1, H, W)
        if seg_label.shape[2:] != seg_logits[0].shape[2:]:
            raise ValueError(f'DeepSupervisionHead: labels {tuple(seg_label.shape[2:])} differ from the finest logits '
                             f'{tuple(seg_logits[0].shape[2:])}')
        losses_decode = self.loss_decode if isinstance(self.loss_decode, nn.ModuleList) else [self.loss_decode]
        losses = {}
        for weight, logits in zip(self.scale_weights, seg_logits):
            if weight == 0:
                continue
            label = F.interpolate(seg_label.float(), size=logits.shape[2:], mode='nearest-exact').long()
            for loss_decode in losses_decode:
                value = weight * loss_decode(logits, label.squeeze(1), ignore_index=self.ignore_index)
                losses[loss_decode.loss_name] = losses.get(loss_decode.loss_name, 0) + value
        losses['acc_seg'] = accuracy(seg_logits[0], seg_label.squeeze(1), ignore_index=self.ignore_index)
        return losses
