"""More faithfulness metrics: ROAD, IROF, infidelity, sufficiency, monotonicity,
monotonicity correlation, faithfulness estimate and sensitivity-n.

Every function takes ``(model_or_prepared, x, relevance, target=None, ...)`` with
``x`` (N, H, W, C) channel-last images and returns a
:class:`lrpgraph.evaluation.copies.MetricResult` whose ``.score`` is (N,).  A
*feature* is one entry (h, w, c) of an image (channel x pixel); random fields
(noise, subsets) are drawn from ``numpy.random.default_rng`` seeded by ``seed``
and are the same for every sample, so a batch and its samples one by one give
the same numbers (except :func:`sufficiency`, which compares the samples of the
batch with each other by definition).  Where Quantus 0.6.0 differs, the
docstring says so; docs/evaluation.md lists the differences.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import splu
from scipy.spatial.distance import cdist
from scipy.stats import rankdata
from skimage.segmentation import slic

from .common import ImageBatch, baseline_images, check_images, check_relevance, pearson
from .copies import MetricResult, check_int, check_positive, feature_ranks, score_keyed, target_score

__all__ = ["road", "noisy_linear_imputation", "impute_copies", "irof", "infidelity", "sufficiency", "monotonicity",
           "monotonicity_correlation", "faithfulness_estimate", "sensitivity_n", "spearman",
           "value_range_bounds"]


def _setup(model, x, relevance, target, batch_size):
    x = x[0] if isinstance(x, (list, tuple)) and len(x) == 1 else x
    batch = check_images(model, x, target, batch_size=batch_size)
    return batch, check_relevance(relevance, batch.x)


def spearman(a, b):
    """Row-wise Spearman rank correlation of (N, n) arrays (ties averaged); NaN where a
    row is constant."""
    return pearson(rankdata(a, axis=1), rankdata(b, axis=1))


def _step_counts(n_features, steps, default_max=100):
    """K and the cumulative feature counts round(k F / K), k = 0..K."""
    if steps is None:
        steps = min(n_features, default_max)
    steps = check_int("steps", steps, 1, n_features)
    return steps, np.round(np.linspace(0, n_features, steps + 1)).astype(np.int32)


# --- ROAD ---------------------------------------------------------------------------------
_NEIGHBOURS = [(-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
               (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)]


def noisy_linear_imputation(image, mask, noise):
    """ROAD's noisy linear imputation (Rong et al. 2022) of one (H, W, C) image.

    Every removed pixel p (``mask`` (H, W) True) takes the value that makes it the
    weighted mean of its 8 neighbours inside the image (weight 1/6 for the 4 direct,
    1/12 for the 4 diagonal ones): for each channel the sparse linear system

        sum_q w_pq (v_p - v_q) = 0   for every removed p  (v_q = x_q for kept q)

    is solved, then ``noise`` (H, W, C) is added to the removed pixels.  At least one
    pixel must be kept.  The system is symmetric positive definite (a principal
    submatrix of the 8-neighbour graph Laplacian); it is factorised once for all
    channels by SuperLU with a symmetric minimum-degree ordering, which gives
    scipy's ``spsolve`` result (to float64 round-off) in about 0.6x its time."""
    mask = np.asarray(mask, bool)
    if image.ndim != 3 or mask.shape != image.shape[:2]:
        raise ValueError(f"image must be (H, W, C) and mask (H, W); got {image.shape} and {mask.shape}")
    return impute_copies(image[None], mask[None], np.asarray(noise)[None])[0]


