"""Datasets and transforms registered in ``mmssm.registry`` (DATASETS, TRANSFORMS), and the shape renderer behind the
demo and test data.

``LEVIRCDDataset``, ``SECONDDataset``, ``XBDDataset``, ``ISICDataset``, ``SynapseDataset``, ``ACDCDataset`` and
``NNUNetRaw2DDataset`` subclass mmseg's ``BaseSegDataset``: they (and ``PackMultiLabelSegInputs``, mmseg's packer)
are registered only where mmsegmentation is installed (an optional library, ``requirements/mmseg.txt``), so
classification-only installs still import this package; an mmseg config fails earlier, in
``mmssm.apis.load_config``, with the install command. The volume-slice transforms (``slice_transforms``) import scipy
and h5py only when they run.
"""
import importlib.util

from .demo_shapes import DemoShapes
from .shapes import SHAPE_KINDS, render_scene, scene_rng
from .slice_transforms import (ACDC_STRUCTURES, SYNAPSE_ORGANS, LoadSynapseSlice, RandomRot90FlipOrRotate,
                               RepeatChannels, ScipyZoom, volume_depth)
from .transforms import (LoadBinaryLabel, LoadImagePairFromFile, LoadIndexLabel, MapLabelValues, MinMaxStretch,
                         RandomRotate90, ResizedAsOriginal)

__all__ = ['ACDC_STRUCTURES', 'DemoShapes', 'LoadBinaryLabel', 'LoadImagePairFromFile', 'LoadIndexLabel',
           'LoadSynapseSlice', 'MapLabelValues', 'MinMaxStretch', 'RandomRot90FlipOrRotate', 'RandomRotate90',
           'RepeatChannels', 'ResizedAsOriginal', 'SHAPE_KINDS', 'SYNAPSE_ORGANS', 'ScipyZoom', 'render_scene',
           'scene_rng', 'volume_depth']

if importlib.util.find_spec('mmseg') is not None:
    from .acdc import ACDCDataset  # noqa: F401
    from .formatting import PackMultiLabelSegInputs  # noqa: F401
    from .isic import ISICDataset  # noqa: F401
    from .levir_cd import LEVIRCDDataset  # noqa: F401
    from .nnunet_raw import LoadNNUNetImage, NNUNetRaw2DDataset, ZScoreNormalize  # noqa: F401
    from .second import SECOND_LAND_COVER, SECONDDataset  # noqa: F401
    from .synapse import SYNAPSE_META_KEYS, SynapseDataset  # noqa: F401
    from .volume_slices import VOLUME_META_KEYS, VolumeSliceDataset  # noqa: F401
    from .xbd import XBD_DAMAGE, XBDDataset  # noqa: F401
    __all__ += ['ACDCDataset', 'ISICDataset', 'LEVIRCDDataset', 'LoadNNUNetImage', 'NNUNetRaw2DDataset',
                'PackMultiLabelSegInputs', 'SECONDDataset', 'SECOND_LAND_COVER', 'SYNAPSE_META_KEYS', 'SynapseDataset',
                'VOLUME_META_KEYS', 'VolumeSliceDataset', 'XBDDataset', 'XBD_DAMAGE', 'ZScoreNormalize']
