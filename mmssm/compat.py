"""Workarounds that let the pinned OpenMMLab releases run on a modern PyTorch / setuptools stack.

Everything that patches another library lives here, each shim with the upstream issue or cause it works around and
a test in ``tests/test_compat.py`` that fails without it. ``apply()`` is idempotent and is called by
``mmssm.apis`` (and so by ``tools/train.py`` / ``tools/test.py``) before any config is read.
"""
import importlib.abc
import importlib.metadata
import importlib.util
import os
import os.path as osp
import pickle
import sys

import torch

TRUST_ENV = 'MMSSM_TRUST_CHECKPOINTS'
_applied = False


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds objects outside the allow-list of what mmengine's own checkpoints contain."""


# --- 1. mmengine helpers import pkg_resources (removed in setuptools 82) ------------------------------------------
# mmengine 0.10.7 `utils/package_utils.py` calls pkg_resources in is_installed / get_installed_path, used by config
# inheritance across packages (`_base_ = 'mmdet::...'`). Fixed upstream by open-mmlab/mmengine#1676 (unreleased).

def is_installed(package):
    """Whether a distribution or an importable module called ``package`` exists (no pkg_resources)."""
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        return spec is not None and spec.origin is not None


def get_installed_path(package):
    """Directory of the top-level module of an installed distribution or importable package (no pkg_resources)."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f'package {package!r} is not installed') from None
        return osp.dirname(spec.origin)
    top_level = (dist.read_text('top_level.txt') or package).split()[0]
    spec = importlib.util.find_spec(top_level)
    if spec is not None and spec.origin is not None:
        return osp.dirname(spec.origin)
    return osp.join(str(dist.locate_file('')), top_level)


def _patch_package_utils():
    import mmengine.config.config as config_module
    import mmengine.hub.hub as hub_module
    import mmengine.utils as utils_module
    import mmengine.utils.package_utils as package_utils
    for module in (package_utils, utils_module, config_module, hub_module):
        if hasattr(module, 'get_installed_path'):
            module.get_installed_path = get_installed_path
        if hasattr(module, 'is_installed'):
            module.is_installed = is_installed


# --- 2. resuming mmengine checkpoints with torch >= 2.6 (weights_only=True by default) ----------------------------
# mmengine 0.10.7 calls torch.load without weights_only, so its own checkpoints (a HistoryBuffer, numpy scalars and
# arrays in the message hub) fail to load: open-mmlab/mmengine#1655 (and #1650). We do NOT switch the protection off:
# local checkpoints load with weights_only=True and an allow-list of exactly the types mmengine writes.

def _history_buffer_method(owner, name):
    """Stands in for ``getattr`` in checkpoints: only HistoryBuffer's own statistics methods may be looked up.

    mmengine pickles ``HistoryBuffer._statistics_methods`` (functions such as ``HistoryBuffer.min``) as
    ``getattr(HistoryBuffer, 'min')``; a general getattr would let a crafted pickle reach arbitrary callables.
    """
    from mmengine.logging import HistoryBuffer
    if owner is not HistoryBuffer or name not in ('min', 'max', 'mean', 'current'):
        raise UntrustedCheckpointError(f'getattr({owner!r}, {name!r}) is not allowed in a checkpoint')
    return getattr(owner, name)


def checkpoint_safe_globals():
    """The globals an mmengine checkpoint may reference (numpy 1.x and 2.x spellings)."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    safe = [HistoryBuffer, np.ndarray, np.dtype, (_history_buffer_method, 'builtins.getattr')]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        safe += [(multiarray._reconstruct, f'{module}._reconstruct'), (multiarray.scalar, f'{module}.scalar')]
    safe += [type(np.dtype(name)) for name in ('float64', 'float32', 'int64', 'int32', 'bool')]
    return safe


def load_checkpoint_file(filename, map_location=None):
    """torch.load restricted to mmengine's checkpoint types; ``MMSSM_TRUST_CHECKPOINTS=1`` allows full pickle."""
    if os.environ.get(TRUST_ENV) == '1':
        return torch.load(filename, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).split('WeightsUnpickler error:')[-1].strip().splitlines()[0]
        raise UntrustedCheckpointError(
            f'refusing to unpickle {filename}: it holds objects outside the types mmengine checkpoints contain '
            f'({reason}). Only if you trust this file, set {TRUST_ENV}=1 to load it with full pickle.') from None


def _load_from_local(filename, map_location):
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found')
    return load_checkpoint_file(filename, map_location)


def _patch_checkpoint_loading():
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local, force=True)


# --- 3. torch.distributed on CPU through mmengine's pytorch launcher ----------------------------------------------
# mmengine 0.10.7 `dist/utils.py::_init_dist_pytorch` always calls torch.cuda.set_device(LOCAL_RANK), which raises
# on a machine without a GPU, and `Runner.wrap_model` passes device_ids=[LOCAL_RANK] to DistributedDataParallel, which
# torch refuses for a CPU module: `torchrun ... --launcher pytorch` could not train with gloo on CPU.

