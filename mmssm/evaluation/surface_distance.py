"""Overlap and surface-distance scores of binary masks (2D or 3D, distances in voxels), shared by the medical metrics:
medpy's Dice and HD95 (``SynapseMetric``) and the normalized surface Dice (``DiceNSDMetric``)."""
import numpy as np


def dice_coefficient(pred, gt):
    """medpy's ``dc``: 2 |pred & gt| / (|pred| + |gt|) of two boolean masks, 0 when both are empty."""
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    total = np.count_nonzero(pred) + np.count_nonzero(gt)
    return 2.0 * np.count_nonzero(pred & gt) / total if total else 0.0


def surface(mask):
    """Voxels of ``mask`` with a face neighbour outside it (or on the array's edge): mask minus its erosion by
    ``generate_binary_structure(ndim, 1)``."""
    from scipy import ndimage
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1))


def hd95(pred, gt):
    """medpy's ``hd95`` of two NON-empty masks, in voxels: 95th percentile of the pooled distances of pred's surface
    voxels to gt's surface and of gt's surface voxels to pred's."""
    to_gt, to_pred = surface_distances(pred, gt, 'hd95')
    return float(np.percentile(np.concatenate([to_gt, to_pred]), 95))


def surface_distances(pred, gt, caller='surface_distances'):
    """(distances of pred's surface voxels to gt's surface, of gt's surface voxels to pred's), in voxels, of two
    NON-empty masks of one shape.

    Computed on the box around both masks grown by one voxel (clipped to the array): every surface voxel and every
    voxel its erosion looks at lie inside, so the result equals the computation on the whole volume.
    """
    from scipy import ndimage
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f'{caller} needs masks of one shape, got {pred.shape} and {gt.shape}')
    if not pred.any() or not gt.any():
        raise ValueError(f'{caller} needs two non-empty masks (the metrics score empty ones by their protocol rules)')
    occupied = np.nonzero(pred | gt)
    box = tuple(slice(max(int(axis.min()) - 1, 0), int(axis.max()) + 2) for axis in occupied)
    pred_surface, gt_surface = surface(pred[box]), surface(gt[box])
    to_gt = ndimage.distance_transform_edt(~gt_surface)[pred_surface]
    to_pred = ndimage.distance_transform_edt(~pred_surface)[gt_surface]
    return to_gt, to_pred


def normalized_surface_dice(pred, gt, tolerance):
    """NSD of two non-empty masks: the fraction of both masks' surface voxels that lie within ``tolerance`` voxels
    of the other mask's surface, (|{p: d(p, S_gt) <= tau}| + |{g: d(g, S_pred) <= tau}|) / (|S_pred| + |S_gt|).

    Surface voxels are counted one each (the boundary-voxel form of MONAI's ``compute_surface_dice``); DeepMind's
    ``surface-distance`` package, which U-Mamba's evaluation scripts run on each 2D mask as a one-voxel-deep volume,
    weighs surface elements by their area instead, so its numbers differ slightly.
    """
    to_gt, to_pred = surface_distances(pred, gt, 'normalized_surface_dice')
    return float((np.count_nonzero(to_gt <= tolerance) + np.count_nonzero(to_pred <= tolerance))
                 / (to_gt.size + to_pred.size))
