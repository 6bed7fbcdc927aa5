# Semantic change detection on SECOND in MambaCD's layout ({train,test}/{T1,T2,GT_CD,GT_T1,GT_T2} + list files) with
# MambaCD's MambaSCD recipe (ChenHongruixuan/MambaCD changedetection/script/train_MambaSCD.py): ImageNet
# normalisation, random 256 crops (at most 75% of one class), horizontal and vertical flips and a 90/180/270-degree
# rotation; land-cover label 0 (no change) ignored in training; loss CE_cd + 0.75 Lovasz_cd + 0.5 (CE_t1 + CE_t2)
# + 0.375 (Lovasz_t1 + Lovasz_t2) + 0.25 similarity (unchanged pixels); AdamW lr 1e-4 wd 5e-4, halved every 10k
# iterations; batch 16 on one GPU for 800,000 samples (50k iterations), validated every 500 iterations keeping the best
# SeK; whole-image inference (512x512). A family config fills in `model.backbone` and the heads' `in_channels`.
# MambaCD's crop checks the 75% on the date-1 land cover, mmseg's RandomCrop on the change map.
_base_ = ['mmseg::_base_/default_runtime.py']
default_scope = 'mmseg'

crop_size = (256, 256)
ce_and_lovasz = [
    dict(type='CrossEntropyLoss', avg_non_ignore=True, loss_weight=1.0),
    dict(type='LovaszLoss', loss_type='multi_class', classes='present', per_image=False, reduction='none',
         loss_weight=0.75),
]
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
    decode_head=dict(  # binary change: MambaCD's decoder_bcd + main_clf_cd
        type='mmssm.ChangeMambaHead', channels=128, num_classes=2, drop_path_rate=0.1, loss_decode=ce_and_lovasz),
    semantic_head=dict(  # land cover of both dates: decoder_T1, decoder_T2 + the shared aux_clf
        type='mmssm.ChangeMambaSemanticHead',
        channels=128,
        num_classes=7,  # 0 no change (ignored in training) + 6 land-cover classes
        dates=('t1', 't2'),
        drop_path_rate=0.1,
        loss_decode=[
            dict(type='CrossEntropyLoss', avg_non_ignore=True, loss_weight=0.5),
            dict(type='LovaszLoss', loss_type='multi_class', classes='present', per_image=False, reduction='none',
                 loss_weight=0.375),
        ],
        loss_similarity=dict(type='mmssm.UnchangedSimilarityLoss', loss_weight=0.25)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

dataset_type = 'mmssm.SECONDDataset'
data_root = 'data/SECOND'
load_labels = [
    dict(type='mmssm.LoadImagePairFromFile'),
    dict(type='mmssm.LoadBinaryLabel'),  # GT_CD, 0 / 255
    dict(type='mmssm.LoadIndexLabel', path_key='seg_map_path_t1', field='gt_seg_map_t1'),
    dict(type='mmssm.LoadIndexLabel', path_key='seg_map_path_t2', field='gt_seg_map_t2'),
]
train_pipeline = load_labels + [
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomFlip', prob=0.5, direction='vertical'),
    dict(type='mmssm.RandomRotate90', prob=1.0),  # MambaCD always rotates, by 90, 180 or 270 degrees
    dict(type='mmssm.MapLabelValues', mapping={0: 255}, fields=('gt_seg_map_t1', 'gt_seg_map_t2')),
    dict(type='mmssm.PackMultiLabelSegInputs'),
]
test_pipeline = load_labels + [dict(type='mmssm.PackMultiLabelSegInputs')]


def _split(name, pipeline):
    return dict(type=dataset_type, data_root=data_root, ann_file=f'{name}_list.txt', pipeline=pipeline,
                data_prefix=dict(img_path=f'{name}/T1', img_path2=f'{name}/T2', seg_map_path=f'{name}/GT_CD',
                                 seg_map_path_t1=f'{name}/GT_T1', seg_map_path_t2=f'{name}/GT_T2'))


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
    dataset=_split('test', test_pipeline))  # MambaCD validates on the test split
test_dataloader = val_dataloader
val_evaluator = dict(type='mmssm.SemanticChangeMetric')
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=5e-4))
param_scheduler = [dict(type='StepLR', step_size=10000, gamma=0.5, by_epoch=False)]  # per iteration
train_cfg = dict(type='IterBasedTrainLoop', max_iters=50000, val_interval=500)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500, max_keep_ckpts=2, save_best='SeK',
                    rule='greater'))  # MambaCD keeps the weights of the best SeK
