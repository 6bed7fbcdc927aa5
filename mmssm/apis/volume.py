"""Sliding-window prediction of a whole volume (or image) with nnU-Net's Gaussian importance weighting.

The procedure of nnU-Net v2's ``nnUNetPredictor.predict_sliding_window_return_logits``: the input is zero-padded
(centred) to at least the patch size, windows of the patch size start at ``compute_steps_for_sliding_window``'s
offsets (spaced at most ``step`` x patch apart, first and last flush with the border), each window's logits are
weighted by ``compute_gaussian``'s map (sigma = patch / 8 per axis, peak at the centre voxel), summed and divided by the
summed weights; optional mirroring test-time augmentation averages the network over every flip combination of the
given axes. 3D training is not supported in mmssm (mmseg is 2D); this serves official 3D checkpoints.
"""
import itertools
import math

import numpy as np
import torch


def window_starts(size, patch, step=0.5):
    """Start offsets along one axis: ceil((size - patch) / (step * patch)) + 1 windows, evenly spread, rounded."""
    if not 0 < step <= 1 or size < patch:
        raise ValueError(f'window_starts: need 0 < step <= 1 and size >= patch, got step {step}, size {size}, '
                         f'patch {patch}')
    num = math.ceil((size - patch) / (step * patch)) + 1
    spacing = (size - patch) / (num - 1) if num > 1 else 0
    return [int(np.round(spacing * i)) for i in range(num)]


def gaussian_importance(patch_size, sigma_scale=1 / 8):
    """nnU-Net's ``compute_gaussian``: a unit impulse at the centre voxel (index size // 2) smoothed by scipy's
    ``gaussian_filter`` (sigma = sigma_scale * size, constant 0 border), divided by its maximum; zeros get the
    smallest non-zero value. A float64 tensor of ``patch_size``."""
    from scipy.ndimage import gaussian_filter  # scipy comes with the medical requirements (requirements/mmseg.txt)
    impulse = np.zeros(patch_size)
    impulse[tuple(s // 2 for s in patch_size)] = 1
    weights = gaussian_filter(impulse, [s * sigma_scale for s in patch_size], 0, mode='constant', cval=0)
    weights = weights / weights.max()
    weights[weights == 0] = weights[weights != 0].min()
    return torch.from_numpy(weights)


def mirrored(network, mirror_axes):
    """``network`` averaged over no flip and every combination of the spatial ``mirror_axes`` (0 = the first axis
    after the channels), each output flipped back: nnU-Net's ``_internal_maybe_mirror_and_predict``."""
    dims = [tuple(a + 2 for a in axes) for r in range(1, len(mirror_axes) + 1)
            for axes in itertools.combinations(mirror_axes, r)]

    def predict(x):
        out = network(x)
        for axes in dims:
            out = out + network(x.flip(axes)).flip(axes)
        return out / (len(dims) + 1)

    return predict


@torch.no_grad()
def predict_volume(network, volume, patch_size, step=0.5, mirror_axes=None):
    """Logits of a whole (C, D, H, W) volume (or (C, H, W) image) by Gaussian-weighted sliding windows.

    Args:
        network: maps a (1, C, *patch_size) tensor to (1, K, *patch_size) logits (e.g. U-Mamba's backbone + the
            highest-resolution classifier; :func:`mmssm.apis.network_from_checkpoint` builds one from a converted
            official checkpoint).
        volume: a (C, *spatial) tensor, normalised as the network was trained (nnU-Net's preprocessing).
        patch_size: the window, the plan's patch size.
        step: window spacing as a fraction of the patch (nnU-Net's ``tile_step_size``, 0.5).
        mirror_axes: spatial axes to mirror for test-time augmentation (nnU-Net uses (0, 1, 2) in 3D), or None.

    Returns: (K, *spatial) float32 logits; ``.argmax(0)`` gives the labels. Accumulated in float32 with the exact
    Gaussian: nnU-Net accumulates in half on any device, its Gaussian (x ``value_scaling_factor`` 10) cast to half
    before the min-nonzero fill, so its tiniest corner weights (about 0.5% of a 3D window) are floored to 6e-8.
    """
    patch_size = tuple(patch_size)
    if volume.dim() != len(patch_size) + 1:
        raise ValueError(f'predict_volume: a {len(patch_size)}D patch_size {patch_size} needs a (C, '
                         f'{len(patch_size)} spatial axes) volume, got {tuple(volume.shape)}')
    spatial = volume.shape[1:]
    pad = [max(p - s, 0) for s, p in zip(spatial, patch_size)]  # centred zero padding, as nnU-Net's pad_nd_image
    flat_pad = [v for p in reversed(pad) for v in (p // 2, p - p // 2)]  # F.pad order: last axis first
    padded = torch.nn.functional.pad(volume, flat_pad)
    predict = mirrored(network, mirror_axes) if mirror_axes else network
    weights = gaussian_importance(patch_size).to(volume.device, torch.float32)
    logits = counts = None
    for starts in itertools.product(*(window_starts(s, p, step) for s, p in zip(padded.shape[1:], patch_size))):
        window = tuple(slice(a, a + p) for a, p in zip(starts, patch_size))
        out = predict(padded[(slice(None), *window)][None])[0].float()  # (K, *patch_size)
        if logits is None:
            logits = out.new_zeros((out.shape[0], *padded.shape[1:]))
            counts = out.new_zeros(padded.shape[1:])
        logits[(slice(None), *window)] += out * weights
        counts[window] += weights
    logits = logits / counts
    return logits[(slice(None), *(slice(p // 2, p // 2 + s) for p, s in zip(pad, spatial)))]


class SegmentationNetwork(torch.nn.Module):
    """A U-Net backbone's highest-resolution output classified by a 1x1 conv: (B, C, *spatial) -> (B, K, *spatial)."""

    def __init__(self, backbone, classifier):
        super().__init__()
        self.backbone, self.classifier = backbone, classifier

    def forward(self, x):
        return self.classifier(self.backbone(x)[0])


def network_from_checkpoint(path):
    """The :class:`SegmentationNetwork` (eval mode) of a checkpoint written by ``tools/model_converters/
    umamba2mmssm.py`` (backbone + ``decode_head.seg_layers.0``) or ``lightmunet2mmssm.py`` (backbone +
    ``decode_head.conv_seg``), 2D or 3D as its meta says."""
    from mmssm.compat import load_checkpoint_file
    from mmssm.models.backbones.light_m_unet import LightMUNet
    from mmssm.models.backbones.u_mamba import UMamba
    from mmssm.models.utils import load_state_dict_checked
    from mmssm.models.utils.checkpoint import strip_prefix
    checkpoint = load_checkpoint_file(str(path), map_location='cpu')
    meta, state_dict = checkpoint['meta'], checkpoint['state_dict']
    if 'mamba' in meta:
        backbone = UMamba(meta['arch'], mamba=meta['mamba'], in_channels=meta['in_channels'])
        head = 'decode_head.seg_layers.0.'
    else:
        backbone = LightMUNet(meta['arch'], **meta.get('build_kwargs', {}))
        head = 'decode_head.conv_seg.'
    load_state_dict_checked(backbone, strip_prefix(state_dict, 'backbone.', str(path)), source=str(path))
    weight = state_dict[head + 'weight']  # (K, C, 1, 1) or (K, C, 1, 1, 1)
    classifier = {4: torch.nn.Conv2d, 5: torch.nn.Conv3d}[weight.dim()](weight.shape[1], weight.shape[0], 1)
    classifier.load_state_dict({'weight': weight, 'bias': state_dict[head + 'bias']})
    return SegmentationNetwork(backbone, classifier).eval()
