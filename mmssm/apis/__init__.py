"""Entry points shared by tools/train.py, tools/test.py and the tests; whole-volume prediction."""
from .runner import (SUPPORTED_SCOPES, UserError, build_runner, check_data_paths, load_config,
                     run_with_clear_errors)
from .volume import gaussian_importance, network_from_checkpoint, predict_volume, window_starts

__all__ = ['SUPPORTED_SCOPES', 'UserError', 'build_runner', 'check_data_paths', 'gaussian_importance', 'load_config',
           'network_from_checkpoint', 'predict_volume', 'run_with_clear_errors', 'window_starts']