def _patch_cpu_distributed():
    import mmengine.dist.utils as dist_utils
    from mmengine.model import MMDistributedDataParallel
    original = dist_utils._init_dist_pytorch
    if getattr(original, '_mmssm_cpu_aware', False):
        return
    ddp_init = MMDistributedDataParallel.__init__

    def ddp_init_cpu_aware(self, module, detect_anomalous_params=False, **kwargs):
        if not torch.cuda.is_available():
            kwargs['device_ids'] = None
        ddp_init(self, module, detect_anomalous_params=detect_anomalous_params, **kwargs)

    MMDistributedDataParallel.__init__ = ddp_init_cpu_aware

    def init_dist_pytorch(backend, init_backend='torch', **kwargs):
        if torch.cuda.is_available():
            return original(backend, init_backend, **kwargs)
        torch.distributed.init_process_group(backend='gloo', **kwargs)

    init_dist_pytorch._mmssm_cpu_aware = True
    dist_utils._init_dist_pytorch = init_dist_pytorch


# --- 4. `import mmpretrain.models` with pycocotools and transformers >= 5 installed -----------------------------------
# mmpretrain 1.2.0 enables its multimodal models when pycocotools and transformers>=4.28 are installed
# (`utils/dependency.py::WITH_MULTIMODAL`); their code (e.g. `models/multimodal/blip/language_model.py`) subclasses
# transformers 4.x names that are None in 5.x, so `import mmpretrain.models` crashes with
# "TypeError: NoneType takes no arguments". Cause: mmpretrain 1.2.0 predates transformers 5 (no upstream fix released).
# Install an import hook that turns the multimodal models off when transformers is 5 or newer.

class _MultimodalOffLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        module.WITH_MULTIMODAL = module.WITH_MULTIMODAL and not transformers_is_5_or_newer()


class _MultimodalOffFinder(importlib.abc.MetaPathFinder):
    target = 'mmpretrain.utils.dependency'

    def find_spec(self, fullname, path, target=None):
        if fullname != self.target:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                spec.loader = _MultimodalOffLoader(spec.loader)
                return spec
        return None


def transformers_is_5_or_newer():
    try:
        return int(importlib.metadata.version('transformers').split('.')[0]) >= 5
    except importlib.metadata.PackageNotFoundError:
        return False


def _patch_mmpretrain_multimodal():
    if 'mmpretrain.utils.dependency' in sys.modules:
        module = sys.modules['mmpretrain.utils.dependency']
        module.WITH_MULTIMODAL = module.WITH_MULTIMODAL and not transformers_is_5_or_newer()
    elif not any(isinstance(finder, _MultimodalOffFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MultimodalOffFinder())


# --- 5. mmengine's `compile` option with a paramwise_cfg -------------------------------------------------------------
# mmengine 0.10.7's DefaultOptimWrapperConstructor assigns the parameter groups into the optimizer's ConfigDict, which
# turns each group into a ConfigDict; the optimizer keeps them. `compile = True` (or a dict) compiles the whole
# `train_step`, optimizer step included, and torch.compile's dynamo (torch 2.14) fails on the dict subclass in
# Adam's step ("InternalTorchDynamoError: AttributeError: 'UserDefinedDictVariable' object has no attribute
# 'items'"): every config with a paramwise_cfg (the official recipes: no weight decay on norms) could not compile.
# Once an optimizer wrapper is built, its optimizer's groups become plain dicts (same keys and values).

def _patch_optimizer_param_groups():
    from mmengine.optim import OptimWrapper
    init = OptimWrapper.__init__
    if getattr(init, '_mmssm_plain_groups', False):
        return

    def init_with_plain_groups(self, optimizer, *args, **kwargs):
        init(self, optimizer, *args, **kwargs)
        groups = self.optimizer.param_groups
        groups[:] = [group if type(group) is dict else dict(group) for group in groups]

    init_with_plain_groups._mmssm_plain_groups = True
    OptimWrapper.__init__ = init_with_plain_groups


# --- 6. a DistributedDataParallel model alive at interpreter exit (torch 2.14, gloo on CPU) -------------------------
# A process whose DDP model is still referenced when Python shuts down aborts about one time in three with
# "terminate called without an active exception" (SIGABRT) after training has finished: measured here with a
# two-process torchrun script of one Linear layer, 4 of 12 runs; 0 of 12 when the model is freed and garbage collected
# before exit. mmengine's Runner keeps the wrapped model in reference cycles, so it lives until shutdown and
# `torchrun tools/train.py ... --launcher pytorch` failed at random. The tools call this once `main` returns.

def release_distributed():
    """Free unreachable objects (the finished runner and its DDP model) and destroy the default process group."""
    import gc

    import torch.distributed as dist
    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def apply():
    """Install every shim (idempotent)."""
    global _applied
    if _applied:
        return
    _patch_package_utils()
    _patch_checkpoint_loading()
    _patch_cpu_distributed()
    _patch_mmpretrain_multimodal()
    _patch_optimizer_param_groups()
    _applied = True
