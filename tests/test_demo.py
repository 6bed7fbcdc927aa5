"""The README's demo job, shortened: tools/train.py trains the demo config for one epoch, tools/test.py evaluates
the saved checkpoint and reproduces the accuracy of the last validation pass."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / 'configs' / 'vmamba' / 'vmamba-demo_1xb16-4e_shapes.py'
SHORT = [
    'train_cfg.max_epochs=1',
    'train_dataloader.dataset.num_samples=32',
    'val_dataloader.dataset.num_samples=16',
    'test_dataloader.dataset.num_samples=16',
]


def _tool(name):
    """tools/<name>.py as a module (tools/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f'mmssm_tool_{name}', ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('demo')
    runner = _tool('train').main([str(DEMO_CONFIG), '--work-dir', str(work_dir), '--cfg-options', *SHORT])
    return work_dir, runner


def test_demo_trains_and_reports_accuracy(trained):
    work_dir, runner = trained
    assert runner.iter == 32 // 16
    top1 = runner.message_hub.get_scalar('val/accuracy/top1').current()
    assert 0 <= top1 <= 100
    assert (work_dir / 'epoch_1.pth').is_file()


def test_demo_checkpoint_evaluates_to_the_same_accuracy(trained):
    work_dir, runner = trained
    metrics = _tool('test').main([str(DEMO_CONFIG), str(work_dir / 'epoch_1.pth'), '--work-dir', str(work_dir),
                                  '--cfg-options', *SHORT])
    assert metrics['accuracy/top1'] == pytest.approx(runner.message_hub.get_scalar('val/accuracy/top1').current())
