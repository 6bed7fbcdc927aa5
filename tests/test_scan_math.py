"""The elementwise math of the scan kernels (kernels/common/triton_scan.py) against float64, over the whole range.

Under the interpreter the hardware approximations (MUFU.LG2, MUFU.RCP) run as exact numpy functions, so the first
test checks the formulas (the linear tail of softplus, sigmoid from softplus at both ends); the second that the
code built for the GPU takes the approximation where the inputs' dtype allows it; their accuracy at real sizes is
checked on the device (tools/check_kernels_device.py, benchmark_kernels.py --check).
"""
import os
import re
import subprocess
import sys

import pytest
import torch
import triton
import triton.language as tl

from mmssm.kernels.common.triton_scan import exp, sigmoid, softplus, softplus_slope


@triton.jit
def _math_kernel(x_ptr, exp_ptr, softplus_ptr, slope_ptr, sigmoid_ptr, numel, APPROX_LOG: tl.constexpr,
                 BLOCK: tl.constexpr):
    offsets = tl.arange(0, BLOCK)
    mask = offsets < numel
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0)
    dt = softplus(x, APPROX_LOG)
    tl.store(exp_ptr + offsets, exp(tl.minimum(x, 80.0)), mask=mask)
    tl.store(softplus_ptr + offsets, dt, mask=mask)
    tl.store(slope_ptr + offsets, softplus_slope(x, dt), mask=mask)
    tl.store(sigmoid_ptr + offsets, sigmoid(x), mask=mask)


# exp(x) = inf above 88 (and inf * 0 in the unselected branch there): softplus takes x there
@pytest.mark.filterwarnings('ignore:overflow encountered', 'ignore:invalid value')
@pytest.mark.parametrize('approx_log', [False, True])
def test_scan_math_matches_float64(approx_log):
    edges = torch.tensor([-100.0, -20.0, 0.0, 20.0, 20.5, 100.0])
    x = torch.cat([torch.linspace(-40, 40, 161), torch.randn(95) * 4, edges])
    outputs = [torch.full_like(x, float('nan')) for _ in range(4)]  # poisoned: every element must be written
    _math_kernel[(1,)](x, *outputs, x.numel(), APPROX_LOG=approx_log, BLOCK=triton.next_power_of_2(x.numel()))
    exp_x, softplus_x, slope, sig = outputs
    x64 = x.double()
    # exp2(x * log2(e)): the product's rounding gives a relative error of ~|x| * 6e-8 (as tl.exp's)
    # (and the denormals below exp(-87) flushed on the GPU: atol the smallest normal fp32)
    torch.testing.assert_close(exp_x.double(), torch.exp(x64.clamp(max=80)), rtol=5e-6, atol=1.2e-38)
    # fp32 inputs: log1p's relative precision down to softplus(-100); 16-bit inputs: an absolute error (the rounding
    # of 1 + exp(x) here, MUFU.LG2's 2e-7 on the device)
    torch.testing.assert_close(softplus_x.double(), torch.nn.functional.softplus(x64), rtol=5e-6,
                               atol=2e-7 if approx_log else 1.2e-38)
    expected_sigmoid = torch.sigmoid(x64)
    # exp(x - softplus(x)): x - softplus(x) loses ulp(x) to cancellation where x is large and sigmoid ~ 1
    torch.testing.assert_close(slope.double(), expected_sigmoid, rtol=1e-6, atol=5e-6)
    torch.testing.assert_close(sig.double(), expected_sigmoid, rtol=5e-6, atol=1.2e-38)  # as exp above
    assert torch.equal(softplus_x[x > 20], x[x > 20]), 'softplus is linear above 20, as torch'


def build_stats(*args):
    """stdout of tools/kernel_code_stats.py (the kernels built for sm_90 with this machine's Triton and ptxas)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, os.path.join(root, 'tools', 'kernel_code_stats.py'), *args],
                            env=dict(os.environ, TRITON_INTERPRET='0'), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize('dtype', ['bf16', 'fp32'])
def test_gpu_build_takes_the_log_the_inputs_dtype_asks_for(tmp_path, dtype):
    """The interpreter runs no PTX, so the approximations are checked in the code built for an H100 (sm_90, this
    machine's Triton and ptxas, no GPU): 16-bit inputs take softplus' log as MUFU.LG2, fp32 inputs the log1p series
    (no MUFU.LG2); neither kernel spills registers."""
    result = build_stats('--shapes', 'vmamba_t_s1', '--dtype', dtype, '--sass', str(tmp_path))
    lines = [line for line in result.stdout.splitlines() if line.startswith('vmamba_t_s1')]
    assert len(lines) == 2 and all('spills 0,' in line for line in lines), result.stdout
    for kernel in ('fwd', 'bwd'):
        sass = (tmp_path / f'vmamba_t_s1_{kernel}.sass').read_text()
        assert ('MUFU.LG2' in sass) == (dtype == 'bf16'), kernel


@pytest.mark.parametrize('dtype, bwd_block_l', [('bf16', 8), ('bf16', 4), ('fp32', 8)])
def test_ss2d_kernels_fit_their_register_caps(dtype, bwd_block_l):
    """The fused SS2D kernels run under register caps (ss2d.launchers.MAX_REGISTERS: without them ptxas took up to
    225 registers a thread in the backward, 9 single-warp programs an SM); built for sm_90 at VMamba-T stages 1 (the
    rank loop) and 4 (8 and 4-step backward chunks), both keep to their caps (the fp32 forward has none) with no
    spill in their chunk loops."""
    result = build_stats('--family', 'ss2d', '--shapes', 'VMamba-T stage 1,VMamba-T stage 4', '--bwd-block-l',
                         str(bwd_block_l), '--dtype', dtype)
    from mmssm.kernels.ss2d.launchers import MAX_REGISTERS
    lines = [line for line in result.stdout.splitlines() if line.startswith('VMamba-T stage')]
    assert len(lines) == 4, result.stdout
    for line in lines:
        kernel = 'fwd' if ' fwd ' in line else 'bwd'
        counts = dict(re.findall(r'(\w+)[ =](\d+|None)\b', line))
        cap = MAX_REGISTERS[2 if dtype == 'bf16' else 4][kernel].get(8 if kernel == 'fwd' else bwd_block_l)
        assert counts['cap'] == str(cap) and (cap is None or int(counts['regs']) <= cap), line
        assert counts['inner_spills'] == '0', line
