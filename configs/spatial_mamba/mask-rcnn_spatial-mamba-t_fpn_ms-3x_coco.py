# Mask R-CNN + FPN with a Spatial-Mamba-T backbone on COCO, 3x schedule with multi-scale + crop training.
_base_ = '../_base_/mask-rcnn_fpn_swin-recipe_ms-crop-3x_coco.py'
default_scope = 'mmdet'

checkpoint = 'checkpoints/spatial-mamba-tiny_in1k.pth'  # tools/model_converters/spatialmamba2mmssm.py (README.md)
model = dict(
    backbone=dict(
        type='mmssm.SpatialMamba',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 256, 512]))
