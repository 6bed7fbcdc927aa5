"""Tiny datasets in the real on-disk formats of ImageNet, COCO, ADE20K, LEVIR-CD, SECOND, xBD, ISIC, Synapse and
ACDC, for end-to-end tests of configs.

Each ``make_*`` function writes a handful of small shape pictures (``mmssm.datasets.shapes``) into ``root`` in
exactly the layout the config's dataset class reads, and returns ``root``; point the config's ``data_root`` at it.
The output depends only on the arguments (same seed, same bytes). Shape kinds stand in for real classes:

| function | layout under ``root`` | dataset class |
|---|---|---|
| ``make_imagenet`` | ``train/<wnid>/*.JPEG``, ``val/*.JPEG``, ``meta/{train,val}.txt`` | mmpretrain ``ImageNet`` |
| ``make_coco`` | ``{train,val}2017/*.jpg``, ``annotations/instances_{train,val}2017.json`` (polygons) | mmdet ``CocoDataset`` |
| ``make_ade20k`` | ``images/{training,validation}/*.jpg``, ``annotations/{training,validation}/*.png`` | mmseg ``ADE20KDataset`` |
| ``make_levir_cd`` | ``{train,val,test}/{A,B,label}/*.png`` (label 0 / 255 = changed) | ``mmssm.LEVIRCDDataset`` |
| ``make_second`` | ``{train,test}/{T1,T2,GT_CD,GT_T1,GT_T2}/*.png``, ``{split}_list.txt`` | ``mmssm.SECONDDataset`` |
| ``make_xbd`` | ``{train,test}/{images,targets}/<name>_{pre,post}_disaster*.png``, ``{split}.txt`` | ``mmssm.XBDDataset`` |
| ``make_isic`` | ``{train,val}/{images,masks}/*.png`` (mask ``<id>_segmentation.png``, 0 / 255) | ``mmssm.ISICDataset`` |
| ``make_synapse`` | ``train_npz/*.npz``, ``test_vol_h5/<case>.npy.h5``, ``lists/lists_Synapse/*.txt`` | ``mmssm.SynapseDataset`` |
| ``make_nnunet_raw_2d`` | ``dataset.json``, ``images{Tr,Ts}/<case>_0000.png``, ``labels{Tr,Ts}/<case>.png`` | ``mmssm.NNUNetRaw2DDataset`` |
| ``make_acdc`` | ``{train,valid}/*.npz`` slices, ``test/*_volume_E[DS].npz``, ``lists/lists_ACDC/*.txt`` | ``mmssm.ACDCDataset`` |

``TINY_DATASETS`` maps a dataset ``type`` to its maker, so a test can fill in whatever a config asks for.
"""
import importlib.util
import io
import json
import os.path as osp
import zipfile
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

# Synapse case ids of the TransUNet split (its first training and test cases); 8 organs, labels 1..8
SYNAPSE_TRAIN_CASES = ('case0005', 'case0006', 'case0007', 'case0009', 'case0010', 'case0021')
SYNAPSE_TEST_CASES = ('case0001', 'case0002', 'case0003', 'case0004', 'case0008', 'case0022')
SYNAPSE_NUM_ORGANS = 8

# ACDC patients of MT-UNet's split (the first of its train / valid / test lists); each has an ED and an ES volume
ACDC_TRAIN_CASES = ('case_001', 'case_004', 'case_005', 'case_006')
ACDC_VALID_CASES = ('case_019', 'case_021')
ACDC_TEST_CASES = ('case_002', 'case_003', 'case_008', 'case_009')
ACDC_PHASES = ('ED', 'ES')
# intensities of the tiny ACDC images: body (background), 1 RV, 2 Myo, 3 LV (outside the body 0)
ACDC_LEVELS = (0.2, 0.65, 0.35, 0.85)


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


def _land_cover(seed, split, index, size, max_shapes, layer, common_cover):
    """A picture of a scene's shapes and its land cover: 1 + shape kind on the shapes, ``common_cover`` elsewhere."""
    shapes, _, kind_map = _scene(seed, split, index, size, max_shapes, layer)
    return shapes, kind_map >= 0, np.where(kind_map >= 0, kind_map + 1, common_cover)


