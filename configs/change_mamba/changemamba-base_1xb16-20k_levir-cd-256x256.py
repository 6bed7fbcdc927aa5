# MambaBCD-Base (ChangeMamba): a VMamba encoder shared by both dates + MambaCD's change decoder, on LEVIR-CD.
_base_ = '../_base_/changemamba_1xb16-20k_levir-cd-256x256.py'
default_scope = 'mmseg'

checkpoint = 'checkpoints/vssm_base_0229_ckpt_epoch_237.pth'  # the official VMamba ImageNet weights MambaCD starts from (README.md)
model = dict(
    backbone=dict(
        type='mmssm.VMamba',
        arch='base',
        drop_path_rate=0.6,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]))
