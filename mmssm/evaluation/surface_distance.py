"""Overlap and surface-distance scores of binary masks (2D or 3D, distances in voxels), shared by the medical metrics:
medpy's Dice and HD95 (``SynapseMetric``) and U-Mamba's 2D normalized surface Dice (``DiceNSDMetric``)."""
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


# Marching-cubes surface area of a 2x2x2 cube whose one face holds a 2x2 window of a one-pixel-deep mask and whose
# other face is empty, by the number of mask pixels in the window (two pixels: side by side; diagonal ones are two
# corner triangles, SLAB_DIAGONAL_AREA)
SLAB_AREAS = np.array([0.0, 3 ** 0.5 / 8, 2 ** 0.5 / 2, 0.5 + 3 * 3 ** 0.5 / 8, 1.0])
SLAB_DIAGONAL_AREA = 3 ** 0.5 / 4


def slab_surface(mask):
    """(surface points, their areas) of a 2D mask taken as a one-pixel-deep volume: every 2x2 window of the mask
    padded by one pixel that holds a mask pixel is a surface element (no window is inside the slab), on the
    (H + 1, W + 1) grid of pixel corners."""
    window = np.pad(np.asarray(mask, dtype=bool), 1)
    a, b, c, d = window[:-1, :-1], window[:-1, 1:], window[1:, :-1], window[1:, 1:]
    count = a.astype(np.int64) + b + c + d
    areas = np.where((count == 2) & (a == d), SLAB_DIAGONAL_AREA, SLAB_AREAS[count])
    return count > 0, areas


def normalized_surface_dice(pred, gt, tolerance):
    """U-Mamba's 2D NSD (``evaluation/endoscopy_NSD_Eval.py``: DeepMind's ``compute_surface_dice_at_tolerance`` of
    ``compute_surface_distances(gt[..., None], pred[..., None], [1, 1, 1])``) of two non-empty 2D masks: the
    area-weighted fraction of both surfaces within ``tolerance`` pixels of the other surface.

    A one-pixel-deep volume is all surface, so its surface elements cover each mask's whole area (weighted by their
    marching-cubes areas, :func:`slab_surface`), not only its boundary: the score is near 1 for masks a few pixels
    apart and larger than a boundary NSD for a mask inside the other.
    """
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.ndim != 2 or pred.shape != gt.shape:
        raise ValueError(f'normalized_surface_dice needs two 2D masks of one shape, got {pred.shape} and {gt.shape}')
    if not pred.any() or not gt.any():
        raise ValueError('normalized_surface_dice needs two non-empty masks (the metric scores empty ones by its '
                         'protocol rules)')
    from scipy import ndimage
    rows, cols = np.nonzero(pred | gt)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    (pred_surface, pred_areas), (gt_surface, gt_areas) = slab_surface(pred[box]), slab_surface(gt[box])
    pred_near = ndimage.distance_transform_edt(~gt_surface)[pred_surface] <= tolerance
    gt_near = ndimage.distance_transform_edt(~pred_surface)[gt_surface] <= tolerance
    pred_areas, gt_areas = pred_areas[pred_surface], gt_areas[gt_surface]
    return float((pred_areas[pred_near].sum() + gt_areas[gt_near].sum()) / (pred_areas.sum() + gt_areas.sum()))
