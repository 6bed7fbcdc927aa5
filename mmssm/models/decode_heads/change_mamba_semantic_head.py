"""MambaCD's SemanticDecoder (ChangeMamba, Chen et al., IEEE TGRS 2024) as an mmseg decode head, and the converters
of official MambaSCD (semantic change, SECOND) and MambaBDA (building damage, xBD) checkpoints.

A semantic decoder sees the four encoder stages of ONE date: the deepest map goes through a 1x1 conv to 128 channels
and a VSS block; every shallower stage adds its lateral (1x1 conv + BN + ReLU) to the upsampled deeper map, then a
residual block and a VSS block; a last residual block ends it. The head holds one decoder per date it decodes and ONE
classifier ``conv_seg`` shared by them (the official ``aux_clf``):

- MambaSCD = :class:`ChangeMambaHead` (``decoder_bcd`` + ``main_clf_cd``, binary change) + this head with
  ``dates=('t1', 't2')`` (``decoder_T1``, ``decoder_T2`` + ``aux_clf``, land cover of both dates, 7 classes).
- MambaBDA = :class:`ChangeMambaHead` (``decoder_damage`` + ``main_clf``, 5 damage classes) + this head with
  ``dates=('t1',)`` (``decoder_building`` + ``aux_clf``, building localisation on the pre-event image).

:class:`mmssm.models.segmentors.SemanticChangeEncoderDecoder` runs both heads; this one reads the labels
``gt_sem_seg_{date}`` of the data samples and predicts ``pred_sem_seg_{date}``.
"""
import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmseg.models.backbones.resnet import BasicBlock
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.losses import accuracy
from mmseg.models.utils import resize

from mmssm.registry import MODELS

from ..backbones.vmamba import BLOCK_PARTS
from ..layers.vss_block import VSSBlock
from .change_mamba_head import (MAMBACD_BLOCK, SMOOTH_PARTS, ProjectedVSSBlock, change_decoder_rules,
                                convert_official)

DATES = ('t1', 't2')  # date 1 first along the batch of the encoder maps, then date 2


class SemanticDecoder(nn.Module):
    """Top-down decoder of one date: four maps (B, C_i, H_i, W_i) -> (B, channels, H_0, W_0)."""

    def __init__(self, in_channels, channels, block_cfg, drop_path, with_cp, norm_cfg, act_cfg):
        super().__init__()
        self.top = ProjectedVSSBlock(in_channels[3], channels, block_cfg, drop_path, with_cp)
        self.laterals = nn.ModuleList(
            ConvModule(c, channels, 1, bias=True, norm_cfg=norm_cfg, act_cfg=act_cfg) for c in in_channels[:3])
        self.smooths = nn.ModuleList(BasicBlock(channels, channels, norm_cfg=norm_cfg) for _ in range(3))
        self.blocks = nn.ModuleList(
            VSSBlock(channels, drop_path=drop_path, with_cp=with_cp, **block_cfg) for _ in range(3))
        self.out_smooth = BasicBlock(channels, channels, norm_cfg=norm_cfg)

    def forward(self, maps):
        x = self.top(maps[3])
        for stage in (2, 1, 0):  # upsample the deeper map, add the lateral, residual block, VSS block
            lateral = self.laterals[stage](maps[stage])
            x = F.interpolate(x, size=lateral.shape[2:], mode='bilinear', align_corners=False) + lateral
            x = self.blocks[stage](self.smooths[stage](x))
        return self.out_smooth(x)


