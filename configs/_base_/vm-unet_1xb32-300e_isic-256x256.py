# VM-UNet on ISIC 2017 / 2018 skin-lesion segmentation at 256x256 with the official recipe (JCruan519/VM-UNet
# configs/config_setting.py, engine.py): data_root/{train,val}/{images,masks}/*.png (val is the test set); input =
# image min-max stretched to [0, 255] (the official scalar (x - mean) / std before the stretch cancels), flips and a
# rotation (p 0.5 each) before the resize to 256; one sigmoid output, BCE + Dice (1:1); AdamW lr 1e-3, wd 1e-2,
# cosine annealing per epoch with T_max 50 down to 1e-5 (periodic, as torch's CosineAnnealingLR over 300 epochs);
# batch 32 on one GPU, 300 epochs; scored at 256x256 from one pooled confusion matrix at threshold 0.5
# (mmssm.ISICMetric: Acc, Sensitivity, Specificity, DSC, mIoU). A dataset config sets `data_root`.
_base_ = ['mmseg::_base_/default_runtime.py']
default_scope = 'mmseg'

crop_size = (256, 256)
checkpoint = 'checkpoints/vmamba_small_e238_ema.pth'  # the Vanilla VMamba-S ImageNet file VM-UNet starts from
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[0.0, 0.0, 0.0],  # MinMaxStretch already gives the official input
        std=[1.0, 1.0, 1.0],
        bgr_to_rgb=True,  # LoadImageFromFile reads BGR; VM-UNet's PIL loader gives RGB
        pad_val=0,
        seg_pad_val=255,
        size=crop_size),
    backbone=dict(
        type='mmssm.VMUNet',
        arch='vm-unet',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),  # encoder and mirrored decoder blocks
    decode_head=dict(
        type='FCNHead',  # the official final 1x1 conv as conv_seg
        in_channels=24,
        channels=24,
        num_convs=0,
        concat_input=False,
        dropout_ratio=0.0,
        num_classes=2,
        out_channels=1,  # one sigmoid output: lesion probability
        threshold=0.5,
        init_cfg=None,  # the official classifier keeps PyTorch's default init (mmseg's: normal std 0.01)
        loss_decode=[
            dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
            dict(type='mmssm.BinaryDiceLoss', smooth=1.0, loss_weight=1.0),  # mmseg's DiceLoss: see its docstring
        ]),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

dataset_type = 'mmssm.ISICDataset'
data_root = 'data/isic2018'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='mmssm.LoadBinaryLabel'),  # 0/255 -> 0/1 (grey >= 128, i.e. mask / 255 >= 0.5)
    dict(type='mmssm.MinMaxStretch'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomFlip', prob=0.5, direction='vertical'),
    # a fresh angle per sample (the official draws one angle for the whole run); corners pad as image 0 / background
    dict(type='RandomRotate', prob=0.5, degree=180, pad_val=0, seg_pad_val=0),
    dict(type='Resize', scale=crop_size, keep_ratio=False),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='mmssm.LoadBinaryLabel'),  # before the Resize: the label is scored at 256x256 like VM-UNet's
    dict(type='mmssm.MinMaxStretch'),
    dict(type='Resize', scale=crop_size, keep_ratio=False),
    dict(type='mmssm.ResizedAsOriginal'),  # predictions come back at 256x256, not at the file's size
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=train_pipeline,
                 data_prefix=dict(img_path='train/images', seg_map_path='train/masks')))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=test_pipeline,
                 data_prefix=dict(img_path='val/images', seg_map_path='val/masks')))
test_dataloader = val_dataloader
val_evaluator = dict(type='mmssm.ISICMetric')
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-2))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=50, eta_min=1e-5, by_epoch=True, begin=0, end=300)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=300, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=100, max_keep_ckpts=1, save_best='DSC',
                    rule='greater'))
