# MSVM-UNet on ACDC with the official recipe (gndlwch2w/msvm-unet train_acdc.py, dataset_acdc.py, eval.py): VMamba-T
# encoder from the ImageNet weights, frozen for the first 10 epochs; slices read as float32, input (slice - 0.5) / 0.5
# repeated to 3 channels; CE 0.4 + the TransUNet Dice 0.6 (no class weights); AdamW lr 5e-4, weight decay 1e-4 (not
# Synapse's 1e-3); cosine annealing per epoch over the 300 epochs down to 1e-6; batch 32; validated on the 40 test
# volumes every 20 epochs keeping the best mean Dice; seed 42. Reported: DSC 92.58 (RV 91.00, Myo 90.35, LV 96.39).
# Differences: the official training augments with imgaug (0-4 of flips, noise, blur, contrast, affine scale /
# rotation / shear / translation, piecewise affine); this config uses the MT-UNet / TransUNet augmentation of the
# _base_ (rot90 + flip or a small rotation), not reproduced bit for bit either (numpy's generator). The official
# Lightning EarlyStopping on the mean training loss (patience 15) is left out: with validation every 20 epochs it
# is checked only at the 15 validations of the 300 epochs and cannot stop the run. The official validation logs
# Dice only; SynapseMetric adds HD95 (the rules of the official inference.py).
_base_ = '../_base_/acdc_224x224.py'
default_scope = 'mmseg'

checkpoint = 'checkpoints/vssm_tiny_0230_ckpt_epoch_262.pth'  # the official VMamba-T v2 ImageNet file (README)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[0.5, 0.5, 0.5],  # transforms.Normalize([0.5], [0.5]) on the float32 slice
        std=[0.5, 0.5, 0.5],
        bgr_to_rgb=False,
        pad_val=0,
        seg_pad_val=255,
        size={{_base_.crop_size}}),
    backbone=dict(
        type='mmssm.MSVMUNet',
        arch='tiny',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(
        type='FCNHead',  # FLKPE's final 1x1 conv as conv_seg
        in_channels=96,
        channels=96,
        num_convs=0,
        concat_input=False,
        dropout_ratio=0.0,
        num_classes={{_base_.num_classes}},
        loss_decode=[
            dict(type='CrossEntropyLoss', loss_weight=0.4),
            dict(type='mmssm.ClassDiceLoss', loss_weight=0.6),
        ]),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=300, eta_min=1e-6, by_epoch=True, begin=0, end=300)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=300, val_interval=20)
randomness = dict(seed=42)
custom_hooks = [dict(type='mmssm.FreezeModuleHook', module='backbone.encoder', epochs=10)]
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)  # the frozen encoder
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=20, max_keep_ckpts=1, save_best='mDice',
                    rule='greater'))
