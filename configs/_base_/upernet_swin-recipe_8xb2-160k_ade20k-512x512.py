# ADE20K semantic segmentation, UPerNet + auxiliary FCN head, 512x512 crops, 160k iterations, with the Swin recipe
# used by the vision-Mamba papers: 8 GPUs x 2 images, AdamW lr 6e-5 wd 0.01 (no decay on norms), 1500-iter
# linear warmup then poly decay (power 1). A family config fills in `model.backbone`,
# `model.decode_head.in_channels` and `model.auxiliary_head.in_channels` (the stage-3 width).
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
default_scope = 'mmseg'

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,  # the backbone's init_cfg loads pretrained weights
    backbone=dict(_delete_=True),  # given by the family config, e.g. type='mmssm.VMamba'
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150))

train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))  # any parameter named *norm*
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000),
]
