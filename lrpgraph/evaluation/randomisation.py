"""Randomisation sanity checks (Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim,
"Sanity Checks for Saliency Maps", NeurIPS 2018).

A map that explains the model must change when the model's parameters are
destroyed.  :func:`model_randomisation` re-initialises the layers of a COPY of
the model cumulatively from the logits down (cascading randomisation) and
compares each step's maps with the original maps; :func:`data_randomisation`
compares with the maps of a model the user trained on shuffled labels.  The
user's model is never modified.

Similarities, per sample, between the original map A and a randomised map B,
both reduced to (H, W) by summing the channels:

- ``spearman_abs``: Spearman rank correlation of |A| and |B| (ties averaged);
- ``ssim_abs``: SSIM (scikit-image ``structural_similarity``) of |A| / max|A| and
  |B| / max|B| (data range 1);
- ``spearman``, ``ssim``: the same on the signed maps (A / max|A|, data range 2).

A map that is all zero has no rank order and no scale: its similarities are NaN.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import keras
import numpy as np
from scipy.stats import rankdata
from skimage.metrics import structural_similarity

from ..engine.prepared import Prepared, prepare
from ..methods.registry import create_analyzer
from .common import check_images, check_relevance, pearson

__all__ = ["SIMILARITIES", "RandomisationResult", "model_randomisation", "data_randomisation", "similarities",
           "randomisable_layers", "randomise_layer"]

SIMILARITIES = ("spearman_abs", "ssim_abs", "spearman", "ssim")


@dataclass(frozen=True)
class RandomisationResult:
    """``layers``: the randomised layers in cascade order (``["data"]`` for the
    data-randomisation check); ``similarity[name]``: (N, L) array, column l the
    similarity after randomising ``layers[:l+1]``; ``last[name]``: (N,) after the
    last step; ``targets`` (N,); ``maps``: the randomised maps of the last step."""

    layers: list
    similarity: dict
    targets: np.ndarray
    maps: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def last(self):
        return {k: v[:, -1] for k, v in self.similarity.items()}


def _rank(a):
    return rankdata(a, axis=1)


def _ssim(a, b, data_range):
    h, w = a.shape[1:]
    win = min(7, h - (1 - h % 2), w - (1 - w % 2))
    if win < 3:
        raise ValueError(f"SSIM needs maps of at least 3 x 3 pixels, got {h} x {w}")
    return np.array([structural_similarity(ai, bi, data_range=data_range, win_size=win) for ai, bi in zip(a, b)])


def _normalise(m):
    s = np.abs(m).max(axis=(1, 2), keepdims=True)
    return m / np.where(s > 0, s, 1), s.reshape(-1) > 0


def similarities(original, other):
    """dict name -> (N,) similarity of ``other`` to ``original`` (both (N, H, W[, C]);
    channels summed): Spearman and SSIM of the absolute and the signed maps."""
    a = np.asarray(original, np.float64)
    b = np.asarray(other, np.float64)
    a = a.sum(-1) if a.ndim == 4 else a
    b = b.sum(-1) if b.ndim == 4 else b
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(f"maps must be (N, H, W) or (N, H, W, C) of the same images, got shapes "
                         f"{np.shape(original)} and {np.shape(other)}")
    n = a.shape[0]
    an, oka = _normalise(a)
    bn, okb = _normalise(b)
    ok = oka & okb
    flat = lambda m: m.reshape(n, -1)  # noqa: E731
    out = {
        "spearman_abs": pearson(_rank(flat(np.abs(a))), _rank(flat(np.abs(b)))),
        "ssim_abs": _ssim(np.abs(an), np.abs(bn), 1.0),
        "spearman": pearson(_rank(flat(a)), _rank(flat(b))),
        "ssim": _ssim(an, bn, 2.0),
    }
    return {k: np.where(ok, v, np.nan) for k, v in out.items()}


def randomisable_layers(model):
    """Names of the layers with weights, from the output down (reverse topological
    order of ``model.layers``): the cascade's order."""
    return [layer.name for layer in reversed(model.layers) if layer.weights]


def randomise_layer(layer, seed):
    """Re-initialise every weight of ``layer`` in place, seeded: each variable by the
    layer's own initializer for it (``kernel_initializer``, ``bias_initializer``,
    ``gamma_initializer``, ``moving_variance_initializer``, ...), re-seeded with
    ``seed + j`` for its j-th variable; a variable without one gets Glorot-uniform
    noise (rank >= 2) or keeps its value (rank < 2)."""
    for j, v in enumerate(layer.weights):
        name = v.path.split("/")[-1]
        init = getattr(layer, f"{name}_initializer", None)
        if init is not None:
            cfg = init.get_config()
            if "seed" in cfg:
                cfg["seed"] = int(seed) + j
            init = type(init).from_config(cfg)
        elif len(v.shape) >= 2:
            init = keras.initializers.GlorotUniform(seed=int(seed) + j)
        else:
            continue
        v.assign(init(tuple(v.shape), dtype=v.dtype))


