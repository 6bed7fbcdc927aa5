"""``VolumeSliceDataset``: the base of the datasets in the TransUNet slice / volume protocol (``mmssm.SynapseDataset``,
``mmssm.ACDCDataset``), for mmseg. Not registered: a subclass sets the classes, the file names and the array names.

A list file names one item a line. Training items are slice files (``<img_path>/<name><suffix>``, an image and a
label array (H, W)); with ``volumes=True`` each listed name is a (D, H, W) volume, listed as its D slices in order
with ``case_name``, ``slice_index`` and ``num_slices``, so that mmseg's test loop predicts slice by slice like the
official ``test_single_volume`` and ``mmssm.SynapseMetric`` puts the volumes back together per case (add the three
keys to ``PackSegInputs``' ``meta_keys``: ``VOLUME_META_KEYS``). Every item also carries ``array_keys``, the names of
the image and label arrays, which ``mmssm.LoadSynapseSlice`` reads.
"""
import os.path as osp

from mmengine import fileio
from mmseg.datasets import BaseSegDataset

from .slice_transforms import DEFAULT_ARRAY_KEYS, volume_depth

# PackSegInputs' default keys plus the ones SynapseMetric needs to rebuild the volumes
VOLUME_META_KEYS = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
                    'flip_direction', 'reduce_zero_label', 'case_name', 'slice_index', 'num_slices')


class VolumeSliceDataset(BaseSegDataset):
    """Slices listed by name, or volumes listed by name and expanded into their slices.

    Class attributes a subclass sets: ``METAINFO`` (classes with 'background' = 0 first), ``SLICE_SUFFIX`` (appended
    to a listed slice name when ``img_suffix`` is None), ``VOLUME_SUFFIXES`` (tried in order for a listed volume name
    when ``img_suffix`` is None), ``ARRAY_KEYS`` (image and label array names), ``EXAMPLES`` (list files and folders
    for the error messages); and ``case_name`` for the case of a listed name.

    Args:
        ann_file: the list file, relative to ``data_root``: slice names, or volume names (``volumes``).
        data_prefix: ``dict(img_path=...)``, the folder of the listed files.
        volumes: False: each listed name is a slice file; True: each is a (D, H, W) volume, expanded into its D
            slices.
        img_suffix: suffix of the listed files ('' when the list names carry it); None: the class defaults above.
        array_keys: (image, label) array names; None: ``ARRAY_KEYS``.
        **kwargs: ``mmseg.datasets.BaseSegDataset`` arguments (``data_root``, ``pipeline``, ``metainfo``, ...);
            no ``seg_map_suffix`` (labels are in the same files) and no ``reduce_zero_label``.

    Each item has ``img_path`` and ``seg_map_path`` (the same file), ``case_name`` and ``array_keys``; volume slices
    also ``slice_index`` and ``num_slices``. Reading the depths of the volumes opens each once (headers only).
    """

    SLICE_SUFFIX = '.npz'
    VOLUME_SUFFIXES = ('.npz', )
    ARRAY_KEYS = DEFAULT_ARRAY_KEYS
    EXAMPLES = dict(ann_file="'lists/train.txt'", img_path="dict(img_path='train')")

    def __init__(self, ann_file, data_prefix, volumes=False, img_suffix=None, array_keys=None, **kwargs):
        name = type(self).__name__
        if 'img_path' not in data_prefix:
            raise ValueError(f'{name} data_prefix needs img_path, e.g. {self.EXAMPLES["img_path"]}')
        if not ann_file:
            raise ValueError(f'{name} needs ann_file, the list of slice or volume names (e.g. '
                             f'{self.EXAMPLES["ann_file"]})')
        if kwargs.get('reduce_zero_label'):
            raise ValueError(f'{name} labels 0 (background) .. {len(self.METAINFO["classes"]) - 1}: '
                             'reduce_zero_label must be False')
        array_keys = tuple(array_keys or self.ARRAY_KEYS)
        if len(array_keys) != 2:
            raise ValueError(f'{name} array_keys must be (image, label) names, got {array_keys}')
        kwargs.pop('seg_map_suffix', None)
        self.volumes = volumes
        self.array_keys = array_keys
        super().__init__(ann_file=ann_file, data_prefix=data_prefix, img_suffix=img_suffix, **kwargs)

    @staticmethod
    def case_name(name, volume):
        """The case a listed ``name`` belongs to: a volume's name, or a slice name up to '_slice'."""
        return name if volume else name.split('_slice')[0]

    def load_data_list(self):
        """One dict per slice (per listed slice file, or per slice of each listed volume)."""
        names = [line.strip() for line in fileio.list_from_file(self.ann_file, backend_args=self.backend_args)
                 if line.strip()]
        folder = self.data_prefix['img_path']
        common = dict(label_map=self.label_map, reduce_zero_label=False, seg_fields=[], array_keys=self.array_keys)
        if not self.volumes:
            suffix = self.SLICE_SUFFIX if self.img_suffix is None else self.img_suffix
            paths = [osp.join(folder, name + suffix) for name in names]
            self._check_exist(paths)
            return [dict(img_path=path, seg_map_path=path, case_name=self.case_name(name, False), **common)
                    for name, path in zip(names, paths)]
        data_list = []
        for name in names:
            path = self._volume_path(folder, name)
            depth = volume_depth(path, backend_args=self.backend_args, keys=self.array_keys)
            case = self.case_name(name, True)
            data_list += [dict(img_path=path, seg_map_path=path, case_name=case, slice_index=index, num_slices=depth,
                               **common) for index in range(depth)]
        return data_list

    def _volume_path(self, folder, name):
        suffixes = self.VOLUME_SUFFIXES if self.img_suffix is None else (self.img_suffix, )
        paths = [osp.join(folder, name + suffix) for suffix in suffixes]
        for path in paths:
            if fileio.exists(path, backend_args=self.backend_args):
                return path
        raise FileNotFoundError(f'{type(self).__name__}: no volume for case {name} listed in {self.ann_file}: '
                                f'tried {", ".join(paths)}')

    def _check_exist(self, paths):
        missing = [path for path in paths if not fileio.exists(path, backend_args=self.backend_args)]
        if missing:
            raise FileNotFoundError(f'{type(self).__name__}: {len(missing)} of the {len(paths)} slices listed in '
                                    f'{self.ann_file} do not exist, e.g. {", ".join(missing[:5])}')
