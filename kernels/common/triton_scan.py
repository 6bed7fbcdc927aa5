"""Reusable @triton.jit pieces for linear recurrences h_t = a_t * h_{t-1} + b_t scanned in chunks.

A chunk of (decay a, drive b) pairs is scanned with ``tl.associative_scan(..., combine_fn=combine_linear)``;
the state carried from the previous chunk enters as ``h_t = A_t * h_prev + B_t`` with (A_t, B_t) the scanned pair.
With ``reverse=True`` the same combine scans g_t = a_t * g_{t+1} + b_t from the end of the chunk.

The elementwise math (exp, softplus, sigmoid) is written for instruction count: the bf16 scan forward at N = 1 is
bound by instruction issue, and Triton's ``tl.exp`` (a denormal fixup around MUFU.EX2), ``tl.log`` (libdevice's
precise logf, ~25 instructions) and ``/`` (div.full) cost 3-8x the hardware approximations used here.
"""
import triton
import triton.language as tl

from .launch import interpreting

LOG2_E = tl.constexpr(1.4426950408889634)
LN_2 = tl.constexpr(0.6931471805599453)
INTERPRETED = tl.constexpr(interpreting())  # read at import, as @triton.jit itself reads TRITON_INTERPRET


@triton.jit
def combine_linear(a_first, b_first, a_second, b_second):
    """Compose two steps of h -> a * h + b: first (a_first, b_first), then (a_second, b_second)."""
    return a_first * a_second, b_first * a_second + b_second


@triton.jit
def scan_chunk(decay, drive, axis: tl.constexpr, reverse: tl.constexpr = False):
    """Inclusive scan of (decay, drive) pairs along ``axis``: returns (cumulative decay, state from zero)."""
    return tl.associative_scan((decay, drive), axis, combine_linear, reverse=reverse)


@triton.jit
def combine_next_decay(excl_first, decay_first, acc_first, excl_second, decay_second, acc_second):
    """Compose reverse-recurrence segments g_t = c_t + a_{t+1} * g_{t+1}, scanned from the end (reverse=True).

    A segment is (product of its decays but the one of its earliest step, decay of its earliest step, accumulated
    c); ``first`` is the later segment, ``second`` the earlier one it is prepended to.
    """
    bridge = excl_second * decay_first
    return excl_first * decay_first * excl_second, decay_second, acc_second + bridge * acc_first


@triton.jit
def reverse_scan_next_decay(decay, acc, axis: tl.constexpr):
    """g_t = acc_t + decay_{t+1} * g_{t+1} scanned from the end along ``axis``: returns (product of the decays after
    each step up to the end, g).

    Scans the flipped tiles forward and flips back: a flip along an axis held inside each thread is free, where
    ``reverse=True`` made Triton (3.6-3.8) move the values across all 32 lanes and back (5 shuffles per value).
    """
    excl, _, g = tl.associative_scan((tl.full(decay.shape, 1.0, tl.float32), tl.flip(decay, axis), tl.flip(acc, axis)),
                                     axis, combine_next_decay)
    return tl.flip(excl, axis), tl.flip(g, axis)


@triton.jit
def exp(x):
    """e**x in fp32 as one MUFU.EX2 (``tl.exp2`` is ex2.approx.ftz; ``tl.exp`` the same plus a denormal fixup)."""
    return tl.exp2(x * LOG2_E)


@triton.jit
def _approx(x, ptx: tl.constexpr, exact_log2: tl.constexpr):
    """One PTX approximation instruction on fp32 ``x`` (the interpreter, which runs no PTX: the exact function)."""
    if INTERPRETED:
        if exact_log2:
            return tl.log2(x)
        return 1.0 / x
    return tl.inline_asm_elementwise(ptx, '=r,r', [x], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def log2_approx(x):
    """log2(x) as one MUFU.LG2 (lg2.approx.ftz: absolute error <= 2**-22 on [0.5, 2], relative 2**-22 elsewhere)."""
    return _approx(x, 'lg2.approx.ftz.f32 $0, $1;', True)


@triton.jit
def reciprocal_approx(x):
    """1 / x as one MUFU.RCP (rcp.approx.ftz: 1 ulp; ``/`` lowers to div.full, 2 ulp, with a range fixup)."""
    return _approx(x, 'rcp.approx.ftz.f32 $0, $1;', False)


@triton.jit
def log1p_unit(t):
    """log(1 + t) in fp32 for t in [0, 1]: 2 atanh(s) with s = t / (2 + t) <= 1/3, its series to s**13 (relative
    error below 3e-7, t's own rounding aside: one MUFU.RCP and 6 FMAs, where libdevice's log of 1 + t took ~25
    instructions and lost t's precision in the rounding of 1 + t)."""
    s = t * reciprocal_approx(2.0 + t)
    s2 = s * s
    series = 1.0 / 13.0
    for c in tl.static_range(11, 0, -2):  # 1/11, 1/9, ..., 1/1 (Horner)
        series = series * s2 + 1.0 / c
    return 2.0 * s * series


@triton.jit
def softplus(x, APPROX_LOG: tl.constexpr):
    """log(1 + exp(x)) in fp32, linear above 20 like torch.nn.functional.softplus.

    APPROX_LOG (for 16-bit inputs, whose rounding is 10**4 times larger): the log as one MUFU.LG2, about 2e-7
    absolute error. Otherwise fp32's relative precision: max(x, 0) + log1p(exp(-|x|)) (:func:`log1p_unit`), so that
    a small softplus (VMamba's initial dt = 1e-3) keeps its relative precision.
    """
    if APPROX_LOG:
        log = log2_approx(1.0 + exp(x)) * LN_2  # exp(x) = inf above x = 88: the where below takes x there
    else:
        log = tl.maximum(x, 0.0) + log1p_unit(exp(-tl.abs(x)))
    return tl.where(x > 20.0, x, log)


@triton.jit
def softplus_slope(x, softplus_x):
    """softplus'(x) = sigmoid(x) from x and softplus(x), as exp(x - softplus(x)): one MUFU.EX2 and no reciprocal,
    accurate at both ends (the difference is small only where x is large and sigmoid close to 1)."""
    return exp(x - softplus_x)


@triton.jit
def sigmoid(x):
    """1 / (1 + exp(-x)) in fp32 (MUFU.EX2 and MUFU.RCP: as accurate as ``tl.exp`` and ``/``, 3x fewer
    instructions)."""
    return reciprocal_approx(1.0 + exp(-x))


@triton.jit
def pick(values, index, position, axis: tl.constexpr):
    """The slice of ``values`` where ``index == position`` along ``axis`` (that axis reduced away)."""
    return tl.sum(tl.where(index == position, values, 0.0), axis=axis)
