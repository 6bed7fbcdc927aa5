# ImageNet-1k classification with the Swin recipe that the vision-Mamba papers train with (VMamba, Vim, GroupMamba,
# Spatial-Mamba): 8 GPUs x 128 images, AdamW lr 1e-3 (5e-4 per 512 images), wd 0.05 off biases / norms / 1-D params,
# grad clip 5, 20 warmup epochs + cosine to 300, label smoothing 0.1, Mixup 0.8 / CutMix 1.0, RandAugment m9,
# random erasing 0.25, model EMA 0.9999. A family config fills in `model.backbone` and `model.head.in_channels`.
_base_ = [
    'mmpretrain::_base_/models/swin_transformer/tiny_224.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
default_scope = 'mmpretrain'

model = dict(backbone=dict(_delete_=True))  # given by the family config, e.g. type='mmssm.VMamba'

train_dataloader = dict(batch_size=128)
optim_wrapper = dict(clip_grad=dict(max_norm=5.0), paramwise_cfg=dict(flat_decay_mult=0.0))
custom_hooks = [dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]
