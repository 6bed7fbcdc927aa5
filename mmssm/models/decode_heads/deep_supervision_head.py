"""nnU-Net's deep supervision as an mmseg decode head: a 1x1 classifier per decoder scale, losses weighted per scale.

The backbone (e.g. :class:`mmssm.UMamba`) returns its decoder outputs highest resolution first. In training every
scale is classified and scored against the label downsampled to it (nearest, the pixel at the centre of each block
as nnU-Net's order-0 ``resize_segmentation`` takes it); the losses are summed with nnU-Net's weights: 1 / 2^i for
scale i, 0 for the lowest resolution, normalised to sum 1 (``nnUNetTrainer._build_loss``). Prediction classifies the
highest resolution only.
"""
import torch.nn as nn
import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.losses import accuracy

from mmssm.registry import MODELS

# nnU-Net's InitWeights_He(1e-2): Kaiming-normal (a = 0.01, fan in) weights, zero biases
HE_INIT = dict(type='Kaiming', layer=['Conv2d', 'Conv3d'], a=1e-2, mode='fan_in', nonlinearity='leaky_relu',
               distribution='normal', bias=0)


def nnunet_scale_weights(num_scales):
    """nnU-Net's deep-supervision weights: 1 / 2^i, the lowest resolution 0 (when there are several), sum 1."""
    weights = [0.5 ** i for i in range(num_scales)]
    if num_scales > 1:
        weights[-1] = 0.0
    return tuple(w / sum(weights) for w in weights)


@MODELS.register_module()
class DeepSupervisionHead(BaseDecodeHead):
    """One 1x1 conv (with bias) per input scale; nnU-Net's weighted deep-supervision loss.

    Args:
        in_channels: channels of the backbone outputs, highest resolution first.
        channels: must equal ``in_channels[0]`` (mmseg's bookkeeping; the head has no hidden layer).
        num_classes: classes (mmseg's).
        scale_weights: loss weight per scale, highest resolution first; None gives nnU-Net's
            (:func:`nnunet_scale_weights`). Scales of weight 0 are not classified in training.
        spatial_dims: 3 classifies (B, C, D, H, W) maps (official 3D checkpoints; forward only: the loss and
            mmseg's predict are 2D).
        **kwargs: ``loss_decode``, ``ignore_index``, ``align_corners``, ``init_cfg`` (default: nnU-Net's He init) of
            mmseg's BaseDecodeHead (no dropout: nnU-Net has none).
    """

    def __init__(self, in_channels, channels, num_classes, scale_weights=None, spatial_dims=2, **kwargs):
        in_channels = list(in_channels)
        if channels != in_channels[0]:
            raise ValueError(f'DeepSupervisionHead: channels ({channels}) must equal in_channels[0] '
                             f'({in_channels[0]}), the channels of the full-resolution output')
        weights = nnunet_scale_weights(len(in_channels)) if scale_weights is None else tuple(scale_weights)
        if len(weights) != len(in_channels):
            raise ValueError(f'DeepSupervisionHead: {len(weights)} scale_weights for {len(in_channels)} scales')
        kwargs.setdefault('init_cfg', HE_INIT)
        super().__init__(in_channels, channels, num_classes=num_classes, dropout_ratio=0.0,
                         in_index=list(range(len(in_channels))), input_transform='multiple_select', **kwargs)
        del self.conv_seg  # one classifier per scale instead
        self.scale_weights = weights
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]
        self.seg_layers = nn.ModuleList(conv(c, self.out_channels, 1) for c in in_channels)

    @property
    def losses(self):
        return self.loss_decode if isinstance(self.loss_decode, nn.ModuleList) else [self.loss_decode]

    def _transform_inputs(self, inputs):
        inputs = super()._transform_inputs(inputs)
        widths = [x.shape[1] for x in inputs]
        if widths != list(self.in_channels):
            raise ValueError(f'DeepSupervisionHead expects maps of {list(self.in_channels)} channels (highest '
                             f'resolution first), got {widths}')
        return inputs

    def forward(self, inputs):
        """The logits of every scale of weight > 0 (None for the others), highest resolution first."""
        inputs = self._transform_inputs(inputs)
        return [layer(x) if weight > 0 else None
                for layer, x, weight in zip(self.seg_layers, inputs, self.scale_weights)]

    def predict(self, inputs, batch_img_metas, test_cfg):
        """The highest resolution's logits, resized as mmseg's heads do."""
        return self.predict_by_feat(self.seg_layers[0](self._transform_inputs(inputs)[0]), batch_img_metas)

    def loss_by_feat(self, seg_logits, batch_data_samples):
        """Each loss of ``loss_decode`` summed over the scales with the scale weights; ``acc_seg`` at full size."""
        seg_label = self._stack_batch_gt(batch_data_samples)  # (B, 1, H, W)
        if seg_logits[0].shape[-2:] != seg_label.shape[-2:]:
            raise ValueError(f'DeepSupervisionHead: the full-resolution logits are {tuple(seg_logits[0].shape)}, '
                             f'the labels {tuple(seg_label.shape)}: pad the batch to the network input size')
        losses = {}
        for weight, logits in zip(self.scale_weights, seg_logits):
            if weight == 0:
                continue
            label = F.interpolate(seg_label.float(), size=logits.shape[-2:], mode='nearest-exact')
            label = label.long().squeeze(1)  # (B, h, w)
            for loss_decode in self.losses:
                value = weight * loss_decode(logits, label, weight=None, ignore_index=self.ignore_index)
                losses[loss_decode.loss_name] = losses.get(loss_decode.loss_name, 0) + value
        losses['acc_seg'] = accuracy(seg_logits[0], seg_label.squeeze(1), ignore_index=self.ignore_index)
        return losses