def make_second(root, num_train=4, num_val=2, size=64, max_shapes=3, seed=0):
    """SECOND in MambaCD's layout: ``{split}/{T1,T2}`` (RGB png), ``{split}/GT_CD`` (0 / 255 png),
    ``{split}/{GT_T1,GT_T2}`` (land-cover indices, 0 where unchanged) and ``{split}_list.txt``, splits train and test.

    Both dates share one scene; each date has the shapes of a scene of its own pasted on. Land cover is 1 + shape
    kind (1..4) on a shape and 5 (building) on the shared scene's shapes, 2 elsewhere; a pixel changed where the two
    dates' land cover differs.
    """
    root = Path(root)
    for split, count in (('train', num_train), ('test', num_val)):
        names = []
        for index in range(count):
            common, _, common_kinds = _scene(seed, split, index, size, max_shapes)
            common_cover = np.where(common_kinds >= 0, 5, 2)
            dates, covers = [], []
            for layer in (1, 2):
                shapes, pasted, cover = _land_cover(seed, split, index, size, max_shapes, layer, common_cover)
                dates.append(np.where(pasted[..., None], shapes, common))  # (H, W, 1) mask over (H, W, 3)
                covers.append(cover)
            changed = covers[0] != covers[1]
            names.append(f'{index + 1:05d}.png')
            for folder, image in (('T1', dates[0]), ('T2', dates[1]), ('GT_CD', np.where(changed, 255, 0)),
                                  ('GT_T1', covers[0] * changed), ('GT_T2', covers[1] * changed)):
                _save_png(np.asarray(image, dtype=np.uint8), root / split / folder / names[-1])
        (root / f'{split}_list.txt').write_text('\n'.join(names) + '\n')
    return str(root)


def make_xbd(root, num_train=4, num_val=2, size=64, max_shapes=3, seed=0):
    """xBD in MambaCD's layout: ``{split}/images/<name>_{pre,post}_disaster.png`` (RGB) and
    ``{split}/targets/<name>_{pre,post}_disaster_target.png`` (buildings 0 / 1; damage 0..4, 255 unclassified) with
    ``{split}.txt`` name lists, splits train and test.

    The pre-event scene's shapes are buildings; shape kind k gets damage level k + 1 (kind 3: destroyed) and is
    darkened in the post-event image by that level; one building of the first training image is unclassified.
    """
    root = Path(root)
    for split, count in (('train', num_train), ('test', num_val)):
        names = []
        for index in range(count):
            pre, _, kinds = _scene(seed, split, index, size, max_shapes)
            damage = np.where(kinds >= 0, kinds + 1, 0).astype(np.uint8)  # (H, W)
            post = (pre * (1 - 0.2 * damage[..., None])).astype(np.uint8)  # darker by damage level
            if split == 'train' and index == 0:
                damage[damage == damage.max()] = 255
            names.append(f'tiny-disaster_{index:08d}')
            for date, image, target in (('pre', pre, (kinds >= 0).astype(np.uint8)), ('post', post, damage)):
                _save_png(image, root / split / 'images' / f'{names[-1]}_{date}_disaster.png')
                _save_png(target, root / split / 'targets' / f'{names[-1]}_{date}_disaster_target.png')
        (root / f'{split}.txt').write_text('\n'.join(names) + '\n')
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


