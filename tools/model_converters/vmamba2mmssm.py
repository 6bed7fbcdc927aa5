"""Convert an official VMamba checkpoint (MzeroMiko/VMamba) into an mmpretrain ImageClassifier checkpoint.

    python tools/model_converters/vmamba2mmssm.py SRC DST [--arch tiny]

The result holds ``state_dict`` (``backbone.*`` for ``mmssm.VMamba``, ``head.fc.*`` for ``LinearClsHead``) and
``meta``. It is loaded into ``VMamba(arch)`` before saving, so a wrong arch or a damaged file fails here, listing
the keys. Official checkpoints pickle more than tensors: set MMSSM_TRUST_CHECKPOINTS=1 for a file you trust.
"""
import argparse
import sys

import torch

from mmssm.compat import load_checkpoint_file
from mmssm.models.backbones.vmamba import VMamba, convert_vmamba
from mmssm.models.utils import CheckpointMismatchError, load_state_dict_checked


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official checkpoint (with a "model" entry, or a bare state dict)')
    parser.add_argument('dst', help='where to write the mmpretrain checkpoint')
    parser.add_argument('--arch', default='tiny', help=f'VMamba arch to check against: {sorted(VMamba.arch_zoo)}')
    return parser.parse_args()


def main():
    args = parse_args()
    state_dict = convert_vmamba(load_checkpoint_file(args.src, map_location='cpu'))
    backbone = {k[len('backbone.'):]: v for k, v in state_dict.items() if k.startswith('backbone.')}
    try:
        load_state_dict_checked(VMamba(args.arch), backbone, source=args.src)
    except CheckpointMismatchError as error:
        sys.exit(f'{args.src} is not a VMamba-{args.arch} checkpoint:\n{error}')
    meta = dict(arch=args.arch, source=args.src, converter='tools/model_converters/vmamba2mmssm.py')
    torch.save(dict(state_dict=state_dict, meta=meta), args.dst)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
