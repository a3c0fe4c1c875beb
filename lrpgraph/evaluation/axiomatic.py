"""Axiomatic metrics: completeness, input invariance, non-sensitivity.

Each takes ``(model_or_prepared, x, relevance, target=None, ...)`` and returns a
:class:`lrpgraph.evaluation.copies.MetricResult` with ``.score`` (N,).
"""

from __future__ import annotations

import keras
import numpy as np

from .common import baseline_images, check_images, check_relevance, target_scores
from .copies import MetricResult, check_int, check_positive, explain_copies, explainer, score_keyed, target_score
from .faithfulness_more import value_range_bounds

__all__ = ["completeness", "input_invariance", "non_sensitivity", "shifted_model"]


def _setup(model, x, relevance, target):
    x = x[0] if isinstance(x, (list, tuple)) and len(x) == 1 else x
    batch = check_images(model, x, target)
    return batch, check_relevance(relevance, batch.x)


def completeness(model, x, relevance, target=None, *, baseline=0.0, rtol=1e-3, atol=1e-6, score="logit", seed=0):
    """Completeness (Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep Networks",
    ICML 2017; conservation in LRP, Bach et al. 2015): the map sums to the score's
    change from the baseline,

        gap = sum_j R_j - (f(x) - f(x_baseline)),
        complete = |gap| <= rtol * |f(x) - f(x_baseline)| + atol.

    ``.score`` is the relative gap |gap| / |f(x) - f(x_baseline)| (lower is better;
    inf where the change is 0 and the gap is not); ``.gap`` (N,) signed,
    ``.complete`` (N,) bool.  Quantus 0.6.0 compares the two sums with exact
    equality, always False in float32.  For LRP maps explain the logit
    (``score="logit"``) and use the baseline the rules' conservation refers to
    (0 for LRP-0/epsilon on bias-free models)."""
    batch, r = _setup(model, x, relevance, target)
    rtol = check_positive("rtol", rtol, allow_zero=True)
    atol = check_positive("atol", atol, allow_zero=True)
    base = baseline_images(batch.x, baseline, seed=seed)

    fb = target_scores(batch.prepared.logits(base), batch.targets, score).numpy().astype(np.float64)
    change = target_score(batch, score) - fb
    gap = r.sum(axis=(1, 2, 3)) - change
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(change != 0, np.abs(gap) / np.abs(np.where(change != 0, change, 1)),
                       np.where(gap == 0, 0.0, np.inf))
    ok = np.abs(gap) <= rtol * np.abs(change) + atol
    return MetricResult(rel, dict(gap=gap, change=change, complete=ok), batch.targets,
                        dict(baseline=baseline, rtol=rtol, atol=atol, score=score))


