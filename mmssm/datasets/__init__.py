"""Datasets and transforms registered in ``mmssm.registry`` (DATASETS, TRANSFORMS), and the shape renderer behind the
demo and test data.

``LEVIRCDDataset``, ``ISICDataset``, ``SynapseDataset``, ``ACDCDataset`` and ``NNUNetRaw2DDataset`` subclass mmseg's ``BaseSegDataset``: they
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
from .transforms import LoadBinaryLabel, LoadImagePairFromFile, MinMaxStretch, RandomRotate90, ResizedAsOriginal

__all__ = ['ACDC_STRUCTURES', 'DemoShapes', 'LoadBinaryLabel', 'LoadImagePairFromFile', 'LoadSynapseSlice',
           'MinMaxStretch', 'RandomRot90FlipOrRotate', 'RandomRotate90', 'RepeatChannels', 'ResizedAsOriginal',
           'SHAPE_KINDS', 'SYNAPSE_ORGANS', 'ScipyZoom', 'render_scene', 'scene_rng', 'volume_depth']

if importlib.util.find_spec('mmseg') is not None:
    from .acdc import ACDCDataset  # noqa: F401
    from .isic import ISICDataset  # noqa: F401
    from .levir_cd import LEVIRCDDataset  # noqa: F401
    from .nnunet_raw import LoadNNUNetImage, NNUNetRaw2DDataset, ZScoreNormalize  # noqa: F401
    from .synapse import SYNAPSE_META_KEYS, SynapseDataset  # noqa: F401
    from .volume_slices import VOLUME_META_KEYS, VolumeSliceDataset  # noqa: F401
    __all__ += ['ACDCDataset', 'ISICDataset', 'LEVIRCDDataset', 'LoadNNUNetImage', 'NNUNetRaw2DDataset',
                'SYNAPSE_META_KEYS', 'SynapseDataset', 'ZScoreNormalize',
                'VOLUME_META_KEYS', 'VolumeSliceDataset']
