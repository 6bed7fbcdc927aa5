"""Each compat shim: the problem it fixes is reproduced without it, and solved with it."""
import importlib.util
import os
import pickle
import sys

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from mmssm import compat

compat.apply()


def fresh_module(name):
    """A new, unpatched copy of an mmengine module (the patched one stays in sys.modules)."""
    spec = importlib.util.find_spec(name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def no_pkg_resources(monkeypatch):
    monkeypatch.setitem(sys.modules, 'pkg_resources', None)  # as with setuptools >= 82


def test_package_utils_without_pkg_resources(no_pkg_resources):
    original = fresh_module('mmengine.utils.package_utils')
    with pytest.raises(ImportError):
        original.get_installed_path('mmengine')
    from mmengine.config import config as config_module
    path = config_module.get_installed_path('mmengine')
    assert os.path.isfile(os.path.join(path, 'config', 'config.py'))
    assert config_module.is_installed('mmengine') and not config_module.is_installed('no_such_package_mmssm')


def make_mmengine_checkpoint(path):
    """A checkpoint with the objects mmengine's CheckpointHook writes: HistoryBuffers and numpy values."""
    buffer = HistoryBuffer()
    buffer.update(0.5)
    import numpy as np
    state = {'meta': {'epoch': 1, 'iter': 4}, 'state_dict': {'w': torch.ones(2)},
             'message_hub': {'log_scalars': {'train/loss': buffer}, 'runtime_info': {'eta': np.float64(1.5)}},
             'optimizer': {'state': {}, 'param_groups': [{'lr': np.array([0.1])[0]}]}}
    torch.save(state, path)


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    path = str(tmp_path / 'iter_4.pth')
    make_mmengine_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)  # torch >= 2.6 default, what mmengine 0.10.7 calls
    checkpoint = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert checkpoint['meta']['iter'] == 4
    assert checkpoint['message_hub']['log_scalars']['train/loss'].current() == 0.5


class RunsCode:
    def __reduce__(self):
        return (os.system, ('touch pwned_by_checkpoint',))


class ReachesGlobals:
    """getattr beyond HistoryBuffer's statistics methods could walk to any callable."""

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


@pytest.mark.parametrize('payload', [RunsCode(), ReachesGlobals()])
def test_crafted_checkpoint_is_refused(tmp_path, monkeypatch, payload):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(compat.TRUST_ENV, raising=False)
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'x': payload}, path)
    with pytest.raises(compat.UntrustedCheckpointError, match=compat.TRUST_ENV):
        CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert not (tmp_path / 'pwned_by_checkpoint').exists()


def test_trusted_opt_in_loads_full_pickle(tmp_path, monkeypatch):
    monkeypatch.setenv(compat.TRUST_ENV, '1')
    path = str(tmp_path / 'plain.pth')
    torch.save({'x': {1, 2}.__class__([3])}, path)  # a set: not in the weights_only allow-list
    assert CheckpointLoader.load_checkpoint(path, map_location='cpu')['x'] == {3}


def run_python(code, cwd):
    """``python -c code`` in ``cwd``: outside the repository, whose top-level ``kernels/`` folder would shadow the
    ``kernels`` package of Hugging Face that transformers >= 5.25 imports."""
    import subprocess
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_mmpretrain_models_import_with_transformers_5(tmp_path):
    assert compat.transformers_is_5_or_newer(), 'requirements/tests.txt installs transformers>=5 to reproduce this'
    crashed = run_python('import mmpretrain.models', tmp_path)
    assert crashed.returncode != 0 and 'NoneType takes no arguments' in crashed.stderr
    import mmpretrain.models  # noqa: F401 - this module applied the shims at import
    from mmpretrain.registry import MODELS
    assert MODELS.get('ImageClassifier') is not None


def test_compiled_optimizer_step_with_paramwise_cfg():
    from mmengine.config import ConfigDict
    from mmengine.optim import build_optim_wrapper
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))

    def compiled_step(optimizer):
        def step(x):
            model(x).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
        torch._dynamo.reset()
        torch.compile(step, backend='aot_eager')(torch.randn(2, 4))

    # the cause: parameter groups as ConfigDicts, which mmengine's constructor hands the optimizer
    with pytest.raises(Exception, match='UserDefinedDictVariable'):
        compiled_step(torch.optim.AdamW([ConfigDict(params=[p]) for p in model.parameters()], lr=1e-3))
    wrapper = build_optim_wrapper(model, ConfigDict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                                                    paramwise_cfg=dict(norm_decay_mult=0.0)))  # as the Runner does
    groups = wrapper.optimizer.param_groups
    assert all(type(group) is dict for group in groups)
    assert [group['weight_decay'] for group in groups] == [0.05, 0.05, 0.0, 0.0]  # the paramwise settings kept
    before = [p.detach().clone() for p in model.parameters()]
    compiled_step(wrapper.optimizer)
    assert all(not torch.equal(p, old) for p, old in zip(model.parameters(), before))


RELEASE_SCRIPT = '''
import gc, os, tempfile
import torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from mmssm.compat import release_distributed
dist.init_process_group('gloo', init_method='file://' + os.path.join(tempfile.mkdtemp(), 'store'), rank=0,
                        world_size=1)
holder = {'model': DistributedDataParallel(torch.nn.Linear(4, 4))}
holder['self'] = holder  # a reference cycle, as mmengine's Runner keeps its wrapped model
holder['model'](torch.randn(2, 4)).sum().backward()
del holder
release_distributed()
alive = sum(isinstance(obj, DistributedDataParallel) for obj in gc.get_objects())
print(f'alive={alive} initialized={dist.is_initialized()}')
'''


def test_release_distributed_frees_ddp_before_exit(tmp_path):
    """A DDP model still alive at interpreter exit aborts the process at random (compat section 6)."""
    result = run_python(RELEASE_SCRIPT, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith('alive=0 initialized=False'), result.stdout
