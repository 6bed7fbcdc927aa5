# ACDC cardiac cine-MRI in the MT-UNet release as MSVM-UNet reads it: data_root/{train,valid,test}/*.npz with the
# arrays 'img' and 'label', lists/lists_ACDC/{train,valid,test}.txt (file names with '.npz'; MSVM-UNet ships the lists
# in its repository: copy them here); 4 classes (0 background, 1 RV, 2 Myo, 3 LV) at 224x224. Training: the 1304
# train slices (70 patients, ED and ES) read as float32, augmented as MT-UNet's / TransUNet's RandomGenerator (rot90 +
# flip with p 0.5, else a rotation in [-20, 19] degrees with p 0.25, both nearest), then a scipy zoom to 224 where the
# slice has another size (cubic image, nearest label); the slice repeated to 3 channels. Test: the 40 test volumes
# (20 patients x ED / ES), every slice zoomed to 224 (cubic), the argmax zoomed back (nearest), per-volume 3D Dice
# and HD95 (voxels) averaged over the 40 volumes, then over RV, Myo, LV (mmssm.SynapseMetric: mDice, mHD95,
# Dice.<class>, HD95.<class>). The 'valid' split (10 patients) is not used, as in MSVM-UNet (train_acdc.py
# validates on 'test'). A model config adds the model, its input normalisation, optimizer and schedule.
_base_ = ['mmseg::_base_/default_runtime.py']
default_scope = 'mmseg'

crop_size = (224, 224)
num_classes = 4
dataset_type = 'mmssm.ACDCDataset'
data_root = 'data/ACDC'
train_pipeline = [
    dict(type='mmssm.LoadSynapseSlice', to_float32=True),  # 'img' / 'label' (the dataset's array_keys), float32
    dict(type='mmssm.RandomRot90FlipOrRotate'),
    dict(type='mmssm.ScipyZoom', size=crop_size),  # cubic image, nearest label; nothing where already 224
    dict(type='mmssm.RepeatChannels', num_channels=3),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='mmssm.LoadSynapseSlice', to_float32=True),  # one slice of a test volume
    dict(type='mmssm.ScipyZoom', size=crop_size, zoom_seg=False),  # the label stays at the volume's size
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
                 ann_file='lists/lists_ACDC/train.txt', data_prefix=dict(img_path='train')))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=test_pipeline, volumes=True,
                 ann_file='lists/lists_ACDC/test.txt', data_prefix=dict(img_path='test')))
test_dataloader = val_dataloader
val_evaluator = dict(type='mmssm.SynapseMetric', num_classes=num_classes)
test_evaluator = val_evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
