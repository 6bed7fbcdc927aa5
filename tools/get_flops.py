"""Parameters and FLOPs of the model of a config (classification, detection, segmentation, change detection).

    python tools/get_flops.py CONFIG [--shape H [W]] [--channels C] [--cfg-options KEY=VALUE ...]

Builds the config's model (random weights), runs one (1, C, H, W) random input through its tensor-mode forward
under mmengine's FlopAnalyzer and prints the parameters and FLOPs of the whole model and of each top-level part.
FLOPs follow fvcore's convention, the one the papers report: one per multiply-add, LayerNorm five per element, the
selective scans by the official ``flops_selective_scan_fn`` (``mmssm.analysis``); elementwise activations and
additions count nothing. C defaults to the data preprocessor's number of means (6 for the two dates of change
detection), else the backbone's ``in_channels``, else 3. Detectors run their tensor-mode forward on one image's
proposals (the region heads' FLOPs depend on the proposal count, as in mmdet's get_flops).
"""
import argparse
import logging
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Parameters and FLOPs of a config\'s model')
    parser.add_argument('config', help='config file')
    parser.add_argument('--shape', type=int, nargs='+', default=[224], help='input height [width] (default 224)')
    parser.add_argument('--channels', type=int, default=None, help='input channels (default: from the config)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override settings of the config')
    args = parser.parse_args(argv)
    if len(args.shape) > 2:
        parser.error(f'--shape takes H or H W, got {args.shape}')
    return args


def input_channels(model_cfg):
    """The data preprocessor's number of means, else the backbone's in_channels, else 3."""
    mean = (model_cfg.get('data_preprocessor') or {}).get('mean')
    if mean is not None:
        return len(mean)
    return (model_cfg.get('backbone') or {}).get('in_channels', 3)


class TensorForward(torch.nn.Module):
    """``model(inputs, data_samples, mode='tensor')`` with the data samples fixed: a one-tensor module to trace."""

    def __init__(self, model, data_samples):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs):
        return self.model(inputs, self.data_samples, mode='tensor')


def data_samples_for(scope, height, width):
    """Image metadata a detector's tensor-mode forward needs (none for the other tasks)."""
    if scope != 'mmdet':
        return None
    from mmdet.structures import DetDataSample
    shape = (height, width)
    return [DetDataSample(metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=shape, batch_input_shape=shape,
                                        scale_factor=(1.0, 1.0)))]


def count(cfg, height, width, channels=None):
    """(model, FlopAnalyzer) of the config's model on one random (1, C, H, W) input."""
    from mmengine.analysis import FlopAnalyzer
    from mmengine.logging import MMLogger
    from mmengine.registry import MODELS, DefaultScope, init_default_scope
    import mmssm.models  # noqa: F401 - registers the models and the scan ops' FLOP handles
    init_default_scope(cfg.default_scope)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    MMLogger.get_current_instance().setLevel(logging.WARNING)  # no per-parameter init report
    model.eval()
    channels = channels or input_channels(cfg.model)
    inputs = torch.randn(1, channels, height, width)
    analyzer = FlopAnalyzer(TensorForward(model, data_samples_for(cfg.default_scope, height, width)), (inputs, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        analyzer.total()
    return model, analyzer


def report(model, analyzer, height, width, channels):
    by_module = analyzer.by_module()
    lines = [f'input (1, {channels}, {height}, {width})', f'{"part":<16}{"params (M)":>12}{"GFLOPs":>10}']
    for name, part in model.named_children():
        if name == 'data_preprocessor':
            continue
        params = sum(p.numel() for p in part.parameters())
        lines.append(f'{name:<16}{params / 1e6:>12.2f}{by_module.get("model." + name, 0) / 1e9:>10.3f}')
    params = sum(p.numel() for p in model.parameters())
    lines.append(f'{"total":<16}{params / 1e6:>12.2f}{analyzer.total() / 1e9:>10.3f}')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    from mmssm.apis import load_config
    cfg = load_config(args.config, args.cfg_options)
    height, width = args.shape if len(args.shape) == 2 else args.shape * 2
    model, analyzer = count(cfg, height, width, args.channels)
    print(report(model, analyzer, height, width, args.channels or input_channels(cfg.model)))


if __name__ == '__main__':
    from mmssm.apis.runner import run_with_clear_errors
    run_with_clear_errors(main)