def _save_npz(path, **arrays):
    """``np.savez`` with fixed zip timestamps (numpy stamps the current time), so that the bytes are reproducible."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f'{key}.npy', date_time=(1980, 1, 1, 0, 0, 0)), buffer.getvalue())


def _synapse_volume(rng, depth, size, missing):
    """A (depth, size, size) CT-like volume: a body ellipse (0.25) holding organs as ellipsoids of intensity
    0.3 + 0.08 x label (an organ fills only voxels no earlier organ took; organ ``missing`` is left out, so the metric
    meets an empty label), plus a little noise; image float32 in [0, 1], label uint8 0..8."""
    z, y, x = np.meshgrid(np.arange(depth), np.arange(size), np.arange(size), indexing='ij')
    body = ((y - size / 2) / (0.45 * size)) ** 2 + ((x - size / 2) / (0.48 * size)) ** 2 <= 1
    label = np.zeros((depth, size, size), dtype=np.uint8)
    for value in range(1, SYNAPSE_NUM_ORGANS + 1):
        center = (rng.uniform(0, depth - 1), *rng.uniform(0.3, 0.7, size=2) * size)
        radii = (rng.uniform(0.6, max(1.0, depth / 2)), *rng.uniform(0.06, 0.16, size=2) * size)
        if value != missing:  # drawn for every organ all the same: the other organs do not move
            inside = sum(((axis - c) / r) ** 2 for axis, c, r in zip((z, y, x), center, radii)) <= 1
            label[inside & body & (label == 0)] = value
    image = np.where(body, 0.25, 0.0) + np.where(label > 0, 0.3 + 0.08 * label - 0.25, 0.0)
    image = np.clip(image + rng.normal(0, 0.02, size=image.shape), 0, 1)
    return image.astype(np.float32), label


def _synapse_missing(seed, index):
    """The organ (1..8) that case ``index`` lacks."""
    return 1 + (3 * index + seed) % SYNAPSE_NUM_ORGANS


def _save_h5(path, image, label):
    import h5py
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, 'w') as volume:
        for key, array in (('image', image), ('label', label)):
            volume.create_dataset(key, data=array, track_times=False)


def make_synapse(root, num_train=2, num_test=2, depth=4, size=64, seed=0, volume_format=None):
    """Synapse in the TransUNet layout (``mmssm.SynapseDataset``): ``train_npz/<case>_slice<k>.npz`` (one per slice
    of the training cases; 'image' (H, W) float32 in [0, 1], 'label' (H, W) uint8), ``test_vol_h5/<case>.npy.h5``
    ('image', 'label' (D, H, W)), ``lists/lists_Synapse/{train.txt,test_vol.txt}``. Case ids are the real ones
    (``SYNAPSE_TRAIN_CASES``, ``SYNAPSE_TEST_CASES``); organs are ellipsoid blobs through several slices, and each
    case lacks one organ (consecutive cases different ones).

    ``volume_format``: 'h5' (the release; needs h5py), 'npz' (``test_vol_h5/<case>.npz``, same arrays) or None:
    'h5' where h5py is installed, else 'npz' (``SynapseDataset`` falls back to it).
    """
    if num_train > len(SYNAPSE_TRAIN_CASES) or num_test > len(SYNAPSE_TEST_CASES):
        raise ValueError(f'make_synapse makes at most {len(SYNAPSE_TRAIN_CASES)} training and '
                         f'{len(SYNAPSE_TEST_CASES)} test cases')
    if volume_format is None:
        volume_format = 'h5' if importlib.util.find_spec('h5py') is not None else 'npz'
    if volume_format not in ('h5', 'npz'):
        raise ValueError(f"make_synapse volume_format must be 'h5', 'npz' or None, got {volume_format!r}")
    root = Path(root)
    lists = root / 'lists' / 'lists_Synapse'
    lists.mkdir(parents=True, exist_ok=True)
    names = []
    for index, case in enumerate(SYNAPSE_TRAIN_CASES[:num_train]):
        image, label = _synapse_volume(scene_rng(seed, _SPLIT_SEEDS['train'], index), depth, size,
                                       _synapse_missing(seed, index))
        for k in range(depth):
            names.append(f'{case}_slice{k:03d}')
            _save_npz(root / 'train_npz' / f'{names[-1]}.npz', image=image[k], label=label[k])
    (lists / 'train.txt').write_text('\n'.join(names) + '\n')
    for index, case in enumerate(SYNAPSE_TEST_CASES[:num_test]):
        image, label = _synapse_volume(scene_rng(seed, _SPLIT_SEEDS['test'], index), depth, size,
                                       _synapse_missing(seed, index))
        if volume_format == 'h5':
            _save_h5(root / 'test_vol_h5' / f'{case}.npy.h5', image, label)
        else:
            _save_npz(root / 'test_vol_h5' / f'{case}.npz', image=image, label=label)
    (lists / 'test_vol.txt').write_text('\n'.join(SYNAPSE_TEST_CASES[:num_test]) + '\n')
    return str(root)


def _acdc_volume(rng, depth, shape, phase, with_rv=True):
    """A (depth, H, W) short-axis cine-MRI-like stack: a body ellipse (background) holding the LV blood pool (3, a
    disk) inside the myocardium (2, a ring) and the RV (1, an ellipse beside the ring, outside it); the heart narrows
    towards the apex (the last slices) and the pool contracts at ES. ``with_rv=False`` leaves the RV out (the metric
    then meets an empty label). Intensities ``ACDC_LEVELS`` plus a little noise; image float32 in [0, 1], label
    uint8 0..3."""
    height, width = shape
    y, x = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
    body = ((y - height / 2) / (0.46 * height)) ** 2 + ((x - width / 2) / (0.46 * width)) ** 2 <= 1
    size = min(height, width)
    cy, cx = rng.uniform(0.42, 0.58, size=2) * (height, width)
    pool = rng.uniform(0.10, 0.14) * size * (0.7 if phase == 'ES' else 1.0)
    wall = rng.uniform(0.045, 0.06) * size
    rv_radii = rng.uniform(0.12, 0.16) * size, rng.uniform(0.07, 0.09) * size
    label = np.zeros((depth, height, width), dtype=np.uint8)
    for z in range(depth):
        scale = 1.0 - 0.45 * z / max(depth - 1, 1)  # base -> apex
        distance = np.hypot(y - cy, x - cx)
        outer = (pool + wall) * scale
        label[z][(distance <= outer) & body] = 2
        label[z][(distance <= pool * scale) & body] = 3
        if with_rv:
            rv_x = cx - outer - 0.6 * rv_radii[1] * scale
            inside = ((y - cy) / (rv_radii[0] * scale)) ** 2 + ((x - rv_x) / (rv_radii[1] * scale)) ** 2 <= 1
            label[z][inside & body & (label[z] == 0)] = 1
    levels = np.asarray(ACDC_LEVELS)
    image = np.where(body, levels[label], 0.0) + rng.normal(0, 0.02, size=label.shape)
    return np.clip(image, 0, 1).astype(np.float32), label


def make_acdc(root, num_train=2, num_valid=1, num_test=2, depth=4, size=64, seed=0):
    """ACDC in MT-UNet's release as MSVM-UNet reads it (``mmssm.ACDCDataset``): ``train/`` and ``valid/`` slices
    ``<patient>_slice<ED|ES>_<k>.npz`` ('img' (H, W) float32 in [0, 1], 'label' (H, W) uint8 0..3), ``test/``
    volumes ``<patient>_volume_<ED|ES>.npz`` ('img', 'label' (D, H, W)), ``lists/lists_ACDC/{train,valid,test}.txt``
    (file names with '.npz', sorted as text like the official lists: ..._9 after ..._10). Patient ids are the real
    ones (``ACDC_TRAIN_CASES``, ...), two phases each; patient k has ``depth + k % 2`` slices of ``size`` x
    ``size + size // 4`` (not square: the zooms differ per axis), and the ES volume of the second test patient has
    no RV. The dtypes of the release are not known here (the official loader casts both arrays to float32).
    """
    splits = (('train', ACDC_TRAIN_CASES, num_train), ('valid', ACDC_VALID_CASES, num_valid),
              ('test', ACDC_TEST_CASES, num_test))
    for split, cases, count in splits:
        if count > len(cases):
            raise ValueError(f'make_acdc makes at most {len(cases)} {split} patients')
    root = Path(root)
    lists = root / 'lists' / 'lists_ACDC'
    lists.mkdir(parents=True, exist_ok=True)
    shape = (size, size + size // 4)
    for split, cases, count in splits:
        names = []
        for index, case in enumerate(cases[:count]):
            for phase_index, phase in enumerate(ACDC_PHASES):
                rng = scene_rng(seed, _SPLIT_SEEDS['val' if split == 'valid' else split], index, phase_index)
                with_rv = not (split == 'test' and index == 1 and phase == 'ES')
                image, label = _acdc_volume(rng, depth + index % 2, shape, phase, with_rv)
                if split == 'test':
                    names.append(f'{case}_volume_{phase}.npz')
                    _save_npz(root / split / names[-1], img=image, label=label)
                    continue
                for k in range(len(label)):
                    names.append(f'{case}_slice{phase}_{k}.npz')
                    _save_npz(root / split / names[-1], img=image[k], label=label[k])
        (lists / f'{split}.txt').write_text('\n'.join(sorted(names)) + '\n')
    return str(root)


def make_nnunet_raw_2d(root, num_train=4, num_test=2, size=64, seed=0):
    """An nnU-Net v2 raw 2D data set: ``dataset.json`` (channels R, G, B; labels background, shape; ending .png), one
    RGB ``<case>_0000.png`` per case and a label map with values 0 / 1 (binary, so that it fits every config's
    number of classes)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    meta = dict(channel_names={'0': 'R', '1': 'G', '2': 'B'}, labels=dict(background=0, shape=1),
                numTraining=num_train, file_ending='.png', name='Dataset999_Tiny')
    (root / 'dataset.json').write_text(json.dumps(meta, indent=1))
    for split, count, seed_split in (('Tr', num_train, 'train'), ('Ts', num_test, 'val')):
        for index in range(count):
            image, _, kind_map = _scene(seed, seed_split, index, size, ISIC_MAX_SHAPES)
            case = f'tiny_{split.lower()}{index:03d}'
            _save_png(image, root / f'images{split}' / f'{case}_0000.png')
            label = np.where(kind_map >= 0, 1, 0).astype(np.uint8)
            _save_png(label, root / f'labels{split}' / f'{case}.png')
    return str(root)


TINY_DATASETS = {
    'ImageNet': make_imagenet,
    'CocoDataset': make_coco,
    'ADE20KDataset': make_ade20k,
    'LEVIRCDDataset': make_levir_cd,
    'SECONDDataset': make_second,
    'XBDDataset': make_xbd,
    'ISICDataset': make_isic,
    'SynapseDataset': make_synapse,
    'ACDCDataset': make_acdc,
    'NNUNetRaw2DDataset': make_nnunet_raw_2d,
}


def make_tiny_dataset(dataset_type, root, **kwargs):
    """Write the tiny dataset for a config's dataset ``type`` (``'mmdet.CocoDataset'`` works too) into ``root``."""
    name = dataset_type.split('.')[-1]
    if name not in TINY_DATASETS:
        raise KeyError(f'no tiny dataset for dataset type {dataset_type!r}; known: {sorted(TINY_DATASETS)}. '
                       f'Add a maker to mmssm.testing.tiny_datasets.TINY_DATASETS.')
    return TINY_DATASETS[name](osp.abspath(root), **kwargs)
