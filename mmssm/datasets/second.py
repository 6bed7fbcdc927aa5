"""``mmssm.SECONDDataset``: semantic change detection on SECOND in MambaCD's layout, for mmseg.

Layout (one folder per split, the same file name in all five sub-folders; list files optional)::

    data_root/train/T1/<name>.png     date-1 image          data_root/train/GT_CD/<name>.png  0/255 change mask
    data_root/train/T2/<name>.png     date-2 image          data_root/train/GT_T1/<name>.png  date-1 land cover
    data_root/train_list.txt          names, one a line     data_root/train/GT_T2/<name>.png  date-2 land cover

Land-cover maps are single-channel class indices (MambaCD's preprocessed release; the original SECOND RGB maps must
be converted first): 0 unchanged, 1 low vegetation, 2 non-vegetated ground surface, 3 tree, 4 water, 5 building,
6 playground. Items carry ``img_path``, ``img_path2``, ``seg_map_path`` (change), ``seg_map_path_t1`` and
``seg_map_path_t2``; ``LoadImagePairFromFile``, ``LoadBinaryLabel`` and ``LoadIndexLabel`` read them.
"""
from mmssm.registry import DATASETS

from .levir_cd import LEVIRCDDataset

SECOND_LAND_COVER = ('unchanged', 'low vegetation', 'non-vegetated ground surface', 'tree', 'water', 'building',
                     'playground')
SECOND_PALETTE = [[255, 255, 255], [0, 128, 0], [128, 128, 128], [0, 255, 0], [0, 0, 255], [128, 0, 0], [255, 0, 0]]


@DATASETS.register_module()
class SECONDDataset(LEVIRCDDataset):
    """Image pairs, change masks and both dates' land cover. ``classes`` are those of the change mask ('unchanged',
    'changed'); ``land_cover_classes`` those of the land-cover maps.

    Args:
        data_prefix: ``dict(img_path='train/T1', img_path2='train/T2', seg_map_path='train/GT_CD',
            seg_map_path_t1='train/GT_T1', seg_map_path_t2='train/GT_T2')``, relative to ``data_root``.
        Others as :class:`LEVIRCDDataset` (``ann_file``: e.g. MambaCD's ``train_list.txt``, names with or without
        ``.png``).
    """

    METAINFO = dict(classes=('unchanged', 'changed'), palette=[[0, 0, 0], [255, 255, 255]],
                    land_cover_classes=SECOND_LAND_COVER, land_cover_palette=SECOND_PALETTE)
    ROLES = dict(img_path='date-1 image', img_path2='date-2 image', seg_map_path='change label',
                 seg_map_path_t1='date-1 land-cover label', seg_map_path_t2='date-2 land-cover label')
    PREFIX_EXAMPLE = ("dict(img_path='train/T1', img_path2='train/T2', seg_map_path='train/GT_CD', "
                      "seg_map_path_t1='train/GT_T1', seg_map_path_t2='train/GT_T2')")
