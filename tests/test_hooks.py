"""Runner hooks: FreezeModuleHook."""
from types import SimpleNamespace

import pytest
import torch.nn as nn

from mmssm.registry import HOOKS


def test_freeze_module_hook_freezes_then_releases_the_submodule():
    model = nn.Module()
    model.backbone = nn.Module()
    model.backbone.encoder, model.backbone.decoder = nn.Linear(2, 2), nn.Linear(2, 2)
    hook = HOOKS.build(dict(type='mmssm.FreezeModuleHook', module='backbone.encoder', epochs=2))
    for epoch, frozen in ((0, True), (1, True), (2, False), (5, False), (1, True)):  # the last: a resumed run
        hook.before_train_epoch(SimpleNamespace(model=model, epoch=epoch))
        assert all(p.requires_grad != frozen for p in model.backbone.encoder.parameters()), epoch
        assert all(p.requires_grad for p in model.backbone.decoder.parameters())
    with pytest.raises(ValueError, match="no submodule 'backbone.encodr'"):
        HOOKS.build(dict(type='mmssm.FreezeModuleHook', module='backbone.encodr', epochs=1)).before_train_epoch(
            SimpleNamespace(model=model, epoch=0))


def test_freeze_module_hook_counts_iterations_in_iteration_based_runs():
    model = nn.Module()
    model.encoder = nn.Linear(2, 2)
    hook = HOOKS.build(dict(type='mmssm.FreezeModuleHook', module='encoder', iters=3))
    hook.before_train_epoch(SimpleNamespace(model=model, epoch=0))  # an epoch hook call does not decide here
    assert all(p.requires_grad for p in model.encoder.parameters())
    for iteration, frozen in ((0, True), (2, True), (3, False), (7, False), (1, True)):  # the last: a resumed run
        hook.before_train_iter(SimpleNamespace(model=model, iter=iteration), iteration)
        assert all(p.requires_grad != frozen for p in model.encoder.parameters()), iteration
    for counts in (dict(), dict(epochs=1, iters=1)):
        with pytest.raises(ValueError, match='one of epochs and iters'):
            HOOKS.build(dict(type='mmssm.FreezeModuleHook', module='encoder', **counts))
