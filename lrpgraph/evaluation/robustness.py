"""Robustness metrics: how much a map changes when the input changes a little.

Each takes ``(model_or_prepared, x, relevance, target=None, *, method, params=None,
...)``: ``method`` re-explains the perturbed inputs (a method name built once with
``lrpgraph.create_analyzer(method, model, **params)``, a Method, or
``fn(model, x, targets) -> maps``), ALL perturbed copies of the batch in one
batched ``analyze`` call (``batch_size`` images per compiled step), never a loop
per perturbation.  The K perturbations are drawn from ``numpy.random.default_rng
(seed)`` and shared by the samples (a batch and its samples one by one agree).
``relevance`` is the maps of ``x`` (None: computed by ``method``).  Norms are over
all channel x pixel entries of a map.  Lower is better for every metric here.
"""

from __future__ import annotations

import warnings

import networkx as nx
import numpy as np
import tensorflow as tf

from ..engine import graph as G
from .common import check_images
from .copies import MetricResult, check_int, check_positive, explain_copies, explainer

__all__ = ["max_sensitivity", "avg_sensitivity", "local_lipschitz_estimate", "continuity",
           "relative_input_stability", "relative_output_stability", "relative_representation_stability"]


def _setup(model, x, relevance, target, method, params, batch_size):
    x = x[0] if isinstance(x, (list, tuple)) and len(x) == 1 else x
    batch = check_images(model, x, target, batch_size=batch_size)
    explain = explainer(method, batch.prepared, params)
    r0 = explain(batch.x, batch.targets, batch_size) if relevance is None else relevance
    r0 = np.asarray(r0, np.float64)
    r0 = r0[..., None] if r0.ndim == 3 else r0
    if r0.shape[0] != batch.n or r0.shape[1:3] != batch.x.shape[1:3]:
        raise ValueError(f"relevance has shape {r0.shape}; it must be the maps of x {batch.x.shape}")
    return batch, explain, r0


def _flat(a):
    return a.reshape(a.shape[:2] + (-1,)) if a.ndim > 2 else a


def _sensitivity(model, x, relevance, target, method, params, n, radius, normalise, seed, batch_size, reduce):
    batch, explain, r0 = _setup(model, x, relevance, target, method, params, batch_size)
    n = check_int("n", n, 1)
    radius = check_positive("radius", radius)
    delta = np.random.default_rng(seed).uniform(-radius, radius, (n,) + batch.x.shape[1:])
    copies = (batch.x[:, None] + delta.astype(batch.x.dtype)[None]).astype(batch.x.dtype)
    maps = explain_copies(explain, copies, batch.targets, batch_size)
    diff = np.linalg.norm(_flat(maps - r0[:, None]), axis=2)
    if normalise:
        den = np.linalg.norm(r0.reshape(batch.n, -1), axis=1)
        diff = diff / np.where(den > 0, den, np.nan)[:, None]
    return MetricResult(reduce(diff, axis=1), dict(distances=diff), batch.targets,
                        dict(n=n, radius=radius, normalise=normalise, seed=seed))


def max_sensitivity(model, x, relevance=None, target=None, *, method, params=None, n=50, radius=0.2,
                    normalise=True, seed=0, batch_size=None):
    """Max-sensitivity (Yeh, Hsieh, Suggala, Inouye, Ravikumar, "On the (In)fidelity
    and Sensitivity of Explanations", NeurIPS 2019):

        SENS_max = max_{k=1..n} || Phi(x + d_k) - Phi(x) ||_2 / || Phi(x) ||_2,
        d_k ~ U[-radius, radius]^F

    (the uniform draw samples the L-infinity ball of the paper; ``normalise=False``
    drops the division by ||Phi(x)||, the paper's unnormalised form; a zero map
    gives NaN when normalised).  ``.distances`` (N, n)."""
    return _sensitivity(model, x, relevance, target, method, params, n, radius, normalise, seed, batch_size, np.max)


def avg_sensitivity(model, x, relevance=None, target=None, *, method, params=None, n=50, radius=0.2,
                    normalise=True, seed=0, batch_size=None):
    """Average sensitivity (Yeh et al., NeurIPS 2019): :func:`max_sensitivity` with the
    mean over the n perturbations instead of the maximum."""
    return _sensitivity(model, x, relevance, target, method, params, n, radius, normalise, seed, batch_size, np.mean)


