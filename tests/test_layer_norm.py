"""Channel-first LayerNorm: the Triton kernels (interpreter) and the public op against the float64 reference,
forward and backward, in both memory formats; and the LayerNorm2d / Linear2d layers around them."""
import contextlib

import pytest
import torch

from mmssm.kernels import layer_norm_2d
from mmssm.kernels.layer_norm import layer_norm_2d_fused, layer_norm_2d_ref
from mmssm.kernels.layer_norm.launchers import layer_norm_2d_bwd_triton, layer_norm_2d_fwd_triton
from mmssm.kernels.testing import assert_close, poisoned_empty
from mmssm.models.layers.linear2d import Linear2d
from mmssm.models.layers.norm import LayerNorm2d

SHAPES = [(2, 5, 7, 3), (1, 96, 4, 5), (3, 3, 2, 2), (2, 33, 1, 1), (1, 7, 6, 11)]  # pixels: 21, 20, 4, 1, 66
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def make_inputs(shape, channels_last=False):
    """x (offset and scaled, so the centring matters), weight, bias in float64."""
    x = torch.randn(shape, dtype=torch.float64) * 3 + 2
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randn(shape[1], dtype=torch.float64), torch.randn(shape[1], dtype=torch.float64)


def reference(x, weight, bias, grad_y):
    leaves = [t.detach().double().requires_grad_() for t in (x, weight, bias)]
    y = layer_norm_2d_ref(*leaves)
    return y.detach(), torch.autograd.grad(y, leaves, grad_y.double())


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('dtype', DTYPES)
def test_kernels_match_reference(shape, channels_last, dtype):
    """Output in channels-last memory from either input layout; grad_x in x's layout."""
    x, weight, bias = make_inputs(shape, channels_last)
    grad_y = torch.randn(shape, dtype=torch.float64)
    y_ref, grads_ref = reference(x.to(dtype), weight, bias, grad_y)
    y, mean, rstd = layer_norm_2d_fwd_triton(x.to(dtype), weight.float(), bias.float(), 1e-5, dtype, True,
                                             poisoned_empty, tile=64)  # small tiles: several programs per image
    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, y_ref, dtype)
    grads = layer_norm_2d_bwd_triton(grad_y.to(dtype).contiguous(), x.to(dtype), weight.float(), mean, rstd,
                                     poisoned_empty, tile=64)  # NCHW grad_y: copied to channels-last
    assert grads[0].stride() == x.stride() and grads[0].dtype == dtype
    for name, grad, expected in zip(('x', 'weight', 'bias'), grads, grads_ref):
        assert_close(grad, expected, dtype, f'grad {name}', scale=2.0)


@pytest.mark.parametrize('out_dtype', [torch.float32, torch.bfloat16])
def test_half_inputs_with_chosen_output_dtype(out_dtype):
    x, weight, bias = make_inputs((2, 12, 5, 6))
    y = layer_norm_2d_fused(x.half(), weight.float(), bias.float(), out_dtype=out_dtype)
    assert y.dtype == out_dtype
    assert_close(y, layer_norm_2d_ref(x.half().double(), weight, bias), out_dtype)


def test_public_op_gradients_and_paths(monkeypatch):
    """The Triton path (autograd Function) and the PyTorch path agree; the public op on CPU is the PyTorch one."""
    x, weight, bias = make_inputs((2, 9, 5, 4))
    grad_y = torch.randn(x.shape, dtype=torch.float64)
    y_ref, grads_ref = reference(x, weight, bias, grad_y)
    for function in (layer_norm_2d_fused, layer_norm_2d):
        leaves = [t.float().requires_grad_() for t in (x, weight, bias)]
        y = function(*leaves)
        assert_close(y, y_ref, torch.float32)
        for grad, expected in zip(torch.autograd.grad(y, leaves, grad_y.float()), grads_ref):
            assert_close(grad, expected, torch.float32)
    for function in (layer_norm_2d_fused, layer_norm_2d):
        assert function(x.float(), weight.float(), bias.float()).is_contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(layer_norm_2d, [t[:1, :3, :2].clone().requires_grad_() for t in (x,)] +
                                    [t[:3].clone().requires_grad_() for t in (weight, bias)])


def test_non_dense_input_is_copied_not_misread():
    x, weight, bias = make_inputs((2, 6, 8, 5))
    sliced = x.float()[:, :, ::2]  # (2, 6, 4, 5), neither NCHW nor channels-last memory
    assert_close(layer_norm_2d_fused(sliced, weight.float(), bias.float()), layer_norm_2d_ref(x[:, :, ::2], weight,
                                                                                             bias), torch.float32)


