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
(``mmssm.datasets.slice_transforms``) reads both kinds of item. The listing is ``VolumeSliceDataset``'s
(``mmssm.datasets.volume_slices``), shared with ``mmssm.ACDCDataset``.
"""
from mmssm.registry import DATASETS

from .slice_transforms import SYNAPSE_ORGANS
from .volume_slices import VOLUME_META_KEYS, VolumeSliceDataset

# PackSegInputs' default keys plus the ones SynapseMetric needs to rebuild the volumes (the name the Synapse configs
# and tests use; the same tuple as VOLUME_META_KEYS)
SYNAPSE_META_KEYS = VOLUME_META_KEYS
# test volume suffixes tried in this order when img_suffix is None: the release's HDF5, then a numpy conversion
VOLUME_SUFFIXES = ('.npy.h5', '.npz')


@DATASETS.register_module()
class SynapseDataset(VolumeSliceDataset):
    """Slices of abdominal CT; classes 'background' (0) and the 8 organs 1 aorta ... 8 stomach
    (``SYNAPSE_ORGANS``).

    Args:
        ann_file: the list file, relative to ``data_root``: slice names (training) or case names (``volumes``).
        data_prefix: ``dict(img_path=...)``, the folder of the listed files (``train_npz`` / ``test_vol_h5``).
        volumes: False: each listed name is a slice file ``<img_path>/<name><img_suffix>``; True: each listed
            name is a (D, H, W) volume, expanded into its D slices.
        img_suffix: suffix of the listed files; None: '.npz' for slices; for volumes '.npy.h5' (the release,
            needs h5py), or '.npz' where that file does not exist (see ``VOLUME_SUFFIXES``).
        **kwargs: ``mmssm.datasets.volume_slices.VolumeSliceDataset`` arguments (``array_keys``, default
            ('image', 'label')) and ``mmseg.datasets.BaseSegDataset`` ones (``data_root``, ``pipeline``, ...).

    Each item has ``img_path`` and ``seg_map_path`` (the same file), ``case_name`` (``case0005``); volume slices
    also ``slice_index`` and ``num_slices``. Reading the depths of the volumes opens each once (headers only).
    """

    METAINFO = dict(classes=('background', *SYNAPSE_ORGANS),
                    palette=[[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255],
                             [0, 255, 255], [255, 128, 0], [128, 0, 255]])
    SLICE_SUFFIX = '.npz'
    VOLUME_SUFFIXES = VOLUME_SUFFIXES
    EXAMPLES = dict(ann_file="'lists/lists_Synapse/train.txt', 'lists/lists_Synapse/test_vol.txt'",
                    img_path="dict(img_path='train_npz') or dict(img_path='test_vol_h5')")

    def __init__(self, ann_file='lists/lists_Synapse/train.txt', data_prefix=dict(img_path='train_npz'), **kwargs):
        super().__init__(ann_file=ann_file, data_prefix=data_prefix, **kwargs)
