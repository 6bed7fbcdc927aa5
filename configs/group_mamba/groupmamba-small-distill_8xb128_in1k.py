# GroupMamba-S (small) on ImageNet-1k, 224x224, with DeiT hard distillation from RegNetY-160 (the
# official recipe, alpha 0.5), as groupmamba-tiny-distill_8xb128_in1k.py with the small backbone. See README.md.
_base_ = './groupmamba-tiny-distill_8xb128_in1k.py'

model = dict(backbone=dict(arch='small'), head=dict(in_channels=512))
