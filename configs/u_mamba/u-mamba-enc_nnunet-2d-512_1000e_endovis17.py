# U-Mamba_Enc 2D on EndoVis 2017 instrument segmentation (U-Mamba's Dataset704_Endovis17: 7 instrument classes +
# background, RGB PNG frames) with the nnU-Net recipe; scored per image with DSC and NSD at 2 pixels as U-Mamba's
# evaluation/endoscopy_*_Eval.py.
_base_ = ['../_base_/u-mamba_nnunet-2d-512.py']

num_classes = 8
data_root = 'data/nnUNet_raw/Dataset704_Endovis17'
model = dict(backbone=dict(mamba='enc'), decode_head=dict(num_classes=num_classes))
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
