"""mmssm.apis.predict_volume: nnU-Net's sliding-window prediction, checked against a voxel-by-voxel brute force."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from mmssm.apis import gaussian_importance, predict_volume, window_starts

PATCH = (4, 6, 4)


def network(x):
    """A window-dependent map (B, 2, *s) -> (B, 3, *s): a zero-padded conv minus each window's mean."""
    weight = torch.linspace(-1, 1, 3 * 2 * 27, dtype=x.dtype).reshape(3, 2, 3, 3, 3).sin()
    y = F.conv3d(x, weight, padding=1)
    return y - y.mean(dim=(2, 3, 4), keepdim=True)


def gaussian_1d(size):
    """scipy's gaussian_filter of a centred impulse along one axis: the normalised kernel exp(-t^2 / 2 sigma^2),
    |t| <= int(4 sigma + 0.5), sigma = size / 8."""
    sigma = size / 8
    radius = int(4 * sigma + 0.5)
    kernel = [math.exp(-t * t / (2 * sigma * sigma)) for t in range(-radius, radius + 1)]
    return [kernel[i - size // 2 + radius] / sum(kernel) if abs(i - size // 2) <= radius else 0.0 for i in range(size)]


def brute_force(net, volume, patch, starts):
    """Every voxel's weighted mean over the windows (given by their start lists per axis) that contain it."""
    weights = [gaussian_1d(p) for p in patch]
    peak = math.prod(max(w) for w in weights)
    windows = {s: net(volume[(slice(None), *(slice(a, a + p) for a, p in zip(s, patch)))][None])[0]
               for s in itertools.product(*starts)}
    out = torch.zeros(3, *volume.shape[1:], dtype=torch.float64)
    for voxel in itertools.product(*(range(n) for n in volume.shape[1:])):
        total, norm = 0, 0
        for s, logits in windows.items():
            offset = [v - a for v, a in zip(voxel, s)]
            if all(0 <= o < p for o, p in zip(offset, patch)):
                weight = math.prod(w[o] for w, o in zip(weights, offset)) / peak
                total, norm = total + weight * logits[(slice(None), *offset)], norm + weight
        out[(slice(None), *voxel)] = total / norm
    return out


def test_window_starts_follow_nnunet():
    assert window_starts(10, 6, 0.5) == [0, 2, 4]  # ceil(4 / 3) + 1 = 3 windows, 4 / 2 apart
    assert window_starts(11, 4, 0.5) == [0, 2, 4, 5, 7]  # ceil(7 / 2) + 1 = 5 windows, 1.75 apart, rounded
    assert window_starts(6, 6, 0.5) == [0] and window_starts(9, 4, 1.0) == [0, 2, 5]
    with pytest.raises(ValueError, match='size >= patch'):
        window_starts(3, 4)


def test_gaussian_is_scipy_smoothed_impulse_with_peak_one():
    weights = gaussian_importance((5, 16, 7))
    expected = torch.einsum('i,j,k->ijk', *(torch.tensor(gaussian_1d(n), dtype=torch.float64) for n in (5, 16, 7)))
    torch.testing.assert_close(weights, expected / expected.max())
    assert weights[2, 8, 3] == 1 and weights.min() > 0


def test_predict_volume_matches_brute_force():
    volume = torch.randn(2, 7, 9, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    actual = predict_volume(network, volume, PATCH, step=0.5)
    starts = ([0, 2, 3], [0, 3], [0, 2])  # ceil((n - p) / (p / 2)) + 1 windows per axis, evenly spread
    assert actual.dtype == torch.float32 and actual.shape == (3, 7, 9, 6)
    torch.testing.assert_close(actual.double(), brute_force(network, volume, PATCH, starts), rtol=1e-5, atol=1e-6)


def test_mirroring_averages_all_flip_combinations_and_padding_is_centred():
    volume = torch.randn(2, 3, 8, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    actual = predict_volume(network, volume, PATCH, step=0.5, mirror_axes=(0, 2))
    flips = [(), (2, ), (4, ), (2, 4)]

    def mirrored(x):
        return sum(network(x.flip(f)).flip(f) for f in flips) / 4

    padded = F.pad(volume, (0, 0, 0, 0, 0, 1))  # depth 3 -> 4: 0 before, 1 after (nnU-Net's pad_nd_image)
    expected = brute_force(mirrored, padded, PATCH, ([0], [0, 2], [0, 1]))[:, :3]
    torch.testing.assert_close(actual.double(), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(actual, predict_volume(network, volume, PATCH, step=0.5))


def test_volume_must_fit_the_patch_dims():
    with pytest.raises(ValueError, match=r'3D patch_size \(4, 6, 4\) needs a \(C, 3 spatial axes\) volume'):
        predict_volume(network, torch.randn(1, 2, 8, 8, 8), PATCH)
