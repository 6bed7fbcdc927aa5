"""Datasets and transforms registered in ``mmssm.registry`` (DATASETS, TRANSFORMS), and the shape renderer behind the
demo and test data.

``LEVIRCDDataset`` and ``ISICDataset`` subclass mmseg's ``BaseSegDataset``: they are registered only where
mmsegmentation is installed (an optional library, ``requirements/mmseg.txt``), so classification-only installs still
import this package; an mmseg config fails earlier, in ``mmssm.apis.load_config``, with the install command.
"""
import importlib.util

from .demo_shapes import DemoShapes
from .shapes import SHAPE_KINDS, render_scene, scene_rng
from .transforms import LoadBinaryLabel, LoadImagePairFromFile, MinMaxStretch, RandomRotate90, ResizedAsOriginal

__all__ = ['DemoShapes', 'LoadBinaryLabel', 'LoadImagePairFromFile', 'MinMaxStretch', 'RandomRotate90',
           'ResizedAsOriginal', 'SHAPE_KINDS', 'render_scene', 'scene_rng']

if importlib.util.find_spec('mmseg') is not None:
    from .isic import ISICDataset  # noqa: F401
    from .levir_cd import LEVIRCDDataset  # noqa: F401
    __all__ += ['ISICDataset', 'LEVIRCDDataset']
