"""Slices of 3D volumes in the TransUNet protocol (Synapse CT, the data of TransUNet, Swin-Unet, VM-UNet, MSVM-UNet;
ACDC cardiac MRI in the MT-UNet release, used by MSVM-UNet): file reading and the official augmentation and
resizing, registered in ``mmssm.registry.TRANSFORMS``.

Files (the TransUNet Synapse release)::

    train_npz/<case>_slice<k>.npz   'image' (H, W) float in [0, 1] (HU clipped to [-125, 275]), 'label' (H, W) 0..8
    test_vol_h5/<case>.npy.h5       HDF5 with 'image' and 'label' (D, H, W), the same values per slice

A test volume may also be a ``.npz`` with the same two (D, H, W) arrays (for installs without ``h5py``; a
conversion of the ``.npy.h5`` files, not part of the release). The official test reads the ``.npy.h5`` volumes
with ``h5py``, which this module imports only when such a file is read. ACDC (MT-UNet's release) names the arrays
'img' and 'label' instead: ``{train,valid}/<case>_slice<ED|ES>_<k>.npz`` slices and ``test/<case>_volume_<ED|ES>.npz``
(D, H, W) volumes; ``LoadSynapseSlice`` takes the key names from the dataset (``array_keys``) or its arguments.

Pipelines (VM-UNet's ``datasets/dataset.py``, ``utils.py``), each slice an (H, W, 1) image:

- train: ``LoadSynapseSlice``, ``RandomRot90FlipOrRotate``, ``ScipyZoom(size=(224, 224))`` (cubic image, nearest
  label), ``RepeatChannels(3)`` for a 3-channel network (VM-UNet repeats a 1-channel input in its forward);
- test: ``LoadSynapseSlice``, ``ScipyZoom(size=(224, 224), zoom_seg=False)`` (the label stays at the file's size),
  ``ResizedAsOriginal`` (mmseg then gives the argmax at 224, not a bilinear resize of the logits), ``RepeatChannels``;
  ``mmssm.SynapseMetric`` zooms the argmax back to the label's size (nearest) and scores whole volumes.

scipy (a dependency of mmsegmentation) is imported when a transform runs.
"""
import io
import zipfile

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmengine import fileio

from mmssm.registry import TRANSFORMS

from .transforms import store_label

H5PY_INSTALL = 'pip install h5py'
# Synapse label values 1..8 (0 is background), the TransUNet order
SYNAPSE_ORGANS = ('aorta', 'gallbladder', 'left_kidney', 'right_kidney', 'liver', 'pancreas', 'spleen', 'stomach')
# ACDC label values 1..3 (0 is background): right ventricle, myocardium, left ventricle (MSVM-UNet utils.py)
ACDC_STRUCTURES = ('RV', 'Myo', 'LV')
# names of the image and label arrays in a slice or volume file (the TransUNet release; ACDC uses ('img', 'label'))
DEFAULT_ARRAY_KEYS = ('image', 'label')
HDF5_SUFFIXES = ('.h5', '.hdf5')  # '.npy.h5' ends in '.h5'


def import_h5py(path):
    """``h5py``, or an ImportError that names the file and the install command."""
    try:
        import h5py
    except ImportError as error:
        raise ImportError(f'reading the HDF5 volume {path} needs h5py, which is not installed: {H5PY_INSTALL} '
                          '(or convert the volumes to .npz files with the arrays "image" and "label")') from error
    return h5py


def is_hdf5(path):
    return str(path).endswith(HDF5_SUFFIXES)


def _npy_shape(archive, key):
    """Shape of array ``key`` of an open .npz archive, from its .npy header (the array itself is not read)."""
    with archive.open(f'{key}.npy') as member:
        major, _ = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, _ = read_header(member)
    return tuple(shape)


