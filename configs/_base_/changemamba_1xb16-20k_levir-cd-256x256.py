# Binary change detection on LEVIR-CD-style folders ({train,val,test}/{A,B,label}, 0/255 masks) with MambaCD's
# MambaBCD recipe (ChenHongruixuan/MambaCD changedetection/script/train_MambaBCD.py): ImageNet normalisation, random
# 256 crops (at most 75% of one class), horizontal and vertical flips and a 90/180/270-degree rotation, CE + 0.75 x
# Lovasz-softmax, AdamW lr 1e-4 wd 5e-4 at a constant rate, batch 16 on one GPU for 320,000 samples (20k iterations),
# validated every 500 iterations; whole-image inference. A family config fills in `model.backbone` and
# `model.decode_head.in_channels`.
_base_ = ['mmseg::_base_/default_runtime.py']
default_scope = 'mmseg'

crop_size = (256, 256)
model = dict(
    type='mmssm.SiameseEncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53] * 2,  # both dates, RGB
        std=[58.395, 57.12, 57.375] * 2,
        bgr_to_rgb=False,  # LoadImagePairFromFile reads RGB
        pad_val=0,
        seg_pad_val=255,
        size=crop_size),
    pretrained=None,  # the backbone's init_cfg loads pretrained weights
    backbone=dict(),  # given by the family config, e.g. type='mmssm.VMamba'
    decode_head=dict(
        type='mmssm.ChangeMambaHead',
        channels=128,
        num_classes=2,
        drop_path_rate=0.1,
        loss_decode=[
            dict(type='CrossEntropyLoss', avg_non_ignore=True, loss_weight=1.0),
            dict(type='LovaszLoss', loss_type='multi_class', classes='present', per_image=False, reduction='none',
                 loss_weight=0.75),
        ]),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

dataset_type = 'mmssm.LEVIRCDDataset'
data_root = 'data/LEVIR-CD'
train_pipeline = [
    dict(type='mmssm.LoadImagePairFromFile'),
    dict(type='mmssm.LoadBinaryLabel'),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomFlip', prob=0.5, direction='vertical'),
    dict(type='mmssm.RandomRotate90', prob=1.0),  # MambaCD always rotates, by 90, 180 or 270 degrees
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='mmssm.LoadImagePairFromFile'),
    dict(type='mmssm.LoadBinaryLabel'),
    dict(type='PackSegInputs'),
]


def _split(name, pipeline):
    return dict(type=dataset_type, data_root=data_root, pipeline=pipeline,
                data_prefix=dict(img_path=f'{name}/A', img_path2=f'{name}/B', seg_map_path=f'{name}/label'))


train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=_split('train', train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=_split('val', test_pipeline))
test_dataloader = dict(val_dataloader, dataset=_split('test', test_pipeline))
val_evaluator = dict(type='mmssm.ChangeDetectionMetric')
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=5e-4))
param_scheduler = []  # a constant learning rate
train_cfg = dict(type='IterBasedTrainLoop', max_iters=20000, val_interval=500)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500, max_keep_ckpts=2, save_best='kappa',
                    rule='greater'))  # MambaCD keeps the weights of the best kappa
