"""Transforms for change detection and binary segmentation, registered in ``mmssm.registry.TRANSFORMS``.

Binary masks (LEVIR-CD change maps, ISIC lesion masks; 0 / 255 pngs) load with ``LoadBinaryLabel``, class-index
maps (SECOND land cover, xBD buildings and damage) with ``LoadIndexLabel`` into any ``gt_seg_map*`` field and
``MapLabelValues`` relabels them; VM-UNet's input scaling is ``MinMaxStretch`` and its evaluation at the resized size
``ResizedAsOriginal``.

For change detection the two dates travel as ONE 6-channel image, ``results['img']`` (H, W, 6) uint8, RGB of date 1
then RGB of date 2, so mmseg's geometric transforms (``RandomCrop``, ``RandomFlip``, ``Resize``, ...) move both dates
and every map in ``results['seg_fields']`` together. The images are RGB already: set ``bgr_to_rgb=False`` in the data
preprocessor.
"""
import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmengine import fileio

from mmssm.registry import TRANSFORMS


def _read(path, flag, backend, backend_args, **kwargs):
    image = mmcv.imfrombytes(fileio.get(path, backend_args=backend_args), flag=flag, backend=backend, **kwargs)
    if image is None:
        raise ValueError(f'could not decode the image {path}')
    return image


def store_label(results, label, field='gt_seg_map'):
    """Put a uint8 label map into ``results[field]`` as mmseg's LoadAnnotations does: for ``gt_seg_map`` the dataset's
    ``label_map`` applied, ``field`` added to ``seg_fields`` (so geometric transforms move it with the image)."""
    if field == 'gt_seg_map' and results.get('label_map'):
        mapped = label.copy()
        for old, new in results['label_map'].items():
            mapped[label == old] = new
        label = mapped
    results[field] = label
    results.setdefault('seg_fields', [])
    if field not in results['seg_fields']:
        results['seg_fields'].append(field)
    return results


def check_label_size(results, label, path):
    """ValueError naming both files when ``label`` is not the size of its image (``ori_shape``, else ``img_shape``)."""
    image_shape = results.get('ori_shape', results.get('img_shape'))
    if image_shape is not None and label.shape[:2] != tuple(image_shape):
        raise ValueError(f'label {path} is {label.shape[:2]}, its image {results.get("img_path")} is '
                         f'{tuple(image_shape)}')


@TRANSFORMS.register_module()
class LoadImagePairFromFile(BaseTransform):
    """Read ``img_path`` (date 1) and ``img_path2`` (date 2) as RGB and stack them into ``img`` (H, W, 6) uint8.

    Sets ``img_shape`` and ``ori_shape`` like mmcv's ``LoadImageFromFile``; ValueError if the two sizes differ.

    Args:
        imdecode_backend: ``mmcv.imfrombytes`` backend. backend_args: ``mmengine.fileio`` backend arguments.
    """

    def __init__(self, imdecode_backend='cv2', backend_args=None):
        self.imdecode_backend = imdecode_backend
        self.backend_args = backend_args

    def transform(self, results):
        first, second = (_read(results[key], 'color', self.imdecode_backend, self.backend_args, channel_order='rgb')
                         for key in ('img_path', 'img_path2'))
        if first.shape != second.shape:
            raise ValueError(f'the two dates differ in size: {results["img_path"]} is {first.shape[:2]}, '
                             f'{results["img_path2"]} is {second.shape[:2]}')
        results['img'] = np.concatenate([first, second], axis=2)  # 2 x (H, W, 3) -> (H, W, 6)
        results['img_shape'] = results['ori_shape'] = results['img'].shape[:2]
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(imdecode_backend={self.imdecode_backend!r})'


@TRANSFORMS.register_module()
class LoadBinaryLabel(BaseTransform):
    """Read ``seg_map_path`` as grayscale (RGB / palette pngs are converted) into ``gt_seg_map``: value >= threshold
    -> 1 (foreground: "changed" in change detection, "lesion" in ISIC), else 0; then ``label_map`` if the dataset set
    one. Appends 'gt_seg_map' to ``seg_fields``.

    The label must have the size of its image file: ``ori_shape`` (set by the image loader), or ``img_shape`` when
    there is no ``ori_shape``; a mismatch is a ValueError naming both files. Loading the label after a ``Resize``
    (mmseg's test pipelines) is therefore fine.

    Args:
        threshold: smallest grey value that means foreground (LEVIR-CD and ISIC masks are 0 / 255; 128 is the 0.5 of
            VM-UNet's ``mask / 255 >= 0.5``).
        imdecode_backend: ``mmcv.imfrombytes`` backend. backend_args: ``mmengine.fileio`` backend arguments.
    """

    def __init__(self, threshold=128, imdecode_backend='cv2', backend_args=None):
        if not 0 < threshold <= 255:
            raise ValueError(f'LoadBinaryLabel threshold must be in 1..255, got {threshold}')
        self.threshold = threshold
        self.imdecode_backend = imdecode_backend
        self.backend_args = backend_args

    def transform(self, results):
        path = results['seg_map_path']
        grey = _read(path, 'grayscale', self.imdecode_backend, self.backend_args)  # (H, W)
        check_label_size(results, grey, path)
        return store_label(results, (grey >= self.threshold).astype(np.uint8))

    def __repr__(self):
        return f'{self.__class__.__name__}(threshold={self.threshold}, imdecode_backend={self.imdecode_backend!r})'


