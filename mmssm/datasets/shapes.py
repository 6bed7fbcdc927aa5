"""Deterministic pictures of coloured geometric shapes, the one renderer behind the demo and test datasets.

A scene is a dark, noisy two-colour background with a few bright filled shapes, each given as a polygon so the same outline
serves as an image, a class label, a COCO polygon and a semantic-segmentation map. Everything is drawn from a
``numpy.random.Generator``: the same seed always gives the same pixels.
"""
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPE_KINDS = ('circle', 'square', 'triangle', 'cross')
# Shapes are brighter than the background in every colour channel, so the outline is always visible.
DARKEST_SHAPE = 155

# Outlines in unit coordinates (radius 1 around the origin), before rotation, scaling and translation.
_CROSS_ARM = 0.35
_UNIT_OUTLINES = {
    'circle': [(np.cos(t), np.sin(t)) for t in np.linspace(0, 2 * np.pi, 24, endpoint=False)],
    'square': [(-0.75, -0.75), (0.75, -0.75), (0.75, 0.75), (-0.75, 0.75)],
    'triangle': [(np.cos(t), np.sin(t)) for t in np.pi / 2 + np.array([0, 2, 4]) * np.pi / 3],
    'cross': [(-_CROSS_ARM, -1), (_CROSS_ARM, -1), (_CROSS_ARM, -_CROSS_ARM), (1, -_CROSS_ARM), (1, _CROSS_ARM),
              (_CROSS_ARM, _CROSS_ARM), (_CROSS_ARM, 1), (-_CROSS_ARM, 1), (-_CROSS_ARM, _CROSS_ARM),
              (-1, _CROSS_ARM), (-1, -_CROSS_ARM), (-_CROSS_ARM, -_CROSS_ARM)],
}


@dataclass
class Shape:
    """One drawn shape: its kind (index into ``SHAPE_KINDS``) and its outline in pixel coordinates (x, y)."""

    kind: int
    polygon: np.ndarray  # (num_vertices, 2) float, (x, y)

    @property
    def bbox_xywh(self):
        x0, y0 = self.polygon.min(axis=0)
        x1, y1 = self.polygon.max(axis=0)
        return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]

    @property
    def area(self):
        x, y = self.polygon[:, 0], self.polygon[:, 1]
        return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def shape_polygon(kind, center, radius, angle):
    """Pixel outline (num_vertices, 2) of ``SHAPE_KINDS[kind]`` centred at ``center`` and rotated by ``angle``."""
    unit = np.asarray(_UNIT_OUTLINES[SHAPE_KINDS[kind]], dtype=np.float64)  # (V, 2)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return unit @ rotation.T * radius + np.asarray(center, dtype=np.float64)


def _background(rng, size):
    """A vertical blend of two random dark colours plus mild noise, (size, size, 3) float."""
    top, bottom = rng.uniform(0, DARKEST_SHAPE - 55, size=(2, 3))
    blend = np.linspace(0, 1, size)[:, None, None]  # (H, 1, 1)
    image = top * (1 - blend) + bottom * blend + rng.normal(0, 6, size=(size, size, 3))  # (H, W, 3)
    return np.clip(image, 0, 255)


def render_scene(rng, size, kinds, fill_fraction=0.8):
    """Draw one shape of each kind in ``kinds`` into its own cell of a square ``size`` x ``size`` picture.

    Cells form a grid just large enough for ``len(kinds)`` shapes, so shapes never overlap and every polygon is
    exactly the visible mask. Returns ``(image (size, size, 3) uint8 RGB, shapes list[Shape],
    label_map (size, size) int64 with -1 for background and the shape kind elsewhere)``.
    """
    grid = int(np.ceil(np.sqrt(len(kinds))))
    cell = size / grid
    cells = rng.permutation(grid * grid)[:len(kinds)]
    canvas = Image.fromarray(_background(rng, size).astype(np.uint8))
    labels = Image.new('I', (size, size), -1)
    draw, draw_labels = ImageDraw.Draw(canvas), ImageDraw.Draw(labels)
    shapes = []
    for kind, cell_index in zip(kinds, cells):
        radius = rng.uniform(0.55, 1.0) * fill_fraction * cell / 2
        row, col = divmod(int(cell_index), grid)
        center = ((col + 0.5) * cell + rng.uniform(-1, 1) * (cell / 2 - radius),
                  (row + 0.5) * cell + rng.uniform(-1, 1) * (cell / 2 - radius))
        polygon = shape_polygon(kind, center, radius, rng.uniform(0, 2 * np.pi))
        colour = tuple(int(c) for c in rng.integers(DARKEST_SHAPE, 256, size=3))
        outline = [tuple(point) for point in polygon]
        draw.polygon(outline, fill=colour)
        draw_labels.polygon(outline, fill=int(kind))
        shapes.append(Shape(kind=int(kind), polygon=polygon))
    return np.asarray(canvas), shapes, np.asarray(labels, dtype=np.int64)


def scene_rng(*keys):
    """The generator for one picture, keyed by non-negative ints such as ``(seed, split, index)``.

    Each picture has its own stream, so it does not depend on which pictures were drawn before it.
    """
    return np.random.default_rng(list(keys))
