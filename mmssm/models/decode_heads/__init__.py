"""Decode heads for mmseg segmentors: MambaCD's change decoder and its semantic decoders (MambaSCD, MambaBDA),
nnU-Net's deep supervision."""
from .change_mamba_head import ChangeMambaHead, convert_changemamba
from .change_mamba_semantic_head import ChangeMambaSemanticHead, convert_mambabda, convert_mambascd
from .deep_supervision_head import DeepSupervisionHead, nnunet_scale_weights

__all__ = ['ChangeMambaHead', 'ChangeMambaSemanticHead', 'DeepSupervisionHead', 'convert_changemamba',
           'convert_mambabda', 'convert_mambascd', 'nnunet_scale_weights']
