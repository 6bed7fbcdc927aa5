# GroupMamba-T (tiny) on ImageNet-1k, 224x224, with DeiT hard distillation from RegNetY-160 (the
# official recipe, alpha 0.5): the class block's token feeds `fc` (labels) and `dist_fc` (teacher's argmax); the
# prediction is their mean. See README.md.
_base_ = '../_base_/in1k_swin-recipe_8xb128-300e.py'
default_scope = 'mmpretrain'

# DeiT's RegNetY-160 teacher (82.6 top-1), timm's model with the checkpoint DeiT distils from (needs `pip install timm`).
teacher = dict(
    model=dict(type='TimmClassifier', model_name='regnety_160', pretrained=False),
    checkpoint='https://dl.fbaipublicfiles.com/deit/regnety_160-a5fe301d.pth')

model = dict(
    type='mmssm.HardDistillationClassifier',
    teacher=teacher,
    alpha=0.5,
    backbone=dict(type='mmssm.GroupMamba', arch='tiny', drop_path_rate=0.1, out_indices=(3, ), out_type='cls_token'),
    neck=None,
    head=dict(_delete_=True, type='mmssm.DistilledLinearClsHead', num_classes=1000, in_channels=448,
              loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')))
