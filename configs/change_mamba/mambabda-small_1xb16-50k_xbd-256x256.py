# MambaBDA-Small (ChangeMamba): a VMamba encoder shared by both dates + damage and building decoders, xBD.
_base_ = '../_base_/mambabda_1xb16-50k_xbd-256x256.py'
default_scope = 'mmseg'

# the official VMamba ImageNet weights MambaCD starts from (README.md)
checkpoint = 'checkpoints/vssm_small_0229_ckpt_epoch_222.pth'
model = dict(
    backbone=dict(
        type='mmssm.VMamba',
        arch='small',
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    semantic_head=dict(in_channels=[96, 192, 384, 768]))
