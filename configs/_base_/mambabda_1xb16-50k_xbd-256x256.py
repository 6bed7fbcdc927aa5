# Building damage assessment on xBD in MambaCD's layout ({train,test}/{images,targets} + list files) with MambaCD's
# MambaBDA recipe (ChenHongruixuan/MambaCD changedetection/script/train_MambaBDA.py): ImageNet normalisation, random
# 256 crops (at most 75% of one class), horizontal and vertical flips and a 90/180/270-degree rotation; damage level 0
# (background) ignored in training; loss CE_loc + 0.5 Lovasz_loc + CE_damage + 0.75 Lovasz_damage; AdamW lr 1e-4,
# wd 5e-3 (the script's default), constant; batch 16 on one GPU for 800,000 samples (50k iterations), validated every
# 750 iterations keeping the best F1_oa; whole-image inference (1024x1024). A family config fills in `model.backbone`
# and the heads' `in_channels`. MambaCD skips a batch without any rated building and checks the crop's 75% on the
# buildings; here such a batch adds no damage loss and mmseg's RandomCrop checks the damage map.
_base_ = ['mmseg::_base_/default_runtime.py']
default_scope = 'mmseg'

crop_size = (256, 256)


def ce_and_lovasz(lovasz_weight):
    return [dict(type='CrossEntropyLoss', avg_non_ignore=True, loss_weight=1.0),
            dict(type='LovaszLoss', loss_type='multi_class', classes='present', per_image=False, reduction='none',
                 loss_weight=lovasz_weight)]


model = dict(
    type='mmssm.SemanticChangeEncoderDecoder',
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
    decode_head=dict(  # damage levels: MambaCD's decoder_damage + main_clf
        type='mmssm.ChangeMambaHead', channels=128, num_classes=5, drop_path_rate=0.1,
        loss_decode=ce_and_lovasz(0.75)),
    semantic_head=dict(  # buildings on the pre-event image: decoder_building + aux_clf
        type='mmssm.ChangeMambaSemanticHead', channels=128, num_classes=2, dates=('t1', ), drop_path_rate=0.1,
        loss_decode=ce_and_lovasz(0.5)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

dataset_type = 'mmssm.XBDDataset'
data_root = 'data/xBD'
load_labels = [
    dict(type='mmssm.LoadImagePairFromFile'),
    dict(type='mmssm.LoadIndexLabel'),  # damage (post-event target)
    dict(type='mmssm.LoadIndexLabel', path_key='seg_map_path_t1', field='gt_seg_map_t1'),  # buildings
]
train_pipeline = load_labels + [
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomFlip', prob=0.5, direction='vertical'),
    dict(type='mmssm.RandomRotate90', prob=1.0),  # MambaCD always rotates, by 90, 180 or 270 degrees
    dict(type='mmssm.MapLabelValues', mapping={0: 255}, fields=('gt_seg_map', )),
    dict(type='mmssm.PackMultiLabelSegInputs'),
]
test_pipeline = load_labels + [dict(type='mmssm.PackMultiLabelSegInputs')]


def _split(name, pipeline):
    return dict(type=dataset_type, data_root=data_root, ann_file=f'{name}.txt', pipeline=pipeline,
                data_prefix=dict(img_path=f'{name}/images', seg_map_path=f'{name}/targets'))


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
    dataset=_split('test', test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='mmssm.DamageAssessmentMetric')
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=5e-3))
param_scheduler = []  # a constant learning rate
train_cfg = dict(type='IterBasedTrainLoop', max_iters=50000, val_interval=750)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=750, max_keep_ckpts=2, save_best='F1_oa',
                    rule='greater'))  # MambaCD keeps the weights of the best F1_oa
