"""Test helpers shared by every op: one tolerance rule by dtype and NaN-poisoned allocation."""
import torch

# relative RMS error allowed against a float64 reference, by the dtype the op computed in
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}


def rel_rms_error(actual, expected):
    """||actual - expected||_2 / max(||expected||_2, tiny), computed in float64."""
    actual, expected = actual.double(), expected.double()
    return ((actual - expected).norm() / expected.norm().clamp_min(1e-30)).item()


def assert_close(actual, expected, dtype, name='output', scale=1.0):
    """Fail when ``actual`` has a NaN/inf where ``expected`` is finite, or its relative RMS error exceeds RTOL[dtype]."""
    assert actual.shape == expected.shape, f'{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}'
    bad = ~torch.isfinite(actual) & torch.isfinite(expected.to(actual.device))
    assert not bad.any(), f'{name}: {int(bad.sum())} non-finite values where the reference is finite'
    err = rel_rms_error(actual, expected.to(actual.device))
    assert err <= RTOL[dtype] * scale, f'{name}: relative RMS error {err:.3e} > {RTOL[dtype] * scale:.1e} ({dtype})'


def poisoned_empty(*shape, dtype=torch.float32, device='cpu'):
    """torch.empty filled with NaN, so an element a kernel forgot to write fails the comparison."""
    return torch.full(shape, float('nan'), dtype=dtype, device=device)
