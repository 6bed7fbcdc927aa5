"""Decode heads for mmseg segmentors: MambaCD's change decoder and its semantic decoders (MambaSCD, MambaBDA)."""
from .change_mamba_head import ChangeMambaHead, convert_changemamba
from .change_mamba_semantic_head import ChangeMambaSemanticHead, convert_mambabda, convert_mambascd

__all__ = ['ChangeMambaHead', 'ChangeMambaSemanticHead', 'convert_changemamba', 'convert_mambabda',
           'convert_mambascd']
