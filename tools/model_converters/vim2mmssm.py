"""Convert an official hustvl/Vim checkpoint into an mmpretrain classifier checkpoint for mmssm.

    python tools/model_converters/vim2mmssm.py vim_t_midclstok_76p1acc.pth vim-tiny_in1k.pth

The output holds ``state_dict`` with ``backbone.`` (mmssm.Vim) and ``head.fc.`` (LinearClsHead) keys; any official
key without an mmssm name is an error.
"""
import argparse

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from mmssm.models.backbones.vim import convert_vim
from mmssm.models.utils.checkpoint import extract_state_dict


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official checkpoint (weights under "model")')
    parser.add_argument('dst', help='where to write the mmssm checkpoint')
    return parser.parse_args()


def main():
    args = parse_args()
    official = extract_state_dict(CheckpointLoader.load_checkpoint(args.src, map_location='cpu'))
    converted = convert_vim(official)
    torch.save({'state_dict': converted, 'meta': {'converted_from': args.src}}, args.dst)
    print(f'{len(converted)} tensors written to {args.dst}')


if __name__ == '__main__':
    main()
