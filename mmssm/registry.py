"""mmssm's registry nodes: children of mmengine's roots with scope ``mmssm``.

A config in any scope (mmpretrain, mmdet, mmseg) can say ``type='mmssm.VMamba'``: mmengine imports
``mmssm.registry`` for the ``mmssm`` scope and each node imports its ``locations`` on first lookup, so no
``custom_imports`` is needed.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmssm', locations=['mmssm.models'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='mmssm', locations=['mmssm.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='mmssm', locations=['mmssm.datasets'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='mmssm', locations=['mmssm.evaluation'])
EVALUATOR = Registry('evaluator', parent=MMENGINE_EVALUATOR, scope='mmssm', locations=['mmssm.evaluation'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmssm', locations=['mmssm.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry('optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                      scope='mmssm', locations=['mmssm.engine'])
VISUALIZERS = Registry('visualizer', parent=MMENGINE_VISUALIZERS, scope='mmssm', locations=['mmssm.visualization'])
