"""Tiny datasets in the real on-disk formats of ImageNet, COCO, ADE20K, LEVIR-CD and ISIC, for end-to-end tests of
configs.

Each ``make_*`` function writes a handful of small shape pictures (``mmssm.datasets.shapes``) into ``root`` in
exactly the layout the config's dataset class reads, and returns ``root``; point the config's ``data_root`` at it.
The output depends only on the arguments (same seed, same bytes). Shape kinds stand in for real classes:

| function | layout under ``root`` | dataset class |
|---|---|---|
| ``make_imagenet`` | ``train/<wnid>/*.JPEG``, ``val/*.JPEG``, ``meta/{train,val}.txt`` | mmpretrain ``ImageNet`` |
| ``make_coco`` | ``{train,val}2017/*.jpg``, ``annotations/instances_{train,val}2017.json`` (polygons) | mmdet ``CocoDataset`` |
| ``make_ade20k`` | ``images/{training,validation}/*.jpg``, ``annotations/{training,validation}/*.png`` | mmseg ``ADE20KDataset`` |
| ``make_levir_cd`` | ``{train,val,test}/{A,B,label}/*.png`` (label 0 / 255 = changed) | ``mmssm.LEVIRCDDataset`` |
| ``make_isic`` | ``{train,val}/{images,masks}/*.png`` (mask ``<id>_segmentation.png``, 0 / 255) | ``mmssm.ISICDataset`` |

``TINY_DATASETS`` maps a dataset ``type`` to its maker, so a test can fill in whatever a config asks for.
"""
import json
import os.path as osp
from pathlib import Path

import numpy as np
from PIL import Image

from mmssm.datasets.shapes import SHAPE_KINDS, render_scene, scene_rng

# The first ImageNet-1k synsets, in the class-index order of the official devkit (tench, goldfish, great white
# shark, tiger shark): one per shape kind.
IMAGENET_WNIDS = ('n01440764', 'n01443537', 'n01484850', 'n01491361')
# The 80 COCO categories with their real (non-contiguous) ids, as in instances_*2017.json; shapes use the first four
# (person, bicycle, car, motorcycle), one per shape kind.
COCO_NAMES = (
    'person,bicycle,car,motorcycle,airplane,bus,train,truck,boat,traffic light,fire hydrant,stop sign,'
    'parking meter,bench,bird,cat,dog,horse,sheep,cow,elephant,bear,zebra,giraffe,backpack,umbrella,'
    'handbag,tie,suitcase,frisbee,skis,snowboard,sports ball,kite,baseball bat,baseball glove,skateboard,'
    'surfboard,tennis racket,bottle,wine glass,cup,fork,knife,spoon,bowl,banana,apple,sandwich,orange,'
    'broccoli,carrot,hot dog,pizza,donut,cake,chair,couch,potted plant,bed,dining table,toilet,tv,laptop,'
    'mouse,remote,keyboard,cell phone,microwave,oven,toaster,sink,refrigerator,book,clock,vase,scissors,'
    'teddy bear,hair drier,toothbrush').split(',')
COCO_IDS = (*range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70, *range(72, 83),
            *range(84, 91))
COCO_CATEGORIES = tuple({'id': i, 'name': n} for i, n in zip(COCO_IDS, COCO_NAMES))
# ADE20K label values (0 = "other", ignored with reduce_zero_label; 1 = wall): the background is wall and shape
# kind k is label k + 2 (building, sky, floor, tree).
ADE20K_BACKGROUND = 1
ADE20K_FIRST_SHAPE = 2

# shapes per ISIC picture (their union is the lesion)
ISIC_MAX_SHAPES = 3

_SPLIT_SEEDS = {'train': 0, 'val': 1, 'test': 2}


def _save_jpeg(image, path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)


def _save_png(image, path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def _scene(seed, split, index, size, max_shapes, *layer):
    """One picture with 1..max_shapes shapes of random kinds; ``layer`` keys further pictures of the same sample."""
    rng = scene_rng(seed, _SPLIT_SEEDS[split], index, *layer)
    kinds = rng.integers(0, len(SHAPE_KINDS), size=rng.integers(1, max_shapes + 1))
    return render_scene(rng, size, kinds)


def make_imagenet(root, num_train=8, num_val=4, size=64, seed=0):
    """ImageNet-1k as mmpretrain reads it: class folders for train, flat val, and ``meta/{split}.txt`` lists.

    Each picture holds one shape; its kind picks the synset in ``IMAGENET_WNIDS`` (class indices 0..3).
    """
    root = Path(root)
    for split, count in (('train', num_train), ('val', num_val)):
        lines = []
        for index in range(count):
            kind = index % len(SHAPE_KINDS)
            rng = scene_rng(seed, _SPLIT_SEEDS[split], index)
            image, _, _ = render_scene(rng, size, kinds=[kind])
            wnid = IMAGENET_WNIDS[kind]
            if split == 'train':
                relative = f'{wnid}/{wnid}_{index + 1}.JPEG'
            else:
                relative = f'ILSVRC2012_val_{index + 1:08d}.JPEG'
            _save_jpeg(image, root / split / relative)
            lines.append(f'{relative} {kind}')
        (root / 'meta').mkdir(parents=True, exist_ok=True)
        (root / 'meta' / f'{split}.txt').write_text('\n'.join(lines) + '\n')
    return str(root)


def make_coco(root, num_train=4, num_val=2, size=64, max_shapes=3, seed=0):
    """COCO 2017 instances: jpg folders and ``annotations/instances_{split}2017.json`` with polygon masks."""
    root = Path(root)
    for split, count in (('train', num_train), ('val', num_val)):
        images, annotations = [], []
        for index in range(count):
            image, shapes, _ = _scene(seed, split, index, size, max_shapes)
            image_id = index + 1
            file_name = f'{image_id:012d}.jpg'
            _save_jpeg(image, root / f'{split}2017' / file_name)
            images.append(dict(id=image_id, file_name=file_name, height=size, width=size))
            for shape in shapes:
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image_id, category_id=COCO_CATEGORIES[shape.kind]['id'],
                    segmentation=[[round(float(v), 2) for v in shape.polygon.reshape(-1)]],  # (V, 2) -> [x0, y0, ...]
                    area=shape.area, bbox=[round(v, 2) for v in shape.bbox_xywh], iscrowd=0))
        content = dict(info=dict(description=f'mmssm tiny COCO {split}'), licenses=[], images=images,
                       annotations=annotations, categories=[dict(c, supercategory='object') for c in COCO_CATEGORIES])
        path = root / 'annotations' / f'instances_{split}2017.json'
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))
    return str(root)