def impute_copies(images, masks, noise, *, workers=None):
    """:func:`noisy_linear_imputation` of M copies at once: ``images`` (M, H, W, C),
    ``masks`` (M, H, W) bool, ``noise`` (M, H, W, C) or broadcastable; float64
    (M, H, W, C).  The M systems are assembled in one vectorised pass and factorised
    on ``workers`` threads (default: the CPU count; SuperLU releases the GIL), each
    copy's result independent of the others and of the thread count."""
    images = np.array(images, np.float64)  # a copy: the result is written into it
    m, h, w, c = images.shape
    masks = np.asarray(masks, bool).reshape(m, h * w)
    noise = np.broadcast_to(np.asarray(noise, np.float64), images.shape)
    full = np.flatnonzero(masks.all(1))
    if full.size:
        raise ValueError(f"noisy linear imputation needs at least one kept pixel (copies {full[:10].tolist()} remove "
                         "every pixel); use percentages < 100")
    out = images.reshape(m, h * w, c)
    counts = masks.sum(1)
    start = np.concatenate([[0], np.cumsum(counts)])
    copy, pix = np.nonzero(masks)  # removed pixels of all copies, copy-major: row g of the stacked system
    index = np.full((m, h * w), -1, np.int64)
    index[copy, pix] = np.arange(copy.size)
    rr, cc = np.divmod(pix, w)
    diag = np.zeros(copy.size)
    rhs = np.zeros((copy.size, c))
    rows, cols, vals = [np.arange(copy.size)], [np.arange(copy.size)], []
    for dr, dc, wt in _NEIGHBOURS:
        r2, c2 = rr + dr, cc + dc
        inside = (r2 >= 0) & (r2 < h) & (c2 >= 0) & (c2 < w)
        q = np.where(inside, r2 * w + c2, 0)
        diag += wt * inside
        col = np.where(inside, index[copy, q], -1)
        unknown = col >= 0
        rows.append(np.flatnonzero(unknown))
        cols.append(col[unknown])
        vals.append(np.full(rows[-1].size, -wt))
        known = inside & ~unknown
        rhs[known] += wt * out[copy[known], q[known]]
    vals.insert(0, diag)
    # one block-diagonal CSC matrix; copy k's system is its columns (and rows) start[k]:start[k+1]
    a = csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(copy.size,) * 2)
    a.sort_indices()

    def solve(k):
        lo, hi = start[k], start[k + 1]
        if lo == hi:
            return
        p0, p1 = a.indptr[lo], a.indptr[hi]
        block = csc_matrix((a.data[p0:p1], a.indices[p0:p1] - lo, a.indptr[lo:hi + 1] - p0), shape=(hi - lo,) * 2)
        lu = splu(block, permc_spec="MMD_AT_PLUS_A", options=dict(SymmetricMode=True))
        out[k, pix[lo:hi]] = lu.solve(rhs[lo:hi]) + noise[k].reshape(-1, c)[pix[lo:hi]]

    workers = (os.cpu_count() or 1) if workers is None else check_int("workers", workers, 1)
    if workers > 1 and m > 1:
        with ThreadPoolExecutor(min(workers, m)) as pool:
            list(pool.map(solve, range(m)))
    else:
        for k in range(m):
            solve(k)
    return out.reshape(m, h, w, c)


