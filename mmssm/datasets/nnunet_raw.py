"""``mmssm.NNUNetRaw2DDataset``: a 2D data set in nnU-Net v2's raw format, for mmseg (U-Mamba's Endoscopy and
Microscopy sets, LightM-UNet's chest X-rays, Swin-UMamba's 2D sets).

Layout (nnU-Net's ``dataset_format.md``)::

    data_root/dataset.json                      channel_names, labels, file_ending (e.g. ".png")
    data_root/imagesTr/<case>_0000<ending>      channel files of each case: _0000, _0001, ...
    data_root/labelsTr/<case><ending>           label map with the values of dataset.json's labels
    data_root/imagesTs/..., labelsTs/...        the test split (``split='Ts'``)

A natural-image file (PNG with R, G, B) holds several channels at once: a case's channel files together must give as
many channels as ``channel_names`` lists. Classes are dataset.json's label names ordered by value (0 .. K - 1, as
nnU-Net requires); region-based labels are not supported.
"""
import io
import json
import os.path as osp

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio
from mmseg.datasets import BaseSegDataset

from mmssm.registry import DATASETS, TRANSFORMS


def read_dataset_json(data_root, backend_args=None):
    """dataset.json as a dict with its ``channel_names``, ``labels`` and ``file_ending`` checked."""
    path = osp.join(data_root, 'dataset.json')
    meta = json.loads(fileio.get_text(path, backend_args=backend_args))
    missing = [key for key in ('channel_names', 'labels', 'file_ending') if key not in meta]
    if missing:
        raise ValueError(f'{path} lacks {missing}: not an nnU-Net v2 raw data set')
    values = meta['labels'].values()
    if not all(isinstance(v, int) for v in values):
        raise ValueError(f'{path}: region-based labels {meta["labels"]} are not supported (one int per class)')
    if sorted(values) != list(range(len(meta['labels']))):
        raise ValueError(f'{path}: label values must be 0 .. {len(meta["labels"]) - 1}, got {sorted(values)}')
    return meta


@DATASETS.register_module()
class NNUNetRaw2DDataset(BaseSegDataset):
    """The cases of one split of an nnU-Net raw 2D data set; classes and channels from its dataset.json.

    Args:
        data_root: the data set folder (``.../nnUNet_raw/DatasetXXX_Name``).
        split: ``'Tr'`` (imagesTr / labelsTr) or ``'Ts'`` (imagesTs / labelsTs).
        **kwargs: ``mmseg.datasets.BaseSegDataset`` arguments (``pipeline``, ``test_mode``, ...); no ``ann_file``,
            ``data_prefix``, suffixes or ``metainfo`` classes (all come from the layout and dataset.json).

    Each item holds ``img_path`` (the first channel file), ``channel_paths`` (all of them, for
    :class:`LoadNNUNetImage`), ``seg_map_path``, ``case`` and ``num_channels``.
    """

    def __init__(self, data_root, split='Tr', **kwargs):
        if split not in ('Tr', 'Ts'):
            raise ValueError(f"NNUNetRaw2DDataset: split must be 'Tr' or 'Ts', got {split!r}")
        fixed = ('ann_file', 'data_prefix', 'img_suffix', 'seg_map_suffix', 'metainfo')
        taken = [key for key in fixed if key in kwargs]
        if taken:
            raise ValueError(f'NNUNetRaw2DDataset reads {taken} from the nnU-Net layout and dataset.json; drop them')
        self.split = split
        self.nnunet_meta = read_dataset_json(data_root, kwargs.get('backend_args'))
        classes = tuple(sorted(self.nnunet_meta['labels'], key=self.nnunet_meta['labels'].get))
        ending = self.nnunet_meta['file_ending']
        super().__init__(data_root=data_root, img_suffix=ending, seg_map_suffix=ending,
                         data_prefix=dict(img_path=f'images{split}', seg_map_path=f'labels{split}'),
                         metainfo=dict(classes=classes), **kwargs)

    def load_data_list(self):
        images, labels = self.data_prefix['img_path'], self.data_prefix['seg_map_path']
        ending = self.img_suffix
        files = sorted(fileio.list_dir_or_file(images, list_dir=False, suffix=ending, backend_args=self.backend_args))
        cases = [name[:-len(ending) - 5] for name in files if name[:-len(ending)].endswith('_0000')]
        if not cases:
            raise FileNotFoundError(f'NNUNetRaw2DDataset: no <case>_0000{ending} file in {images}')
        present, data_list = set(files), []
        for case in cases:
            channels = []
            while f'{case}_{len(channels):04d}{ending}' in present:
                channels.append(osp.join(images, f'{case}_{len(channels):04d}{ending}'))
            label = osp.join(labels, case + ending)
            if not fileio.exists(label, backend_args=self.backend_args):
                raise FileNotFoundError(f'NNUNetRaw2DDataset: case {case} has no label {label}')
            data_list.append(dict(img_path=channels[0], channel_paths=channels, seg_map_path=label, case=case,
                                  num_channels=len(self.nnunet_meta['channel_names']), label_map=self.label_map,
                                  reduce_zero_label=False, seg_fields=[]))
        return data_list


@TRANSFORMS.register_module()
class LoadNNUNetImage(BaseTransform):
    """Read a case's channel files (``channel_paths``) and stack them into a float32 (H, W, C) ``img``; the channel
    count must be ``num_channels`` (dataset.json's). Files are decoded unchanged (16-bit TIF / PNG keep their
    values; a PNG's R, G, B stay in that order)."""

    def __init__(self, backend_args=None):
        self.backend_args = backend_args

    def transform(self, results):
        from PIL import Image
        planes = []
        for path in results['channel_paths']:
            image = np.asarray(Image.open(io.BytesIO(fileio.get(path, backend_args=self.backend_args))))
            planes.append(image[..., None] if image.ndim == 2 else image)
        if len({plane.shape[:2] for plane in planes}) != 1:
            raise ValueError(f'{results["case"]}: channel files differ in size {[p.shape for p in planes]}')
        img = np.concatenate(planes, axis=-1).astype(np.float32)
        if img.shape[-1] != results['num_channels']:
            raise ValueError(f'{results["case"]}: {img.shape[-1]} channels in {len(planes)} file(s), dataset.json '
                             f'names {results["num_channels"]}')
        results.update(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2])
        return results


@TRANSFORMS.register_module()
class ZScoreNormalize(BaseTransform):
    """nnU-Net's ``ZScoreNormalization`` of non-CT images: per image and channel (x - mean) / max(std, 1e-8)."""

    def transform(self, results):
        img = results['img'].astype(np.float32)
        mean, std = img.mean(axis=(0, 1)), img.std(axis=(0, 1))
        results['img'] = (img - mean) / np.maximum(std, 1e-8)
        return results
