"""``mmssm.SynapseDataset``: Synapse multi-organ CT (BTCV abdomen) in the TransUNet release, for mmseg.

Layout (TransUNet / Swin-Unet / VM-UNet's ``data/Synapse``)::

    data_root/train_npz/<case>_slice<k>.npz     training slices ('image', 'label' (H, W))
    data_root/test_vol_h5/<case>.npy.h5         test volumes ('image', 'label' (D, H, W); h5py)
    data_root/lists/lists_Synapse/train.txt     slice names, one a line (case0005_slice000)
    data_root/lists/lists_Synapse/test_vol.txt  case names, one a line (case0001)

(VM-UNet's config reads ``lists/lists_Synapse``; its README draws the folder as ``lists/list_Synapse``: set
``ann_file`` to where the lists are.) Every item of the dataset is ONE slice, also in the test split: each test
volume is listed as its D slices in order, carrying ``case_name``, ``slice_index`` and ``num_slices``, so mmseg's
test loop predicts slice by slice like the official ``test_single_volume`` and ``mmssm.SynapseMetric`` puts the
volumes back together (add the three keys to ``PackSegInputs``' ``meta_keys``). ``LoadSynapseSlice``
(``mmssm.datasets.slice_transforms``) reads both kinds of item.
"""
import os.path as osp

from mmengine import fileio
from mmseg.datasets import BaseSegDataset

from mmssm.registry import DATASETS

from .slice_transforms import SYNAPSE_ORGANS, volume_depth
# PackSegInputs' default keys plus the ones SynapseMetric needs to rebuild the volumes
SYNAPSE_META_KEYS = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
                     'flip_direction', 'reduce_zero_label', 'case_name', 'slice_index', 'num_slices')
# test volume suffixes tried in this order when img_suffix is None: the release's HDF5, then a numpy conversion
VOLUME_SUFFIXES = ('.npy.h5', '.npz')


@DATASETS.register_module()
class SynapseDataset(BaseSegDataset):
    """Slices of abdominal CT; classes 'background' (0) and the 8 organs 1 aorta ... 8 stomach
    (``SYNAPSE_ORGANS``).

    Args:
        ann_file: the list file, relative to ``data_root``: slice names (training) or case names (``volumes``).
        data_prefix: ``dict(img_path=...)``, the folder of the listed files (``train_npz`` / ``test_vol_h5``).
        volumes: False: each listed name is a slice file ``<img_path>/<name><img_suffix>``; True: each listed
            name is a (D, H, W) volume, expanded into its D slices.
        img_suffix: suffix of the listed files; None: '.npz' for slices; for volumes '.npy.h5' (the release,
            needs h5py), or '.npz' where that file does not exist (see ``VOLUME_SUFFIXES``).
        **kwargs: ``mmseg.datasets.BaseSegDataset`` arguments (``data_root``, ``pipeline``, ``metainfo``, ...);
            no ``seg_map_suffix`` (labels are in the same files) and no ``reduce_zero_label``.

    Each item has ``img_path`` and ``seg_map_path`` (the same file), ``case_name`` (``case0005``); volume slices
    also ``slice_index`` and ``num_slices``. Reading the depths of the volumes opens each once (headers only).
    """

    METAINFO = dict(classes=('background', *SYNAPSE_ORGANS),
                    palette=[[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255],
                             [0, 255, 255], [255, 128, 0], [128, 0, 255]])

    def __init__(self, ann_file='lists/lists_Synapse/train.txt', data_prefix=dict(img_path='train_npz'),
                 volumes=False, img_suffix=None, **kwargs):
        if 'img_path' not in data_prefix:
            raise ValueError("SynapseDataset data_prefix needs img_path, e.g. dict(img_path='train_npz') or "
                             "dict(img_path='test_vol_h5')")
        if not ann_file:
            raise ValueError('SynapseDataset needs ann_file, the list of slice or case names (e.g. '
                             "'lists/lists_Synapse/train.txt', 'lists/lists_Synapse/test_vol.txt')")
        if kwargs.get('reduce_zero_label'):
            raise ValueError('SynapseDataset labels 0 (background) .. 8: reduce_zero_label must be False')
        kwargs.pop('seg_map_suffix', None)
        self.volumes = volumes
        super().__init__(ann_file=ann_file, data_prefix=data_prefix, img_suffix=img_suffix, **kwargs)

    def load_data_list(self):
        """One dict per slice (per listed slice file, or per slice of each listed volume)."""
        names = [line.strip() for line in fileio.list_from_file(self.ann_file, backend_args=self.backend_args)
                 if line.strip()]
        folder = self.data_prefix['img_path']
        common = dict(label_map=self.label_map, reduce_zero_label=False, seg_fields=[])
        if not self.volumes:
            suffix = self.img_suffix or '.npz'
            paths = [osp.join(folder, name + suffix) for name in names]
            self._check_exist(paths)
            return [dict(img_path=path, seg_map_path=path, case_name=name.split('_slice')[0], **common)
                    for name, path in zip(names, paths)]
        data_list = []
        for name in names:
            path = self._volume_path(folder, name)
            depth = volume_depth(path, backend_args=self.backend_args)
            data_list += [dict(img_path=path, seg_map_path=path, case_name=name, slice_index=index, num_slices=depth,
                               **common) for index in range(depth)]
        return data_list

    def _volume_path(self, folder, name):
        suffixes = (self.img_suffix, ) if self.img_suffix else VOLUME_SUFFIXES
        paths = [osp.join(folder, name + suffix) for suffix in suffixes]
        for path in paths:
            if fileio.exists(path, backend_args=self.backend_args):
                return path
        raise FileNotFoundError(f'SynapseDataset: no volume for case {name} listed in {self.ann_file}: tried '
                                f'{", ".join(paths)}')

    def _check_exist(self, paths):
        missing = [path for path in paths if not fileio.exists(path, backend_args=self.backend_args)]
        if missing:
            raise FileNotFoundError(f'SynapseDataset: {len(missing)} of the {len(paths)} slices listed in '
                                    f'{self.ann_file} do not exist, e.g. {", ".join(missing[:5])}')
