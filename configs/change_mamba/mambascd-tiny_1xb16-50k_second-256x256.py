# MambaSCD-Tiny (ChangeMamba): a VMamba encoder shared by both dates + change and land-cover decoders, SECOND.
_base_ = '../_base_/mambascd_1xb16-50k_second-256x256.py'
default_scope = 'mmseg'

# the official VMamba ImageNet weights MambaCD starts from (README.md)
checkpoint = 'checkpoints/vssm1_tiny_0229flex.pth'
model = dict(
    backbone=dict(
        type='mmssm.VMamba',
        arch='tiny-s2l4',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    semantic_head=dict(in_channels=[96, 192, 384, 768]))
