"""``mmssm.LEVIRCDDataset``: binary change detection in the LEVIR-CD / WHU-CD / Open-CD folder layout, for mmseg.

Layout (one folder per split, the same file name in all three sub-folders)::

    data_root/train/A/<name>.png      date-1 image
    data_root/train/B/<name>.png      date-2 image
    data_root/train/label/<name>.png  0/255 change mask (255 = changed)

``data_prefix=dict(img_path='train/A', img_path2='train/B', seg_map_path='train/label')`` picks a split. Each item
carries ``img_path``, ``img_path2`` and ``seg_map_path``; ``LoadImagePairFromFile`` and ``LoadBinaryLabel``
(``mmssm.datasets.transforms``) turn them into a 6-channel image and a 0/1 label.
"""
import os.path as osp

from mmengine import fileio
from mmseg.datasets import BaseSegDataset

from mmssm.registry import DATASETS

MAX_LISTED = 5  # unmatched files named in an error message


@DATASETS.register_module()
class LEVIRCDDataset(BaseSegDataset):
    """Image pairs and change masks; classes 'unchanged' (0) and 'changed' (1).

    Args:
        data_prefix: folders of the date-1 images, date-2 images and labels, relative to ``data_root``:
            ``dict(img_path=..., img_path2=..., seg_map_path=...)``.
        img_suffix: suffix of both images. seg_map_suffix: suffix of the labels.
        **kwargs: ``mmseg.datasets.BaseSegDataset`` arguments (``data_root``, ``pipeline``, ``ann_file``, ...).
            ``ann_file`` (optional) lists one name per line (with or without ``img_suffix``); without it every
            image in the date-1 folder is used, and every file in the three folders must have its two partners.
    """

    METAINFO = dict(classes=('unchanged', 'changed'), palette=[[0, 0, 0], [255, 255, 255]])
    # data_prefix key -> what its files are (a subclass lists its own: SECONDDataset, XBDDataset)
    ROLES = dict(img_path='date-1 image', img_path2='date-2 image', seg_map_path='label')
    PREFIX_EXAMPLE = "dict(img_path='train/A', img_path2='train/B', seg_map_path='train/label')"

    def __init__(self, data_prefix, img_suffix='.png', seg_map_suffix='.png', **kwargs):
        name = type(self).__name__
        missing = [key for key in self.ROLES if key not in data_prefix]
        if missing:
            raise ValueError(f'{name} data_prefix needs the keys {tuple(self.ROLES)}, missing {missing}: e.g. '
                             f'{self.PREFIX_EXAMPLE}')
        if kwargs.get('reduce_zero_label'):
            raise ValueError(f'{name} labels are class indices from 0: reduce_zero_label must be False')
        super().__init__(data_prefix=data_prefix, img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

    def suffixes(self):
        """data_prefix key -> the suffix after the sample name of its files."""
        return {key: self.img_suffix if key.startswith('img_path') else self.seg_map_suffix for key in self.ROLES}

    def load_data_list(self):
        """One dict per name found in every folder; FileNotFoundError naming any file without its partners."""
        suffixes = self.suffixes()
        first = next(iter(self.ROLES))
        names = {key: self._list_names(self.data_prefix[key], suffixes[key]) for key in self.ROLES}
        if self.ann_file:
            wanted = [self._strip(line.strip(), suffixes[first])
                      for line in fileio.list_from_file(self.ann_file, backend_args=self.backend_args) if line.strip()]
            problems = [(key, sorted(set(wanted) - names[key]), 'listed in ' + self.ann_file) for key in self.ROLES]
        else:
            wanted = sorted(names[first])
            everything = set().union(*names.values())
            problems = [(key, sorted(everything - names[key]), 'named in the other folders') for key in self.ROLES]
        errors = [self._describe(key, absent, suffixes[key], reason) for key, absent, reason in problems if absent]
        if errors:
            raise FileNotFoundError(f'{type(self).__name__}: unmatched files; ' + '; '.join(errors))
        return [dict({key: osp.join(self.data_prefix[key], name + suffixes[key]) for key in self.ROLES},
                     label_map=self.label_map, reduce_zero_label=False, seg_fields=[]) for name in wanted]

    def _list_names(self, folder, suffix):
        """File names below ``folder`` ending in ``suffix``, without the suffix."""
        if not fileio.isdir(folder, backend_args=self.backend_args):
            raise FileNotFoundError(f'{type(self).__name__}: folder {folder} does not exist (check data_root and '
                                    'data_prefix)')
        files = fileio.list_dir_or_file(folder, list_dir=False, suffix=suffix, recursive=True,
                                        backend_args=self.backend_args)
        return {self._strip(name, suffix) for name in files}

    @staticmethod
    def _strip(name, suffix):
        return name[:-len(suffix)] if suffix and name.endswith(suffix) else name

    def _describe(self, key, absent, suffix, reason):
        paths = [osp.join(self.data_prefix[key], name + suffix) for name in absent[:MAX_LISTED]]
        more = f' and {len(absent) - MAX_LISTED} more' if len(absent) > MAX_LISTED else ''
        return f'{len(absent)} missing {self.ROLES[key]}(s) ({reason}): {", ".join(paths)}{more}'
