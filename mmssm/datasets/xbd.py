"""``mmssm.XBDDataset``: building damage assessment on xBD (xView2) in MambaCD's layout, for mmseg.

Layout (one folder per split; list files optional)::

    data_root/train/images/<name>_pre_disaster.png          pre-event image
    data_root/train/images/<name>_post_disaster.png         post-event image
    data_root/train/targets/<name>_pre_disaster_target.png  buildings: 0 background, 1 building
    data_root/train/targets/<name>_post_disaster_target.png damage: 0 background, 1 no damage, 2 minor damage,
                                                            3 major damage, 4 destroyed, 255 unclassified (ignored)
    data_root/train.txt                                     names (e.g. guatemala-volcano_00000000), one a line

MambaCD's dataset code reads ``masks/<name>_{pre,post}_disaster.png`` instead: ``data_prefix=dict(img_path=
'train/images', seg_map_path='train/masks')`` with ``target_suffix='.png'``. Items carry ``img_path`` (pre),
``img_path2`` (post), ``seg_map_path`` (damage, the main label) and ``seg_map_path_t1`` (buildings);
``LoadImagePairFromFile`` and ``LoadIndexLabel`` read them.
"""
from mmssm.registry import DATASETS

from .levir_cd import LEVIRCDDataset

XBD_DAMAGE = ('background', 'no damage', 'minor damage', 'major damage', 'destroyed')


@DATASETS.register_module()
class XBDDataset(LEVIRCDDataset):
    """Pre / post-event image pairs, damage levels (``classes``) and pre-event buildings (``building_classes``).

    Args:
        data_prefix: ``dict(img_path='train/images', seg_map_path='train/targets')``, relative to ``data_root``:
            the folder of both images and the folder of both targets.
        img_suffix: suffix of the images (after ``_pre_disaster`` / ``_post_disaster``).
        target_suffix: suffix of the targets (after ``_pre_disaster`` / ``_post_disaster``).
        Others as :class:`LEVIRCDDataset` (``ann_file`` lists names without the ``_pre_disaster`` part).
    """

    METAINFO = dict(classes=XBD_DAMAGE, palette=[[0, 0, 0], [255, 255, 255], [0, 255, 0], [255, 128, 0], [255, 0, 0]],
                    building_classes=('background', 'building'))
    ROLES = dict(img_path='pre-event image', img_path2='post-event image', seg_map_path='damage target',
                 seg_map_path_t1='building target')
    PREFIX_EXAMPLE = "dict(img_path='train/images', seg_map_path='train/targets')"
    FOLDERS = dict(img_path='img_path', img_path2='img_path', seg_map_path='seg_map_path',
                   seg_map_path_t1='seg_map_path')  # the data_prefix folder of each file
    DATES = dict(img_path='_pre_disaster', img_path2='_post_disaster', seg_map_path='_post_disaster',
                 seg_map_path_t1='_pre_disaster')

    def __init__(self, data_prefix, img_suffix='.png', target_suffix='_target.png', **kwargs):
        missing = [key for key in ('img_path', 'seg_map_path') if key not in data_prefix]
        if missing:
            raise ValueError(f'XBDDataset data_prefix needs the keys (img_path, seg_map_path), missing {missing}: '
                             f'e.g. {self.PREFIX_EXAMPLE}')
        self.target_suffix = target_suffix
        folders = {key: data_prefix[folder] for key, folder in self.FOLDERS.items()}
        super().__init__(data_prefix=folders, img_suffix=img_suffix, **kwargs)

    def suffixes(self):
        return {key: date + (self.img_suffix if key.startswith('img_path') else self.target_suffix)
                for key, date in self.DATES.items()}