def shifted_model(model, shift):
    """A copy g of a Keras ``model`` with g(x + shift) = f(x) (Kindermans et al. 2019).

    Where the first layer with weights is a Dense or a Conv with ``padding="valid"``
    and a bias, it absorbs the shift (b' = b - W . shift, Kindermans et al.'s
    construction); otherwise (e.g. "same" padding, whose zero border would see the
    shift) the shift is undone by a ``Rescaling(1, offset=-shift)`` input layer in
    front of the model.  ``shift``: a number or a per-channel vector."""
    first = [lay for lay in model.layers if lay.weights]
    layer = first[0] if first else None
    kind = type(layer).__name__
    exact = kind in ("Dense", "Conv1D", "Conv2D", "Conv3D") and (kind == "Dense" or layer.padding == "valid") and \
        getattr(layer, "use_bias", False)
    if not exact:
        inp = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
        offset = -np.asarray(shift, np.float64)
        offset = float(offset) if offset.ndim == 0 else offset.tolist()
        return keras.Model(inp, model(keras.layers.Rescaling(1.0, offset=offset, name="input_shift")(inp)),
                           name=f"{model.name}_shifted")
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    lc = copy.get_layer(layer.name)
    kernel, bias = [np.asarray(v) for v in lc.get_weights()[:2]]
    in_ch = kernel.shape[-2]
    s = np.broadcast_to(np.asarray(shift, np.float64).reshape(-1), (in_ch,)) if np.ndim(shift) else \
        np.full(in_ch, float(shift))
    if kind == "Dense":
        # a Flatten before the Dense: the shift repeats per pixel with the channels innermost
        c = model.inputs[0].shape[-1]
        sv = np.tile(np.broadcast_to(np.asarray(shift, np.float64).reshape(-1), (c,)), in_ch // c) \
            if in_ch % c == 0 else s
        delta = sv @ kernel.astype(np.float64)
    else:
        delta = np.einsum("...io,i->o", kernel.astype(np.float64), s)
    lc.set_weights([kernel, (bias - delta).astype(bias.dtype)] + lc.get_weights()[2:])
    return copy


def input_invariance(model, x, relevance, target=None, *, method, params=None, shift=-1.0, rtol=1e-4, atol=1e-6,
                     batch_size=None):
    """Input invariance (Kindermans, Hooker, Adebayo, Alber, Schuett, Daehne, Erhan,
    Kim, "The (Un)reliability of Saliency Methods", 2019): the input is shifted by a
    constant, x2 = x + ``shift``, and the model g = :func:`shifted_model` has its
    first bias corrected so that g(x2) = f(x); an input-invariant method explains g
    at x2 with the same map as f at x:

        d = || R_g(x2) - R_f(x) ||_1 / || R_f(x) ||_1,  invariant = allclose(rtol, atol).

    ``.score`` is d (0 is invariant; lower is better), ``.invariant`` (N,) bool.
    ``method``: a method name with ``params`` (built on both models), or a callable
    ``fn(model, x, targets) -> maps``."""
    batch, r = _setup(model, x, relevance, target)
    g = shifted_model(batch.prepared.model, shift)
    explain = explainer(method, g, params) if not hasattr(method, "analyze") else None
    if explain is None:
        raise TypeError("input_invariance explains a second model: pass the method's name (and params) or a "
                        "callable fn(model, x, targets) -> maps, not a built Method")
    x2 = (batch.x + np.asarray(shift, batch.x.dtype)).astype(batch.x.dtype)
    r2 = explain_copies(explain, x2[:, None], batch.targets, batch_size)[:, 0]
    r2 = np.broadcast_to(r2, r.shape) if r2.shape != r.shape else r2
    num = np.abs(r2 - r).reshape(batch.n, -1).sum(1)
    den = np.abs(r).reshape(batch.n, -1).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(den > 0, num / np.where(den > 0, den, 1), np.where(num == 0, 0.0, np.inf))
    ok = np.all(np.isclose(r2, r, rtol=rtol, atol=atol).reshape(batch.n, -1), axis=1)
    return MetricResult(d, dict(invariant=ok, maps=r2), batch.targets, dict(shift=shift, rtol=rtol, atol=atol))


def non_sensitivity(model, x, relevance, target=None, *, features_in_step=None, n_samples=10, eps=1e-5,
                    value_range=None, score="softmax", seed=0, batch_size=256):
    """Non-sensitivity (Nguyen, Martinez, "On quantitative aspects of model
    interpretability", 2020): features the map calls irrelevant must not move the
    output, and vice versa.

    The channel x pixel features, ranked by increasing |R| (ties: lower index first),
    are taken ``features_in_step`` at a time (default ceil(F / 100): 100 groups;
    Quantus's default is 1, F groups, i.e. F x n_samples forward passes per image); each group alone is replaced
    ``n_samples`` times by uniform noise in the sample's [min, max] (``value_range``;
    fields from ``seed``) and v = the variance of the target's score over the draws
    is given to every feature of the group.  With Z_R = {j : |R_j| < eps} and
    Z_f = {j : v_j < eps},

        NS = |Z_R symmetric-difference Z_f|     (lower is better; 0: agree everywhere).

    Quantus 0.6.0 perturbs groups in index order (not by attribution) and mixes
    arrays of different shapes when ``features_in_step > 1``."""
    batch, r = _setup(model, x, relevance, target)
    n, h, w, c = batch.x.shape
    f_all = h * w * c
    step = -(-f_all // 100) if features_in_step is None else features_in_step
    step = check_int("features_in_step", step, 1, f_all)
    n_samples = check_int("n_samples", n_samples, 2)
    eps = check_positive("eps", eps, allow_zero=True)
    ra = np.abs(r.reshape(n, -1))
    order = np.argsort(ra, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(f_all), ranks.shape), axis=1)
    group = (ranks // step).astype(np.int32)
    n_groups = -(-f_all // step)
    u = np.random.default_rng(seed).random((n_samples,) + batch.x.shape[1:])
    lo, hi = value_range_bounds(batch.x, value_range)
    gk = np.repeat(np.arange(n_groups, dtype=np.int32), n_samples)
    f = score_keyed(batch, group.reshape(n, h, w, c), gk, gk + 1, fill=u, fill_per_copy=True, fill_range=(lo, hi),
                    fill_rows=np.tile(np.arange(n_samples), n_groups), score=score,
                    batch_size=batch_size).reshape(n, n_groups, n_samples)
    var = f.var(axis=2)  # (N, groups)
    v = np.take_along_axis(var, group, axis=1)  # per feature
    zr, zf = ra < eps, v < eps
    out = (zr ^ zf).sum(1).astype(np.float64)
    return MetricResult(out, dict(variance=v.reshape(r.shape), zero_relevance=zr.sum(1), zero_effect=zf.sum(1)),
                        batch.targets, dict(features_in_step=step, n_samples=n_samples, eps=eps, score=score,
                                            seed=seed))
