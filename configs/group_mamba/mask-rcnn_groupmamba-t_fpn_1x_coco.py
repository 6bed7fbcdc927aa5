# Mask R-CNN + FPN with a GroupMamba-T backbone on COCO, 1x schedule.
_base_ = '../_base_/mask-rcnn_fpn_swin-recipe_1x_coco.py'
default_scope = 'mmdet'

checkpoint = 'checkpoints/groupmamba-tiny_in1k.pth'  # tools/model_converters/groupmamba2mmssm.py (README.md)
model = dict(
    backbone=dict(
        type='mmssm.GroupMamba',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 348, 448]))