def make_ade20k(root, num_train=4, num_val=2, size=64, max_shapes=3, seed=0):
    """ADEChallengeData2016: ``images/<split>/*.jpg`` and uint8 label pngs in ``annotations/<split>``."""
    root = Path(root)
    for split, folder, prefix, count in (('train', 'training', 'ADE_train', num_train),
                                         ('val', 'validation', 'ADE_val', num_val)):
        for index in range(count):
            image, _, kind_map = _scene(seed, split, index, size, max_shapes)
            labels = np.where(kind_map < 0, ADE20K_BACKGROUND, kind_map + ADE20K_FIRST_SHAPE).astype(np.uint8)
            stem = f'{prefix}_{index + 1:08d}'
            _save_jpeg(image, root / 'images' / folder / f'{stem}.jpg')
            label_path = root / 'annotations' / folder / f'{stem}.png'
            label_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(labels).save(label_path)
    return str(root)


def make_levir_cd(root, num_train=4, num_val=2, size=64, max_shapes=3, seed=0):
    """LEVIR-CD in the Open-CD layout: ``{split}/A``, ``{split}/B`` (RGB png) and ``{split}/label`` (0 / 255 png).

    Both dates share one scene (background and "unchanged" shapes); date 1 has the shapes of a second scene pasted
    on (later removed), date 2 those of a third (added). The label is 255 exactly where the two dates differ.
    'test' has ``num_val`` pairs of its own.
    """
    root = Path(root)
    for split, count in (('train', num_train), ('val', num_val), ('test', num_val)):
        for index in range(count):
            common, _, _ = _scene(seed, split, index, size, max_shapes)
            dates = []
            for layer in (1, 2):
                shapes, _, kind_map = _scene(seed, split, index, size, max_shapes, layer)
                dates.append(np.where(kind_map[..., None] >= 0, shapes, common))  # (H, W, 1) mask over (H, W, 3)
            changed = np.any(dates[0] != dates[1], axis=-1)  # (H, W)
            name = f'{split}_{index + 1}.png'
            _save_png(dates[0], root / split / 'A' / name)
            _save_png(dates[1], root / split / 'B' / name)
            _save_png(np.where(changed, 255, 0).astype(np.uint8), root / split / 'label' / name)
    return str(root)


def make_isic(root, num_train=4, num_val=2, size=64, seed=0):
    """ISIC 2017 / 2018 in VM-UNet's layout: ``{split}/images/ISIC_<id>.png`` (RGB) and
    ``{split}/masks/ISIC_<id>_segmentation.png`` (single-channel 0 / 255; the names differ from the image names as in
    the ISIC releases, so only the sorted position pairs them). The "lesion" is the union of a scene's 1-3 shapes.
    Ids run on across the splits (train first), as ISIC ids are unique.
    """
    root = Path(root)
    first_id = 0
    for split, count in (('train', num_train), ('val', num_val)):
        for index in range(count):
            image, _, kind_map = _scene(seed, split, index, size, ISIC_MAX_SHAPES)
            stem = f'ISIC_{first_id + index:07d}'
            _save_png(image, root / split / 'images' / f'{stem}.png')
            mask = np.where(kind_map >= 0, 255, 0).astype(np.uint8)  # union of the shapes
            _save_png(mask, root / split / 'masks' / f'{stem}_segmentation.png')
        first_id += count
    return str(root)


TINY_DATASETS = {
    'ImageNet': make_imagenet,
    'CocoDataset': make_coco,
    'ADE20KDataset': make_ade20k,
    'LEVIRCDDataset': make_levir_cd,
    'ISICDataset': make_isic,
}


def make_tiny_dataset(dataset_type, root, **kwargs):
    """Write the tiny dataset for a config's dataset ``type`` (``'mmdet.CocoDataset'`` works too) into ``root``."""
    name = dataset_type.split('.')[-1]
    if name not in TINY_DATASETS:
        raise KeyError(f'no tiny dataset for dataset type {dataset_type!r}; known: {sorted(TINY_DATASETS)}. '
                       f'Add a maker to mmssm.testing.tiny_datasets.TINY_DATASETS.')
    return TINY_DATASETS[name](osp.abspath(root), **kwargs)
