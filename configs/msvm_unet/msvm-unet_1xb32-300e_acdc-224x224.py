# MSVM-UNet on ACDC with the official recipe (gndlwch2w/msvm-unet train_acdc.py, dataset_acdc.py, eval.py): VMamba-T
# encoder from the ImageNet weights, frozen for the first 10 epochs; slices read as float32, input (slice - 0.5) / 0.5
# repeated to 3 channels; CE 0.4 + the TransUNet Dice 0.6 (no class weights); AdamW lr 5e-4, weight decay 1e-4 (not
# Synapse's 1e-3); cosine annealing per epoch over the 300 epochs down to 1e-6; batch 32; validated on the 40 test
# volumes every 20 epochs keeping the best mean Dice; seed 42. Reported: DSC 92.58 (RV 91.00, Myo 90.35, LV 96.39).
# Differences: the official training augments with imgaug (0-4 of flips, noise, blur, contrast, affine scale /
# rotation / shear / translation, piecewise affine); this config uses the MT-UNet / TransUNet augmentation of the
# _base_ (rot90 + flip or a small rotation), not reproduced bit for bit either (numpy's generator). The official
# Lightning EarlyStopping on the mean training loss (patience 15) is left out: with validation every 20 epochs it
# is checked only at the 15 validations of the 300 epochs and cannot stop the run. The official validation logs
# Dice only; SynapseMetric adds HD95 (the rules of the official inference.py).
_base_ = ['../_base_/acdc_224x224.py', '../_base_/msvm-unet_1xb32-300e_224x224.py']
default_scope = 'mmseg'

model = dict(decode_head=dict(num_classes={{_base_.num_classes}}))
optim_wrapper = dict(optimizer=dict(weight_decay=1e-4))  # train_acdc.py (Synapse: 1e-3)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=20, max_keep_ckpts=1, save_best='mDice',
                    rule='greater'))
