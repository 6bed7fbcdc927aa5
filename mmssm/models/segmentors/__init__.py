"""mmseg segmentors: the siamese encoder-decoder of change detection and its semantic-change / damage extension."""
from .semantic_change_encoder_decoder import SemanticChangeEncoderDecoder
from .siamese_encoder_decoder import SiameseEncoderDecoder

__all__ = ['SemanticChangeEncoderDecoder', 'SiameseEncoderDecoder']
