# Synapse multi-organ CT in the TransUNet protocol (the published numbers of TransUNet, Swin-Unet, VM-UNet and
# MSVM-UNet): data_root/train_npz/*.npz slices, test_vol_h5/*.npy.h5 volumes (h5py), lists/lists_Synapse/
# {train,test_vol}.txt; 9 classes at 224x224; training augmentation as TransUNet's / VM-UNet's RandomGenerator
# (rot90 + flip with p 0.5, else a rotation in [-20, 19] degrees with p 0.25, both nearest), then a scipy zoom to
# 224 (cubic image, nearest label); the slice repeated to 3 channels. Test: every slice of each volume zoomed to 224
# (cubic), the argmax zoomed back to 512 (nearest), per-case 3D Dice and HD95 (voxels) averaged over the 12 cases,
# then over the 8 organs (mmssm.SynapseMetric: mDice, mHD95, Dice.<organ>, HD95.<organ>). A model config adds the
# model, its input normalisation, optimizer and schedule.
_base_ = ['mmseg::_base_/default_runtime.py']
default_scope = 'mmseg'

crop_size = (224, 224)
num_classes = 9
dataset_type = 'mmssm.SynapseDataset'
data_root = 'data/Synapse'
train_pipeline = [
    dict(type='mmssm.LoadSynapseSlice'),  # img (512, 512, 1) float in [0, 1], gt_seg_map uint8 0..8
    dict(type='mmssm.RandomRot90FlipOrRotate'),  # the official RandomGenerator's branches
    dict(type='mmssm.ScipyZoom', size=crop_size),  # cubic image, nearest label
    dict(type='mmssm.RepeatChannels', num_channels=3),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='mmssm.LoadSynapseSlice'),  # one slice of a test volume
    dict(type='mmssm.ScipyZoom', size=crop_size, zoom_seg=False),  # the label stays at 512 x 512
    dict(type='mmssm.ResizedAsOriginal'),  # argmax at 224; SynapseMetric zooms it back with nearest
    dict(type='mmssm.RepeatChannels', num_channels=3),
    dict(type='PackSegInputs',
         meta_keys=('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
                    'flip_direction', 'reduce_zero_label', 'case_name', 'slice_index', 'num_slices')),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=train_pipeline,
                 ann_file='lists/lists_Synapse/train.txt', data_prefix=dict(img_path='train_npz')))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=test_pipeline, volumes=True,
                 ann_file='lists/lists_Synapse/test_vol.txt', data_prefix=dict(img_path='test_vol_h5')))
test_dataloader = val_dataloader
val_evaluator = dict(type='mmssm.SynapseMetric')
test_evaluator = val_evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
