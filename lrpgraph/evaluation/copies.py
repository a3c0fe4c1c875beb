"""Machinery of the metrics added for issue 24: perturbed copies at the level of
single features (channel x pixel) or arbitrary per-pixel groups, scored in ONE
compiled function; re-explanations of perturbed inputs in one batched
``Method.analyze`` call; and the per-sample result type.

A *feature* is one entry (h, w, c) of an (H, W, C) image.  :func:`score_keyed`
generalises :func:`lrpgraph.evaluation.common.score_copies` (p x p regions over all
channels) to a key per feature (or per pixel, shared by the channels): copy k of
sample i replaces the features whose key lies in ``[lo[k], hi[k])`` by the fill's
value and adds ``noise[k]`` -- enough for cumulative curves (lo = 0), one group at
a time (hi = lo + 1), random subsets (shared 0/1 keys) and additive noise.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from ..methods.base import check_batch_size
from ..methods.registry import create_analyzer
from .common import SCORES, score_chunks, target_scores

__all__ = ["MetricResult", "feature_ranks", "score_keyed", "explain_copies", "explainer", "target_score", "check_int",
           "check_positive"]

_FNS = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class MetricResult:
    """A metric's per-sample result: ``score`` (N,) float64 (the number the tables
    report), ``details`` (name -> array: curves, gaps, intermediate values),
    ``targets`` (N,) the explained classes, ``params`` the settings."""

    score: np.ndarray
    details: dict
    targets: np.ndarray
    params: dict = field(default_factory=dict)

    def __getattr__(self, name):  # res.curve etc. for the details
        details = object.__getattribute__(self, "details")
        if name in details:
            return details[name]
        raise AttributeError(name)


def check_int(name, v, lo=1, hi=None):
    """``v`` as an int in [lo, hi], or a ValueError naming ``name``."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be an int {rng}, got {v!r}")
    return int(v)


def check_positive(name, v, allow_zero=False):
    ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v) and \
        (v >= 0 if allow_zero else v > 0)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {v!r}")
    return float(v)


def _check_score(score):
    if score not in SCORES:
        raise ValueError(f"score must be 'logit' (the target's logit) or 'softmax' (its probability), got {score!r}")
    return score


def feature_ranks(scores, descending=True):
    """(N, F) int32 rank of each feature (0 first) by ``scores`` (N, F): decreasing
    (``descending=True``) or increasing; ties go to the lower feature index (stable)."""
    key = -scores if descending else scores
    perm = np.argsort(key, axis=1, kind="stable")
    ranks = np.empty_like(perm)
    np.put_along_axis(ranks, perm, np.broadcast_to(np.arange(scores.shape[1]), scores.shape), axis=1)
    return ranks.astype(np.int32)


def _keyed_fn(prepared, key_shape, fill_per_copy, with_noise, score, batch_size):
    cache = _FNS.setdefault(prepared, {})
    ck = (key_shape, fill_per_copy, with_noise, score, batch_size)
    if ck in cache:
        return cache[ck]
    spec = prepared.input_specs[0]

    def body(x, fill, keys, lo, hi, shared, noise, targets, fill_lo, fill_span, fill_rows):
        def images(k, i):
            key = tf.where(shared, tf.gather(keys, tf.minimum(k, tf.shape(keys)[0] - 1)),
                           tf.gather(keys, tf.minimum(i, tf.shape(keys)[0] - 1)))
            kb = tf.reshape(k, [-1, 1, 1, 1])
            m = tf.cast((key >= tf.gather(lo, kb)) & (key < tf.gather(hi, kb)), x.dtype)
            xi = tf.gather(x, i)
            if fill_per_copy:  # a per-copy field scaled to each sample's range
                fi = tf.gather(fill_lo, i) + tf.gather(fill_span, i) * tf.gather(fill, tf.gather(fill_rows, k))
            else:
                fi = tf.gather(fill, i)
            out = xi + m * (fi - xi)
            return out + tf.gather(noise, k) if with_noise else out

        return score_chunks(prepared, images, targets, tf.shape(x)[0], tf.shape(lo)[0], score, batch_size)

    h, w, kc = key_shape
    fn = tf.function(body, input_signature=[spec, spec, tf.TensorSpec([None, h, w, kc], tf.int32),
                                            tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32),
                                            tf.TensorSpec([], tf.bool), spec, tf.TensorSpec([None], tf.int32),
                                            tf.TensorSpec([None, 1, 1, 1], spec.dtype),
                                            tf.TensorSpec([None, 1, 1, 1], spec.dtype),
                                            tf.TensorSpec([None], tf.int32)],
                     reduce_retracing=True, autograph=False)
    cache[ck] = fn
    return fn


