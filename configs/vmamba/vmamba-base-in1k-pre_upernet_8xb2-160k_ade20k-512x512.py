# UPerNet with a VMamba-B (base) backbone on ADE20K, 512x512 crops, 160k iterations.
_base_ = '../_base_/upernet_swin-recipe_8xb2-160k_ade20k-512x512.py'
default_scope = 'mmseg'

checkpoint = 'checkpoints/vmamba-base_in1k.pth'  # converted with tools/model_converters/vmamba2mmssm.py (README.md)
model = dict(
    backbone=dict(
        type='mmssm.VMamba',
        arch='base',
        drop_path_rate=0.6,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
