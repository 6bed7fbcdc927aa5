"""The foundation as a user meets it: registry scopes, tools/train.py (resume after a kill, 2-process gloo run),
clear one-line errors for bad input, and packaging (`mmssm.kernels` after `pip install .`)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmssm import compat

compat.apply()

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / 'configs' / 'vmamba' / 'vmamba-demo_1xb16-4e_shapes.py')
# 8 iterations an epoch of a very small model
SMALL = ['model.backbone.arch.embed_dims=8', 'model.head.in_channels=32', 'train_dataloader.batch_size=4',
         'train_dataloader.dataset.num_samples=32', 'val_dataloader.dataset.num_samples=8',
         'test_dataloader.dataset.num_samples=8', 'train_dataloader.dataset.image_size=16',
         'val_dataloader.dataset.image_size=16', 'test_dataloader.dataset.image_size=16']
TINY_VMAMBA = dict(type='mmssm.VMamba', arch=dict(embed_dims=8, depths=(1, 1)), out_indices=(1, ))


def run_tool(args, timeout=600, **kwargs):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          **kwargs)


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_mmssm_type_resolves_in_every_scope(scope, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no dependence on the working directory
    from mmengine.registry import DefaultScope
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        backbone = registry.build(TINY_VMAMBA)
    from mmssm.models.backbones.vmamba import VMamba
    assert isinstance(backbone, VMamba)
    assert backbone(torch.randn(1, 3, 16, 16))[0].shape == (1, 16, 2, 2)


def checkpoint_iter(path):
    return torch.load(path, map_location='cpu', weights_only=False)['meta']['iter']


def test_resume_after_kill_continues_from_last_checkpoint(tmp_path):
    work_dir = tmp_path / 'run'
    args = ['tools/train.py', DEMO, '--work-dir', str(work_dir), '--cfg-options', *SMALL, 'train_cfg.max_epochs=3',
            'default_hooks.checkpoint.max_keep_ckpts=3']
    log = tmp_path / 'killed_run.log'
    with open(log, 'w') as log_file:
        process = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        # mmengine writes epoch_N.pth, then the last_checkpoint pointer: wait for the pointer (a kill between the
        # two would leave no record of the first checkpoint)
        while not (work_dir / 'last_checkpoint').exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, 'training ended before it was interrupted: ' + log.read_text()[-2000:]
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not (work_dir / 'epoch_3.pth').exists()
    time.sleep(0.5)  # a checkpoint being written when killed is left incomplete: resume must use a complete one
    last = (work_dir / 'last_checkpoint').read_text().strip()
    resumed_from = checkpoint_iter(last)
    assert resumed_from in (8, 16)

    resumed = run_tool([*args, '--resume'])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f'resumed epoch: {resumed_from // 8}, iter: {resumed_from}' in resumed.stdout
    assert checkpoint_iter(work_dir / 'epoch_3.pth') == 24


def test_two_process_gloo_training_on_cpu(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = run_tool(['-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_port=29613', 'tools/train.py',
                       DEMO, '--launcher', 'pytorch', '--work-dir', str(tmp_path), '--cfg-options', *SMALL,
                       'train_cfg.max_epochs=1'], env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Distributed training: True' in result.stdout
    # 32 samples over 2 processes of batch 4: 4 iterations
    assert checkpoint_iter(tmp_path / 'epoch_1.pth') == 4


def test_compiled_training_matches_eager(tmp_path):
    """mmengine's `compile` option (torch.compile of the whole train_step, optimizer step included) trains the demo
    VMamba with the official recipe's paramwise_cfg (compat shim 5) to the same weights as eager training."""
    weights = {}
    for mode, options in (('eager', []), ('compiled', ['compile.backend=aot_eager'])):
        result = run_tool(['tools/train.py', DEMO, '--work-dir', str(tmp_path / mode), '--cfg-options', *SMALL,
                           'train_cfg.max_epochs=1', *options])
        assert result.returncode == 0, result.stderr[-3000:]
        weights[mode] = torch.load(tmp_path / mode / 'epoch_1.pth', map_location='cpu',
                                   weights_only=False)['state_dict']
    assert 'Model has been "compiled"' in result.stdout
    assert weights['eager'].keys() == weights['compiled'].keys()
    for name, eager in weights['eager'].items():
        torch.testing.assert_close(weights['compiled'][name], eager, rtol=1e-4, atol=1e-5, msg=name)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ')
    for fragment in fragments:
        assert fragment in last


