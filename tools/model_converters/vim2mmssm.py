"""Convert an official hustvl/Vim checkpoint into an mmpretrain classifier checkpoint for mmssm.

    python tools/model_converters/vim2mmssm.py vim_t_midclstok_76p1acc.pth vim-tiny_in1k.pth [--arch tiny]

The output holds ``state_dict`` with ``backbone.`` (mmssm.Vim) and ``head.fc.`` (LinearClsHead) keys and ``meta``;
any official key without an mmssm name is an error. It is loaded into ``Vim(arch)`` before saving, so a wrong arch
or a damaged file fails here, listing the keys. Official checkpoints pickle more than tensors: set
MMSSM_TRUST_CHECKPOINTS=1 for a file you trust.
"""
from mmssm.models.backbones.vim import Vim, convert_vim
from mmssm.models.utils.checkpoint import convert_checkpoint_cli

if __name__ == '__main__':
    convert_checkpoint_cli(__doc__.splitlines()[0], Vim, convert_vim)
