"""Keep a submodule frozen for the first epochs of training (MSVM-UNet freezes its pretrained encoder for 10)."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmssm.registry import HOOKS


@HOOKS.register_module()
class FreezeModuleHook(Hook):
    """Before every training epoch: ``module`` (a dotted path in the model, e.g. ``'backbone.encoder'``) takes no
    gradient while ``epoch < epochs`` and takes gradients again from then on (re-checked on resume).

    A frozen parameter gets no gradient, so the optimizer (AdamW included) leaves it and its state untouched, as
    the official Lightning code's ``requires_grad = False``. Under DDP set ``model_wrapper_cfg=dict(
    type='MMDistributedDataParallel', find_unused_parameters=True)``.
    """

    def __init__(self, module, epochs):
        self.module = module
        self.epochs = epochs

    def before_train_epoch(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        try:
            target = model.get_submodule(self.module)
        except AttributeError as error:
            raise ValueError(f'FreezeModuleHook: the model has no submodule {self.module!r}') from error
        target.requires_grad_(runner.epoch >= self.epochs)
