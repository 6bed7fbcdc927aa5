"""Reusable @triton.jit pieces for linear recurrences h_t = a_t * h_{t-1} + b_t scanned in chunks.

A chunk of (decay a, drive b) pairs is scanned with ``tl.associative_scan(..., combine_fn=combine_linear)``;
the state carried from the previous chunk enters as ``h_t = A_t * h_prev + B_t`` with (A_t, B_t) the scanned pair.
With ``reverse=True`` the same combine scans g_t = a_t * g_{t+1} + b_t from the end of the chunk.
"""
import triton
import triton.language as tl


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
def softplus(x):
    """log(1 + exp(x)) in fp32, linear above 20 like torch.nn.functional.softplus."""
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))


@triton.jit
def sigmoid(x):
    """1 / (1 + exp(-x)) in fp32."""
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def pick(values, index, position, axis: tl.constexpr):
    """The slice of ``values`` where ``index == position`` along ``axis`` (that axis reduced away)."""
    return tl.sum(tl.where(index == position, values, 0.0), axis=axis)
