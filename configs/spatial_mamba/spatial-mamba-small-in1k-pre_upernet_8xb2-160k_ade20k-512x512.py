# UPerNet with a Spatial-Mamba-S (small) backbone on ADE20K, 512x512 crops, 160k iterations.
_base_ = '../_base_/upernet_swin-recipe_8xb2-160k_ade20k-512x512.py'
default_scope = 'mmseg'

checkpoint = 'checkpoints/spatial-mamba-small_in1k.pth'  # tools/model_converters/spatialmamba2mmssm.py (README.md)
model = dict(
    backbone=dict(
        type='mmssm.SpatialMamba',
        arch='small',
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
