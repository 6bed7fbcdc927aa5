# UPerNet with a GroupMamba-T (tiny) backbone on ADE20K, 512x512 crops, 160k iterations.
_base_ = '../_base_/upernet_swin-recipe_8xb2-160k_ade20k-512x512.py'
default_scope = 'mmseg'

checkpoint = 'checkpoints/groupmamba-tiny_in1k.pth'  # tools/model_converters/groupmamba2mmssm.py (README.md)
model = dict(
    backbone=dict(
        type='mmssm.GroupMamba',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    decode_head=dict(in_channels=[64, 128, 348, 448]),
    auxiliary_head=dict(in_channels=348))
