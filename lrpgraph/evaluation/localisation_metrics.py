"""Localisation metrics against a ground-truth mask, in the metric signature
``(model_or_prepared, x, relevance, target=None, *, masks, ...)``.

The pointing game and the relevance mass accuracy are :mod:`lrpgraph.evaluation.localisation`'s
(one implementation; these wrap them); relevance rank accuracy, top-k intersection
and the ROC AUC are new here, in the same ``(maps, masks) -> (N,)`` style: maps
(N, H, W[, C]) with the channels summed, masks bool (N, H, W) with at least one
pixel each.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from . import localisation as M
from .common import check_images
from .copies import MetricResult, check_int

__all__ = ["relevance_rank_accuracy", "top_k_intersection", "roc_auc", "pointing_game_metric",
           "relevance_mass_metric", "relevance_rank_metric", "top_k_metric", "auc_metric"]


def _check(maps, masks):
    M.relevance_mass(maps, masks)  # the shared validation: shapes, finite maps, non-empty binary masks
    maps = np.asarray(maps, np.float64)
    maps = maps.sum(-1) if maps.ndim == 4 else maps
    return maps.reshape(len(maps), -1), np.asarray(masks).astype(bool).reshape(len(maps), -1)


def relevance_rank_accuracy(maps, masks):
    """Relevance rank accuracy (Arras, Osman, Samek, "CLEVR-XAI", Information Fusion 2022):
    with K = |GT| the mask's pixel count, the share of the K highest-relevance pixels
    (ties: lower index first) that lie in the mask,

        RRA = |top_K(R) intersect GT| / K     in [0, 1], higher is better."""
    r, m = _check(maps, masks)
    order = np.argsort(-r, axis=1, kind="stable")
    k = m.sum(1)
    hit = np.take_along_axis(m, order, axis=1)
    return np.array([hit[i, :k[i]].sum() / k[i] for i in range(len(r))], np.float64)


def top_k_intersection(maps, masks, k=1000):
    """Top-k intersection (Theiner, Mueller-Budack, Ewerth, "Interpretable Semantic
    Photo Geolocation", WACV 2022): the share of the ``k`` highest-relevance pixels
    (ties: lower index first) inside the mask, |top_k(R) intersect GT| / k; k is capped
    at the pixel count.  Higher is better."""
    r, m = _check(maps, masks)
    k = min(check_int("k", k, 1), r.shape[1])
    order = np.argsort(-r, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(m, order, axis=1).sum(1) / k


def roc_auc(maps, masks):
    """Area under the ROC curve of the relevance as a score for "pixel in the mask"
    (Fawcett, "An introduction to ROC analysis", Pattern Recognition Letters 2006),
    by the Mann-Whitney statistic with ties counted 1/2:

        AUC = (sum of the mask pixels' ranks - P (P + 1) / 2) / (P * Q)

    P mask pixels, Q the others (a full mask: NaN).  0.5 is chance; higher is better."""
    r, m = _check(maps, masks)
    ranks = rankdata(r, axis=1)
    p = m.sum(1).astype(np.float64)
    q = m.shape[1] - p
    s = np.where(m, ranks, 0).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(q > 0, (s - p * (p + 1) / 2) / (p * np.where(q > 0, q, 1)), np.nan)


def _wrap(name, fn, doc):
    def metric(model, x, relevance, target=None, *, masks, **kw):
        targets = np.full(np.shape(relevance)[0], -1, np.int32)
        if model is not None and x is not None:
            targets = check_images(model, x, target).targets
        if masks is None:
            raise ValueError(f"{name} needs the ground-truth masks: pass masks= (N, H, W) bool")
        return MetricResult(np.asarray(fn(relevance, masks, **kw), np.float64), {}, targets, dict(kw))

    metric.__name__ = name
    metric.__doc__ = doc
    return metric


def _pointing(maps, masks, tolerance=0):
    return M.pointing_game(maps, masks, tolerance)


def _mass(maps, masks):
    return M.relevance_mass(maps, masks)


pointing_game_metric = _wrap("pointing_game", _pointing,
                             "Pointing game hit (1/0) per sample: lrpgraph.evaluation.localisation.pointing_game (Zhang et al., "
                             "ECCV 2016) in the metric signature; ``tolerance`` in pixels.")
relevance_mass_metric = _wrap("relevance_mass", _mass,
                              "Relevance mass accuracy: lrpgraph.evaluation.localisation.relevance_mass (Arras et al. 2022), "
                              "the share of the positive relevance inside the mask, in the metric signature.")
relevance_rank_metric = _wrap("relevance_rank", relevance_rank_accuracy,
                              "relevance_rank_accuracy in the metric signature.")
top_k_metric = _wrap("top_k_intersection", top_k_intersection, "top_k_intersection in the metric signature.")
auc_metric = _wrap("localisation_auc", roc_auc, "roc_auc in the metric signature.")
