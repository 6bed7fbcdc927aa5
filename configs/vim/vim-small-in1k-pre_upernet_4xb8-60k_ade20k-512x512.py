# UPerNet with a Vim-S backbone on ADE20K, the official recipe (upernet_vim_small_24_512_slide_60k.py): as Vim-Ti,
# with 2D RoPE on the block inputs and on the residual stream, and an fp32 residual stream.
_base_ = './vim-tiny-in1k-pre_upernet_4xb8-60k_ade20k-512x512.py'

checkpoint = 'checkpoints/vim-small_in1k.pth'  # converted with tools/model_converters/vim2mmssm.py (README.md)
model = dict(
    backbone=dict(
        arch='small',
        use_rope=True,
        rope_residual=True,
        residual_in_fp32=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    decode_head=dict(in_channels=[384, 384, 384, 384], channels=384),
    auxiliary_head=dict(in_channels=384))
