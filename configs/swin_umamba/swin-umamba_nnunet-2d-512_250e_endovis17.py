# Swin-UMamba on EndoVis 2017 instrument segmentation (U-Mamba's Dataset704_Endovis17: 7 instrument classes +
# background, RGB PNG frames), scored per image with DSC and NSD at 2 pixels. The official run evaluates
# checkpoint_249.pth of a 1000-epoch cosine schedule: training stops after 250 epochs (62,500 iterations) with the
# schedule unchanged. Patch 512 x 512 and batch 12 are our assumption for the data set's nnU-Net 2D plan.
_base_ = ['../_base_/swin-umamba_nnunet-2d-1000e.py']

num_classes = 8
data_root = 'data/nnUNet_raw/Dataset704_Endovis17'
model = dict(backbone=dict(in_channels=3), decode_head=dict(num_classes=num_classes))
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=62500, val_interval=12500)
default_hooks = dict(checkpoint=dict(interval=12500))
