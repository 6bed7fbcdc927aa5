"""Helpers shared by every model family."""
from .checkpoint import CheckpointMismatchError, load_pretrained, load_state_dict_checked

__all__ = ['CheckpointMismatchError', 'load_pretrained', 'load_state_dict_checked']
