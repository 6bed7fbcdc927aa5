# Spatial-Mamba-T (tiny) on ImageNet-1k, 224x224, the official recipe (see ../_base_ and README.md).
_base_ = '../_base_/in1k_swin-recipe_8xb128-300e.py'
default_scope = 'mmpretrain'

model = dict(
    backbone=dict(type='mmssm.SpatialMamba', arch='tiny', drop_path_rate=0.2, out_indices=(3, )),
    head=dict(in_channels=512))
