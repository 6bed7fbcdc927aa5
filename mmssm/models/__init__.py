"""Registered models: importing this package registers every family in ``mmssm.registry.MODELS``.

The change-detection segmentor and head build on mmseg and are registered when it is installed
(``pip install -r requirements/mmseg.txt``); a config that uses them declares ``default_scope = 'mmseg'``, whose
missing library ``mmssm.apis.load_config`` reports. Importing it also teaches mmengine's FLOP counter the scan ops
(``mmssm.analysis``).
"""
import importlib.util

from mmssm.analysis import register_flop_handles

from . import backbones  # noqa: F401
from . import classifiers  # noqa: F401
from . import losses  # noqa: F401

if importlib.util.find_spec('mmseg') is not None:
    from . import decode_heads, segmentors  # noqa: F401

register_flop_handles()
