"""A siamese mmseg EncoderDecoder for change detection: one encoder shared by two co-registered images."""
import torch
from mmseg.models.segmentors import EncoderDecoder

from mmssm.registry import MODELS


@MODELS.register_module()
class SiameseEncoderDecoder(EncoderDecoder):
    """mmseg's EncoderDecoder on image pairs stacked along channels, (B, 2 * C, H, W): date 1, then date 2.

    The backbone (and neck) runs once over both dates stacked along the batch, (2B, C, H, W), so every feature map
    reaching the decode head is (2B, C_i, H_i, W_i) with date 1 first; the head relates the two halves (e.g.
    :class:`mmssm.models.decode_heads.ChangeMambaHead`). Training, whole / sliding-window inference and the
    data preprocessor (6 means / stds) are mmseg's.
    """

    def extract_feat(self, inputs):
        if inputs.dim() != 4 or inputs.shape[1] % 2:
            raise ValueError('SiameseEncoderDecoder expects image pairs stacked along channels (B, 2 * C, H, W), '
                             f'got {tuple(inputs.shape)}')
        pre, post = inputs.chunk(2, dim=1)
        features = self.backbone(torch.cat([pre, post]))  # (2B, C, H, W) in, maps of (2B, C_i, H_i, W_i) out
        return self.neck(features) if self.with_neck else features
