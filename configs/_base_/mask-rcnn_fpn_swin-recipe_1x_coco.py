# COCO Mask R-CNN + FPN, 1x schedule, with the Swin recipe used by the vision-Mamba papers: 8 GPUs x 2 images,
# AdamW lr 1e-4 wd 0.05 (no decay on norms), 1000-iter linear warmup, lr x0.1 at epochs 8 and 11.
# A family config fills in `model.backbone` and `model.neck.in_channels`.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
default_scope = 'mmdet'

model = dict(backbone=dict(_delete_=True))  # given by the family config, e.g. type='mmssm.VMamba'

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))  # any parameter named *norm*
