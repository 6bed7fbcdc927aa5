"""Decode heads for mmseg segmentors: MambaCD's change decoder, nnU-Net-style deep supervision."""
from .change_mamba_head import ChangeMambaHead, convert_changemamba
from .deep_supervision_head import DeepSupervisionHead, nnunet_deep_supervision_weights

__all__ = ['ChangeMambaHead', 'DeepSupervisionHead', 'convert_changemamba', 'nnunet_deep_supervision_weights']
