# Vim-S on ImageNet-1k, the official recipe (vim/scripts/pt-vim-s.sh): as Vim-Ti but 8 GPUs x 64,
# lr 1e-3, weight decay 0.05, drop path 0.05.
_base_ = './vim-tiny_8xb128_in1k.py'

model = dict(backbone=dict(arch='small', drop_path_rate=0.05), head=dict(in_channels=384))

train_dataloader = dict(batch_size=64)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05))
auto_scale_lr = dict(base_batch_size=512)
