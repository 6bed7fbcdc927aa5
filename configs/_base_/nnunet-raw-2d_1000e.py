# The nnU-Net v2 2D recipe (nnUNetTrainer) on an nnU-Net raw 2D data set (mmssm.NNUNetRaw2DDataset: dataset.json,
# imagesTr / labelsTr for training, imagesTs / labelsTs for validation and test), without the model. A model config
# sets `patch_size`, `num_classes`, `data_root`, the model, and overrides the optimizer where its trainer does.
# nnU-Net: per-image z-score input (mmssm.ZScoreNormalize); 1000 epochs x 250 iterations; SGD lr 1e-2, momentum 0.99,
# nesterov, weight decay 3e-5; poly lr (exponent 0.9); gradient norm clipped at 12; Dice + CE (1:1, nnU-Net's soft
# Dice over the foreground, batch Dice in 2D); sliding-window prediction with the patch size and half-patch steps.
# Where ours differs from nnU-Net (state it with results):
# - augmentation: random patch crop, mirroring of each axis (p 0.5) and a rotation (p 0.2, +-180 degrees) only; no
#   scaling, elastic deformation, noise, blur, brightness / contrast / gamma or low-resolution simulation, and no
#   foreground oversampling (nnU-Net forces 1/3 of each batch's patches onto a labelled pixel);
# - the poly lr is updated every iteration (nnU-Net: once per epoch of 250 iterations);
# - the sliding windows are averaged uniformly (nnU-Net weights them with a Gaussian) and not mirrored (U-Mamba and
#   LightM-UNet predict with --disable_tta); test images must be at least the patch size (nnU-Net pads smaller ones);
# - no crop to the non-zero region before normalising (nnU-Net's preprocessing crops each image to the bounding box of
#   its non-zero pixels and, when that shrinks it by 25% or more, z-scores within that region only);
# - fp32 training (nnU-Net trains with AMP; the Mamba layers here run in fp32 either way, so AmpOptimWrapper on GPUs
#   is the official setting).
_base_ = ['mmseg::_base_/default_runtime.py']
default_scope = 'mmseg'

patch_size = (512, 512)
num_classes = 2
data_root = 'data/nnUNet_raw/Dataset999_Name'
dataset_type = 'mmssm.NNUNetRaw2DDataset'
train_pipeline = [
    dict(type='mmssm.LoadNNUNetImage'),
    dict(type='LoadAnnotations'),
    dict(type='mmssm.ZScoreNormalize'),
    dict(type='RandomCrop', crop_size=patch_size),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomFlip', prob=0.5, direction='vertical'),
    dict(type='RandomRotate', prob=0.2, degree=180, pad_val=0, seg_pad_val=0),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='mmssm.LoadNNUNetImage'),
    dict(type='mmssm.ZScoreNormalize'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=12,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, split='Tr', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='Ts', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='mmssm.DiceNSDMetric', nsd_tolerance=2)  # U-Mamba's Endoscopy NSD: 2 pixels
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5),
                     clip_grad=dict(max_norm=12))
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, by_epoch=False, begin=0, end=250000)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=250000, val_interval=25000)  # 1000 epochs x 250 iterations
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=25000, max_keep_ckpts=1))
