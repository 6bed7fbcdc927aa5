"""Checks every backbone's tests share."""
import torch


def assert_checkpointing_keeps_gradients(build, images, rtol=1e-4, atol=1e-6):
    """``build(with_cp)`` -> backbone; with_cp=True must give the same gradient for every parameter.

    Both copies share weights and run in eval mode (no dropout / batch statistics); the loss sums the mean squares
    of every output.
    """
    plain, checkpointed = build(False).eval(), build(True).eval()
    checkpointed.load_state_dict(plain.state_dict())
    for model in (plain, checkpointed):
        sum(out.square().mean() for out in model(images)).backward()
    compared = 0
    for (name, expected), actual in zip(plain.named_parameters(), checkpointed.parameters()):
        assert (expected.grad is None) == (actual.grad is None), name
        if expected.grad is not None:
            torch.testing.assert_close(actual.grad, expected.grad, rtol=rtol, atol=atol, msg=name)
            compared += int(expected.grad.abs().sum() > 0)
    assert compared > 0, 'no parameter received a gradient'
