"""The synthetic shapes dataset: deterministic shape/texture images, one object per
image (training the bundled shapes model) or two per scene with their masks (the
two-object localisation benchmark, :mod:`lrpgraph.evaluation.two_object`).

Every image is drawn with :mod:`skimage.draw` on a noisy grey background.  There
are six classes (see :data:`CLASS_NAMES`): three textured blobs (``stripes`` -- the
black/white "zebra-like" class --, ``checker``, ``dots``) and three solid shapes
(``disk``, ``triangle``, ``ring``).  Position, size, colour, brightness, texture
orientation, phase and period vary; everything is driven by a seeded
:class:`numpy.random.Generator`, so a seed always gives the same arrays.

Objects are placed by the same sampler in single-object images and in two-object
scenes: the image is split in two halves (left/right or top/bottom, at random)
and an object is drawn inside one half with positional jitter.  In a scene the two
objects occupy different halves and therefore never overlap.

This module does not import TensorFlow.
"""

from __future__ import annotations

import numpy as np
from skimage import draw

__all__ = [
    "CLASS_NAMES",
    "NUM_CLASSES",
    "draw_object",
    "sample_placement",
    "render_scene",
    "single_object_dataset",
    "two_object_scenes",
]

CLASS_NAMES: tuple[str, ...] = ("stripes", "checker", "dots", "disk", "triangle", "ring")
NUM_CLASSES: int = len(CLASS_NAMES)

# Object radius range at the reference size 64 (scaled linearly with ``size``).
_RADIUS_RANGE = (9.0, 13.0)
_REF_SIZE = 64.0


def _as_rng(rng) -> np.random.Generator:
    """Return ``rng`` as a Generator (ints/None are used as seeds)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _random_colour(rng: np.random.Generator, value=(0.6, 1.0)) -> np.ndarray:
    """A saturated RGB colour with HSV value drawn from ``value``."""
    h = rng.uniform(0.0, 1.0)
    s = rng.uniform(0.45, 1.0)
    v = rng.uniform(*value)
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.asarray(rgb, dtype=np.float32)


def _index_mask(rr, cc, size: int) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[rr, cc] = True
    return m


def _rotated_coords(size: int, center, angle: float):
    """Pixel coordinates relative to ``center`` rotated by ``angle`` (u along, v across)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - center[0], xx - center[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    return u, v


def _ellipse_blob(rng, size, center, radius):
    """Mask of an ellipse with semi-axes (radius, radius*[0.75,1]) and random rotation."""
    minor = radius * rng.uniform(0.75, 1.0)
    rr, cc = draw.ellipse(center[0], center[1], radius, minor, shape=(size, size),
                          rotation=rng.uniform(0.0, np.pi))
    return _index_mask(rr, cc, size)


def _draw_stripes(rng, size, center, radius, scale):
    blob = _ellipse_blob(rng, size, center, radius)
    period = rng.uniform(5.0, 8.0) * scale
    u, _ = _rotated_coords(size, center, rng.uniform(0.0, np.pi))
    band = np.floor((u + rng.uniform(0.0, period)) / (period / 2.0)).astype(int) % 2 == 0
    dark = rng.uniform(0.0, 0.12)
    light = rng.uniform(0.82, 1.0)
    grey = np.where(band, light, dark).astype(np.float32)
    return np.repeat(grey[..., None], 3, axis=-1), blob


def _draw_checker(rng, size, center, radius, scale):
    blob = _ellipse_blob(rng, size, center, radius)
    cell = rng.uniform(3.0, 5.0) * scale
    u, v = _rotated_coords(size, center, rng.uniform(0.0, np.pi / 2))
    phase_u, phase_v = rng.uniform(0.0, 2 * cell, size=2)
    parity = (np.floor((u + phase_u) / cell) + np.floor((v + phase_v) / cell)).astype(int) % 2
    c1 = _random_colour(rng, value=(0.7, 1.0))
    c2 = c1 * rng.uniform(0.0, 0.25)
    layer = np.where(parity[..., None] == 0, c1, c2).astype(np.float32)
    return layer, blob


def _draw_dots(rng, size, center, radius, scale):
    blob = _ellipse_blob(rng, size, center, radius)
    base = _random_colour(rng, value=(0.7, 1.0))
    dot_colour = base * rng.uniform(0.0, 0.25)
    layer = np.broadcast_to(base, (size, size, 3)).astype(np.float32).copy()
    dot_r = rng.uniform(1.3, 2.0) * scale
    min_dist = 2 * dot_r + 1.5 * scale
    points: list[tuple[float, float]] = []
    for _ in range(60):  # rejection sampling of non-touching dots inside the blob
        ang, rad = rng.uniform(0, 2 * np.pi), radius * np.sqrt(rng.uniform(0, 1))
        p = (center[0] + rad * np.sin(ang), center[1] + rad * np.cos(ang))
        if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= min_dist ** 2 for q in points):
            points.append(p)
    for p in points:
        rr, cc = draw.disk(p, dot_r, shape=(size, size))
        layer[rr, cc] = dot_colour
    return layer, blob


