"""Helpers shared by every model family."""
from .backbone import (FrozenStagesMixin, UnknownArchError, arch_from_zoo, init_linear_and_layernorm,
                       parse_out_indices)
from .checkpoint import CheckpointMismatchError, load_pretrained, load_state_dict_checked

__all__ = ['CheckpointMismatchError', 'FrozenStagesMixin', 'UnknownArchError', 'arch_from_zoo',
           'init_linear_and_layernorm', 'load_pretrained', 'load_state_dict_checked', 'parse_out_indices']
