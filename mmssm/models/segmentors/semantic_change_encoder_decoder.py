"""The siamese encoder-decoder with a second, per-date head: semantic change detection (MambaSCD) and building damage
assessment (MambaBDA)."""
import torch.nn.functional as F
from mmseg.structures import SegDataSample
from mmseg.utils import add_prefix

from mmssm.registry import MODELS

from .siamese_encoder_decoder import SiameseEncoderDecoder


@MODELS.register_module()
class SemanticChangeEncoderDecoder(SiameseEncoderDecoder):
    """:class:`SiameseEncoderDecoder` + ``semantic_head`` (e.g. :class:`mmssm.ChangeMambaSemanticHead`), which decodes
    each of its ``dates`` from the same encoder maps.

    Training: the decode head learns ``gt_sem_seg`` (change or damage map) as in mmseg, the semantic head the
    ``gt_sem_seg_{date}`` maps (losses prefixed ``semantic.``); those maps are padded like ``gt_sem_seg`` (bottom /
    right, 255). Prediction (whole image only, MambaCD's protocol): ``pred_sem_seg`` / ``seg_logits`` of the decode
    head and ``pred_sem_seg_{date}`` / ``seg_logits_{date}`` of the semantic head, all at ``ori_shape``.
    ``_forward`` (tensor mode) returns (decode logits, {date: semantic logits}).
    """

    def __init__(self, semantic_head, **kwargs):
        super().__init__(**kwargs)
        self.semantic_head = MODELS.build(semantic_head)
        mode = (self.test_cfg or {}).get('mode', 'whole')
        if mode != 'whole':
            raise ValueError(f"SemanticChangeEncoderDecoder infers on the whole image: test_cfg mode must be 'whole', "
                             f'got {mode!r}')

    def loss(self, inputs, data_samples):
        features = self.extract_feat(inputs)
        _pad_date_labels(data_samples, self.semantic_head.dates, self.semantic_head.ignore_index)
        losses = self._decode_head_forward_train(features, data_samples)
        losses.update(add_prefix(self.semantic_head.loss(features, data_samples, self.train_cfg), 'semantic'))
        if self.with_auxiliary_head:
            losses.update(self._auxiliary_head_forward_train(features, data_samples))
        return losses

    def predict(self, inputs, data_samples=None):
        if data_samples is not None:
            metas = [sample.metainfo for sample in data_samples]
        else:
            shape = inputs.shape[2:]
            metas = [dict(ori_shape=shape, img_shape=shape, pad_shape=shape, padding_size=[0, 0, 0, 0])] * len(inputs)
        features = self.extract_feat(inputs)
        results = self.postprocess_result(self.decode_head.predict(features, metas, self.test_cfg), data_samples)
        for date, logits in self.semantic_head.predict(features, metas, self.test_cfg).items():
            maps = self.postprocess_result(logits, [SegDataSample(metainfo=meta) for meta in metas])
            for result, semantic in zip(results, maps):
                result.set_data({f'seg_logits_{date}': semantic.seg_logits,
                                 f'pred_sem_seg_{date}': semantic.pred_sem_seg})
        return results

    def _forward(self, inputs, data_samples=None):
        features = self.extract_feat(inputs)
        return self.decode_head.forward(features), self.semantic_head.forward(features)


def _pad_date_labels(data_samples, dates, pad_value):
    """Pad each ``gt_sem_seg_{date}`` at the bottom / right to its sample's ``gt_sem_seg`` size, in place (mmseg's
    data preprocessor pads only ``gt_sem_seg``)."""
    for sample in data_samples:
        height, width = sample.gt_sem_seg.shape
        for date in dates:
            field = f'gt_sem_seg_{date}'
            if field in sample:
                label = sample.get(field)
                if label.shape[0] > height or label.shape[1] > width:
                    raise ValueError(f'{field} {tuple(label.shape)} is larger than gt_sem_seg {(height, width)}')
                data = label.data
                del label.data  # PixelData keeps one shape: replace the field, do not resize it
                label.data = F.pad(data, (0, width - data.shape[-1], 0, height - data.shape[-2]),
                                   value=pad_value)  # (1, h, w) -> (1, H, W)