def _draw_disk(rng, size, center, radius, scale):
    rr, cc = draw.disk(center, radius, shape=(size, size))
    colour = _random_colour(rng)
    return np.broadcast_to(colour, (size, size, 3)).astype(np.float32), _index_mask(rr, cc, size)


def _draw_triangle(rng, size, center, radius, scale):
    angles = rng.uniform(0.0, 2 * np.pi) + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3])
    rr, cc = draw.polygon(center[0] + radius * np.sin(angles),
                          center[1] + radius * np.cos(angles), shape=(size, size))
    colour = _random_colour(rng)
    return np.broadcast_to(colour, (size, size, 3)).astype(np.float32), _index_mask(rr, cc, size)


def _draw_ring(rng, size, center, radius, scale):
    outer = _index_mask(*draw.disk(center, radius, shape=(size, size)), size)
    inner_r = radius * rng.uniform(0.45, 0.65)
    inner = _index_mask(*draw.disk(center, inner_r, shape=(size, size)), size)
    colour = _random_colour(rng)
    return np.broadcast_to(colour, (size, size, 3)).astype(np.float32), outer & ~inner


_DRAWERS = (_draw_stripes, _draw_checker, _draw_dots, _draw_disk, _draw_triangle, _draw_ring)


def draw_object(cls: int, rng, size: int = 64, center=None, radius=None):
    """Draw one object of class ``cls`` on an empty ``size`` x ``size`` canvas.

    Args:
        cls: class index into :data:`CLASS_NAMES`.
        rng: a :class:`numpy.random.Generator` (or a seed).
        size: image side length in pixels.
        center: ``(row, col)`` centre; defaults to the image centre.
        radius: object radius in pixels; defaults to a random radius from the
            benchmark's range (9..13 pixels at size 64, scaled with ``size``).

    Returns:
        ``(layer, mask)``: ``layer`` is a float32 ``(size, size, 3)`` RGB array
        holding the object's colours (only meaningful where ``mask``), ``mask`` a
        bool ``(size, size)`` array of the pixels the object covers.  The mask
        always lies within the disk of ``radius`` around ``center``.
    """
    if not 0 <= int(cls) < NUM_CLASSES:
        raise ValueError(f"cls must be in [0, {NUM_CLASSES}), got {cls}")
    rng = _as_rng(rng)
    scale = size / _REF_SIZE
    if center is None:
        center = ((size - 1) / 2.0, (size - 1) / 2.0)
    if radius is None:
        radius = rng.uniform(*_RADIUS_RANGE) * scale
    layer, mask = _DRAWERS[int(cls)](rng, size, tuple(map(float, center)), float(radius), scale)
    return np.ascontiguousarray(layer, dtype=np.float32), mask


