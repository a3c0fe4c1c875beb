"""Faithfulness correlation (Bhatt, Weller, Moura, "Evaluating and Aggregating
Feature-based Model Explanations", IJCAI 2020)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .common import (baseline_images, check_images, check_patch, check_relevance, pearson, region_relevance,
                     score_copies, target_scores)

__all__ = ["FaithfulnessCorrelation", "faithfulness_correlation", "random_subsets"]


@dataclass(frozen=True)
class FaithfulnessCorrelation:
    """``correlation`` (N,): Pearson correlation per sample (NaN where either side is
    constant); ``attributions`` (N, n): sum of the relevance over each subset;
    ``drops`` (N, n): f(x) - f(x with the subset at the baseline); ``subsets``
    (n, R) bool; ``targets`` (N,); ``params``."""

    correlation: np.ndarray
    attributions: np.ndarray
    drops: np.ndarray
    subsets: np.ndarray
    targets: np.ndarray
    params: dict = field(default_factory=dict)


def random_subsets(n_regions, n, size, seed=0):
    """(n, n_regions) bool: n subsets of ``size`` regions each, drawn without
    replacement from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, n_regions), bool)
    for s in range(n):
        out[s, rng.choice(n_regions, size=size, replace=False)] = True
    return out


def faithfulness_correlation(model, x, relevance, target=None, *, n=100, subset_size=None, patch=1,
                             baseline=0.0, score="logit", seed=0, value_range=None, sigma=5.0, batch_size=256):
    """Faithfulness correlation (Bhatt et al., IJCAI 2020).

    For ``n`` random subsets S_1..S_n of ``subset_size`` features (``patch`` x
    ``patch`` regions over all channels; default single pixels), drawn from
    ``seed`` and the same for every sample:

        mu_F = corr_S( sum_{i in S} R_i ,  f(x) - f(x with S at the baseline) )

    (Pearson), f the target's logit (``score="softmax"``: probability).  R_i is
    the relevance summed over the region and the channels.  ``subset_size``:
    an int, or None for 5 % of the regions (at least 1).  ``baseline`` as in
    :func:`region_perturbation` (default 0, Quantus's "black").  ``n >= 2``.
    Returns a :class:`FaithfulnessCorrelation` with ``.correlation`` (N,).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n (the number of random subsets) must be an int >= 2 for a correlation, got {n!r}")
    x = x[0] if isinstance(x, (list, tuple)) and len(x) == 1 else x
    batch = check_images(model, x, target, batch_size=batch_size)
    patch = check_patch(patch, batch.x.shape[1:3])
    r = region_relevance(check_relevance(relevance, batch.x), patch)
    n_regions = r.shape[1]
    if subset_size is None:
        subset_size = max(1, int(round(0.05 * n_regions)))
    if isinstance(subset_size, bool) or not isinstance(subset_size, (int, np.integer)) or \
            not 1 <= subset_size <= n_regions:
        raise ValueError(f"subset_size must be an int in 1..{n_regions} (the number of regions), got {subset_size!r}")
    subsets = random_subsets(n_regions, int(n), int(subset_size), seed)
    fill = baseline_images(batch.x, baseline, seed=seed, value_range=value_range, sigma=sigma)
    f = score_copies(batch, fill, patch, np.where(subsets, 0, 1), np.ones(n, np.int32), shared=True,
                     score=score, batch_size=batch_size)
    f0 = target_scores(batch.logits, batch.targets, score).numpy().astype(np.float64)
    drops = f0[:, None] - f
    attributions = r @ subsets.T.astype(np.float64)
    params = dict(n=int(n), subset_size=int(subset_size), patch=patch, baseline=baseline, score=score, seed=seed)
    return FaithfulnessCorrelation(pearson(attributions, drops), attributions, drops, subsets, batch.targets, params)
