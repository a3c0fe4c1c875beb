"""What every faithfulness metric shares: input checks, regions, baselines and the
batched scorer of perturbed copies.

Every metric of :mod:`lrpgraph.evaluation` scores many perturbed copies of each
image.  They all go through :func:`score_copies`: ONE compiled ``tf.function``
per (model, grid, score, chunk size) that builds the perturbed copies inside the
graph and runs them through the model's compiled forward
(:meth:`lrpgraph.Prepared.forward`) in chunks of at most ``batch_size`` images
(a ``tf.while_loop``, :func:`lrpgraph.methods.base.chunked`); nothing loops per
sample or per step in Python.

Regions are the non-overlapping ``p x p`` patches of an (H, W) image (p must
divide H and W), numbered row-major: region r covers rows
``(r // (W/p)) * p ...`` and columns ``(r % (W/p)) * p ...``, all channels.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf
from skimage.filters import gaussian

from ..methods.base import check_batch_size, chunked
from ..engine.prepared import prepare
from ..targets import resolve_predicted

__all__ = ["SCORES", "check_images", "check_relevance", "check_patch", "region_relevance", "region_ranks",
           "baseline_images", "score_copies", "score_chunks", "target_scores", "pearson", "ImageBatch"]

SCORES = ("logit", "softmax")

_FNS = weakref.WeakKeyDictionary()


class ImageBatch:
    """A validated image batch: ``prepared``, ``x`` (N, H, W, C) in the model's dtype,
    ``targets`` (N,) int32 with "the predicted class" resolved, ``logits`` (N, K)."""

    def __init__(self, prepared, x, targets, logits):
        self.prepared, self.x, self.targets, self.logits = prepared, x, targets, logits

    @property
    def n(self):
        return self.x.shape[0]


def check_images(model, x, target, *, batch_size=None):
    """:class:`ImageBatch` for a one-input image model: ``x`` (N, H, W, C) checked by
    :meth:`Prepared.check_inputs`, ``target`` an int, one per sample or None (the
    predicted class)."""
    prepared = prepare(model)
    if len(prepared.input_specs) != 1 or len(prepared.input_specs[0].shape) != 4:
        raise ValueError("the evaluation metrics need a model with one image input (N, H, W, C); this model's "
                         f"inputs are {[tuple(s.shape) for s in prepared.input_specs]}")
    xs, _ = prepared.check_inputs(x)
    x = xs[0]
    targets, multi = prepared.check_targets(target, x.shape[0])
    if multi:
        raise ValueError(f"the evaluation metrics take one target per sample (shape ({x.shape[0]},)); got shape "
                         f"{np.shape(target)}. Evaluate each column separately.")
    logits = prepared.logits(x, batch_size=batch_size)
    targets = resolve_predicted(logits, targets)
    return ImageBatch(prepared, x, targets, logits)


def check_relevance(relevance, x):
    """``relevance`` as a float64 (N, H, W, C) array: the input's shape, or (N, H, W) /
    (N, H, W, 1) maps (broadcast over the channels).  Errors name the shapes."""
    r = relevance.numpy() if hasattr(relevance, "numpy") else np.asarray(relevance)
    if isinstance(relevance, (list, tuple)) and len(relevance) == 1:
        r = np.asarray(relevance[0])
    if r.dtype.kind not in "fiu":
        raise TypeError(f"relevance must be a numeric array, got dtype {r.dtype}")
    n, h, w, c = x.shape
    if r.shape == (n, h, w):
        r = r[..., None]
    if r.ndim != 4 or r.shape[:3] != (n, h, w) or r.shape[3] not in (1, c):
        raise ValueError(f"relevance has shape {r.shape}; it must match the input's shape {x.shape} (or "
                         f"({n}, {h}, {w}) / ({n}, {h}, {w}, 1) for one map per image). Pass the maps of "
                         "these images, one per sample.")
    if not np.all(np.isfinite(r)):
        raise ValueError("relevance contains NaN or Inf values")
    return np.broadcast_to(r.astype(np.float64), (n, h, w, c))


def check_patch(patch, shape):
    """The patch size p as an int that divides the image's height and width."""
    h, w = shape
    if isinstance(patch, bool) or not isinstance(patch, (int, np.integer)) or patch < 1:
        raise ValueError(f"patch must be a positive int (the side of the square regions), got {patch!r}")
    if patch > h or patch > w:
        raise ValueError(f"patch {patch} exceeds the image ({h} x {w}); pick a patch <= {min(h, w)}")
    if h % patch or w % patch:
        divisors = [d for d in range(1, min(h, w) + 1) if h % d == 0 and w % d == 0]
        raise ValueError(f"patch {patch} does not divide the image ({h} x {w}): the regions are non-overlapping "
                         f"p x p patches; use one of {divisors}")
    return int(patch)


