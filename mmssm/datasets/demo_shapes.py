"""``mmssm.DemoShapes``: an embedded classification dataset of coloured geometric shapes, rendered in memory.

Nothing is downloaded or written to disk: sample ``i`` of a split is drawn from a generator seeded with
``(seed, split, i)``, so every run sees the same pictures. The label is the kind of the one shape in the picture
(``SHAPE_KINDS``: circle, square, triangle, cross); colour, size, position, rotation and background are random, so
the shape's outline is the only cue. Items look like the output of ``LoadImageFromFile`` (BGR uint8 ``img``), so
the usual mmpretrain transforms and ``PackInputs`` apply.
"""
from mmengine.dataset import BaseDataset

from mmssm.registry import DATASETS

from .shapes import SHAPE_KINDS, render_scene, scene_rng

SPLITS = ('train', 'val', 'test')


@DATASETS.register_module()
class DemoShapes(BaseDataset):
    """Pictures of one shape each, labelled by its kind.

    Args:
        split: 'train', 'val' or 'test'; each split draws from its own seeds ('val' and 'test' are the same pictures).
        num_samples: pictures in the split (classes are balanced: sample ``i`` has class ``i % 4``).
        image_size: side of the square pictures in pixels.
        seed: base seed of the whole collection.
        **kwargs: ``mmengine.dataset.BaseDataset`` arguments (``pipeline``, ``test_mode``, ...).
    """

    METAINFO = dict(classes=SHAPE_KINDS)

    def __init__(self, split='train', num_samples=512, image_size=32, seed=0, **kwargs):
        if split not in SPLITS:
            raise ValueError(f'DemoShapes split must be one of {SPLITS}, got {split!r}')
        if num_samples < 1 or image_size < 8:
            raise ValueError(f'DemoShapes needs num_samples >= 1 and image_size >= 8, got {num_samples}, {image_size}')
        self.split_seed = (seed, 0 if split == 'train' else 1)
        self.num_samples = num_samples
        self.image_size = image_size
        super().__init__(**kwargs)

    def load_data_list(self):
        return [dict(scene_index=index, gt_label=index % len(SHAPE_KINDS)) for index in range(self.num_samples)]

    def get_data_info(self, idx):
        """The stored label plus the picture, rendered on demand as BGR uint8 like ``LoadImageFromFile``."""
        info = super().get_data_info(idx)
        rng = scene_rng(*self.split_seed, info['scene_index'])
        image, _, _ = render_scene(rng, self.image_size, kinds=[info['gt_label']], fill_fraction=rng.uniform(0.8, 1.0))
        info['img'] = image[..., ::-1].copy()  # RGB -> BGR, (H, W, 3)
        info['img_shape'] = info['ori_shape'] = image.shape[:2]
        return info