def sample_placement(rng, size: int = 64, slot: int = 0, axis: int = 0):
    """Sample a ``(center, radius)`` inside one half of the image.

    The image is split along ``axis`` (0: left/right halves, 1: top/bottom
    halves); ``slot`` 0 is the left/top half, 1 the right/bottom half.  The disk
    of ``radius`` around ``center`` stays inside its half with a 1-pixel margin,
    so objects placed in different slots never overlap.
    """
    rng = _as_rng(rng)
    scale = size / _REF_SIZE
    radius = rng.uniform(*_RADIUS_RANGE) * scale
    half = size / 2.0
    lo = slot * half + radius + 1.0
    hi = (slot + 1) * half - radius - 1.0
    along = rng.uniform(lo, max(lo, hi))
    across = rng.uniform(radius + 1.0, size - radius - 2.0)
    # axis 0 splits columns (left/right), axis 1 splits rows (top/bottom)
    center = (across, along) if axis == 0 else (along, across)
    return center, radius


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    level = rng.uniform(0.1, 0.45)
    tint = rng.uniform(-0.05, 0.05, size=3)
    return np.broadcast_to(level + tint, (size, size, 3)).astype(np.float32).copy()


def render_scene(classes, rng, size: int = 64, axis=None, slots=None):
    """Render one image holding one object per entry of ``classes``.

    Objects go into distinct halves (``slots``, default: a random order) of a
    split along ``axis`` (default: random).  Pixel noise (sigma 0.04) is added
    over the whole image, which is clipped to [0, 1].

    Returns:
        ``(image, masks)``: float32 ``(size, size, 3)`` and bool
        ``(len(classes), size, size)``.
    """
    rng = _as_rng(rng)
    classes = [int(c) for c in classes]
    if len(classes) > 2:
        raise ValueError("at most two objects per image")
    if axis is None:
        axis = int(rng.integers(2))
    if slots is None:
        slots = rng.permutation(2)[: len(classes)]
    image = _background(rng, size)
    masks = np.zeros((len(classes), size, size), dtype=bool)
    for k, (cls, slot) in enumerate(zip(classes, slots)):
        center, radius = sample_placement(rng, size, slot=int(slot), axis=axis)
        layer, mask = draw_object(cls, rng, size=size, center=center, radius=radius)
        image[mask] = layer[mask]
        masks[k] = mask
    image += rng.normal(0.0, 0.04, size=image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32), masks


def single_object_dataset(n: int, size: int = 64, seed: int = 0):
    """``n`` single-object images with balanced classes.

    Objects use the same placement/size distribution as :func:`two_object_scenes`
    (a random half of the image, with jitter).  Labels are ``arange(n) %
    NUM_CLASSES`` shuffled, so class counts differ by at most one.

    Returns:
        ``(x, y, masks)``: float32 ``(n, size, size, 3)`` in [0, 1], int64
        ``(n,)`` labels, bool ``(n, size, size)`` object masks.
    """
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.int64)
    x = np.empty((n, size, size, 3), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=bool)
    for i in range(n):
        x[i], m = render_scene([y[i]], rng, size=size)
        masks[i] = m[0]
    return x, y, masks


def two_object_scenes(n: int, size: int = 64, seed: int = 0) -> dict:
    """``n`` scenes with two objects of different classes in separate halves.

    The split axis (left/right or top/bottom) and which object goes into which
    half are random; the class pair is uniform over ordered pairs of distinct
    classes.

    Returns:
        dict with ``x`` float32 ``(n, size, size, 3)``, ``classes`` int64
        ``(n, 2)`` (always two different classes), ``masks`` bool
        ``(n, 2, size, size)`` (``masks[i, k]`` belongs to ``classes[i, k]``;
        the two masks never overlap) and ``class_names``.
    """
    rng = np.random.default_rng(seed)
    x = np.empty((n, size, size, 3), dtype=np.float32)
    classes = np.empty((n, 2), dtype=np.int64)
    masks = np.empty((n, 2, size, size), dtype=bool)
    for i in range(n):
        classes[i] = rng.choice(NUM_CLASSES, size=2, replace=False)
        x[i], masks[i] = render_scene(classes[i], rng, size=size)
    return {"x": x, "classes": classes, "masks": masks, "class_names": CLASS_NAMES}