def _missing_keys(path, keys, present):
    """KeyError naming the arrays ``keys`` that ``path`` lacks, and the ones it has."""
    missing = [key for key in keys if key not in present]
    return KeyError(f'{path} has no array {", ".join(map(repr, missing))} (it has {sorted(present)}): set the '
                    'array names, e.g. array_keys=(\'img\', \'label\') for ACDC, (\'image\', \'label\') for '
                    'Synapse')


def volume_depth(path, backend_args=None, keys=DEFAULT_ARRAY_KEYS):
    """Number of slices D of a (D, H, W) test volume (.npy.h5 / .h5 or .npz with the image and label arrays
    ``keys``, 'image' and 'label' by default).

    ValueError if the two arrays differ in shape or are not 3D; KeyError if the file lacks one of them.
    """
    with fileio.get_local_path(path, backend_args=backend_args) as local:
        if is_hdf5(path):
            with import_h5py(path).File(local, 'r') as volume:
                if not all(key in volume for key in keys):
                    raise _missing_keys(path, keys, list(volume.keys()))
                shapes = [tuple(volume[key].shape) for key in keys]
        else:
            with zipfile.ZipFile(local) as archive:
                present = [name[:-len('.npy')] for name in archive.namelist() if name.endswith('.npy')]
                if not all(key in present for key in keys):
                    raise _missing_keys(path, keys, present)
                shapes = [_npy_shape(archive, key) for key in keys]
    if shapes[0] != shapes[1] or len(shapes[0]) != 3:
        raise ValueError(f'volume {path}: "{keys[0]}" {shapes[0]} and "{keys[1]}" {shapes[1]} must be one '
                         '(D, H, W) shape')
    return shapes[0][0]


@TRANSFORMS.register_module()
class LoadSynapseSlice(BaseTransform):
    """Read one slice: ``img`` (H, W, 1) and ``gt_seg_map`` (H, W) uint8; appends 'gt_seg_map' to ``seg_fields`` and
    sets ``img_shape`` and ``ori_shape``.

    ``results['img_path']`` is a slice file (``.npz`` with an image and a label array (H, W)), or, when
    ``results['slice_index']`` is set, a volume (``.npy.h5`` read with h5py, or ``.npz``; image and label
    (D, H, W)) whose slice ``slice_index`` is read. The arrays are 'image' and 'label' (Synapse) unless the item
    names them (``results['array_keys']``, set by ``mmssm.ACDCDataset`` to ('img', 'label')) or ``img_key`` /
    ``seg_key`` are given. The image keeps its stored floating dtype (float32 in the Synapse release; the official
    Synapse code zooms it as stored) unless ``to_float32`` (the official ACDC code casts every file to float32 first);
    an integer image becomes float32. Labels must lie in 0..255; ``label_map`` (set by the dataset when its classes
    were renamed) is applied.

    An ``.npz`` volume is read whole once and kept for the next slices of the same file (one volume per
    transform, i.e. per data-loader worker); an HDF5 volume is read slice by slice.

    Args:
        backend_args: ``mmengine.fileio`` backend arguments (volumes from other backends are copied locally).
        img_key, seg_key: names of the image and label arrays; None: the item's ``array_keys``, else 'image' /
            'label'.
        to_float32: cast a floating image to float32 (before any zoom).
    """

    def __init__(self, backend_args=None, img_key=None, seg_key=None, to_float32=False):
        self.backend_args = backend_args
        self.img_key = img_key
        self.seg_key = seg_key
        self.to_float32 = to_float32
        self._volume = (None, None)  # ((path, keys), (image, label)) of the last .npz volume

    def _keys(self, results):
        default_img, default_seg = results.get('array_keys') or DEFAULT_ARRAY_KEYS
        return self.img_key or default_img, self.seg_key or default_seg

    def _read_npz(self, path, keys):
        with np.load(io.BytesIO(fileio.get(path, backend_args=self.backend_args))) as arrays:
            if not all(key in arrays.files for key in keys):
                raise _missing_keys(path, keys, arrays.files)
            return tuple(arrays[key] for key in keys)

    def _read(self, path, index, keys):
        if index is None:
            return self._read_npz(path, keys)
        if is_hdf5(path):
            with fileio.get_local_path(path, backend_args=self.backend_args) as local:
                with import_h5py(path).File(local, 'r') as volume:
                    if not all(key in volume for key in keys):
                        raise _missing_keys(path, keys, list(volume.keys()))
                    return tuple(volume[key][index] for key in keys)
        if self._volume[0] != (path, keys):
            self._volume = (None, None)  # free the previous volume before reading the next
            self._volume = ((path, keys), self._read_npz(path, keys))
        image, label = self._volume[1]
        return image[index], label[index]

    def transform(self, results):
        path = results['img_path']
        index = results.get('slice_index')
        keys = self._keys(results)
        image, label = self._read(path, index, keys)
        where = path if index is None else f'{path} slice {index}'
        if image.ndim != 2 or image.shape != label.shape:
            raise ValueError(f'{where}: "{keys[0]}" {image.shape} and "{keys[1]}" {label.shape} must be one (H, W) '
                             'shape')
        if label.size and (label.min() < 0 or label.max() > 255):
            raise ValueError(f'{where}: label values must lie in 0..255, got {label.min()}..{label.max()}')
        if self.to_float32 or not np.issubdtype(image.dtype, np.floating):
            image = image.astype(np.float32)
        results['img'] = image[..., None]  # (H, W) -> (H, W, 1)
        results['img_shape'] = results['ori_shape'] = image.shape
        return store_label(results, label.astype(np.uint8))

    def __repr__(self):
        return (f'{self.__class__.__name__}(img_key={self.img_key!r}, seg_key={self.seg_key!r}, '
                f'to_float32={self.to_float32})')


