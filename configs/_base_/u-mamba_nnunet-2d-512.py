# U-Mamba 2D (bowang-lab/U-Mamba nnUNetTrainerUMambaBot / Enc) with nnU-Net's deep supervision, on the nnU-Net
# recipe of nnunet-raw-2d_1000e.py. Plan: mmssm.UMamba's 'nnunet-2d-512' (nnU-Net v2's default 2D planner for a
# 512 x 512 patch: 8 stages, 32..512 features, 3x3 kernels, stride 2); batch 12 is our assumption for that plan, the
# planner's value depends on the GPU budget and data set: for a released checkpoint take both from its nnUNetPlans.json
# (mmssm.models.backbones.u_mamba.plan_from_nnunet). A data set config sets data_root, num_classes and mamba.
_base_ = ['./nnunet-raw-2d_1000e.py']

patch_size = (512, 512)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=None, std=None, bgr_to_rgb=False, pad_val=0,
                           seg_pad_val=255, size=patch_size),  # the input is z-scored already
    backbone=dict(type='mmssm.UMamba', arch='nnunet-2d-512', mamba='bot', in_channels=3),
    decode_head=dict(
        type='mmssm.DeepSupervisionHead',  # nnU-Net's seg_layers and per-scale weights
        in_channels=[32, 64, 128, 256, 512, 512, 512],  # decoder outputs, highest resolution first
        channels=32,
        num_classes=2,
        loss_decode=[dict(type='CrossEntropyLoss', loss_weight=1.0),
                     dict(type='mmssm.SoftDiceLoss', batch_dice=True, loss_weight=1.0)]),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=patch_size, stride=(256, 256)))
