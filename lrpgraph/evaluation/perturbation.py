"""Perturbation curves: region perturbation / pixel flipping with AOPC (Samek et al.
2017) and deletion / insertion (Petsiuk et al. 2018).

Both replace regions of the image in the order of their relevance and record the
model's score after each step; every perturbed copy of the batch is scored by one
compiled function (:func:`lrpgraph.evaluation.common.score_copies`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .common import (ImageBatch, baseline_images, check_images, check_patch, check_relevance, region_ranks,
                     region_relevance, score_copies)

__all__ = ["PerturbationCurve", "region_perturbation", "deletion", "insertion", "auc"]


@dataclass(frozen=True)
class PerturbationCurve:
    """A perturbation curve per sample.

    ``curve`` (N, K+1): the score after 0..K steps (column 0 is the unperturbed
    image); ``fractions`` (K+1,): the share of the image's regions replaced after
    each step; ``aopc`` (N,): 1/(K+1) * sum_k (f_0 - f_k); ``auc`` (N,): the
    trapezoid area under the curve over ``fractions``; ``targets`` (N,): the
    explained classes; ``params``: the settings."""

    curve: np.ndarray
    fractions: np.ndarray
    aopc: np.ndarray
    auc: np.ndarray
    targets: np.ndarray
    params: dict = field(default_factory=dict)


def auc(curve, fractions):
    """Trapezoid area under each row of ``curve`` over ``fractions``: (N,)."""
    c = np.asarray(curve, np.float64)
    d = np.diff(np.asarray(fractions, np.float64))
    return ((c[:, 1:] + c[:, :-1]) * 0.5 * d).sum(axis=1)


def _check_steps(steps, n_regions, default):
    if steps is None:
        return default
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive int (or None), got {steps!r}")
    if steps > n_regions:
        raise ValueError(f"steps={steps} is larger than the number of regions ({n_regions}); use steps <= "
                         f"{n_regions} or a smaller patch")
    return int(steps)


def _curve(batch, relevance, *, patch, counts, order, start, end, score, batch_size, params):
    r = check_relevance(relevance, batch.x)
    ranks = region_ranks(region_relevance(r, patch), order)
    if start is not None:  # insertion: the regions go from `start` to the image
        batch = ImageBatch(batch.prepared, start, batch.targets, batch.logits)
    curve = score_copies(batch, end, patch, ranks, counts, score=score, batch_size=batch_size)
    n_regions = ranks.shape[1]
    fractions = np.asarray(counts, np.float64) / n_regions
    aopc = (curve[:, :1] - curve).mean(axis=1)
    return PerturbationCurve(curve, fractions, aopc, auc(curve, fractions), batch.targets, params)


def region_perturbation(model, x, relevance, target=None, *, patch=8, steps=None, order="morf",
                        baseline="uniform", score="logit", seed=0, value_range=None, sigma=5.0, batch_size=256):
    """Region perturbation (pixel flipping for ``patch=1``) and AOPC.

    Samek, Binder, Montavon, Lapuschkin, Mueller, "Evaluating the visualization of
    what a deep neural network has learned", IEEE TNNLS 2017.

    The image is cut into non-overlapping ``patch`` x ``patch`` regions, ranked by
    the relevance summed over the region and the channels (``order="morf"``: most
    relevant first; ``"lerf"``: least relevant first; ties go to the lower region
    index, row-major).  Step k replaces the k-th region by the baseline, cumulatively;
    f_k is the target's score after k steps (``score="logit"`` or ``"softmax"``),
    k = 0..K, and

        AOPC = 1/(K+1) * sum_{k=0}^{K} (f_0 - f_k).

    Parameters
    ----------
    model : keras.Model or Prepared (one image input, (N, H, W, C))
    x : (N, H, W, C) array
    relevance : the maps of ``x``, shaped like ``x`` (or (N, H, W[, 1]))
    target : int, (N,) ints or None (the predicted class)
    patch : int dividing H and W (default 8)
    steps : K, default None: every region; at most the number of regions
    baseline : "uniform" (seeded noise in the sample's [min, max] or ``value_range``),
        a number, "mean" (per-channel image mean), "blur" (Gaussian, ``sigma``), or an array
    batch_size : perturbed images per compiled forward step

    Returns
    -------
    PerturbationCurve
        ``.curve`` (N, K+1) and ``.aopc`` (N,).
    """
    x = _first(x)
    batch = check_images(model, x, target, batch_size=batch_size)
    patch = check_patch(patch, batch.x.shape[1:3])
    n_regions = (batch.x.shape[1] // patch) * (batch.x.shape[2] // patch)
    steps = _check_steps(steps, n_regions, n_regions)
    fill = baseline_images(batch.x, baseline, seed=seed, value_range=value_range, sigma=sigma)
    params = dict(patch=patch, steps=steps, order=order, baseline=baseline, score=score, seed=seed)
    return _curve(batch, relevance, patch=patch, counts=np.arange(steps + 1),
                  order=order, start=None, end=fill, score=score, batch_size=batch_size, params=params)


def _fraction_counts(n_regions, steps):
    return np.round(np.linspace(0, n_regions, steps + 1)).astype(np.int64)


def _fraction_setup(model, x, target, patch, steps, batch_size):
    """Deletion's and insertion's checked (batch, patch, number of regions, K): K
    defaults to every region when there are at most 100, else 100 steps."""
    batch = check_images(model, _first(x), target, batch_size=batch_size)
    patch = check_patch(patch, batch.x.shape[1:3])
    n_regions = (batch.x.shape[1] // patch) * (batch.x.shape[2] // patch)
    return batch, patch, n_regions, _check_steps(steps, n_regions, min(n_regions, 100))


def deletion(model, x, relevance, target=None, *, patch=1, steps=None, baseline=0.0, score="softmax",
             seed=0, value_range=None, sigma=5.0, batch_size=256):
    """Deletion metric (Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for
    Explanation of Black-box Models", BMVC 2018).

    Regions (``patch`` x ``patch``, default single pixels) are replaced by the
    ``baseline`` (default 0, RISE's black image) in the order of decreasing
    relevance (ties: lower index first).  Step k (k = 0..K) has removed
    round(k * R / K) of the R regions; the curve is the target's softmax
    probability (``score``) over the removed fraction k/K, and ``.auc`` is its
    trapezoid area (lower is better).  ``steps`` K: default every region when
    R <= 100, else 100 equal steps.  Returns a :class:`PerturbationCurve`.
    """
    batch, patch, n_regions, steps = _fraction_setup(model, x, target, patch, steps, batch_size)
    fill = baseline_images(batch.x, baseline, seed=seed, value_range=value_range, sigma=sigma)
    params = dict(patch=patch, steps=steps, baseline=baseline, score=score, seed=seed)
    return _curve(batch, relevance, patch=patch,
                  counts=_fraction_counts(n_regions, steps), order="morf", start=None, end=fill, score=score,
                  batch_size=batch_size, params=params)


def insertion(model, x, relevance, target=None, *, patch=1, steps=None, baseline="blur", score="softmax",
              seed=0, value_range=None, sigma=5.0, batch_size=256):
    """Insertion metric (Petsiuk et al., RISE, BMVC 2018).

    Starts from the ``baseline`` image (default ``"blur"``: the image blurred with a
    Gaussian of ``sigma`` pixels, scikit-image) and inserts the image's regions in
    the order of decreasing relevance (ties: lower index first); step k has inserted
    round(k * R / K) of the R regions.  The curve is the target's softmax probability
    over the inserted fraction; ``.auc`` its trapezoid area (higher is better).
    Returns a :class:`PerturbationCurve` (its ``aopc`` is f_0 minus the mean,
    i.e. negative for a good map; use ``auc``).
    """
    batch, patch, n_regions, steps = _fraction_setup(model, x, target, patch, steps, batch_size)
    start = baseline_images(batch.x, baseline, seed=seed, value_range=value_range, sigma=sigma)
    params = dict(patch=patch, steps=steps, baseline=baseline, score=score, seed=seed, sigma=sigma)
    return _curve(batch, relevance, patch=patch,
                  counts=_fraction_counts(n_regions, steps), order="morf", start=start, end=batch.x, score=score,
                  batch_size=batch_size, params=params)


def _first(x):
    return x[0] if isinstance(x, (list, tuple)) and len(x) == 1 else x
