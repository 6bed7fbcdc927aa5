"""Convert an official Spatial-Mamba checkpoint (EdwardChasel/Spatial-Mamba) into an mmpretrain classifier checkpoint.

    python tools/model_converters/spatialmamba2mmssm.py SRC DST [--arch tiny]

The result holds ``state_dict`` (``backbone.*`` for ``mmssm.SpatialMamba``, ``head.fc.*`` for ``LinearClsHead``) and
``meta``. It is loaded into ``SpatialMamba(arch)`` before saving, so a wrong arch or a damaged file fails here, listing
the keys. Official checkpoints pickle more than tensors: set MMSSM_TRUST_CHECKPOINTS=1 for a file you trust.
"""
import argparse
import sys

import torch

from mmssm.compat import load_checkpoint_file
from mmssm.models.backbones.spatial_mamba import SpatialMamba, convert_official_spatial_mamba
from mmssm.models.utils import CheckpointMismatchError, load_state_dict_checked
from mmssm.models.utils.checkpoint import extract_state_dict


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official checkpoint (with a "model" entry, or a bare state dict)')
    parser.add_argument('dst', help='where to write the mmpretrain checkpoint')
    parser.add_argument('--arch', default='tiny', help=f'arch to check against: {sorted(SpatialMamba.arch_zoo)}')
    return parser.parse_args()


def main():
    args = parse_args()
    state_dict = convert_official_spatial_mamba(extract_state_dict(load_checkpoint_file(args.src, map_location='cpu')))
    backbone = {k[len('backbone.'):]: v for k, v in state_dict.items() if k.startswith('backbone.')}
    try:
        load_state_dict_checked(SpatialMamba(args.arch), backbone, source=args.src)
    except CheckpointMismatchError as error:
        sys.exit(f'{args.src} is not a Spatial-Mamba-{args.arch} checkpoint:\n{error}')
    meta = dict(arch=args.arch, source=args.src, converter='tools/model_converters/spatialmamba2mmssm.py')
    torch.save(dict(state_dict=state_dict, meta=meta), args.dst)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
