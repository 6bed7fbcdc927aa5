"""Decode heads for mmseg segmentors: MambaCD's change decoder."""
from .change_mamba_head import ChangeMambaHead, convert_changemamba

__all__ = ['ChangeMambaHead', 'convert_changemamba']