def _per_channel(function, image):
    """Apply a 2D ``function`` to each channel of an (H, W, C) image."""
    return np.stack([function(image[..., channel]) for channel in range(image.shape[-1])], axis=-1)


@TRANSFORMS.register_module()
class RandomRot90FlipOrRotate(BaseTransform):
    """The official Synapse augmentation (TransUNet's ``RandomGenerator``, used by Swin-Unet and VM-UNet), applied
    to ``img`` and every map in ``seg_fields`` alike:

    - with probability ``rot_flip_prob``: rotate by k x 90 degrees (k uniform in 0..3, ``np.rot90``), then flip along
      rows or columns (uniform; always one flip);
    - otherwise, with probability ``rotate_prob`` (0.5 x 0.5 = 0.25 overall): rotate by an integer angle uniform in
      [-max_angle, max_angle - 1] degrees (the official ``np.random.randint(-20, 20)``) about the centre, keeping
      the size, with NEAREST interpolation for the image as for the labels (order 0) and 0 outside;
    - otherwise (0.25) nothing.

    The draws use numpy's global generator (the official code draws the branch with Python's ``random``): the same
    distribution, not the same random stream.
    """

    def __init__(self, rot_flip_prob=0.5, rotate_prob=0.5, max_angle=20):
        for name, prob in (('rot_flip_prob', rot_flip_prob), ('rotate_prob', rotate_prob)):
            if not 0 <= prob <= 1:
                raise ValueError(f'RandomRot90FlipOrRotate {name} must be in [0, 1], got {prob}')
        if max_angle < 1:
            raise ValueError(f'RandomRot90FlipOrRotate max_angle must be >= 1, got {max_angle}')
        self.rot_flip_prob = rot_flip_prob
        self.rotate_prob = rotate_prob
        self.max_angle = int(max_angle)

    @cache_randomness
    def _draw(self):
        """('rot_flip', quarter turns, flip axis), ('rotate', degrees) or None."""
        if np.random.rand() < self.rot_flip_prob:
            return 'rot_flip', int(np.random.randint(0, 4)), int(np.random.randint(0, 2))
        if np.random.rand() < self.rotate_prob:
            return 'rotate', int(np.random.randint(-self.max_angle, self.max_angle))
        return None

    def transform(self, results):
        draw = self._draw()
        if draw is None:
            return results
        from scipy import ndimage
        for key in ['img', *results.get('seg_fields', [])]:
            array = results[key]
            if draw[0] == 'rot_flip':
                array = np.flip(np.rot90(array, draw[1]), axis=draw[2])  # both act on axes (0, 1)
            elif array.ndim == 3:
                array = _per_channel(lambda plane: ndimage.rotate(plane, draw[1], order=0, reshape=False), array)
            else:
                array = ndimage.rotate(array, draw[1], order=0, reshape=False)
            results[key] = np.ascontiguousarray(array)
        results['img_shape'] = results['img'].shape[:2]
        return results

    def __repr__(self):
        return (f'{self.__class__.__name__}(rot_flip_prob={self.rot_flip_prob}, rotate_prob={self.rotate_prob}, '
                f'max_angle={self.max_angle})')


