# UPerNet with a Vim-Ti backbone on ADE20K, 512x512 crops, the official schedule of hustvl/Vim
# (seg/configs/vim/upernet/upernet_vim_tiny_24_512_slide_60k.py): 4 GPUs x 8 images, 60k iterations, AdamW lr 1e-4
# wd 0.05 with layer-wise lr decay 0.92 over the 24 blocks, 1500-iteration linear warmup from 1e-6 then poly (power 1)
# to 0, sliding-window test (stride 341), fp32. Blocks 5 / 11 / 17 / 23 -> a 4-scale pyramid; no class token.
# The official constructor matched `backbone.blocks` and so never decayed Vim's `layers`; here the decay is applied.
_base_ = '../_base_/upernet_swin-recipe_8xb2-160k_ade20k-512x512.py'
default_scope = 'mmseg'

checkpoint = 'checkpoints/vim-tiny_in1k.pth'  # converted with tools/model_converters/vim2mmssm.py (README.md)
crop_size = (512, 512)
model = dict(
    backbone=dict(
        type='mmssm.Vim',
        arch='tiny',
        img_size=512,
        out_type='featmap',  # blocks 5, 11, 17, 23 (the ends of the depth's quarters, the default)
        with_cls_token=False,
        residual_in_fp32=False,
        drop_path_rate=0.1,
        pyramid_norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    decode_head=dict(in_channels=[192, 192, 192, 192], channels=192),
    auxiliary_head=dict(in_channels=192),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

train_dataloader = dict(batch_size=8)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='mmssm.LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.92, flat_decay_mult=0.0, custom_keys={'pos_embed': dict(decay_mult=0.0)}))
max_iters = 60000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=1000)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=max_iters),
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=1000, max_keep_ckpts=4, save_best='mIoU'))
