"""Entry points shared by tools/train.py, tools/test.py and the tests."""
from .runner import (SUPPORTED_SCOPES, UserError, build_runner, check_data_paths, load_config,
                     run_with_clear_errors)

__all__ = ['SUPPORTED_SCOPES', 'UserError', 'build_runner', 'check_data_paths', 'load_config',
           'run_with_clear_errors']
