# GroupMamba-T (tiny) on ImageNet-1k, 224x224, without distillation (one linear head on the class-block token).
_base_ = '../_base_/in1k_swin-recipe_8xb128-300e.py'
default_scope = 'mmpretrain'

model = dict(
    backbone=dict(type='mmssm.GroupMamba', arch='tiny', drop_path_rate=0.1, out_indices=(3, ), out_type='cls_token'),
    neck=None,
    head=dict(in_channels=448))
