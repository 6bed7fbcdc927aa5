# VM-UNet on Synapse with the official recipe (JCruan519/VM-UNet configs/config_setting_synapse.py,
# train_synapse.py): the [0, 1] slice as input; CE + the TransUNet Dice (1:1); AdamW lr 1e-3, wd 1e-2; cosine
# annealing per epoch with T_max 100 down to 1e-5 (periodic over the 300 epochs); batch 32, 300 epochs, seed 42,
# evaluated every 100 epochs. The official code reports the epoch of the lowest mean training loss; here the last.
_base_ = '../_base_/synapse_224x224.py'
default_scope = 'mmseg'

checkpoint = 'checkpoints/vmamba_small_e238_ema.pth'  # the Vanilla VMamba-S ImageNet file VM-UNet starts from
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[0.0, 0.0, 0.0],  # the official input is the [0, 1] slice as stored
        std=[1.0, 1.0, 1.0],
        bgr_to_rgb=False,  # three copies of one channel
        pad_val=0,
        seg_pad_val=255,
        size={{_base_.crop_size}}),
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
        num_classes={{_base_.num_classes}},
        init_cfg=None,  # the official classifier keeps PyTorch's default init (mmseg's: normal std 0.01)
        loss_decode=[
            dict(type='CrossEntropyLoss', loss_weight=1.0),  # torch's CE: the mean over the pixels
            dict(type='mmssm.ClassDiceLoss', loss_weight=1.0),  # nDiceLoss(softmax=True)
        ]),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=100, eta_min=1e-5, by_epoch=True, begin=0, end=300)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=300, val_interval=100)
randomness = dict(seed=42)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=100, max_keep_ckpts=1))
