"""Localisation metrics for attribution maps (numpy in, numpy out).

All functions take

* ``maps``: relevance/attribution maps, ``(N, H, W)`` or ``(N, H, W, C)``; a
  channel axis is summed first (``R[n, i, j] = sum_c maps[n, i, j, c]``);
* ``masks``: ground-truth object masks, bool ``(N, H, W)`` (0/1 integers are
  accepted), each with at least one pixel set;

and return one value per sample (shape ``(N,)``), so that callers can average,
bootstrap or split the results.  They raise :class:`ValueError` for shape
mismatches, NaN/inf maps, non-binary or empty masks.

References:
    * Pointing game: J. Zhang, Z. Lin, J. Brandt, X. Shen, S. Sclaroff,
      "Top-down Neural Attention by Excitation Backprop", ECCV 2016.
    * Relevance mass accuracy: L. Arras, A. Osman, W. Samek, "CLEVR-XAI: A
      benchmark dataset for the ground truth evaluation of neural network
      explanations", Information Fusion 81, 2022.

This module does not import TensorFlow.
"""

from __future__ import annotations

import numpy as np

__all__ = ["relevance_mass", "pointing_game", "negative_share"]


def _prepare(maps, masks):
    """Validate inputs; return float64 ``(N, H, W)`` maps and bool ``(N, H, W)`` masks."""
    maps = np.asarray(maps)
    masks = np.asarray(masks)
    if not np.issubdtype(maps.dtype, np.number) or np.iscomplexobj(maps):
        raise ValueError(f"maps must be real numbers, got dtype {maps.dtype}")
    if maps.ndim == 4:
        maps = maps.sum(axis=-1, dtype=np.float64)
    elif maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W) or (N, H, W, C), got shape {maps.shape}")
    maps = maps.astype(np.float64, copy=False)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    if masks.shape != maps.shape:
        raise ValueError(f"maps {maps.shape} (channels summed) and masks {masks.shape} "
                         "must have the same (N, H, W) shape")
    if masks.dtype != bool:
        if not np.isin(masks, (0, 1)).all():
            raise ValueError("masks must be boolean (or 0/1)")
        masks = masks.astype(bool)
    if not np.isfinite(maps).all():
        bad = np.flatnonzero(~np.isfinite(maps).reshape(len(maps), -1).all(axis=1))
        raise ValueError(f"maps contain NaN or inf (samples {bad[:10].tolist()})")
    empty = np.flatnonzero(~masks.reshape(len(masks), -1).any(axis=1))
    if empty.size:
        raise ValueError(f"masks are empty for samples {empty[:10].tolist()}")
    return maps, masks


def _share(part, masks):
    """Per sample ``sum(part * mask) / sum(part)``, 0 where ``sum(part) == 0``."""
    total = part.sum(axis=(1, 2))
    inside = np.where(masks, part, 0.0).sum(axis=(1, 2))
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


def relevance_mass(maps, masks) -> np.ndarray:
    """Relevance mass accuracy (Arras et al., CLEVR-XAI, Information Fusion 2022).

    For each sample, with ``R+ = max(R, 0)``::

        mass = sum_{p in mask} R+_p / sum_p R+_p

    i.e. the share of the positive relevance that falls on the object.  It is 0
    for a sample without any positive relevance.

    Returns:
        float64 array ``(N,)`` with values in [0, 1].
    """
    maps, masks = _prepare(maps, masks)
    return _share(np.maximum(maps, 0.0), masks)


def negative_share(maps, masks) -> np.ndarray:
    """Share of the negative relevance that falls inside ``masks``.

    For each sample, with ``R- = max(-R, 0)``::

        share = sum_{p in mask} R-_p / sum_p R-_p

    (0 for a sample without negative relevance).  Used with the mask of the
    *other* object of a two-object scene: a class-discriminative explanation
    (e.g. SGLRP) is expected to put its negative relevance on the non-target
    object, giving a share close to 1.

    Returns:
        float64 array ``(N,)`` with values in [0, 1].
    """
    maps, masks = _prepare(maps, masks)
    return _share(np.maximum(-maps, 0.0), masks)


def pointing_game(maps, masks, tolerance: float = 0) -> np.ndarray:
    """Pointing game hits (Zhang et al., Excitation Backprop, ECCV 2016).

    For each sample the maximum pixel ``p* = argmax_p R_p`` is a hit when it lies
    within Euclidean distance ``tolerance`` of a mask pixel, i.e. inside the mask
    dilated by a disk of radius ``tolerance`` (Zhang et al. use 15 pixels on
    ImageNet-sized images; 0 means the pixel itself must be in the mask).  Ties
    are broken by the first maximum in row-major order (``np.argmax``).  The
    pointing accuracy of a method is ``hits.mean()``.

    Returns:
        bool array ``(N,)``.
    """
    if not np.isscalar(tolerance) or not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    maps, masks = _prepare(maps, masks)
    n, h, w = maps.shape
    flat = maps.reshape(n, -1).argmax(axis=1)
    rows, cols = np.divmod(flat, w)
    hits = masks[np.arange(n), rows, cols]
    if tolerance > 0:
        for i in np.flatnonzero(~hits):
            mr, mc = np.nonzero(masks[i])
            d2 = (mr - rows[i]) ** 2 + (mc - cols[i]) ** 2
            hits[i] = d2.min() <= float(tolerance) ** 2
    return hits