def score_keyed(batch, keys, lo, hi, *, fill=None, fill_per_copy=False, fill_range=None, fill_rows=None,
                noise=None, shared=False, score="logit", batch_size=256):
    """Scores of perturbed copies, (N, M) float64, in one compiled call.

    Copy k (k < M = len(lo)) of sample i is

        x'_ki = x_i + m * (fill - x_i) + noise[k],   m = [lo[k] <= key < hi[k]]

    with ``key = keys[i]`` (``shared=False``: (N, H, W, Ck) per-sample keys, e.g.
    ranks) or ``keys[k]`` (``shared=True``: (M, H, W, Ck) per-copy keys), Ck = C
    (one key per feature) or 1 (per pixel, all channels); ``fill`` (N, H, W, C)
    per sample, or with ``fill_per_copy`` (M, H, W, C) per copy (default: x, no
    replacement); with ``fill_per_copy`` and ``fill_range`` = (lo_i, hi_i) arrays
    (N,), copy k of sample i takes lo_i + (hi_i - lo_i) * fill[k] (``fill_rows`` (M,):
    fill[fill_rows[k]] instead, so that a few fields serve many copies); ``noise``
    (M, H, W, C) or None.  The score is the target's logit or softmax probability;
    ``batch_size`` images per compiled step."""
    _check_score(score)
    batch_size = check_batch_size(batch_size)
    x = batch.x
    keys = np.asarray(keys, np.int32)
    if keys.ndim != 4 or keys.shape[1:3] != x.shape[1:3] or keys.shape[3] not in (1, x.shape[3]):
        raise ValueError(f"keys must be (N|M, H, W, 1|C) for images {x.shape}, got {keys.shape}")
    lo = np.asarray(lo, np.int32)
    hi = np.asarray(hi, np.int32)
    fill = x if fill is None else np.asarray(fill, x.dtype)
    fn = _keyed_fn(batch.prepared, keys.shape[1:], bool(fill_per_copy), noise is not None, score, batch_size)
    n = x.shape[0]
    if fill_range is None:
        flo, fspan = np.zeros(n), np.ones(n)
    else:
        flo = np.broadcast_to(np.asarray(fill_range[0], np.float64), (n,))
        fspan = np.broadcast_to(np.asarray(fill_range[1], np.float64), (n,)) - flo
    flo, fspan = (np.asarray(a, x.dtype).reshape(n, 1, 1, 1) for a in (flo, fspan))
    nz = np.zeros((1,) + x.shape[1:], x.dtype) if noise is None else np.asarray(noise, x.dtype)
    out = fn(tf.convert_to_tensor(x), tf.convert_to_tensor(fill), tf.convert_to_tensor(keys), tf.convert_to_tensor(lo),
             tf.convert_to_tensor(hi), tf.constant(bool(shared)), tf.convert_to_tensor(nz),
             tf.convert_to_tensor(batch.targets), tf.convert_to_tensor(flo), tf.convert_to_tensor(fspan),
             tf.convert_to_tensor(np.arange(len(lo)) if fill_rows is None else np.asarray(fill_rows), tf.int32))
    return out.numpy().T


def target_score(batch, score):
    """(N,) float64: the unperturbed images' target logit or probability."""
    return target_scores(batch.logits, batch.targets, _check_score(score)).numpy().astype(np.float64)


def explainer(method, model, params=None):
    """fn(x, targets, batch_size) -> maps for ``method``: a method name (built once
    with ``lrpgraph.create_analyzer(method, model, **params)``), an object with
    ``analyze(x, target=..., batch_size=...)`` (a Method), or a callable
    ``fn(model, x, targets) -> maps``."""
    if isinstance(method, str):
        analyzer = create_analyzer(method, model, **dict(params or {}))
        return lambda x, t, bs: analyzer.analyze(x, target=t, batch_size=bs)
    if hasattr(method, "analyze"):
        return lambda x, t, bs: method.analyze(x, target=t, batch_size=bs)
    if callable(method):
        return lambda x, t, bs: method(model, x, t)
    raise TypeError(f"method must be a method name (lrpgraph.methods()), a Method (create_analyzer(...)) or a "
                    f"callable fn(model, x, targets) -> maps; got {method!r}")


def explain_copies(explain, copies, targets, batch_size=None):
    """Maps of ``copies`` (N, K, H, W, C) for the targets (N,): ONE batched call of
    ``explain`` on the N*K images (copy-major order inside), returned (N, K, ...)
    as float64 with a channel axis (maps without one get a trailing 1)."""
    n, k = copies.shape[:2]
    flat = copies.reshape((n * k,) + copies.shape[2:])
    maps = np.asarray(explain(flat, np.repeat(np.asarray(targets), k), batch_size), np.float64)
    if maps.ndim == 3:
        maps = maps[..., None]
    return maps.reshape((n, k) + maps.shape[1:])
