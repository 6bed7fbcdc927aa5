# The demo job: a small VMamba learns to tell circles, squares, triangles and crosses apart (mmssm.DemoShapes, four
# balanced classes, rendered in memory, chance = 25%) on a CPU in a few minutes:
#   python tools/train.py configs/vmamba/vmamba-demo_1xb16-4e_shapes.py --work-dir work_dirs/demo
#   python tools/test.py configs/vmamba/vmamba-demo_1xb16-4e_shapes.py work_dirs/demo/epoch_4.pth
_base_ = 'mmpretrain::_base_/default_runtime.py'
default_scope = 'mmpretrain'

image_size = 32
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        num_classes=4, mean=[127.5, 127.5, 127.5], std=[64.0, 64.0, 64.0], to_rgb=True),  # pictures are BGR
    backbone=dict(
        type='mmssm.VMamba', arch=dict(embed_dims=32, depths=(1, 2, 2), ssm_ratio=1.0), out_indices=(2, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=4, in_channels=128, loss=dict(type='CrossEntropyLoss')))

train_pipeline = [
    dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    dataset=dict(type='mmssm.DemoShapes', split='train', num_samples=1024, image_size=image_size,
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=64,
    num_workers=0,
    dataset=dict(type='mmssm.DemoShapes', split='val', num_samples=256, image_size=image_size,
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=4e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0))
max_epochs = 4
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(logger=dict(interval=16), checkpoint=dict(interval=1, max_keep_ckpts=1))
randomness = dict(seed=0, deterministic=False)
