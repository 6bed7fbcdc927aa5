# MSVM-UNet's model and training recipe (gndlwch2w/msvm-unet model/, train_synapse.py, train_acdc.py), without the
# data: VMamba-T encoder from the ImageNet weights, frozen for the first 10 epochs (mmssm.FreezeModuleHook); input
# (slice - 0.5) / 0.5 at 224x224 repeated to 3 channels; CE 0.4 + the TransUNet Dice 0.6; AdamW lr 5e-4 (weight decay
# 1e-3 for Synapse, 1e-4 for ACDC); cosine annealing per epoch over the 300 epochs down to 1e-6; validation every 20
# epochs. A dataset config adds a `configs/_base_/<dataset>_224x224.py`, the number of classes and its checkpoint hook.
# VMamba-T [s1l8] (2-2-8-2, ssm_ratio 1), the file model/vmamba/__init__.py loads; the README's
# vssm_tiny_0230_ckpt_epoch_262.pth is VMamba-T [s2l5] (2-2-5-2, ssm_ratio 2) and does not fit this encoder
checkpoint = 'checkpoints/vssm1_tiny_0230s_ckpt_epoch_264.pth'
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[0.5, 0.5, 0.5],  # transforms.Normalize([0.5], [0.5]) on the slice
        std=[0.5, 0.5, 0.5],
        bgr_to_rgb=False,
        pad_val=0,
        seg_pad_val=255,
        size=(224, 224)),
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
        num_classes=9,  # the dataset config sets its own
        init_cfg=None,  # the official classifier keeps PyTorch's default init (mmseg's: normal std 0.01)
        loss_decode=[
            dict(type='CrossEntropyLoss', loss_weight=0.4),
            dict(type='mmssm.ClassDiceLoss', loss_weight=0.6),
        ]),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-3))  # ACDC: 1e-4
param_scheduler = [dict(type='CosineAnnealingLR', T_max=300, eta_min=1e-6, by_epoch=True, begin=0, end=300)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=300, val_interval=20)
randomness = dict(seed=42)
custom_hooks = [dict(type='mmssm.FreezeModuleHook', module='backbone.encoder', epochs=10)]
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)  # the frozen encoder
