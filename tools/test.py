"""Evaluate a checkpoint with any mmssm config; the task follows the config's default_scope.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl] [--show-dir DIR] [--tta]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402

from mmssm.apis import UserError, build_runner, load_config, run_with_clear_errors  # noqa: E402
from mmssm.compat import release_distributed  # noqa: E402

# default_scope -> the visualization hook that draws predictions in that library
VISUALIZATION_HOOKS = {'mmpretrain': 'VisualizationHook', 'mmdet': 'DetVisualizationHook',
                       'mmseg': 'SegVisualizationHook'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a checkpoint with mmssm')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (ours, or converted by tools/model_converters)')
    parser.add_argument('--work-dir', help='where the evaluation log goes')
    parser.add_argument('--out', help='dump the raw predictions to this .pkl file')
    parser.add_argument('--show-dir', help='draw predictions into this folder (under the work dir)')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation, from the config\'s tta_model')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys: key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg, args):
    if not os.path.isfile(args.checkpoint):
        raise UserError(f'checkpoint {args.checkpoint} does not exist')
    cfg.launcher, cfg.load_from = args.launcher, args.checkpoint
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise UserError('--out must end with .pkl')
        evaluator = cfg.test_evaluator
        cfg.test_evaluator = list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]
        cfg.test_evaluator.append(dict(type='DumpResults', out_file_path=args.out))
    if args.show_dir:
        hook = cfg.default_hooks.get('visualization')
        if hook is None:
            hook = cfg.default_hooks.visualization = dict(type=VISUALIZATION_HOOKS[cfg.default_scope])
        hook.update(enable=True, draw=True) if cfg.default_scope == 'mmpretrain' else hook.update(draw=True)
        hook['out_dir' if cfg.default_scope == 'mmpretrain' else 'test_out_dir'] = args.show_dir
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise UserError('--tta needs tta_model and tta_pipeline in the config')
        cfg.model = dict(**cfg.tta_model, module=cfg.model)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = merge_args(load_config(args.config, args.cfg_options, args.work_dir), args)
    runner = build_runner(cfg, loaders=('test_dataloader',))  # a checkpoint is tested without the train data
    return runner.test()


if __name__ == '__main__':
    run_with_clear_errors(main)
    release_distributed()  # mmssm/compat.py, section 6