def _explainer(method, params, batch_size):
    """fn(model, x, targets) -> maps."""
    if callable(method) and not isinstance(method, str):
        return method
    if not isinstance(method, str):
        raise TypeError(f"method must be a method name (lrpgraph.methods()) or a callable "
                        f"fn(model, x, targets) -> maps, got {method!r}")
    params = dict(params or {})
    built = {}  # one analyzer (one compiled function) per model: the copy's weights change in place

    def explain(model, x, targets):
        if id(model) not in built:
            built[id(model)] = (model, create_analyzer(method, model, **params))
        return built[id(model)][1].analyze(x, target=targets, batch_size=batch_size)

    return explain


def _keras_model(model):
    return model.model if isinstance(model, Prepared) else model


def model_randomisation(model, x, relevance=None, target=None, *, method, params=None, layers=None, seed=0,
                        batch_size=None):
    """Cascading model-parameter randomisation (Adebayo et al., NeurIPS 2018).

    A copy of the model (``keras.models.clone_model`` + ``set_weights``; ``model``
    itself is untouched) has its layers re-initialised one at a time from the
    logits down (:func:`randomise_layer`, seed ``seed + 1000 * step``); after each
    step ``method`` (a name with ``params``, or ``fn(model, x, targets) -> maps``)
    explains the same targets on the copy and the maps are compared with the
    original ones (``relevance``; None: computed by ``method`` on ``model``) by
    :func:`similarities`.  ``layers``: the layer names to randomise, in cascade
    order (default :func:`randomisable_layers`, every layer with weights).

    Returns a :class:`RandomisationResult`: ``similarity[name]`` (N, L).
    """
    keras_model = _keras_model(model)
    batch = check_images(model, x, target, batch_size=batch_size)
    explain = _explainer(method, params, batch_size)
    original = explain(keras_model, batch.x, batch.targets) if relevance is None else relevance
    check_relevance(original, batch.x)
    names = randomisable_layers(keras_model) if layers is None else list(layers)
    known = {layer.name for layer in keras_model.layers}
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"unknown layer(s) {bad}; the model's layers with weights are "
                         f"{randomisable_layers(keras_model)}")
    if not names:
        raise ValueError("the model has no layers with weights to randomise")
    copy = keras.models.clone_model(keras_model)
    copy.set_weights(keras_model.get_weights())
    sims = {k: [] for k in SIMILARITIES}
    maps = None
    before = prepare(copy).logits(batch.x, batch_size=batch_size)
    for step, name in enumerate(names):
        randomise_layer(copy.get_layer(name), seed + 1000 * step)
        if step == 0:  # the compiled functions read the variables: check once that they see the new values
            after = prepare(copy).logits(batch.x, batch_size=batch_size)
            if np.array_equal(before, after):
                raise RuntimeError(f"randomising layer {name!r} did not change the copy's logits: the layer's "
                                   "weights do not reach the output; pass layers=[...] from the output down")
        with warnings.catch_warnings():
            # e.g. "the target logit is <= 0: all-zero maps" -- expected of a randomised model (NaN similarity)
            warnings.simplefilter("ignore", RuntimeWarning)
            maps = np.asarray(explain(copy, batch.x, batch.targets))
        for k, v in similarities(original, maps).items():
            sims[k].append(v)
    sim = {k: np.stack(v, axis=1) for k, v in sims.items()}
    params_out = dict(method=method if isinstance(method, str) else getattr(method, "__name__", "callable"),
                      seed=seed, params=dict(params or {}))
    return RandomisationResult(names, sim, batch.targets, maps, params_out)


def data_randomisation(model, x, relevance=None, target=None, *, random_model, method, params=None,
                       batch_size=None):
    """Data randomisation test (Adebayo et al., NeurIPS 2018): the similarity between
    the maps of ``model`` and those of ``random_model``, the same architecture
    trained by the user on randomly permuted labels, for the same inputs and
    targets (the targets resolved on ``model``).  Returns a
    :class:`RandomisationResult` with one step, ``layers == ["data"]``."""
    batch = check_images(model, x, target, batch_size=batch_size)
    explain = _explainer(method, params, batch_size)
    original = explain(_keras_model(model), batch.x, batch.targets) if relevance is None else relevance
    check_relevance(original, batch.x)
    other = _keras_model(random_model)
    check_images(other, batch.x, batch.targets)
    maps = np.asarray(explain(other, batch.x, batch.targets))
    sim = {k: v[:, None] for k, v in similarities(original, maps).items()}
    params_out = dict(method=method if isinstance(method, str) else "callable", params=dict(params or {}))
    return RandomisationResult(["data"], sim, batch.targets, maps, params_out)
