"""FLOP counting: mmengine's FlopAnalyzer counts the scan ops (mmssm.analysis) and tools/get_flops.py reports a
config's model; the expected counts are written out here from the official formulas."""
from pathlib import Path

import pytest
import torch
from mmengine.analysis import FlopAnalyzer
from torch.utils.flop_counter import FlopCounterMode
from test_ss2d import make_inputs

import mmssm.models  # noqa: F401 - registers the FLOP handles
from mmssm.kernels import layer_norm_2d, selective_scan, ss2d_scan
from mmssm.kernels.layer_norm import layer_norm_2d_fused
from mmssm.kernels.ss2d import ss2d_scan_fused
from mmssm.testing.scripts import run_script

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / 'tools/get_flops.py'


class Call(torch.nn.Module):
    """``fn(x, *params)`` with trainable params: the ops run through their autograd Functions, as in a model."""

    def __init__(self, fn, *params):
        super().__init__()
        self.fn = fn
        self.params = torch.nn.ParameterList(params)

    def forward(self, x):
        return self.fn(x, *self.params)


def count(fn, x, *params):
    analyzer = FlopAnalyzer(Call(fn, *params), (x, ))
    analyzer.unsupported_ops_warnings(False)
    total = analyzer.total()
    return total, set(analyzer.unsupported_ops())


def scan_inputs(batch=2, channels=6, states=4, length=7):
    u, delta = torch.randn(batch, channels, length), torch.rand(batch, channels, length)
    A, B, C = -torch.rand(channels, states), torch.randn(batch, states, length), torch.randn(batch, states, length)
    return u, delta, A, B, C


def test_selective_scan_counts_the_official_formula_in_every_mode():
    u, delta, A, B, C = scan_inputs()
    base = 9 * 2 * 6 * 4 * 7  # 9 per (batch, channel, state, step)
    per_token = 2 * 6 * 7  # the D skip and the z gate: one per (batch, channel, step) each
    D, bias, z = torch.ones(6), torch.zeros(6), torch.randn(2, 6, 7)
    cases = [
        (lambda x, dl, a, b, c: selective_scan(x, dl, a, b, c), (delta, A, B, C), base),
        (lambda x, dl, a, b, c, d: selective_scan(x, dl, a, b, c, D=d), (delta, A, B, C, D), base + per_token),
        (lambda x, dl, a, b, c, zz: selective_scan(x, dl, a, b, c, z=zz), (delta, A, B, C, z), base + per_token),
        (lambda x, dl, a, b, c, d, zz, db: selective_scan(x, dl, a, b, c, D=d, z=zz, delta_bias=db,
                                                           delta_softplus=True),
         (delta, A, B, C, D, z, bias), base + 2 * per_token),
        # the hidden states, no C: 7 per (batch, channel, state, step), as Spatial-Mamba's selective_scan_state_flop_jit
        (lambda x, dl, a, b: selective_scan(x, dl, a, b, return_states=True), (delta, A, B), 7 * 2 * 6 * 4 * 7),
    ]
    for fn, params, expected in cases:
        total, unsupported = count(fn, u, *params)
        assert total == expected and not any('Scan' in op for op in unsupported), (expected, total, unsupported)
        with FlopCounterMode(display=False) as counter:  # torch's counter: the custom op's FLOP formula
            fn(u, *params)
        assert counter.get_total_flops() == expected


def test_fused_ss2d_counts_as_the_composed_ops():
    """Per pixel and route-channel: (R + 2N) + R multiply-adds of projections, 9 N of scan, 1 of the D term."""
    x, *weights = [t.float() for t in make_inputs(num_routes=4, num_states=3, rank=2)]
    batch, channels, height, width = x.shape
    expected = batch * height * width * 4 * channels * ((2 + 2 * 3) + 2 + 9 * 3 + 1)
    fused, unsupported = count(lambda *a: ss2d_scan_fused(*a), x, *weights)
    assert fused == expected and 'prim::PythonOp.SS2DFunction' not in unsupported
    composed, _ = count(lambda *a: ss2d_scan(*a), x, *weights)  # CPU: cross_scan, einsums, selective_scan, merge
    assert composed == expected


def test_layer_norm_2d_counts_five_per_element_on_both_paths():
    x = torch.randn(2, 8, 5, 3)
    weight, bias = torch.ones(8), torch.zeros(8)
    fused, unsupported = count(lambda *a: layer_norm_2d_fused(*a), x, weight, bias)
    composed, _ = count(lambda *a: layer_norm_2d(*a), x, weight, bias)  # CPU: F.layer_norm
    assert fused == composed == 5 * x.numel() and 'prim::PythonOp.LayerNorm2dFunction' not in unsupported


def test_get_flops_reproduces_the_published_mask_rcnn_numbers(capsys):
    """VMamba-T Mask R-CNN 1x at 1280x800: 50M parameters, 271G FLOPs in the official README's table."""
    run_script(TOOL, ROOT / 'configs/vmamba/mask-rcnn_vmamba-t_fpn_1x_coco.py', '--shape', 1280, 800)
    output = capsys.readouterr().out
    params, gflops = (float(v) for v in output.splitlines()[-1].split()[1:])
    assert round(params) == 50 and abs(gflops - 271) <= 0.01 * 271, output


def test_get_flops_reports_each_part_and_takes_the_input_channels_from_the_config(capsys):
    run_script(TOOL, ROOT / 'configs/change_mamba/changemamba-tiny_1xb16-20k_levir-cd-256x256.py', '--shape', 64)
    lines = capsys.readouterr().out.splitlines()
    assert 'input (1, 6, 64, 64)' in lines  # two RGB dates
    header = next(i for i, line in enumerate(lines) if line.startswith('part'))
    parts = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in lines[header + 1:]}
    assert set(parts) == {'backbone', 'decode_head', 'total'}
    assert parts['total'][1] == pytest.approx(parts['backbone'][1] + parts['decode_head'][1], abs=2e-3)
    assert parts['backbone'][1] > 0 and parts['decode_head'][1] > 0


def test_get_flops_rejects_a_bad_shape(capsys):
    with pytest.raises(SystemExit):
        run_script(TOOL, ROOT / 'configs/vmamba/vmamba-tiny_8xb128_in1k.py', '--shape', 1, 2, 3)
    assert '--shape takes H or H W, got [1, 2, 3]' in capsys.readouterr().err
