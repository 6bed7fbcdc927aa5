"""``mmssm.PackMultiLabelSegInputs``: mmseg's PackSegInputs that also packs the per-date label maps of semantic change
detection and damage assessment."""
import numpy as np
import torch
from mmengine.structures import PixelData
from mmseg.datasets.transforms import PackSegInputs

from mmssm.registry import TRANSFORMS

DATE_PREFIX = 'gt_seg_map_'


@TRANSFORMS.register_module()
class PackMultiLabelSegInputs(PackSegInputs):
    """PackSegInputs, plus every ``gt_seg_map_<date>`` (H, W) of the results as ``gt_sem_seg_<date>`` (1, H, W)
    int64 of the data sample (``gt_seg_map_t1`` -> ``gt_sem_seg_t1``), which
    :class:`mmssm.models.segmentors.SemanticChangeEncoderDecoder` and the SCD / BDA metrics read."""

    def transform(self, results):
        packed = super().transform(results)
        for key in sorted(k for k in results if k.startswith(DATE_PREFIX)):
            label = np.ascontiguousarray(results[key])
            if label.ndim != 2:
                raise ValueError(f'PackMultiLabelSegInputs: {key} must be (H, W), got {label.shape}')
            data = torch.from_numpy(label[None].astype(np.int64))  # (H, W) -> (1, H, W)
            packed['data_samples'].set_data({'gt_sem_seg_' + key[len(DATE_PREFIX):]: PixelData(data=data)})
        return packed
