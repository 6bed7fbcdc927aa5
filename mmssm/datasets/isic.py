"""``mmssm.ISICDataset``: ISIC 2017 / 2018 skin-lesion segmentation in VM-UNet's folder layout, for mmseg.

Layout (VM-UNet's ``data/isic2017``, ``data/isic2018``; ``val`` is the test set)::

    data_root/train/images/<name>.png   RGB dermoscopy image
    data_root/train/masks/<name>.png    single-channel 0 / 255 lesion mask
    data_root/val/images/...            data_root/val/masks/...

Like VM-UNet's ``NPY_datasets``, the sorted image files are paired with the sorted mask files BY POSITION: the names
may differ (``ISIC_0000000.png`` and ``ISIC_0000000_segmentation.png``); the two folders must hold the same number of
files. ``LoadBinaryLabel`` (``mmssm.datasets.transforms``) turns a mask into 0 / 1 (grey >= 128, VM-UNet's
``mask / 255 >= 0.5``).
"""
import os.path as osp

from mmengine import fileio
from mmengine.logging import print_log
from mmseg.datasets import BaseSegDataset

from mmssm.registry import DATASETS


@DATASETS.register_module()
class ISICDataset(BaseSegDataset):
    """Dermoscopy images and lesion masks; classes 'background' (0) and 'lesion' (1).

    Args:
        data_prefix: folders of the images and masks relative to ``data_root``,
            ``dict(img_path='train/images', seg_map_path='train/masks')`` (``val/...`` for the test set).
        img_suffix, seg_map_suffix: only files ending in these are listed (folders are not searched recursively).
        **kwargs: ``mmseg.datasets.BaseSegDataset`` arguments (``data_root``, ``pipeline``, ``metainfo``, ...);
            no ``ann_file`` (pairs come from the folder listing) and no ``reduce_zero_label`` (labels are 0 / 1).

    A pair whose mask name does not start with its image name (``ISIC_0000000`` / ``ISIC_0000000_segmentation``
    does) is still used, as in the official code, but logged as a warning: it usually means a file is missing.
    """

    METAINFO = dict(classes=('background', 'lesion'), palette=[[0, 0, 0], [255, 255, 255]])

    def __init__(self, data_prefix=dict(img_path='train/images', seg_map_path='train/masks'), img_suffix='.png',
                 seg_map_suffix='.png', **kwargs):
        missing = [key for key in ('img_path', 'seg_map_path') if key not in data_prefix]
        if missing:
            raise ValueError(f'ISICDataset data_prefix needs img_path and seg_map_path, missing {missing}: e.g. '
                             "dict(img_path='train/images', seg_map_path='train/masks')")
        if kwargs.get('ann_file'):
            raise ValueError('ISICDataset pairs the sorted files of the image and mask folders (VM-UNet\'s rule); '
                             'it takes no ann_file')
        if kwargs.get('reduce_zero_label'):
            raise ValueError('ISICDataset labels are 0 (background) / 1 (lesion): reduce_zero_label must be False')
        super().__init__(data_prefix=data_prefix, img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

    def load_data_list(self):
        """One dict per position of the sorted image and mask lists; ValueError if their lengths differ."""
        images = self._list(self.data_prefix['img_path'], self.img_suffix)
        masks = self._list(self.data_prefix['seg_map_path'], self.seg_map_suffix)
        if len(images) != len(masks):
            raise ValueError(
                f'ISICDataset pairs images and masks by sorted position, but {self.data_prefix["img_path"]} holds '
                f'{len(images)} *{self.img_suffix} image(s) and {self.data_prefix["seg_map_path"]} holds '
                f'{len(masks)} *{self.seg_map_suffix} mask(s)')
        odd = [(image, mask) for image, mask in zip(images, masks)
               if not osp.splitext(mask)[0].startswith(osp.splitext(image)[0])]
        if odd:
            print_log(f'ISICDataset: {len(odd)} of {len(images)} masks are not named after their image (paired by '
                      f'sorted position), e.g. {odd[0][0]} with {odd[0][1]}', logger='current', level=30)
        return [dict(img_path=osp.join(self.data_prefix['img_path'], image),
                     seg_map_path=osp.join(self.data_prefix['seg_map_path'], mask), label_map=self.label_map,
                     reduce_zero_label=False, seg_fields=[]) for image, mask in zip(images, masks)]

    def _list(self, folder, suffix):
        """Sorted names of the files directly in ``folder`` that end in ``suffix``."""
        if not fileio.isdir(folder, backend_args=self.backend_args):
            raise FileNotFoundError(f'ISICDataset: folder {folder} does not exist (check data_root and data_prefix)')
        return sorted(fileio.list_dir_or_file(folder, list_dir=False, suffix=suffix, recursive=False,
                                              backend_args=self.backend_args))
