# Swin-UMamba's model and training recipe (JiarunLiu/Swin-UMamba nnUNetTrainerSwinUMamba on nnU-Net v2's
# nnUNetTrainer) on the nnU-Net raw 2D data of nnunet-raw-2d_1000e.py (which lists where our data pipeline differs
# from nnU-Net's): encoder from the Vanilla VMamba-T ImageNet file, frozen except its patch embed for the first 10
# epochs (2,500 iterations); CE + nnU-Net's soft Dice (1:1) on each deep-supervision output, weighted 1/2**i with the
# coarsest dropped (mmssm.DeepSupervisionHead); AdamW lr 1e-4, wd 5e-2, eps 1e-5; cosine annealing over 1000 epochs
# of 250 iterations to 1e-6; gradient norm clipped at 12. A data set config sets data_root, num_classes, in_channels,
# and the patch and batch size of the data set's nnU-Net 2D plans.
# Differences: the cosine is stepped every iteration (nnU-Net: every epoch); nnU-Net trains in fp16 autocast
# (AmpOptimWrapper on a GPU) and pools batch Dice across GPUs; its prediction is a sliding window with Gaussian
# weighting (mmseg's 'slide' averages the tiles).
_base_ = ['./nnunet-raw-2d_1000e.py']

checkpoint = 'checkpoints/vssmtiny_dp01_ckpt_epoch_292.pth'  # the official VMamba-T v0 ImageNet file (README)
patch_size = (512, 512)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=None,  # the input is z-scored already (mmssm.ZScoreNormalize)
        std=None,
        bgr_to_rgb=False,
        pad_val=0,
        seg_pad_val=255,
        size=patch_size),  # a multiple of 32: the U-Net meets its skips at 1/32
    backbone=dict(
        type='mmssm.SwinUMamba',
        arch='swin-umamba',
        in_channels=1,  # AbdomenMR; 3 for Endoscopy and Microscopy
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(
        type='mmssm.DeepSupervisionHead',  # the official out_layers
        in_channels=(48, 96, 192, 384),  # SwinUMamba.out_channels: H, H/2, H/4, H/8
        channels=48,
        init_cfg=None,  # MONAI's UnetOutBlock: torch's default init (no nnU-Net He init in get_swin_umamba_from_plans)
        num_classes=14,  # AbdomenMR; the dataset config sets its own
        loss_decode=[
            dict(type='CrossEntropyLoss', avg_non_ignore=True, loss_weight=1.0),
            dict(type='mmssm.SoftDiceLoss', batch_dice=True, loss_weight=1.0),
        ]),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=patch_size, stride=(256, 256)))

optim_wrapper = dict(_delete_=True, type='OptimWrapper', clip_grad=dict(max_norm=12),
                     optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), eps=1e-5, weight_decay=5e-2))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=250000, eta_min=1e-6, by_epoch=False, begin=0, end=250000)]
custom_hooks = [dict(type='mmssm.FreezeModuleHook', module='backbone.encoder.stages', iters=2500)]
# the frozen encoder, and the coarsest output conv (loss weight 0) take no gradient
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
