# MambaSCD-Base (ChangeMamba): a VMamba encoder shared by both dates + change and land-cover decoders, SECOND.
_base_ = '../_base_/mambascd_1xb16-50k_second-256x256.py'
default_scope = 'mmseg'

# the official VMamba ImageNet weights MambaCD starts from (README.md)
checkpoint = 'checkpoints/vssm_base_0229_ckpt_epoch_237.pth'
model = dict(
    backbone=dict(
        type='mmssm.VMamba',
        arch='base',
        drop_path_rate=0.6,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    semantic_head=dict(in_channels=[128, 256, 512, 1024]))
