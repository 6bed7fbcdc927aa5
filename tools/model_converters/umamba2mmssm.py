"""Convert an official U-Mamba 2D or 3D checkpoint (bowang-lab/U-Mamba, nnU-Net's ``checkpoint_final.pth``) into an
mmseg EncoderDecoder checkpoint.

    python tools/model_converters/umamba2mmssm.py SRC DST [--arch PLAN] [--mamba bot|enc] [--configuration C]

The plan (features, strides, kernels, blocks, patch size) and the variant come from the checkpoint's ``init_args``
(its nnU-Net plans and configuration: 2d, 3d_fullres, ...) and ``trainer_name`` (nnUNetTrainerUMambaBot / Enc);
``--arch`` (a ``mmssm.UMamba`` zoo name), ``--mamba`` and ``--configuration`` override them, e.g. for a bare
``network_weights`` dict. The result holds ``state_dict`` (``backbone.*`` for ``mmssm.UMamba``,
``decode_head.seg_layers.*`` for ``mmssm.DeepSupervisionHead``) and ``meta`` with the plan, variant, input channels
and classes; it is loaded into the model before saving, so a wrong plan fails here, listing the keys.
"""
import argparse
import os
import sys

import torch

from mmssm.compat import load_checkpoint_file
from mmssm.models.backbones.u_mamba import UMamba, convert_umamba, plan_from_nnunet
from mmssm.models.utils import CheckpointMismatchError, load_state_dict_checked
from mmssm.models.utils.checkpoint import strip_prefix


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='checkpoint_final.pth (with network_weights), or a bare state dict')
    parser.add_argument('dst', help='where to write the mmseg checkpoint')
    parser.add_argument('--arch', help=f'a zoo plan instead of the checkpoint\'s: {sorted(UMamba.arch_zoo)}')
    parser.add_argument('--mamba', choices=('bot', 'enc'), help='the variant, instead of the trainer name\'s')
    parser.add_argument('--configuration', help='the plans configuration the network was built from (default: the '
                        'checkpoint\'s init_args, else 2d)')
    args = parser.parse_args(argv)
    checkpoint = load_checkpoint_file(args.src, map_location='cpu')
    init_args = checkpoint.get('init_args', {})
    configuration = args.configuration or init_args.get('configuration', '2d')
    arch = args.arch or (plan_from_nnunet(init_args['plans'], configuration) if 'plans' in init_args else None)
    trainer = str(checkpoint.get('trainer_name', ''))
    mamba = args.mamba or ('enc' if 'UMambaEnc' in trainer else 'bot' if 'UMambaBot' in trainer else None)
    if arch is None or mamba is None:
        sys.exit(f'{args.src} names no plan / variant (init_args, trainer_name): pass --arch and --mamba')
    state_dict = convert_umamba(checkpoint)
    backbone_weights = strip_prefix(state_dict, 'backbone.', args.src)
    in_channels = backbone_weights['encoder.stem.0.conv1.weight'].shape[1]
    backbone = UMamba(arch, mamba=mamba, in_channels=in_channels)
    num_seg = len({k.split('.')[2] for k in state_dict if k.startswith('decode_head.seg_layers.')})
    try:
        load_state_dict_checked(backbone, backbone_weights, source=args.src)
        if num_seg != len(backbone.out_channels):
            raise CheckpointMismatchError(args.src, [], [f'{num_seg} seg_layers for {len(backbone.out_channels)} '
                                                         'decoder outputs'], [])
    except CheckpointMismatchError as error:
        sys.exit(f'{args.src} is not a U-Mamba ({mamba}) checkpoint of this plan:\n{error}')
    num_classes = state_dict['decode_head.seg_layers.0.weight'].shape[0]
    meta = dict(arch=arch, mamba=mamba, in_channels=in_channels, num_classes=num_classes, source=args.src,
                converter=f'tools/model_converters/{os.path.basename(__file__)}')
    torch.save(dict(state_dict=state_dict, meta=meta), args.dst)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