@MODELS.register_module()
class ChangeMambaSemanticHead(BaseDecodeHead):
    """Per-date semantic maps of MambaSCD / MambaBDA: one :class:`SemanticDecoder` per date, one shared classifier.

    Args:
        in_channels: the encoder's channels per stage (four stages).
        channels: width of the decoders (128 in MambaCD).
        dates: the dates decoded, ``('t1', 't2')`` (MambaSCD) or ``('t1',)`` (MambaBDA's pre-event buildings).
        block_cfg: SS2D / MLP settings of the VSS blocks (default :data:`MAMBACD_BLOCK`, the encoder's).
        drop_path_rate: stochastic depth of every VSS block (0.1 in MambaCD).
        with_cp: gradient checkpointing of the VSS blocks.
        loss_similarity: MambaSCD's similarity loss between the two dates' probabilities (e.g.
            ``dict(type='mmssm.UnchangedSimilarityLoss', loss_weight=0.25)``), on the pixels whose date-1 label is
            ``ignore_index`` (unchanged: the SECOND training pipeline maps their land-cover label 0 to 255, as the
            official training does); needs both dates.
        Others as mmseg's ``BaseDecodeHead``: ``loss_decode`` applies to every date (losses ``<name>_<date>``),
        ``dropout_ratio`` defaults to 0 and ``norm_cfg`` to BN.

    Forward: four maps (2B, C_i, H_i, W_i), date 1 then date 2 along the batch -> {date: logits
    (B, num_classes, H_0, W_0)}.
    """

    def __init__(self, in_channels=(96, 192, 384, 768), channels=128, dates=DATES, block_cfg=None,
                 drop_path_rate=0.1, with_cp=False, num_classes=7, dropout_ratio=0.0, norm_cfg=dict(type='BN'),
                 loss_similarity=None, **kwargs):
        if len(in_channels) != 4:
            raise ValueError(f'ChangeMambaSemanticHead takes four encoder stages, got in_channels={in_channels}')
        dates = tuple(dates)
        if not dates or len(set(dates)) != len(dates) or not set(dates) <= set(DATES):
            raise ValueError(f'ChangeMambaSemanticHead dates must be distinct dates of {DATES}, got {dates}')
        if loss_similarity is not None and dates != DATES:
            raise ValueError(f'loss_similarity compares both dates: dates must be {DATES}, got {dates}')
        super().__init__(list(in_channels), channels, num_classes=num_classes, dropout_ratio=dropout_ratio,
                         norm_cfg=norm_cfg, input_transform='multiple_select', in_index=(0, 1, 2, 3), **kwargs)
        self.dates = dates
        block_cfg = dict(MAMBACD_BLOCK, **(block_cfg or {}))
        self.decoders = nn.ModuleList(
            SemanticDecoder(in_channels, channels, block_cfg, drop_path_rate, with_cp, self.norm_cfg, self.act_cfg)
            for _ in dates)
        self.loss_similarity = MODELS.build(loss_similarity) if loss_similarity is not None else None

    def forward(self, inputs):
        maps = self._transform_inputs(inputs)
        if any(m.shape[0] % 2 for m in maps):
            raise ValueError('ChangeMambaSemanticHead expects both dates stacked along the batch (2B, C, H, W), '
                             f'got batch sizes {[m.shape[0] for m in maps]}')
        per_date = list(zip(*(m.chunk(2) for m in maps)))  # [date 1 maps, date 2 maps], each four (B, C_i, H_i, W_i)
        return {date: self.cls_seg(decoder(per_date[DATES.index(date)]))
                for date, decoder in zip(self.dates, self.decoders)}

    def loss(self, inputs, batch_data_samples, train_cfg):
        return self.loss_by_feat(self.forward(inputs), batch_data_samples)

    def predict(self, inputs, batch_img_metas, test_cfg):
        """{date: logits (B, num_classes, H, W) at the padded input size}."""
        return {date: self.predict_by_feat(logits, batch_img_metas) for date, logits in self.forward(inputs).items()}

    def loss_by_feat(self, seg_logits, batch_data_samples):
        losses, resized, labels = {}, {}, {}
        loss_decode = self.loss_decode if isinstance(self.loss_decode, nn.ModuleList) else [self.loss_decode]
        for date, logits in seg_logits.items():
            labels[date] = date_labels(batch_data_samples, date)  # (B, H, W)
            resized[date] = resize(logits, size=labels[date].shape[-2:], mode='bilinear',
                                   align_corners=self.align_corners)
            for loss in loss_decode:
                losses[f'{loss.loss_name}_{date}'] = loss(resized[date], labels[date], ignore_index=self.ignore_index)
            losses[f'acc_seg_{date}'] = accuracy(resized[date], labels[date], ignore_index=self.ignore_index)
        if self.loss_similarity is not None:
            unchanged = labels['t1'] == self.ignore_index  # (B, H, W)
            losses[self.loss_similarity.loss_name] = self.loss_similarity(resized['t1'], resized['t2'], unchanged)
        return losses


def date_labels(data_samples, date):
    """The ``gt_sem_seg_{date}`` labels of a batch, (B, H, W) long; KeyError naming the fields a sample has."""
    field = f'gt_sem_seg_{date}'
    missing = [i for i, sample in enumerate(data_samples) if field not in sample]
    if missing:
        raise KeyError(f'data samples {missing} have no {field} (fields: {sorted(data_samples[missing[0]].keys())}); '
                       'load it with mmssm.LoadIndexLabel and pack it with mmssm.PackMultiLabelSegInputs')
    stacked = torch.stack([sample.get(field).data for sample in data_samples])  # B x (1, H, W) -> (B, 1, H, W)
    return stacked.squeeze(1).long()  # (B, 1, H, W) -> (B, H, W)


