"""ChangeMamba (MambaCD, Chen et al., IEEE TGRS 2024) binary change decoder; official MambaBCD checkpoints convert here.

The decoder sees each encoder stage of both dates and models their relation three ways, each a 1x1 conv to 128
channels followed by a VSS block: ``parallel`` (channel concat), ``cross`` (date columns interleaved, (B, C, H, 2W))
and ``sequential`` (the dates side by side, (B, C, H, 2W)). The five maps that come out (parallel, cross's even and
odd columns, sequential's halves) are fused by a 1x1 conv + BN + ReLU; a top-down path adds each deeper stage,
upsampled, and smooths with a residual block. ``conv_seg`` classifies (the official ``main_clf``).

The siamese segmentor (:class:`mmssm.models.segmentors.SiameseEncoderDecoder`) runs the encoder once over both dates
stacked along the batch, so every input map here is (2B, C_i, H_i, W_i): date 1 first, then date 2.
"""

import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmseg.models.backbones.resnet import BasicBlock
from mmseg.models.decode_heads.decode_head import BaseDecodeHead

from mmssm.registry import MODELS

from ..backbones.vmamba import BLOCK_PARTS, convert_vmamba, linear_shaped
from ..utils.checkpoint import rename_by_rules, rename_keys
from ..layers.vss_block import VSSBlock

# the VSS blocks of the official decoder: VMamba v2 blocks of 128 channels with the encoder's SS2D settings
MAMBACD_BLOCK = dict(d_state=1, ssm_ratio=2.0, dt_rank='auto', conv_bias=False, gated=False, mlp_ratio=4.0)
RELATIONS = ('parallel', 'cross', 'sequential')  # the official st_block_{stage}1, 2, 3


class ProjectedVSSBlock(nn.Module):
    """1x1 conv to ``channels``, then a VSS block."""

    def __init__(self, in_channels, channels, block_cfg, drop_path, with_cp):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, channels, kernel_size=1)
        self.block = VSSBlock(channels, drop_path=drop_path, with_cp=with_cp, **block_cfg)

    def forward(self, x):
        return self.block(self.proj(x))


class SpatioTemporalFusion(nn.Module):
    """The three date relations of one encoder stage, fused to one (B, channels, H, W) map."""

    def __init__(self, in_channels, channels, block_cfg, drop_path, with_cp, norm_cfg, act_cfg):
        super().__init__()
        self.parallel = ProjectedVSSBlock(2 * in_channels, channels, block_cfg, drop_path, with_cp)
        self.cross = ProjectedVSSBlock(in_channels, channels, block_cfg, drop_path, with_cp)
        self.sequential = ProjectedVSSBlock(in_channels, channels, block_cfg, drop_path, with_cp)
        self.fuse = ConvModule(5 * channels, channels, 1, bias=True, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, pre, post):
        width = pre.shape[-1]
        parallel = self.parallel(torch.cat([pre, post], dim=1))
        cross = self.cross(torch.stack([pre, post], dim=-1).flatten(-2))  # (B, C, H, 2W): date 1 at even columns
        sequential = self.sequential(torch.cat([pre, post], dim=-1))  # (B, C, H, 2W): date 1 on the left
        return self.fuse(torch.cat([parallel, cross[..., 0::2], cross[..., 1::2], sequential[..., :width],
                                    sequential[..., width:]], dim=1))


@MODELS.register_module()
class ChangeMambaHead(BaseDecodeHead):
    """MambaCD's ChangeDecoder as an mmseg decode head.

    Args:
        in_channels: the encoder's channels per stage (four stages).
        channels: width of the decoder (128 in MambaCD).
        block_cfg: SS2D / MLP settings of the decoder's VSS blocks (MambaCD: the encoder's, :data:`MAMBACD_BLOCK`).
        drop_path_rate: stochastic depth of every decoder block (0.1 in MambaCD, the same for all).
        with_cp: gradient checkpointing of the VSS blocks.
        Others as mmseg's ``BaseDecodeHead``; ``dropout_ratio`` defaults to 0 (MambaCD's classifier has none) and
        ``norm_cfg`` to BN.

    Forward: four maps (2B, C_i, H_i, W_i), date 1 then date 2 along the batch -> logits (B, num_classes, H_0, W_0).
    """

    def __init__(self, in_channels=(96, 192, 384, 768), channels=128, block_cfg=None, drop_path_rate=0.1,
                 with_cp=False, num_classes=2, dropout_ratio=0.0, norm_cfg=dict(type='BN'), **kwargs):
        if len(in_channels) != 4:
            raise ValueError(f'ChangeMambaHead takes four encoder stages, got in_channels={in_channels}')
        super().__init__(list(in_channels), channels, num_classes=num_classes, dropout_ratio=dropout_ratio,
                         norm_cfg=norm_cfg, input_transform='multiple_select', in_index=(0, 1, 2, 3), **kwargs)
        block_cfg = dict(MAMBACD_BLOCK, **(block_cfg or {}))
        self.fusions = nn.ModuleList(
            SpatioTemporalFusion(c, channels, block_cfg, drop_path_rate, with_cp, self.norm_cfg, self.act_cfg)
            for c in in_channels)
        self.smooths = nn.ModuleList(BasicBlock(channels, channels, norm_cfg=self.norm_cfg) for _ in range(3))

    def forward(self, inputs):
        maps = self._transform_inputs(inputs)
        if any(m.shape[0] % 2 for m in maps):
            raise ValueError('ChangeMambaHead expects both dates stacked along the batch (2B, C, H, W), got batch '
                             f'sizes {[m.shape[0] for m in maps]}')
        fused = [fusion(*m.chunk(2)) for fusion, m in zip(self.fusions, maps)]  # (B, channels, H_i, W_i)
        x = fused[3]
        for stage in (2, 1, 0):  # top-down: upsample the deeper map, add, smooth
            upsampled = F.interpolate(x, size=fused[stage].shape[2:], mode='bilinear', align_corners=False)
            x = self.smooths[stage](upsampled + fused[stage])
        return self.cls_seg(x)