def region_relevance(relevance, patch):
    """(N, R) relevance summed over each p x p patch and the channels, regions row-major."""
    n, h, w, c = relevance.shape
    g = relevance.reshape(n, h // patch, patch, w // patch, patch, c).sum(axis=(2, 4, 5))
    return g.reshape(n, -1)


def region_ranks(scores, order):
    """(N, R) int32 rank of each region: 0 = removed first.  ``order="morf"`` ranks by
    decreasing score, ``"lerf"`` by increasing; ties go to the lower region index
    (a stable sort)."""
    if order not in ("morf", "lerf"):
        raise ValueError(f"order must be 'morf' (most relevant first) or 'lerf' (least relevant first), got {order!r}")
    key = -scores if order == "morf" else scores
    perm = np.argsort(key, axis=1, kind="stable")
    ranks = np.empty_like(perm)
    np.put_along_axis(ranks, perm, np.arange(scores.shape[1])[None, :].repeat(scores.shape[0], 0), axis=1)
    return ranks.astype(np.int32)


def baseline_images(x, baseline, *, seed=0, value_range=None, sigma=5.0):
    """(N, H, W, C) replacement values, each sample's from that sample alone (so a
    batch and its samples one by one agree):

    - a number: that constant;
    - ``"uniform"``: U(lo, hi) noise, one field drawn from ``seed`` (the same for
      every sample), lo/hi = ``value_range`` or the sample's min and max;
    - ``"mean"``: the sample's per-channel mean;
    - ``"blur"``: the sample blurred by ``skimage.filters.gaussian(sigma, channel_axis=-1)``;
    - an array broadcastable to x: itself.
    """
    if isinstance(baseline, str):
        if baseline == "uniform":
            u = np.random.default_rng(seed).random(x.shape[1:])
            if value_range is None:
                lo = x.min(axis=(1, 2, 3), keepdims=True).astype(np.float64)
                hi = x.max(axis=(1, 2, 3), keepdims=True).astype(np.float64)
            else:
                lo, hi = (float(v) for v in value_range)
                if not lo < hi:
                    raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
            out = lo + (hi - lo) * u[None]
        elif baseline == "mean":
            out = np.broadcast_to(x.mean(axis=(1, 2), keepdims=True, dtype=np.float64), x.shape)
        elif baseline == "blur":
            if not sigma > 0:
                raise ValueError(f"sigma (the blur's standard deviation in pixels) must be > 0, got {sigma!r}")
            out = np.stack([gaussian(xi.astype(np.float64), sigma=sigma, channel_axis=-1, preserve_range=True)
                            for xi in x])
        else:
            raise ValueError(f"unknown baseline {baseline!r}: use 'uniform', 'mean', 'blur', a number or an array")
    elif isinstance(baseline, (int, float, np.integer, np.floating)) and not isinstance(baseline, bool):
        if not np.isfinite(baseline):
            raise ValueError(f"baseline must be finite, got {baseline!r}")
        out = np.full(x.shape, float(baseline))
    else:
        b = np.asarray(baseline, dtype=np.float64)
        try:
            out = np.broadcast_to(b, x.shape)
        except ValueError:
            raise ValueError(f"baseline of shape {b.shape} does not broadcast to the input's shape {x.shape}; "
                             "pass 'uniform', 'mean', 'blur', a number or an array of the input's shape") from None
        if not np.all(np.isfinite(out)):
            raise ValueError("baseline contains NaN or Inf values")
    return np.ascontiguousarray(out, dtype=x.dtype)


def pearson(a, b):
    """Row-wise Pearson correlation of (N, n) arrays; NaN where a row is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=1) / np.where(den > 0, den, 1), np.nan)


def target_scores(logits, targets, score):
    """The target's logit or softmax probability, traceable: (M,) from (M, K) logits."""
    if score == "softmax":
        logits = tf.nn.softmax(logits, axis=-1)
    return tf.gather(logits, targets, batch_dims=1)


def _check_score(score):
    if score not in SCORES:
        raise ValueError(f"score must be 'logit' (the target's logit) or 'softmax' (its probability), got {score!r}")
    return score


def score_chunks(prepared, images, targets, n, n_copies, score, batch_size):
    """Inside a tf.function: the (n_copies, n) float64 target scores of perturbed copies,
    ``images(k, i)`` building the chunk's copies (copy indices k, sample indices i,
    (b,) each) and the compiled forward scoring them, ``batch_size`` at a time
    (:func:`lrpgraph.methods.base.chunked`).  Every scorer of the metrics builds on it."""

    def make(k, i, valid, c):
        return [images(k, i)], k * n + i, i, tf.cast(valid, tf.float64)

    def fold(acc, chunk, j, i, valid):
        f = tf.cast(target_scores(prepared.forward(chunk), tf.gather(targets, i), score), tf.float64)
        return acc + tf.math.unsorted_segment_sum(f * valid, j, n_copies * n)

    acc = chunked(n_copies, n, batch_size, make, fold, tf.zeros([n_copies * n], tf.float64))
    return tf.reshape(acc, [n_copies, n])


def _scorer(prepared, grid, patch, score, batch_size):
    """The compiled scorer for one configuration (cached per prepared model)."""
    cache = _FNS.setdefault(prepared, {})
    key = (grid, patch, score, batch_size)
    if key in cache:
        return cache[key]
    gh, gw = grid
    spec = prepared.input_specs[0]

    def body(x, fill, keys, thresholds, shared, targets):
        # copy k of sample i: region r takes fill's value where keys[...] < thresholds[k];
        # keys are (N, R) per-sample ranks (curves) or, with shared, (S, R) per-copy masks
        def images(k, i):
            key = tf.where(shared, tf.gather(keys, tf.minimum(k, tf.shape(keys)[0] - 1)),
                           tf.gather(keys, tf.minimum(i, tf.shape(keys)[0] - 1)))
            m = tf.cast(key < tf.gather(thresholds, k)[:, None], x.dtype)  # (b, R)
            m = tf.reshape(m, [-1, gh, 1, gw, 1, 1])
            m = tf.reshape(tf.tile(m, [1, 1, patch, 1, patch, 1]), [-1, gh * patch, gw * patch, 1])
            xi, fi = tf.gather(x, i), tf.gather(fill, i)
            return xi + m * (fi - xi)

        return score_chunks(prepared, images, targets, tf.shape(x)[0], tf.shape(thresholds)[0], score, batch_size)

    fn = tf.function(body, input_signature=[spec, spec, tf.TensorSpec([None, gh * gw], tf.int32),
                                            tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.bool),
                                            tf.TensorSpec([None], tf.int32)],
                     reduce_retracing=True, autograph=False)
    cache[key] = fn
    return fn