def road(model, x, relevance, target=None, *, percentages=None, order="morf", noise=0.01, seed=0,
         batch_size=256, workers=None):
    """ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci, Kasneci, "A Consistent
    and Efficient Evaluation Strategy for Attribution Methods", ICML 2022).

    Pixels are ranked by their relevance summed over the channels (``order="morf"``:
    most relevant first, ``"lerf"``: least first; ties: lower index first).  For each
    percentage p the first floor(p/100 * H * W) pixels are removed and filled in by
    :func:`noisy_linear_imputation` (noise N(0, ``noise``^2), one field per
    percentage from ``seed``, shared by the samples).  ``.accuracy`` (N, P): 1 where
    the model still predicts the target, ``.probability`` (N, P): the target's
    softmax probability; ``.score`` (N,) the mean accuracy over the percentages
    (MoRF: lower is better; LeRF: higher).  ``percentages``: default 1, 3, ..., 99
    (Quantus's).  The N x P imputations are solved on the host (:func:`impute_copies`,
    about ``batch_size`` copies per call on ``workers`` threads, default the CPU
    count), then scored in batches.

    Quantus 0.6.0 ranks channel x pixel features but uses their ranks as pixel
    indices (crashing on RGB); here the pixel is the unit, as in the paper, whose
    imputation treats all channels of a pixel together.
    """
    batch, r = _setup(model, x, relevance, target, batch_size)
    if order not in ("morf", "lerf"):
        raise ValueError(f"order must be 'morf' or 'lerf', got {order!r}")
    pct = np.arange(1, 100, 2) if percentages is None else np.asarray(percentages, np.float64).reshape(-1)
    if pct.size == 0 or np.any(pct < 0) or np.any(pct >= 100):
        raise ValueError(f"percentages must be numbers in [0, 100), got {percentages!r}")
    noise = check_positive("noise", noise, allow_zero=True)
    n, h, w, c = batch.x.shape
    ranks = feature_ranks(r.sum(-1).reshape(n, -1), descending=order == "morf")
    fields = np.stack([np.random.default_rng([seed, j]).normal(0.0, noise, (h, w, c)) if noise > 0
                       else np.zeros((h, w, c)) for j in range(pct.size)])
    removed = (h * w * pct / 100).astype(np.int64)  # int(): floor for p >= 0
    copies = np.empty((n, pct.size, h, w, c), batch.x.dtype)
    step = max(1, batch_size // pct.size)  # images per imputation call: about batch_size float64 copies alive
    for i in range(0, n, step):
        xi = batch.x[i:i + step]
        masks = ranks[i:i + step, None, :] < removed[None, :, None]  # (images, P, HW)
        copies[i:i + step] = impute_copies(np.repeat(xi, pct.size, 0), masks.reshape(-1, h, w),
                                           np.tile(fields, (len(xi), 1, 1, 1)),
                                           workers=workers).reshape(len(xi), pct.size, h, w, c)
    logits = batch.prepared.logits(copies.reshape((-1, h, w, c)), batch_size=batch_size).reshape(n, pct.size, -1)
    acc = (logits.argmax(-1) == batch.targets[:, None]).astype(np.float64)
    z = logits - logits.max(-1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    prob = np.take_along_axis(prob, batch.targets[:, None, None].astype(np.int64), -1)[..., 0]
    params = dict(percentages=pct.tolist(), order=order, noise=noise, seed=seed)
    return MetricResult(acc.mean(1), dict(accuracy=acc, probability=prob, percentages=pct), batch.targets, params)


# --- IROF ---------------------------------------------------------------------------------
def _segments(img, n_segments, compactness):
    if img.shape[-1] == 1:
        seg = slic(img[..., 0].astype(np.float64), n_segments=n_segments, compactness=compactness, start_label=0,
                   channel_axis=None)
    else:
        seg = slic(img.astype(np.float64), n_segments=n_segments, compactness=compactness, start_label=0,
                   channel_axis=-1)
    _, seg = np.unique(seg, return_inverse=True)  # consecutive labels 0..S-1
    return seg.reshape(img.shape[:2])


def irof(model, x, relevance, target=None, *, segments=None, n_segments=100, compactness=10.0, baseline="mean",
         score="softmax", seed=0, batch_size=256):
    """IROF: Iterative Removal Of Features (Rieger, Hansen, "IROF: a low resource
    evaluation metric for explanation methods", ICLR workshop 2020).

    Each image is cut into superpixels by scikit-image's SLIC (``n_segments``,
    ``compactness``, on the channel-last image; or pass ``segments`` (N, H, W) int
    labels).  Segments are ranked by their mean relevance (over pixels and
    channels), highest first, and replaced cumulatively by the ``baseline`` (default
    the image's per-channel mean; see :func:`baseline_images`).  With S_i segments
    and f_k the target's score after k removals (softmax probability by default),

        IROF_i = 1 - AUC_[0,1]( f_k / f_0 over k / S_i ),  k = 0..S_i

    (trapezoid rule): the area over the normalised curve, higher is better.
    ``.curve`` (N, max S + 1) holds f_k / f_0 (NaN past a sample's S_i).

    Quantus 0.6.0 sums the curve without the k = 0 point and without dividing by
    S_i (so its value grows with the segment count) and builds a segment mask with
    a channel axis of 1 that its replacement refuses on channel-last RGB input.
    """
    batch, r = _setup(model, x, relevance, target, batch_size)
    n, h, w, c = batch.x.shape
    if segments is None:
        seg = np.stack([_segments(xi, check_int("n_segments", n_segments, 2), compactness) for xi in batch.x])
    else:
        seg = np.asarray(segments)
        if seg.shape != (n, h, w) or seg.dtype.kind not in "iu":
            raise ValueError(f"segments must be an int array of shape ({n}, {h}, {w}), got {seg.shape} {seg.dtype}")
        seg = np.stack([np.unique(s, return_inverse=True)[1].reshape(h, w) for s in seg])
    n_seg = seg.reshape(n, -1).max(1) + 1
    if np.any(n_seg < 2):
        bad = np.flatnonzero(n_seg < 2)[:10].tolist()
        raise ValueError(f"IROF needs at least 2 segments per image; samples {bad} have one (SLIC on a flat or tiny "
                         "image): raise n_segments, lower compactness, or pass segments=")
    smax = int(n_seg.max())
    pix = r.sum(-1)
    keys = np.empty((n, h, w, 1), np.int32)
    for i in range(n):
        sums = np.bincount(seg[i].ravel(), pix[i].ravel(), minlength=n_seg[i])
        means = sums / np.bincount(seg[i].ravel(), minlength=n_seg[i])
        rank = feature_ranks(means[None], descending=True)[0]
        keys[i, ..., 0] = rank[seg[i]]
    fill = baseline_images(batch.x, baseline, seed=seed)
    k = np.arange(smax + 1, dtype=np.int32)
    f = score_keyed(batch, keys, np.zeros_like(k), k, fill=fill, score=score, batch_size=batch_size)
    curve = f / f[:, :1]
    out = np.empty(n)
    for i in range(n):
        ci = curve[i, :n_seg[i] + 1]
        out[i] = 1.0 - ((ci[1:] + ci[:-1]) * 0.5).sum() / n_seg[i]
        curve[i, n_seg[i] + 1:] = np.nan
    params = dict(n_segments=n_segments, compactness=compactness, baseline=baseline, score=score)
    return MetricResult(out, dict(curve=curve, segments=seg, n_segments=n_seg), batch.targets, params)


# --- infidelity ---------------------------------------------------------------------------
def infidelity(model, x, relevance, target=None, *, n=50, sigma=0.2, optimal_scale=True, score="logit", seed=0,
               batch_size=256):
    """Infidelity (Yeh, Hsieh, Suggala, Inouye, Ravikumar, "On the (In)fidelity and
    Sensitivity of Explanations", NeurIPS 2019), with the paper's random
    perturbations I ~ N(0, ``sigma``^2 Id) over all channel x pixel features:

        INFD = E_I[ (beta * I . R  -  (f(x) - f(x - I)))^2 ]

    estimated with ``n`` draws (one field per draw from ``seed``, shared by the
    samples).  ``optimal_scale=True`` (the paper's experiments and code) uses
    beta = E[a d] / E[a^2] per sample (a = I . R, d the score drop), so that the
    metric does not depend on the map's scale; ``False``: beta = 1 (Definition 2.1).
    Lower is better.  ``.attributions``, ``.drops`` (N, n).

    Quantus 0.6.0's Infidelity instead walks square patches deterministically,
    setting each to a baseline in turn, and never scales: a different estimator
    (square-removal perturbations, not the paper's default noisy baseline).
    """
    batch, r = _setup(model, x, relevance, target, batch_size)
    n = check_int("n", n, 1)
    sigma = check_positive("sigma", sigma)
    noise = np.random.default_rng(seed).normal(0.0, sigma, (n,) + batch.x.shape[1:])
    zeros = np.zeros((1,) + batch.x.shape[1:3] + (1,), np.int32)
    f = score_keyed(batch, zeros, np.zeros(n), np.zeros(n), noise=-noise, shared=True, score=score,
                    batch_size=batch_size)
    # I . R with the perturbation actually applied in the model's dtype: I = x - (x + (-noise))
    x64 = batch.x.astype(np.float64)
    a = np.stack([((x64 - (batch.x + (-nk).astype(batch.x.dtype)).astype(np.float64)) * r).sum(axis=(1, 2, 3))
                  for nk in noise], axis=1)
    d = target_score(batch, score)[:, None] - f
    if optimal_scale:
        den = (a * a).mean(1)
        beta = np.where(den > 0, (a * d).mean(1) / np.where(den > 0, den, 1), 0.0)
    else:
        beta = np.ones(len(a))
    out = ((beta[:, None] * a - d) ** 2).mean(1)
    params = dict(n=n, sigma=sigma, optimal_scale=optimal_scale, score=score, seed=seed)
    return MetricResult(out, dict(attributions=a, drops=d, beta=beta), batch.targets, params)


# --- sufficiency --------------------------------------------------------------------------
def sufficiency(model, x, relevance, target=None, *, threshold=0.6, distance="seuclidean", batch_size=None):
    """Sufficiency (Dasgupta, Frost, Moshkovitz, "Framework for Evaluating Faithfulness
    of Local Explanations", ICML 2022): the share of the OTHER samples of the batch
    whose maps lie within ``threshold`` of sample i's (``scipy.spatial.distance.cdist``
    metric ``distance`` on the flattened maps, default standardised Euclidean over the
    batch, Quantus's) that get the same predicted class as i:

        suff_i = |{j != i : d(R_i, R_j) <= t, pred_j = pred_i}| / |{j != i : d(R_i, R_j) <= t}|

    (0 where no other map is that close).  Higher is better.  It compares the samples
    with each other, so it depends on the batch, unlike the other metrics.
    """
    batch, r = _setup(model, x, relevance, target, batch_size)
    flat = r.reshape(batch.n, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = cdist(flat, flat, metric=distance)
    near = (d <= check_positive("threshold", threshold, allow_zero=True)) & ~np.eye(batch.n, dtype=bool)
    pred = batch.logits.argmax(-1)
    same = near & (pred[:, None] == pred[None, :])
    cnt = near.sum(1)
    out = np.where(cnt > 0, same.sum(1) / np.maximum(cnt, 1), 0.0)
    return MetricResult(out.astype(np.float64), dict(neighbours=cnt), batch.targets,
                        dict(threshold=threshold, distance=distance))


# --- monotonicity (Arya et al.) ----------------------------------------------------------
def monotonicity(model, x, relevance, target=None, *, steps=None, baseline=0.0, score="softmax", seed=0,
                 batch_size=256):
    """Monotonicity (Arya et al., "One Explanation Does Not Fit All: A Toolkit and
    Taxonomy of AI Explainability Techniques", 2019; AIX360's ``monotonicity``).

    Starting from the ``baseline`` image, the channel x pixel features are put back
    in order of INCREASING relevance (ties: lower index first); step k (k = 0..K) has
    inserted the first round(k F / K) of the F features.  The map is monotonic when
    the target's score (softmax probability) never decreases:

        mono = 1[f_0 <= f_1 <= ... <= f_K]

    ``.score`` (N,) is that 0/1; ``.curve`` (N, K+1); ``.fraction`` the share of
    non-decreasing steps.  ``steps`` K: default every feature up to 100, else 100
    equal steps (Quantus's ``features_in_step = s`` is ``steps = F / s``).
    Quantus 0.6.0 replaces the baseline image's features by the baseline again
    (so its curve never changes); here the image's values are inserted, as AIX360 does.
    """
    batch, r = _setup(model, x, relevance, target, batch_size)
    n, h, w, c = batch.x.shape
    steps, counts = _step_counts(h * w * c, steps)
    ranks = feature_ranks(r.reshape(n, -1), descending=False).reshape(n, h, w, c)
    base = baseline_images(batch.x, baseline, seed=seed)
    start = ImageBatch(batch.prepared, base, batch.targets, batch.logits)
    curve = score_keyed(start, ranks, np.zeros_like(counts), counts, fill=batch.x, score=score,
                        batch_size=batch_size)
    diffs = np.diff(curve, axis=1)
    params = dict(steps=steps, baseline=baseline, score=score)
    return MetricResult(np.all(diffs >= 0, axis=1).astype(np.float64),
                        dict(curve=curve, fraction=(diffs >= 0).mean(1)), batch.targets, params)


def _groups(r, n, steps):
    """(N, H, W, C) group index of each feature: features ranked by increasing
    relevance cut into ``steps`` consecutive groups, and the (N, K) relevance sums."""
    f = r[0].size
    steps, counts = _step_counts(f, steps)
    ranks = feature_ranks(r.reshape(n, -1), descending=False)
    group = (np.searchsorted(counts, ranks, side="right") - 1).astype(np.int32)
    sums = np.stack([np.bincount(group[i], r.reshape(n, -1)[i], minlength=steps) for i in range(n)])
    return steps, group.reshape(r.shape), sums


def monotonicity_correlation(model, x, relevance, target=None, *, steps=None, n_samples=10, eps=1e-5,
                             baseline="uniform", value_range=None, score="softmax", seed=0, batch_size=256):
    """Monotonicity correlation (Nguyen, Martinez, "On quantitative aspects of model
    interpretability", 2020).

    The channel x pixel features, ranked by increasing relevance, are cut into K
    consecutive groups (``steps``; default every feature up to 100, else 100 groups).
    Each group G_k alone is replaced ``n_samples`` times by uniform noise in the
    sample's [min, max] (or ``value_range``; fields from ``seed``, shared by the
    samples) and

        v_k = mean_s (f(x_{G_k <- u_s}) - f(x))^2 / f(x)^2,   a_k = sum_{j in G_k} R_j
        MC  = Spearman_k(a_k, v_k)

    (the 1/f(x)^2 factor is 1 where |f(x)| < ``eps``).  Higher is better.
    ``baseline`` must be ``"uniform"`` (the paper's random perturbation).
    """
    if baseline != "uniform":
        raise ValueError(f"monotonicity_correlation perturbs with uniform noise: baseline must be 'uniform', "
                         f"got {baseline!r}")
    batch, r = _setup(model, x, relevance, target, batch_size)
    n = batch.n
    n_samples = check_int("n_samples", n_samples, 1)
    steps, group, sums = _groups(r, n, steps)
    u = np.random.default_rng(seed).random((n_samples,) + batch.x.shape[1:])
    lo, hi = value_range_bounds(batch.x, value_range)
    gk = np.repeat(np.arange(steps, dtype=np.int32), n_samples)
    rows = np.tile(np.arange(n_samples), steps)  # copy k * S + s: group k, field s
    f = score_keyed(batch, group, gk, gk + 1, fill=u, fill_per_copy=True, fill_range=(lo, hi), fill_rows=rows,
                    score=score, batch_size=batch_size).reshape(n, steps, n_samples)
    f0 = target_score(batch, score)
    inv = np.where(np.abs(f0) >= eps, 1.0 / np.where(f0 == 0, 1, f0) ** 2, 1.0)
    v = ((f - f0[:, None, None]) ** 2).mean(2) * inv[:, None]
    params = dict(steps=steps, n_samples=n_samples, eps=eps, score=score, seed=seed)
    return MetricResult(spearman(sums, v), dict(attributions=sums, variances=v), batch.targets, params)


def value_range_bounds(x, value_range):
    """(N,) low and high of each sample's uniform noise: the sample's min and max, or
    ``value_range`` = (low, high) for all."""
    if value_range is None:
        return x.min(axis=(1, 2, 3)).astype(np.float64), x.max(axis=(1, 2, 3)).astype(np.float64)
    lo, hi = (float(v) for v in value_range)
    if not lo < hi:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
    return np.full(len(x), lo), np.full(len(x), hi)


def faithfulness_estimate(model, x, relevance, target=None, *, steps=None, baseline=0.0, score="logit", seed=0,
                          batch_size=256):
    """Faithfulness estimate (Alvarez-Melis, Jaakkola, "Towards Robust Interpretability
    with Self-Explaining Neural Networks", NeurIPS 2018).

    The channel x pixel features are cut into K groups of consecutive rank
    (``steps``; default every feature up to 100, else 100 groups; K = F is the
    paper's one feature at a time).  Each group alone is set to the ``baseline``:

        FE = Pearson_k( sum_{j in G_k} R_j ,  f(x) - f(x with G_k at the baseline) )

    Higher is better.  ``.attributions``, ``.drops`` (N, K).
    """
    batch, r = _setup(model, x, relevance, target, batch_size)
    n = batch.n
    steps, group, sums = _groups(r, n, steps)
    fill = baseline_images(batch.x, baseline, seed=seed)
    k = np.arange(steps, dtype=np.int32)
    f = score_keyed(batch, group, k, k + 1, fill=fill, score=score, batch_size=batch_size)
    d = target_score(batch, score)[:, None] - f
    params = dict(steps=steps, baseline=baseline, score=score)
    return MetricResult(pearson(sums, d), dict(attributions=sums, drops=d), batch.targets, params)


def sensitivity_n(model, x, relevance, target=None, *, ns=None, n_subsets=50, baseline=0.0, score="logit", seed=0,
                  batch_size=256):
    """Sensitivity-n (Ancona, Ceolini, Oeztireli, Gross, "Towards better understanding
    of gradient-based attribution methods for Deep Neural Networks", ICLR 2018).

    For each subset size n in ``ns`` (channel x pixel features; default 8 sizes
    spaced geometrically from 1 to 0.8 F), ``n_subsets`` random subsets S of n
    features (from ``seed``, shared by the samples) are set to the ``baseline``:

        sens_n = Pearson_S( sum_{j in S} R_j ,  f(x) - f(x with S at the baseline) )

    ``.correlation`` (N, len(ns)); ``.score`` its mean over the sizes (higher is
    better).  Quantus 0.6.0 caps the sizes by the pixel count rather than the
    channel x pixel features and correlates over samples instead of subsets.
    """
    batch, r = _setup(model, x, relevance, target, batch_size)
    n, h, w, c = batch.x.shape
    f_all = h * w * c
    if ns is None:
        ns = np.unique(np.round(np.geomspace(1, max(1, 0.8 * f_all), 8)).astype(int))
    ns = np.asarray([check_int("each n in ns", int(v) if float(v).is_integer() else v, 1, f_all) for v in ns])
    n_subsets = check_int("n_subsets", n_subsets, 2)
    rng = np.random.default_rng(seed)
    keys = np.argsort(rng.random((ns.size * n_subsets, f_all)), axis=1).argsort(axis=1).astype(np.int32)
    hi = np.repeat(ns, n_subsets).astype(np.int32)
    fill = baseline_images(batch.x, baseline, seed=seed)
    f = score_keyed(batch, keys.reshape(-1, h, w, c), np.zeros_like(hi), hi, fill=fill, shared=True, score=score,
                    batch_size=batch_size)
    d = target_score(batch, score)[:, None] - f
    a = r.reshape(n, -1) @ (keys < hi[:, None]).T.astype(np.float64)
    corr = np.stack([pearson(a[:, j * n_subsets:(j + 1) * n_subsets], d[:, j * n_subsets:(j + 1) * n_subsets])
                     for j in range(ns.size)], axis=1)
    with np.errstate(all="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            score_ = np.nanmean(corr, axis=1)
    params = dict(ns=ns.tolist(), n_subsets=n_subsets, baseline=baseline, score=score, seed=seed)
    return MetricResult(score_, dict(correlation=corr, ns=ns, attributions=a, drops=d), batch.targets, params)