def local_lipschitz_estimate(model, x, relevance=None, target=None, *, method, params=None, n=50, sigma=0.1, seed=0,
                             batch_size=None):
    """Local Lipschitz estimate (Alvarez-Melis, Jaakkola, "On the Robustness of
    Interpretability Methods", ICML workshop 2018), by sampling:

        L(x) = max_{k=1..n} || Phi(x) - Phi(x'_k) ||_2 / || x - x'_k ||_2,
        x'_k = x + e_k,  e_k ~ N(0, sigma^2 Id)

    ``.ratios`` (N, n)."""
    batch, explain, r0 = _setup(model, x, relevance, target, method, params, batch_size)
    n = check_int("n", n, 1)
    sigma = check_positive("sigma", sigma)
    eps = np.random.default_rng(seed).normal(0.0, sigma, (n,) + batch.x.shape[1:])
    copies = (batch.x[:, None] + eps.astype(batch.x.dtype)[None]).astype(batch.x.dtype)
    maps = explain_copies(explain, copies, batch.targets, batch_size)
    num = np.linalg.norm(_flat(maps - r0[:, None]), axis=2)
    den = np.linalg.norm(_flat(copies.astype(np.float64) - batch.x[:, None]), axis=2)
    ratios = num / np.where(den > 0, den, np.nan)
    return MetricResult(np.nanmax(ratios, axis=1), dict(ratios=ratios), batch.targets,
                        dict(n=n, sigma=sigma, seed=seed))


def translate(x, shift, axis):
    """(N, H, W, C) images moved by ``shift`` pixels along ``axis`` (1: down, 2: right;
    negative: the other way), the uncovered border repeating the edge row/column."""
    if shift == 0:
        return x.copy()
    n = x.shape[axis]
    idx = np.clip(np.arange(n) - shift, 0, n - 1)
    return np.take(x, idx, axis=axis)


