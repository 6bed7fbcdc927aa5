"""``mmssm.ACDCDataset``: ACDC cardiac cine-MRI (MICCAI 2017 challenge) in the MT-UNet release that MSVM-UNet trains
and tests on, for mmseg.

Layout (MSVM-UNet's ``dataset/acdc`` with its ``lists/lists_ACDC`` next to the folders)::

    data_root/train/case_001_sliceED_0.npz           training slices ('img', 'label' (H, W)), 70 patients
    data_root/valid/case_019_sliceED_0.npz           validation slices, 10 patients (not used by MSVM-UNet)
    data_root/test/case_002_volume_ED.npz            test volumes ('img', 'label' (D, H, W)), 20 patients x ED / ES
    data_root/lists/lists_ACDC/{train,valid,test}.txt  file names WITH '.npz', one a line

MSVM-UNet keeps the three list files in its repository (``lists/lists_ACDC``); copy them to ``data_root`` (or point
``ann_file`` at them). Every item is ONE slice, also in the test split: each test volume (one cardiac phase of one
patient, 40 in all) is listed as its slices with ``case_name`` (``case_002_volume_ED``), ``slice_index`` and
``num_slices`` for ``mmssm.SynapseMetric``, which scores each volume as one case exactly as for Synapse (the official
``eval.py`` / ``inference.py`` share the rules). Labels: 0 background, 1 RV, 2 Myo, 3 LV. The listing is
``VolumeSliceDataset``'s (``mmssm.datasets.volume_slices``), shared with ``mmssm.SynapseDataset``.
"""
import re

from mmssm.registry import DATASETS

from .slice_transforms import ACDC_STRUCTURES
from .volume_slices import VolumeSliceDataset

# 'case_001_sliceED_3(.npz)': the patient, the phase and the slice
_SLICE_NAME = re.compile(r'^(?P<patient>.+)_slice(?P<phase>E[DS])_(?P<index>\d+)$')


def _stem(name):
    return name[:-len('.npz')] if name.endswith('.npz') else name


@DATASETS.register_module()
class ACDCDataset(VolumeSliceDataset):
    """Slices of cardiac MRI; classes 'background' (0), 'RV' (1), 'Myo' (2), 'LV' (3) (``ACDC_STRUCTURES``).

    Args:
        ann_file: the list file, relative to ``data_root``: slice file names (train / valid) or volume file names
            (test, with ``volumes``); the names carry their '.npz'.
        data_prefix: ``dict(img_path=...)``: 'train', 'valid' or 'test'.
        volumes: False: each listed name is a slice file; True: each listed name is a (D, H, W) volume, expanded into
            its D slices.
        **kwargs: ``mmssm.datasets.volume_slices.VolumeSliceDataset`` arguments (``img_suffix``, default '' as the
            list names end in '.npz'; ``array_keys``, default ('img', 'label')) and ``mmseg.datasets.BaseSegDataset``
            ones (``data_root``, ``pipeline``, ...).

    ``case_name``: the volume's file name without '.npz' (``case_002_volume_ED``); for a training slice the name of
    the volume it was cut from (``case_001_sliceED_3.npz`` -> ``case_001_volume_ED``).
    """

    METAINFO = dict(classes=('background', *ACDC_STRUCTURES),
                    palette=[[0, 0, 0], [30, 144, 255], [0, 255, 0], [255, 0, 0]])  # the official colours
    SLICE_SUFFIX = ''
    VOLUME_SUFFIXES = ('', )
    ARRAY_KEYS = ('img', 'label')
    EXAMPLES = dict(ann_file="'lists/lists_ACDC/train.txt', 'lists/lists_ACDC/test.txt'",
                    img_path="dict(img_path='train') or dict(img_path='test')")

    def __init__(self, ann_file='lists/lists_ACDC/train.txt', data_prefix=dict(img_path='train'), **kwargs):
        super().__init__(ann_file=ann_file, data_prefix=data_prefix, **kwargs)

    @staticmethod
    def case_name(name, volume):
        stem = _stem(name)
        match = None if volume else _SLICE_NAME.match(stem)
        return f'{match["patient"]}_volume_{match["phase"]}' if match else stem