def test_traces_under_compile_fullgraph():
    x, weight, bias = (t.float().requires_grad_() for t in make_inputs((2, 5, 3, 4)))
    compiled = torch.compile(lambda *a: layer_norm_2d_fused(*a, out_dtype=torch.float16), fullgraph=True,
                             backend='aot_eager')
    y = compiled(x, weight, bias)
    torch.testing.assert_close(y, layer_norm_2d_fused(x, weight, bias, out_dtype=torch.float16))
    y.float().sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (x, weight, bias))


def test_bad_arguments_raise():
    x, weight, bias = (t.float() for t in make_inputs((2, 5, 3, 4)))
    with pytest.raises(ValueError, match='batch, C, H, W'):
        layer_norm_2d(x.flatten(2), weight, bias)
    with pytest.raises(ValueError, match='weight must have shape'):
        layer_norm_2d(x, weight[:4], bias)
    with pytest.raises(TypeError, match='bias'):
        layer_norm_2d(x, weight, bias.int())
    with pytest.raises(ValueError, match='float64'):
        layer_norm_2d_fused(x.double(), weight, bias)


def test_layer_norm_2d_output_dtype_under_autocast():
    """fp32 like nn.LayerNorm under autocast, or the autocast dtype when the output only feeds a projection."""
    x = torch.randn(2, 8, 3, 5)
    for feeds_projection, expected in ((False, torch.float32), (True, torch.bfloat16)):
        norm = LayerNorm2d(8, feeds_projection=feeds_projection)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            y = norm(x.bfloat16())
        assert y.dtype == expected
        assert_close(y, layer_norm_2d_ref(x.bfloat16().double(), norm.weight.double(), norm.bias.double()),
                     torch.bfloat16)


@pytest.mark.parametrize('bias', [False, True])
def test_linear2d_matches_linear_and_returns_channels_last(bias):
    layer = Linear2d(6, 4, bias=bias)
    x = torch.randn(2, 6, 3, 5, requires_grad=True)
    expected = torch.einsum('oi,bihw->bohw', layer.weight, x) + (layer.bias[:, None, None] if bias else 0)
    for memory_format in (torch.contiguous_format, torch.channels_last):
        y = layer(x.contiguous(memory_format=memory_format))
        assert y.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(y, expected)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16


@pytest.mark.parametrize('memory_format', [torch.contiguous_format, torch.channels_last])
def test_fake_kernels_match_real_outputs(memory_format):
    """torch.compile trusts the fake kernels' shapes, dtypes and strides."""
    x, weight, bias = (t.float() for t in make_inputs((2, 5, 3, 4)))
    x = x.contiguous(memory_format=memory_format)
    args = (x, weight, bias, 1e-5, torch.float16, True)
    torch.library.opcheck(torch.ops.mmssm.layer_norm_2d_fwd.default, args, test_utils='test_faketensor')
    y, mean, rstd = torch.ops.mmssm.layer_norm_2d_fwd(*args)
    torch.library.opcheck(torch.ops.mmssm.layer_norm_2d_bwd.default, (torch.randn_like(y), x, weight, mean, rstd),
                          test_utils='test_faketensor')


@pytest.mark.parametrize('options', [dict(elementwise_affine=False), dict(bias=False)])
def test_layer_norm_2d_without_affine_parameters(options):
    norm = LayerNorm2d(6, **options)
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    weight = torch.ones(6, dtype=torch.float64) if norm.weight is None else norm.weight.detach().double()
    assert_close(norm.double()(x), layer_norm_2d_ref(x, weight, torch.zeros(6, dtype=torch.float64)), torch.float64)


def test_custom_ops_only_under_a_tracer():
    """Eager calls run the launchers directly (no custom-op dispatch); a dispatch mode sees the custom ops."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode
    x, weight, bias = (t.float().requires_grad_() for t in make_inputs((2, 5, 3, 4)))

    def dispatched_ops(context):
        with profile(activities=[ProfilerActivity.CPU]) as prof, context:
            layer_norm_2d_fused(x, weight, bias).sum().backward()
        return {e.key for e in prof.key_averages() if e.key.startswith('mmssm::')}

    assert dispatched_ops(contextlib.nullcontext()) == set()
    assert dispatched_ops(FlopCounterMode(display=False)) == {'mmssm::layer_norm_2d_fwd', 'mmssm::layer_norm_2d_bwd'}