def continuity(model, x, relevance=None, target=None, *, method, params=None, steps=8, step=1, axis=2,
               batch_size=None):
    """Explanation continuity (Montavon, Samek, Mueller, "Methods for interpreting and
    understanding deep neural networks", Digital Signal Processing 2018, Sec. 5.1):

        C = max_{a != b} || R(x_a) - R(x_b) ||_1 / || x_a - x_b ||_2

    over the sequence x_0 = x, x_1, ..., x_K of the image translated by k * ``step``
    pixels along ``axis`` (2: horizontally, 1: vertically; edge pixels repeated),
    K = ``steps``, pairs with x_a != x_b.  Lower is better (a continuous map moves
    smoothly with the input).  ``.ratios`` (N, K+1, K+1).  Quantus 0.6.0's Continuity
    correlates patch sums instead and fails on channel-last input; this is the
    paper's definition."""
    batch, explain, r0 = _setup(model, x, relevance, target, method, params, batch_size)
    steps = check_int("steps", steps, 1)
    step = check_int("step", step, 1)
    if axis not in (1, 2):
        raise ValueError(f"axis must be 1 (vertical) or 2 (horizontal) for (N, H, W, C) images, got {axis!r}")
    copies = np.stack([translate(batch.x, k * step, axis) for k in range(1, steps + 1)], axis=1)
    maps = explain_copies(explain, copies, batch.targets, batch_size)
    maps = np.concatenate([np.broadcast_to(r0[:, None], (batch.n, 1) + maps.shape[2:]), maps], axis=1)
    xs = np.concatenate([batch.x[:, None], copies], axis=1).astype(np.float64)
    m, xf = _flat(maps), _flat(xs)
    num = np.abs(m[:, :, None] - m[:, None]).sum(-1)
    den = np.linalg.norm(xf[:, :, None] - xf[:, None], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: every translation equal (constant image)
        out = np.nanmax(ratios.reshape(batch.n, -1), axis=1)
    return MetricResult(out, dict(ratios=ratios), batch.targets, dict(steps=steps, step=step, axis=axis))


def _relative(a, a0, eps_min):
    """|| (a - a0) / a0 ||_2 per (sample, copy), zeros of a0 replaced by eps_min."""
    a0 = np.where(a0 == 0, eps_min, a0)
    return np.linalg.norm(_flat((a - a0[:, None]) / a0[:, None]), axis=2)


def _stability(kind, model, x, relevance, target, method, params, n, sigma, eps_min, layer, seed, batch_size):
    batch, explain, r0 = _setup(model, x, relevance, target, method, params, batch_size)
    n = check_int("n", n, 1)
    sigma = check_positive("sigma", sigma)
    eps_min = check_positive("eps_min", eps_min)
    noise = np.random.default_rng(seed).normal(0.0, sigma, (n,) + batch.x.shape[1:])
    copies = (batch.x[:, None] + noise.astype(batch.x.dtype)[None]).astype(batch.x.dtype)
    maps = explain_copies(explain, copies, batch.targets, batch_size)
    flat = copies.reshape((-1,) + batch.x.shape[1:])
    logits = batch.prepared.logits(flat, batch_size=batch_size).reshape(batch.n, n, -1)
    num = _relative(maps, r0, eps_min)
    if kind == "input":
        den = _relative(copies.astype(np.float64), batch.x.astype(np.float64), eps_min)
    elif kind == "output":
        den = np.linalg.norm(logits - batch.logits[:, None], axis=2)
    else:
        rep = _representation(batch.prepared, layer)
        h0 = rep(batch.x, batch_size)
        h = rep(flat, batch_size).reshape((batch.n, n) + h0.shape[1:])
        den = _relative(h, h0, eps_min)
    ratio = num / np.maximum(den, eps_min)
    same = logits.argmax(-1) == batch.logits.argmax(-1)[:, None]
    ratio = np.where(same, ratio, np.nan)  # the paper keeps perturbations with the same prediction

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.nanmax(ratio, axis=1)
    return MetricResult(out, dict(ratios=ratio, kept=same), batch.targets,
                        dict(n=n, sigma=sigma, eps_min=eps_min, seed=seed, layer=layer))


def _representation(prepared, layer):
    """fn(x, batch_size) -> (M, ...) float64: the output of Keras layer ``layer`` through
    the prepared graph (default: the tensor that feeds the explained output node, i.e.
    the last layer's input after the rewrite, which drops Dropout and the like)."""
    if layer is None:
        edges = list(G.in_edges(prepared.graph, prepared.output_node))
        if not edges or G.op(prepared.graph, edges[0][0]).kind == "input":
            raise ValueError("relative_representation_stability needs layer=<name>: the output reads the input")
        node, out = edges[0][0], edges[0][1]
    else:
        node, out = prepared.layer_node(layer), 0  # ValueError listing the layers
    needed = {node} | nx.ancestors(prepared.graph, node)
    fn = tf.function(lambda t: prepared.activations([t], needed)[(node, out)],
                     input_signature=[prepared.input_specs[0]], reduce_retracing=True, autograph=False)

    def run(x, batch_size):
        step = batch_size or len(x)
        return np.concatenate([fn(tf.convert_to_tensor(x[s:s + step])).numpy() for s in range(0, len(x), step)],
                              axis=0).astype(np.float64)

    return run


def relative_input_stability(model, x, relevance=None, target=None, *, method, params=None, n=50, sigma=0.05,
                             eps_min=1e-6, seed=0, batch_size=None):
    """Relative input stability (Agarwal, Johnson, Pawelczyk, Krishna, Saxena, Zitnik,
    Lakkaraju, "Rethinking Stability for Attribution-based Explanations", ICLR
    workshop 2022):

        RIS = max_{x'} || (e_x - e_x') / e_x ||_2 / max( || (x - x') / x ||_2 , eps_min )

    over x' = x + N(0, ``sigma``^2) (n draws) that keep the predicted class (the others
    are NaN in ``.ratios``; no such x': NaN); divisions are element-wise, zeros of the
    divisor replaced by ``eps_min``.  Lower is better."""
    return _stability("input", model, x, relevance, target, method, params, n, sigma, eps_min, None, seed, batch_size)


def relative_output_stability(model, x, relevance=None, target=None, *, method, params=None, n=50, sigma=0.05,
                              eps_min=1e-6, seed=0, batch_size=None):
    """Relative output stability (Agarwal et al. 2022): as :func:`relative_input_stability`
    with the denominator max(|| h(x) - h(x') ||_2, eps_min), h the logits."""
    return _stability("output", model, x, relevance, target, method, params, n, sigma, eps_min, None, seed,
                      batch_size)


def relative_representation_stability(model, x, relevance=None, target=None, *, method, params=None, layer=None,
                                      n=50, sigma=0.05, eps_min=1e-6, seed=0, batch_size=None):
    """Relative representation stability (Agarwal et al. 2022): as
    :func:`relative_input_stability` with the denominator
    max(|| (L_x - L_x') / L_x ||_2, eps_min), L the output of Keras layer ``layer``
    (default the input of the explained output layer)."""
    return _stability("representation", model, x, relevance, target, method, params, n, sigma, eps_min, layer, seed,
                      batch_size)