@TRANSFORMS.register_module()
class LoadIndexLabel(BaseTransform):
    """Read the class-index png ``results[path_key]`` as it is into ``results[field]`` (uint8), e.g. SECOND land cover
    (``seg_map_path_t1`` -> ``gt_seg_map_t1``) or xBD damage levels; appends ``field`` to ``seg_fields``.

    A 3-channel png must hold the same index in every channel (the official xBD masks; the first channel is read);
    a colour-coded map (SECOND's original RGB labels) is a ValueError: convert it to class indices first. The size
    is checked against the image as in :class:`LoadBinaryLabel`.

    Args:
        path_key: the key of the file path. field: the key of the loaded map (``gt_seg_map`` for the main label).
        imdecode_backend: ``mmcv.imfrombytes`` backend. backend_args: ``mmengine.fileio`` backend arguments.
    """

    def __init__(self, path_key='seg_map_path', field='gt_seg_map', imdecode_backend='cv2', backend_args=None):
        self.path_key = path_key
        self.field = field
        self.imdecode_backend = imdecode_backend
        self.backend_args = backend_args

    def transform(self, results):
        path = results[self.path_key]
        label = _read(path, 'unchanged', self.imdecode_backend, self.backend_args)  # (H, W) or (H, W, C)
        if label.dtype != np.uint8:
            raise ValueError(f'class-index label {path} must be 8-bit, got {label.dtype}')
        if label.ndim == 3:
            if label.shape[2] not in (3, 4) or (label[..., :3] != label[..., :1]).any():
                raise ValueError(f'label {path} is a colour image ({label.shape[2]} channels that differ): '
                                 'convert it to one channel of class indices')
            label = np.ascontiguousarray(label[..., 0])  # (H, W, C) -> (H, W)
        check_label_size(results, label, path)
        return store_label(results, label, self.field)

    def __repr__(self):
        return f'{self.__class__.__name__}(path_key={self.path_key!r}, field={self.field!r})'


@TRANSFORMS.register_module()
class MapLabelValues(BaseTransform):
    """Replace label values in the maps ``fields``: ``mapping`` {old: new}, applied at once (a new value is never
    mapped again). MambaCD's training ignores the "no change" land cover of SECOND and the background damage level
    of xBD: ``mapping={0: 255}`` after the geometric transforms, in the training pipeline only.
    """

    def __init__(self, mapping, fields=('gt_seg_map', )):
        if not mapping or not fields:
            raise ValueError(f'MapLabelValues needs a mapping and fields, got {mapping!r} and {fields!r}')
        self.mapping = dict(mapping)
        self.fields = tuple(fields)

    def transform(self, results):
        for field in self.fields:
            if field not in results:
                raise KeyError(f'MapLabelValues: no {field} in the results (keys: {sorted(results)})')
            label = results[field]
            mapped = label.copy()
            for old, new in self.mapping.items():
                mapped[label == old] = new
            results[field] = mapped
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(mapping={self.mapping}, fields={self.fields})'


@TRANSFORMS.register_module()
class MinMaxStretch(BaseTransform):
    """``img`` -> float32 ``(img - min) / (max - min) * 255``, min and max over ALL pixels and channels of the image.

    VM-UNet's input preprocessing (``myNormalize``): the official code first normalises with ONE scalar mean and std
    per dataset, ``(img - mean) / std``, then stretches the result to [0, 255] like this; a scalar affine map with
    std > 0 cancels in the stretch, so this transform alone gives the official network input (computed in float64,
    stored as float32). Use it with a data preprocessor of mean 0 and std 1. A constant image (max == min; the
    official code divides by zero there) becomes all zeros. Channel order does not matter (one min and max for all).
    """

    def transform(self, results):
        image = np.asarray(results['img'], dtype=np.float64)
        low, high = image.min(), image.max()
        if high > low:
            stretched = (image - low) / (high - low) * 255
        else:
            stretched = np.zeros_like(image)
        results['img'] = stretched.astype(np.float32)
        return results


@TRANSFORMS.register_module()
class ResizedAsOriginal(BaseTransform):
    """Set ``ori_shape`` to the current ``img_shape``, so that mmseg returns predictions at the CURRENT size and the
    metric compares them with the label as resized here, not at the size of the file.

    VM-UNet evaluates at the network resolution: image and mask are both resized to 256x256 and the pooled
    confusion matrix counts those 256x256 pixels (every test image weighs the same). mmseg instead resizes the
    prediction back to ``ori_shape``. Put this after the ``Resize`` and after ``LoadBinaryLabel`` (so the label is
    resized too) in the test pipeline to follow VM-UNet; predictions then come out at the resized size.
    """

    def transform(self, results):
        results['ori_shape'] = tuple(results['img_shape'])
        return results


@TRANSFORMS.register_module()
class RandomRotate90(BaseTransform):
    """With probability ``prob``, rotate ``img`` and every map in ``seg_fields`` by the same k x 90 degrees
    (k uniform in 1..3, counter-clockwise as ``np.rot90``); updates ``img_shape`` (H and W swap for odd k)."""

    def __init__(self, prob=0.5):
        if not 0 <= prob <= 1:
            raise ValueError(f'RandomRotate90 prob must be in [0, 1], got {prob}')
        self.prob = prob

    @cache_randomness
    def _quarter_turns(self):
        return int(np.random.randint(1, 4)) if np.random.rand() < self.prob else 0

    def transform(self, results):
        turns = self._quarter_turns()
        if turns:
            for key in ['img', *results.get('seg_fields', [])]:
                results[key] = np.ascontiguousarray(np.rot90(results[key], turns))  # rotates axes (0, 1)
            results['img_shape'] = results['img'].shape[:2]
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(prob={self.prob})'