# ---------------------------------------------------------------------------------------------------------------
# official MambaSCD / MambaBDA checkpoints -> ours


def semantic_decoder_rules(decoder, target):
    """Renaming rules of one official SemanticDecoder under ``decoder`` (e.g. ``'decoder_T1'``) -> a
    :class:`SemanticDecoder` under ``target`` (e.g. ``'semantic_head.decoders.0.'``)."""
    d, t = re.escape(decoder), target
    return [
        # st_block_4_semantic = Sequential(Conv2d, Identity, VSSBlock, Identity); st_block_{1,2,3}_semantic =
        # Sequential(Identity, VSSBlock, Identity) (channel-first VSS blocks)
        (rf'^{d}\.st_block_4_semantic\.0\.(.*)$', lambda m: f'{t}top.proj.{m[1]}'),
        (rf'^{d}\.st_block_4_semantic\.2\.(norm|op|norm2|mlp)\.(.*)$',
         lambda m: f'{t}top.block.{BLOCK_PARTS[m[1]]}.{m[2]}'),
        (rf'^{d}\.st_block_([123])_semantic\.1\.(norm|op|norm2|mlp)\.(.*)$',
         lambda m: f'{t}blocks.{int(m[1]) - 1}.{BLOCK_PARTS[m[2]]}.{m[3]}'),
        (rf'^{d}\.trans_layer_([123])\.0\.(.*)$', lambda m: f'{t}laterals.{int(m[1]) - 1}.conv.{m[2]}'),
        (rf'^{d}\.trans_layer_([123])\.1\.(.*)$', lambda m: f'{t}laterals.{int(m[1]) - 1}.bn.{m[2]}'),
        (rf'^{d}\.smooth_layer_([123])_semantic\.(conv1|bn1|conv2|bn2)\.(.*)$',
         lambda m: f'{t}smooths.{int(m[1]) - 1}.{SMOOTH_PARTS[m[2]]}.{m[3]}'),
        (rf'^{d}\.smooth_layer_0_semantic\.(conv1|bn1|conv2|bn2)\.(.*)$',
         lambda m: f'{t}out_smooth.{SMOOTH_PARTS[m[1]]}.{m[2]}'),
    ]


SEMANTIC_CLASSIFIER = [(r'^aux_clf\.(.*)$', lambda m: f'semantic_head.conv_seg.{m[1]}')]


def convert_mambascd(official_state_dict):
    """Official MambaSCD weights (STMambaSCD: ``encoder.*``, ``decoder_bcd.*``, ``decoder_T1.*``, ``decoder_T2.*``,
    ``main_clf_cd.*``, ``aux_clf.*``) -> a :class:`SemanticChangeEncoderDecoder` state dict: ``backbone.*``,
    ``decode_head.*`` (:class:`ChangeMambaHead`) and ``semantic_head.*`` (this head, dates t1 and t2). Unknown keys
    are an error."""
    rules = (change_decoder_rules('decoder_bcd', 'main_clf_cd') + semantic_decoder_rules('decoder_T1',
             'semantic_head.decoders.0.') + semantic_decoder_rules('decoder_T2', 'semantic_head.decoders.1.')
             + SEMANTIC_CLASSIFIER)
    return convert_official(official_state_dict, rules, ('convert_mambascd', 'MambaSCD'))


def convert_mambabda(official_state_dict):
    """Official MambaBDA weights (STMambaBDA: ``encoder.*``, ``decoder_damage.*``, ``decoder_building.*``,
    ``main_clf.*``, ``aux_clf.*``) -> a :class:`SemanticChangeEncoderDecoder` state dict: ``backbone.*``,
    ``decode_head.*`` (:class:`ChangeMambaHead`, damage) and ``semantic_head.*`` (this head, date t1: buildings).
    Unknown keys are an error."""
    rules = (change_decoder_rules('decoder_damage', 'main_clf')
             + semantic_decoder_rules('decoder_building', 'semantic_head.decoders.0.') + SEMANTIC_CLASSIFIER)
    return convert_official(official_state_dict, rules, ('convert_mambabda', 'MambaBDA'))
