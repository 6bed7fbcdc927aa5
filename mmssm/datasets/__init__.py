"""Datasets registered in ``mmssm.registry.DATASETS`` and the shape renderer behind the demo and test data."""
from .demo_shapes import DemoShapes
from .shapes import SHAPE_KINDS, render_scene, scene_rng

__all__ = ['DemoShapes', 'SHAPE_KINDS', 'render_scene', 'scene_rng']