def score_copies(batch, fill, patch, keys, thresholds, *, shared=False, score="logit", batch_size=256):
    """Scores of perturbed copies, (N, M) float64, computed in one compiled call.

    Copy k of sample i replaces every region r (p x p patch, all channels) whose
    key is below ``thresholds[k]`` by ``fill``'s value there:

    - ``shared=False``: ``keys`` (N, R) per-sample ranks (region_ranks); copy k
      replaces the regions ranked below thresholds[k] (a perturbation curve);
    - ``shared=True``: ``keys`` (M, R), one 0/1 row per copy, the same for every
      sample; pass ``thresholds`` of ones (copy k replaces the regions with key 0).

    The score is the target's logit or softmax probability (``score``);
    ``batch_size`` perturbed images go through the model per compiled step."""
    _check_score(score)
    batch_size = check_batch_size(batch_size)
    h, w = batch.x.shape[1:3]
    fn = _scorer(batch.prepared, (h // patch, w // patch), patch, score, batch_size)
    out = fn(tf.convert_to_tensor(batch.x), tf.convert_to_tensor(fill), tf.convert_to_tensor(keys, tf.int32),
             tf.convert_to_tensor(np.asarray(thresholds, np.int32)), tf.constant(bool(shared)),
             tf.convert_to_tensor(batch.targets))
    return out.numpy().T
