"""mmseg segmentors: the siamese encoder-decoder of change detection."""
from .siamese_encoder_decoder import SiameseEncoderDecoder

__all__ = ['SiameseEncoderDecoder']
