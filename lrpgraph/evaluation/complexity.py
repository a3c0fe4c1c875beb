"""Complexity metrics: how concentrated a map is (numpy; the model is not used).

Each takes ``(model_or_prepared, x, relevance, target=None, ...)`` like every other
metric (``model``, ``x`` and ``target`` only resolve the targets and check the
shapes) and returns a :class:`lrpgraph.evaluation.copies.MetricResult`.  The map's
F = H * W * C entries (channel x pixel; (N, H, W) maps: H * W) are taken as
absolute values |R_j|, Quantus's default.
"""

from __future__ import annotations

import numpy as np

from .common import check_images
from .copies import MetricResult, check_positive

__all__ = ["sparseness", "complexity", "effective_complexity", "gini"]


def _abs_maps(model, x, relevance, target):
    r = np.asarray(relevance.numpy() if hasattr(relevance, "numpy") else relevance, np.float64)
    if r.ndim < 2:
        raise ValueError(f"relevance must be a batch of maps (N, ...), got shape {r.shape}")
    if x is not None and np.shape(x)[0] != r.shape[0]:
        raise ValueError(f"relevance has {r.shape[0]} maps for {np.shape(x)[0]} inputs")
    if not np.all(np.isfinite(r)):
        raise ValueError("relevance contains NaN or Inf values")
    targets = np.full(r.shape[0], -1, np.int32)
    if model is not None and x is not None:
        targets = check_images(model, x, target).targets
    return np.abs(r.reshape(r.shape[0], -1)), targets


def gini(a):
    """Row-wise Gini index of non-negative (N, F) arrays (0 for a constant or all-zero row):

        G = sum_{j=1}^{F} (2 j - F - 1) a_(j) / (F * sum_j a_j),  a_(1) <= ... <= a_(F)."""
    a = np.sort(np.asarray(a, np.float64), axis=1)
    f = a.shape[1]
    total = a.sum(1)
    j = np.arange(1, f + 1)
    num = ((2 * j - f - 1) * a).sum(1)
    return np.where(total > 0, num / (f * np.where(total > 0, total, 1)), 0.0)


def sparseness(model, x, relevance, target=None):
    """Sparseness (Chalasani, Chen, Chowdhury, Wu, Jha, "Concise Explanations of Neural
    Networks using Adversarial Training", ICML 2020): the Gini index of |R|
    (:func:`gini`), in [0, 1 - 1/F]; 0 for a constant map, higher is sparser."""
    a, t = _abs_maps(model, x, relevance, target)
    return MetricResult(gini(a), {}, t, {})


def complexity(model, x, relevance, target=None):
    """Complexity (Bhatt, Weller, Moura, "Evaluating and Aggregating Feature-based Model
    Explanations", IJCAI 2020): the entropy of the fractional contributions

        P_j = |R_j| / sum_k |R_k|,   C = - sum_j P_j ln P_j   (0 ln 0 = 0)

    in [0, ln F]; lower is less complex.  An all-zero map: NaN."""
    a, t = _abs_maps(model, x, relevance, target)
    total = a.sum(1, keepdims=True)
    p = a / np.where(total > 0, total, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0.0).sum(1)
    return MetricResult(np.where(total[:, 0] > 0, h, np.nan), {}, t, {})


def effective_complexity(model, x, relevance, target=None, *, eps=1e-5):
    """Effective complexity (Nguyen, Martinez, "On quantitative aspects of model
    interpretability", 2020): the number of entries with |R_j| > ``eps``; lower is
    simpler."""
    eps = check_positive("eps", eps, allow_zero=True)
    a, t = _abs_maps(model, x, relevance, target)
    return MetricResult((a > eps).sum(1).astype(np.float64), {}, t, dict(eps=eps))
