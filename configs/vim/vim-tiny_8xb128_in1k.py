# Vim-Ti on ImageNet-1k, 224x224, the official DeiT recipe of hustvl/Vim (vim/scripts/pt-vim-t.sh): 8 GPUs x 128,
# AdamW lr 1e-3 (5e-4 per 512 images) wd 0.1 (none on 1-D params, pos_embed, cls_token), no drop path, 300 epochs
# of 5 warmup epochs from 1e-6 then cosine to 1e-5, no grad clipping, fp32 (--no_amp), EMA 0.99996, repeated
# augmentation; label smoothing 0.1, Mixup 0.8 / CutMix 1.0, RandAugment m9 and random erasing 0.25 from the base.
_base_ = '../_base_/in1k_swin-recipe_8xb128-300e.py'
default_scope = 'mmpretrain'

model = dict(
    init_cfg=None,  # keep the Mamba init of the mixers (the Swin base would re-draw every Linear)
    backbone=dict(type='mmssm.Vim', arch='tiny', img_size=224, drop_path_rate=0.0),
    neck=None,  # the backbone already gives the class-position token (batch, C)
    head=dict(
        in_channels=192,
        init_cfg=dict(_delete_=True, type='TruncNormal', layer='Linear', std=0.02, bias=0.0)))

train_dataloader = dict(batch_size=128, sampler=dict(type='RepeatAugSampler', shuffle=True))
optim_wrapper = dict(
    optimizer=dict(lr=1e-3, weight_decay=0.1),
    clip_grad=None,
    paramwise_cfg=dict(
        _delete_=True,
        flat_decay_mult=0.0,
        custom_keys={'pos_embed': dict(decay_mult=0.0), 'cls_token': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5),
]
custom_hooks = [dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL')]
