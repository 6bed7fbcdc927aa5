"""Convert an official Swin-UMamba or Swin-UMamba† checkpoint (JiarunLiu/Swin-UMamba) to an mmseg EncoderDecoder one.

    python tools/model_converters/swinumamba2mmssm.py SRC DST

SRC: nnU-Net's ``checkpoint_final.pth`` (or ``checkpoint_best.pth``, ``checkpoint_<epoch>.pth``) with
``network_weights``, or a bare state dict. The variant, the image channels and the number of classes are read from the
weights; the result holds ``state_dict`` (``backbone.*`` for ``mmssm.SwinUMamba`` / ``mmssm.SwinUMambaD`` with the
paper's arch, ``decode_head.*`` for ``mmssm.DeepSupervisionHead``) and ``meta`` with those three facts. Both parts are
loaded into freshly built modules before saving, so a damaged or foreign file fails here, listing the keys. nnU-Net
checkpoints also hold numpy values from the training log: if the safe loader refuses them, set
``MMSSM_TRUST_CHECKPOINTS=1`` for a file you trust. For the ImageNet initialisation of a new model use the Vanilla
VMamba-T file itself as the backbone's ``init_cfg`` checkpoint (no conversion).
"""
import argparse
import os
import sys

import torch

from mmssm.compat import load_checkpoint_file
from mmssm.models.backbones.swin_umamba import SwinUMamba, SwinUMambaD, convert_swin_umamba
from mmssm.models.decode_heads import DeepSupervisionHead
from mmssm.models.utils.checkpoint import CheckpointMismatchError, load_state_dict_checked, strip_prefix


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official checkpoint (nnU-Net checkpoint with "network_weights", or a state dict)')
    parser.add_argument('dst', help='where to write the mmseg checkpoint')
    args = parser.parse_args(argv)
    state_dict = convert_swin_umamba(load_checkpoint_file(args.src, map_location='cpu'))
    if 'backbone.stem.conv.weight' in state_dict:
        backbone_cls, first_conv = SwinUMamba, 'backbone.stem.conv.weight'
    else:
        backbone_cls, first_conv = SwinUMambaD, 'backbone.encoder.patch_embed.conv1.weight'
    if first_conv not in state_dict or 'decode_head.seg_layers.0.weight' not in state_dict:
        sys.exit(f'{args.src} is not a Swin-UMamba checkpoint: no {first_conv} or output conv')
    in_channels = state_dict[first_conv].shape[1]
    num_classes = state_dict['decode_head.seg_layers.0.weight'].shape[0]
    backbone = backbone_cls(in_channels=in_channels)
    head = DeepSupervisionHead(backbone.out_channels, backbone.out_channels[0], num_classes)
    try:
        load_state_dict_checked(backbone, strip_prefix(state_dict, 'backbone.', args.src), source=args.src)
        load_state_dict_checked(head, strip_prefix(state_dict, 'decode_head.', args.src), source=args.src)
    except CheckpointMismatchError as error:
        sys.exit(f'{args.src} is not a {backbone_cls.__name__} checkpoint of the paper\'s arch:\n{error}')
    meta = dict(model=backbone_cls.__name__, in_channels=in_channels, num_classes=num_classes, source=args.src,
                converter=f'tools/model_converters/{os.path.basename(__file__)}')
    torch.save(dict(state_dict=state_dict, meta=meta), args.dst)
    print(f'wrote {len(state_dict)} tensors ({backbone_cls.__name__}, {in_channels} input channels, {num_classes} '
          f'classes) to {args.dst}')


if __name__ == '__main__':
    main()
