# Swin-UMamba† (Mamba decoder) on EndoVis 2017, as swin-umamba_nnunet-2d-512_250e_endovis17.py; with 3 input channels
# the encoder's 4x4 patch embed loads from the ImageNet file too.
_base_ = ['../_base_/swin-umamba-d_nnunet-2d-1000e.py']

num_classes = 8
data_root = 'data/nnUNet_raw/Dataset704_Endovis17'
model = dict(backbone=dict(in_channels=3), decode_head=dict(num_classes=num_classes))
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=62500, val_interval=12500)
default_hooks = dict(checkpoint=dict(interval=12500))