def test_unknown_type_is_one_clear_error(tmp_path):
    result = run_tool(['tools/train.py', DEMO, '--work-dir', str(tmp_path), '--cfg-options',
                       'model.backbone.type=mmssm.VMambaa'])
    assert_one_line_error(result, 'VMambaa', "type='mmssm.")


def test_missing_dataset_path_is_one_clear_error(tmp_path):
    config = ROOT / 'configs' / 'vmamba' / 'vmamba-tiny_8xb128_in1k.py'
    result = run_tool(['tools/train.py', str(config), '--work-dir', str(tmp_path), '--cfg-options',
                       f'train_dataloader.dataset.data_root={tmp_path}/no_imagenet_here'])
    assert_one_line_error(result, 'no_imagenet_here', '--cfg-options train_dataloader.dataset.data_root=')


def test_testing_needs_only_the_test_data(tmp_path):
    """tools/test.py checks (and mmengine builds) only the test loader: a checkpoint is tested without the training
    images (the config's train / val data_root, data/LEVIR-CD, does not exist here)."""
    from mmengine.registry import DefaultScope

    from mmssm.apis import UserError, check_data_paths, load_config
    from mmssm.registry import MODELS
    from mmssm.testing import make_levir_cd
    root = make_levir_cd(tmp_path / 'levir')
    config = tmp_path / 'tiny_changemamba.py'
    config.write_text(
        f"_base_ = '{ROOT / 'configs' / 'change_mamba' / 'changemamba-tiny_1xb16-20k_levir-cd-256x256.py'}'\n"
        "model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=16, depths=(1, 1, 1, 1)), init_cfg=None),\n"
        "             decode_head=dict(in_channels=[16, 32, 64, 128], channels=16))\n"
        f"test_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root='{root}'))\n")
    cfg = load_config(str(config), work_dir=str(tmp_path / 'work'))
    with pytest.raises(UserError, match="train_dataloader: dataset mmssm.LEVIRCDDataset has data_root='data/LEVIR"):
        check_data_paths(cfg)
    checkpoint = tmp_path / 'tiny.pth'
    with DefaultScope.overwrite_default_scope('mmseg'):  # the config's scope, not left behind for later tests
        torch.save({'state_dict': MODELS.build(cfg.model).state_dict()}, checkpoint)
    result = run_tool(['tools/test.py', str(config), str(checkpoint), '--work-dir', str(tmp_path / 'work')])
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'kappa' in result.stdout + result.stderr


def test_missing_downstream_library_is_one_clear_error(monkeypatch):
    import importlib.util

    from mmssm.apis import UserError, load_config
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'mmdet' else find_spec(name, *a))
    with pytest.raises(UserError, match=r'mmdet is not installed: run `pip install -r requirements/mmdet.txt`'):
        load_config(str(ROOT / 'configs' / 'vmamba' / 'mask-rcnn_vmamba-t_fpn_1x_coco.py'))


def test_kernels_importable_as_mmssm_kernels_after_pip_install(tmp_path):
    target = tmp_path / 'site'
    install = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--no-build-isolation',
                              '--target', str(target), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    assert not (target / 'kernels').exists()
    probe = ('import mmssm.kernels as k, torch; '
             'print(k.__file__); '
             'y = k.selective_scan(torch.randn(1, 2, 5), torch.rand(1, 2, 5), -torch.rand(2, 1), torch.randn(1, 1, 5), '
             'torch.randn(1, 1, 5)); print(tuple(y.shape))')
    env = dict(os.environ, PYTHONPATH=str(target))
    # PYTHONPATH comes before the editable install of this checkout, so the installed copy is the one imported
    result = subprocess.run([sys.executable, '-c', probe], cwd=tmp_path, capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    kernels_file, shape = result.stdout.strip().splitlines()[-2:]
    assert kernels_file == str(target / 'mmssm' / 'kernels' / '__init__.py') and shape == '(1, 2, 5)'


def test_kernels_importable_from_editable_install(tmp_path):
    result = subprocess.run([sys.executable, '-c', 'import mmssm.kernels as k; print(k.__file__)'], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(ROOT / 'kernels' / '__init__.py')
