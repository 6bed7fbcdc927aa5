"""Keep a submodule frozen for the first epochs or iterations of training (MSVM-UNet freezes its pretrained encoder
for 10 epochs, Swin-UMamba for 10 nnU-Net epochs of 250 iterations)."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmssm.registry import HOOKS


@HOOKS.register_module()
class FreezeModuleHook(Hook):
    """``module`` (a dotted path in the model, e.g. ``'backbone.encoder'``) takes no gradient while the training is
    within its first ``epochs`` epochs (checked before every epoch) or its first ``iters`` iterations (checked before
    every iteration: iteration-based loops), and takes gradients again from then on (re-checked on resume).

    A frozen parameter gets no gradient, so the optimizer (AdamW included) leaves it and its state untouched, as
    the official code's ``requires_grad = False``. Under DDP set ``model_wrapper_cfg=dict(
    type='MMDistributedDataParallel', find_unused_parameters=True)``.
    """

    def __init__(self, module, epochs=None, iters=None):
        if (epochs is None) == (iters is None):
            raise ValueError(f'FreezeModuleHook takes one of epochs and iters, got epochs={epochs}, iters={iters}')
        self.module = module
        self.epochs = epochs
        self.iters = iters

    def before_train_epoch(self, runner):
        if self.epochs is not None:
            self._set_frozen(runner, runner.epoch < self.epochs)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self.iters is not None:
            self._set_frozen(runner, runner.iter < self.iters)

    def _set_frozen(self, runner, frozen):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        try:
            target = model.get_submodule(self.module)
        except AttributeError as error:
            raise ValueError(f'FreezeModuleHook: the model has no submodule {self.module!r}') from error
        target.requires_grad_(not frozen)