# ---------------------------------------------------------------------------------------------------------------
# official MambaBCD checkpoint -> ours

RELATION_INDEX = {'1': 'parallel', '2': 'cross', '3': 'sequential'}
SMOOTH_PARTS = {'conv1': 'conv1', 'bn1': 'bn1', 'conv2': 'conv2', 'bn2': 'bn2'}


def change_decoder_rules(decoder, classifier, target='decode_head.'):
    """Renaming rules (see ``rename_by_rules``) of one official ChangeDecoder under ``decoder`` (e.g. ``'decoder'``)
    and its classifier ``classifier`` (e.g. ``'main_clf'``) -> a :class:`ChangeMambaHead` under ``target``."""
    d, t = re.escape(decoder), target
    return [
        # st_block_{stage}{relation} = Sequential(Conv2d, Permute or Identity, VSSBlock, Permute or Identity)
        (rf'^{d}\.st_block_(\d)([123])\.0\.(.*)$',
         lambda m: f'{t}fusions.{int(m[1]) - 1}.{RELATION_INDEX[m[2]]}.proj.{m[3]}'),
        (rf'^{d}\.st_block_(\d)([123])\.2\.(norm|op|norm2|mlp)\.(.*)$',
         lambda m: f'{t}fusions.{int(m[1]) - 1}.{RELATION_INDEX[m[2]]}.block.{BLOCK_PARTS[m[3]]}.{m[4]}'),
        (rf'^{d}\.fuse_layer_(\d)\.0\.(.*)$', lambda m: f'{t}fusions.{int(m[1]) - 1}.fuse.conv.{m[2]}'),
        (rf'^{d}\.fuse_layer_(\d)\.1\.(.*)$', lambda m: f'{t}fusions.{int(m[1]) - 1}.fuse.bn.{m[2]}'),
        (rf'^{d}\.smooth_layer_(\d)\.(conv1|bn1|conv2|bn2)\.(.*)$',
         lambda m: f'{t}smooths.{int(m[1]) - 1}.{SMOOTH_PARTS[m[2]]}.{m[3]}'),
        (rf'^{re.escape(classifier)}\.(.*)$', lambda m: f'{t}conv_seg.{m[1]}'),
    ]


def convert_official(official_state_dict, rules, what):
    """Official MambaCD weights (a bare state dict as the official training scripts save it, or under ``model``) ->
    a segmentor state dict: ``encoder.*`` -> ``backbone.*`` (:class:`mmssm.VMamba`), every other key by ``rules``.
    ``what``: (converter name, official model name) for the error listing keys that no rule knows."""
    state_dict = official_state_dict.get('model', official_state_dict)
    encoder = {k[len('encoder.'):]: v for k, v in state_dict.items() if k.startswith('encoder.')}
    decoders = {k: v for k, v in state_dict.items() if not k.startswith('encoder.')}
    converted = rename_keys(decoders, lambda key: rename_by_rules(key, rules), what)
    return {**convert_vmamba(encoder), **linear_shaped(converted)}  # backbone.* (no classifier), decoders


def convert_changemamba(official_state_dict):
    """Official MambaBCD weights (``encoder.*``, ``decoder.*``, ``main_clf.*``; a bare state dict as the official
    training script saves it, or under ``model``) -> a :class:`SiameseEncoderDecoder` state dict (``backbone.*``
    for :class:`mmssm.VMamba`, ``decode_head.*`` for :class:`ChangeMambaHead`). Unknown keys are an error."""
    return convert_official(official_state_dict, change_decoder_rules('decoder', 'main_clf'),
                            ('convert_changemamba', 'MambaBCD'))
