# VM-UNet on ISIC 2017 (VM-UNet's split: data/isic2017/{train,val}/{images,masks}, val = test set).
_base_ = '../_base_/vm-unet_1xb32-300e_isic-256x256.py'
default_scope = 'mmseg'

data_root = 'data/isic2017'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