@TRANSFORMS.register_module()
class ScipyZoom(BaseTransform):
    """Resize ``img`` (and, with ``zoom_seg``, every map in ``seg_fields``) to ``size`` with ``scipy.ndimage.zoom``:
    spline ``order`` 3 (cubic) for the image, each channel as a 2D slice, ``seg_order`` 0 (nearest) for labels.

    This is the resizing of the official Synapse code (train and test); mmseg's ``Resize`` (cv2) interpolates
    differently. As there, the image is zoomed in its stored dtype and then made float32, and nothing is resampled
    when the slice has the size already. Updates ``img_shape``.

    Args:
        size: (height, width) to resize to (224 x 224 in VM-UNet / Swin-Unet / TransUNet).
        order, seg_order: spline orders for the image and the label maps.
        zoom_seg: resize the label maps too (training); False keeps them at the file's size for
            ``mmssm.SynapseMetric``, which scores the prediction zoomed back to it (testing).
    """

    def __init__(self, size=(224, 224), order=3, seg_order=0, zoom_seg=True):
        size = (size, size) if isinstance(size, int) else tuple(size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f'ScipyZoom size must be (height, width), got {size}')
        self.size = size
        self.order = order
        self.seg_order = seg_order
        self.zoom_seg = zoom_seg

    def _zoom(self, array, order):
        from scipy import ndimage
        height, width = array.shape[:2]
        if (height, width) == self.size:
            return array
        factors = (self.size[0] / height, self.size[1] / width)  # the official (out / x, out / y)
        if array.ndim == 3:
            return _per_channel(lambda plane: ndimage.zoom(plane, factors, order=order), array)
        return ndimage.zoom(array, factors, order=order)

    def transform(self, results):
        results['img'] = self._zoom(results['img'], self.order).astype(np.float32, copy=False)
        if self.zoom_seg:
            for key in results.get('seg_fields', []):
                results[key] = self._zoom(results[key], self.seg_order)
        results['img_shape'] = results['img'].shape[:2]
        return results

    def __repr__(self):
        return (f'{self.__class__.__name__}(size={self.size}, order={self.order}, seg_order={self.seg_order}, '
                f'zoom_seg={self.zoom_seg})')


@TRANSFORMS.register_module()
class RepeatChannels(BaseTransform):
    """Repeat a one-channel ``img`` (H, W) / (H, W, 1) to (H, W, ``num_channels``): VM-UNet's forward repeats a
    1-channel slice to 3 channels; mmssm's ``VMUNet`` expects the 3 channels, so the pipeline gives them."""

    def __init__(self, num_channels=3):
        if num_channels < 1:
            raise ValueError(f'RepeatChannels num_channels must be >= 1, got {num_channels}')
        self.num_channels = num_channels

    def transform(self, results):
        image = results['img']
        if image.ndim == 2:
            image = image[..., None]
        if image.shape[-1] != 1:
            raise ValueError(f'RepeatChannels needs a one-channel image, got shape {image.shape}')
        results['img'] = np.repeat(image, self.num_channels, axis=-1)
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(num_channels={self.num_channels})'
