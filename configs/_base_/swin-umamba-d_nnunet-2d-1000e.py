# Swin-UMamba† (Mamba decoder; JiarunLiu/Swin-UMamba nnUNetTrainerSwinUMambaD): Swin-UMamba's recipe (the same
# trainer settings, see the _base_), the released Vanilla VMamba-T encoder with its 4x4 patch embed (loaded from the
# ImageNet file when the input has 3 channels) and deep supervision at H, H/4, H/8 and H/16.
_base_ = './swin-umamba_nnunet-2d-1000e.py'
model = dict(
    backbone=dict(type='mmssm.SwinUMambaD', arch='swin-umamba-d'),
    decode_head=dict(
        in_channels=(96, 96, 192, 384),  # SwinUMambaD.out_channels
        channels=96,
        # the official seg_layers get nnU-Net's InitWeights_He(1e-2) (mmssm.DeepSupervisionHead's default)
        init_cfg=dict(_delete_=True, type='Kaiming', layer='Conv2d', a=1e-2, mode='fan_in', nonlinearity='leaky_relu',
                      distribution='normal', bias=0)))
