# LightM-UNet 2D (MrBlankness/LightM-UNet nnUNetTrainerLightMUNet) on the Montgomery & Shenzhen chest X-ray lung masks
# (its Dataset802_LungXray: RGB PNG, labels background / lung) with its trainer's recipe on top of nnU-Net's: Adam lr
# 1e-4, weight decay 1e-5, eps 1e-5, poly lr 0.9, gradient norm clipped at 12, fp32, no deep supervision, Dice + CE,
# 100 epochs x 250 iterations (the num_epochs of the repository's own nnUNetTrainer, which nnUNetTrainerLightMUNet
# keeps; see nnunet-raw-2d_1000e.py for where the data pipeline differs from nnU-Net's). The 512 x 512 patch and
# batch 12 are our assumption for nnU-Net's 2D plan of this set (the planner decides them from the data). Scored with
# DSC (and NSD at 2 pixels) per image.
_base_ = ['../_base_/nnunet-raw-2d_1000e.py']

patch_size = (512, 512)
data_root = 'data/nnUNet_raw/Dataset802_LungXray'
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=None, std=None, bgr_to_rgb=False, pad_val=0,
                           seg_pad_val=255, size=patch_size),
    backbone=dict(type='mmssm.LightMUNet', arch='lightm-unet', in_channels=3),
    decode_head=dict(
        type='FCNHead',  # the official final pointwise conv as conv_seg
        in_channels=32,
        channels=32,
        num_convs=0,
        concat_input=False,
        dropout_ratio=0.0,
        num_classes=2,
        init_cfg=None,  # the official conv keeps PyTorch's init (not mmseg's Normal(0.01) of conv_seg)
        loss_decode=[dict(type='CrossEntropyLoss', loss_weight=1.0),
                     dict(type='mmssm.SoftDiceLoss', batch_dice=True, loss_weight=1.0)]),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=patch_size, stride=(256, 256)))
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='Adam', lr=1e-4, weight_decay=1e-5, eps=1e-5), clip_grad=dict(max_norm=12))
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, by_epoch=False, begin=0, end=25000)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=25000, val_interval=2500)  # 100 epochs x 250 iterations
default_hooks = dict(checkpoint=dict(interval=2500))
