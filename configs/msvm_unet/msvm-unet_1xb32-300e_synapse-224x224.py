# MSVM-UNet on Synapse with the official recipe (gndlwch2w/msvm-unet train_synapse.py): VMamba-T encoder from the
# ImageNet weights, frozen for the first 10 epochs; input (slice - 0.5) / 0.5 repeated to 3 channels; CE 0.4 + the
# TransUNet Dice 0.6; AdamW lr 5e-4, wd 1e-3; cosine annealing per epoch over the 300 epochs down to 1e-6; batch 32,
# validated every 20 epochs keeping the best mean Dice. Difference: the official training augments with imgaug
# (0-4 of flips, noise, blur, contrast, affine scale / rotation / shear / translation, piecewise affine); this config
# uses the TransUNet augmentation of the _base_ (rot90 + flip or a small rotation).
_base_ = ['../_base_/synapse_224x224.py', '../_base_/msvm-unet_1xb32-300e_224x224.py']
default_scope = 'mmseg'

model = dict(decode_head=dict(num_classes={{_base_.num_classes}}))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=20, max_keep_ckpts=1, save_best='mDice',
                    rule='greater'))
