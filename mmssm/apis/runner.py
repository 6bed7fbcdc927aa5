"""Load an OpenMMLab config of any supported task and build its Runner, with clear errors for common mistakes."""
import importlib.util
import os.path as osp
import re
import sys

from .. import compat

# default_scope of a config -> (the library it needs, its requirements file)
SUPPORTED_SCOPES = {
    'mmpretrain': ('mmpretrain', 'requirements/mmpretrain.txt'),
    'mmdet': ('mmdet', 'requirements/mmdet.txt'),
    'mmseg': ('mmseg', 'requirements/mmseg.txt'),
}
DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


class UserError(Exception):
    """A mistake in the command line, config or data that the user can fix; printed without a traceback."""


def load_config(path, cfg_options=None, work_dir=None):
    """Read ``path`` (after the compat shims), merge ``cfg_options`` and set ``work_dir``.

    ``work_dir`` defaults to ``work_dirs/<config name>``. Raises UserError for a missing file, an unsupported
    ``default_scope`` or a downstream library that is not installed.
    """
    compat.apply()
    from mmengine.config import Config
    if not osp.isfile(path):
        raise UserError(f'config file {path} does not exist')
    scope = _peek_default_scope(path)
    _require_library(scope, path)
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join('work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def _peek_default_scope(path):
    """default_scope of a config, read before resolving `_base_` files of libraries that may be missing."""
    with open(path) as f:
        text = f.read()
    match = re.search(r"default_scope\s*=\s*['\"](\w+)['\"]", text) or re.search(r"['\"](\w+)::", text)
    if match:
        return match.group(1)
    from mmengine.config import Config
    return Config.fromfile(path).get('default_scope')


def _require_library(scope, path):
    if scope is None:
        raise UserError(f'{path} sets no default_scope: say which library runs it, one of {sorted(SUPPORTED_SCOPES)}')
    if scope not in SUPPORTED_SCOPES:
        raise UserError(f"{path} has default_scope='{scope}'; mmssm runs {sorted(SUPPORTED_SCOPES)}")
    module, requirements = SUPPORTED_SCOPES[scope]
    if importlib.util.find_spec(module) is None:
        raise UserError(f"{path} is a {scope} config but {module} is not installed: run "
                        f"`pip install -r {requirements}` (or `bash tools/install.sh`)")


def check_data_paths(cfg, loaders=DATALOADERS):
    """Fail early, naming the key to change, when the ``data_root`` of one of ``loaders`` does not exist."""
    for name in loaders:
        loader = cfg.get(name)
        if not loader:
            continue
        datasets = [loader.dataset]
        while datasets:
            dataset = datasets.pop()
            datasets += list(dataset.get('datasets', [])) + ([dataset.dataset] if 'dataset' in dataset else [])
            root = dataset.get('data_root')
            if root and not osp.isdir(root):
                raise UserError(
                    f'{name}: dataset {dataset.get("type")} has data_root={root!r}, which does not exist. Prepare '
                    f'the data there or pass --cfg-options {name}.dataset.data_root=/path/to/data')


def build_runner(cfg, loaders=DATALOADERS):
    """Build the mmengine Runner for ``cfg``, the data paths of ``loaders`` checked first (a test run needs only
    ``('test_dataloader',)``: mmengine builds the other loaders when training)."""
    compat.apply()
    from mmengine.runner import Runner
    check_data_paths(cfg, loaders)
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else _build_custom_runner(cfg)


def _build_custom_runner(cfg):
    from mmengine.registry import RUNNERS
    return RUNNERS.build(cfg)


def run_with_clear_errors(main, argv=None):
    """Run ``main(argv)``; a UserError or an unknown registry type ends with one line on stderr and exit code 2."""
    try:
        return main(argv)
    except UserError as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(2)
    except KeyError as error:
        message = str(error.args[0]) if error.args else ''
        if 'is not in the' not in message or 'registry' not in message:
            raise
        print(f'error: {message.split(". Please check")[0]}. Check the spelling of `type` in the config; mmssm '
              "modules are written type='mmssm.<Name>' (e.g. 'mmssm.VMamba').", file=sys.stderr)
        sys.exit(2)
