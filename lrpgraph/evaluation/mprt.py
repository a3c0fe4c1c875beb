"""Randomisation metrics beside the cascading/independent model randomisation of
:mod:`lrpgraph.evaluation.randomisation`: smooth MPRT, efficient MPRT, random logit.

The model is never modified: a copy (``keras.models.clone_model`` +
``set_weights``, so the copy starts with the trained weights -- Quantus 0.6.0's
TensorFlow path re-initialises every layer of its clone before the first step) has
its layers re-initialised by :func:`lrpgraph.evaluation.randomisation.randomise_layer`.
``method``: a method name with ``params`` (built once per model), or
``fn(model, x, targets) -> maps``.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from .common import check_images, check_relevance
from .copies import MetricResult, check_int, check_positive, explain_copies, explainer
from .randomisation import randomisable_layers, randomise_layer, similarities

__all__ = ["smooth_mprt", "efficient_mprt", "random_logit", "randomised_copy", "discrete_entropy"]


def randomised_copy(model, layers=None, seed=0):
    """A copy of the Keras ``model`` with ``layers`` (default every layer with weights)
    re-initialised, layer l of the cascade with seed ``seed + 1000 * l`` (the seeds of
    :func:`model_randomisation`'s last step)."""
    names = randomisable_layers(model) if layers is None else list(layers)
    known = {lay.name for lay in model.layers}
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise ValueError(f"unknown layer(s) {bad}; the model's layers with weights are {randomisable_layers(model)}")
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for step, name in enumerate(names):
        randomise_layer(copy.get_layer(name), seed + 1000 * step)
    return copy, names


def _check_rebuildable(method):
    if hasattr(method, "analyze"):
        raise TypeError("this metric explains a randomised copy of the model: pass the method's name (and params) "
                        "or a callable fn(model, x, targets) -> maps, not a Method built on the original model")


def _explain_quiet(explain, x, targets, batch_size):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-zero maps of a randomised model: NaN similarity
        return np.asarray(explain(x, targets, batch_size), np.float64)


def smooth_mprt(model, x, relevance=None, target=None, *, method, params=None, layers=None, n=20,
                noise_magnitude=0.1, seed=0, batch_size=None):
    """Smooth MPRT (Hedstroem, Weber, Bareeva, Motzkus, Samek, Lapuschkin, Hoehne,
    "Sanity Checks Revisited: An Exploration to Repair the Model Parameter
    Randomisation Test", XAI in Action workshop, NeurIPS 2023).

    Both the model's and the fully randomised copy's maps are denoised by averaging
    over ``n`` noisy inputs, ê(x) = 1/n sum_s e(x + d_s), d_s ~ N(0, sigma_i^2) with
    sigma_i = ``noise_magnitude`` * (max x_i - min x_i) (fields from ``seed``, shared
    by the samples; all n*N copies in one batched call per model), and compared by
    the Spearman rank correlation of |ê| (``.score``; lower is better: the map
    depends on the parameters).  ``.similarity``: every similarity of
    :func:`similarities`.  ``relevance`` is not used (the denoised original map is
    recomputed); it is checked for shape."""
    x = x[0] if isinstance(x, (list, tuple)) and len(x) == 1 else x
    batch = check_images(model, x, target)
    if relevance is not None:
        check_relevance(relevance, batch.x)
    _check_rebuildable(method)
    n = check_int("n", n, 1)
    noise_magnitude = check_positive("noise_magnitude", noise_magnitude, allow_zero=True)
    keras_model = batch.prepared.model
    copy, names = randomised_copy(keras_model, layers, seed)
    span = (batch.x.max(axis=(1, 2, 3)) - batch.x.min(axis=(1, 2, 3))).astype(np.float64)
    z = np.random.default_rng(seed).standard_normal((n,) + batch.x.shape[1:])
    copies = (batch.x[:, None] + (noise_magnitude * span[:, None, None, None, None] * z[None])).astype(batch.x.dtype)
    smooth = []
    for m in (batch.prepared, copy):
        explain = explainer(method, m, params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            smooth.append(explain_copies(explain, copies, batch.targets, batch_size).mean(1))
    sims = similarities(smooth[0], smooth[1])
    return MetricResult(sims["spearman_abs"], dict(similarity=sims, maps=smooth[1], original=smooth[0]),
                        batch.targets, dict(n=n, noise_magnitude=noise_magnitude, layers=names, seed=seed))


def discrete_entropy(maps, n_bins=100):
    """(N,) Shannon entropy (nats) of the histogram of |R| over ``n_bins`` equal bins
    between 0 and the map's max |R| (an all-zero map: 0)."""
    a = np.abs(np.asarray(maps, np.float64).reshape(len(maps), -1))
    out = np.zeros(len(a))
    for i, ai in enumerate(a):
        top = ai.max()
        if top == 0:
            continue
        hist, _ = np.histogram(ai, bins=n_bins, range=(0.0, top))
        p = hist[hist > 0] / hist.sum()
        out[i] = -(p * np.log(p)).sum()
    return out


def efficient_mprt(model, x, relevance=None, target=None, *, method, params=None, layers=None, n_bins=100, seed=0,
                   batch_size=None):
    """Efficient MPRT (Hedstroem et al., NeurIPS 2023 workshop, as :func:`smooth_mprt`):
    the relative rise in the map's complexity when every layer is randomised,

        eMPRT = (H(e_random) - H(e)) / H(e),

    H the :func:`discrete_entropy` of |R| in ``n_bins`` bins (higher is better: the
    map of a random model is noisier).  ``relevance``: the maps of ``x`` (None:
    computed by ``method``).  ``.entropy``, ``.entropy_random`` (N,)."""
    x = x[0] if isinstance(x, (list, tuple)) and len(x) == 1 else x
    batch = check_images(model, x, target)
    _check_rebuildable(method)
    n_bins = check_int("n_bins", n_bins, 2)
    r0 = explainer(method, batch.prepared, params)(batch.x, batch.targets, batch_size) if relevance is None \
        else relevance
    check_relevance(r0, batch.x)
    copy, names = randomised_copy(batch.prepared.model, layers, seed)
    r1 = _explain_quiet(explainer(method, copy, params), batch.x, batch.targets, batch_size)
    h0, h1 = discrete_entropy(r0, n_bins), discrete_entropy(r1, n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(h0 > 0, (h1 - h0) / np.where(h0 > 0, h0, 1), np.nan)
    return MetricResult(out, dict(entropy=h0, entropy_random=h1, maps=r1), batch.targets,
                        dict(n_bins=n_bins, layers=names, seed=seed))


def random_logit(model, x, relevance=None, target=None, *, method, params=None, other=None, seed=0,
                 batch_size=None):
    """Random logit test (Sixt, Granz, Landgraf, "When Explanations Lie: Why Many
    Modified BP Attributions Fail", ICML 2020): the map of the target against the map
    of another class, drawn uniformly from the K - 1 others (``numpy.random.
    default_rng(seed)``, one draw per sample in batch order; or pass ``other`` (N,)):
    ``.score`` is the SSIM of the two signed maps, each divided by its max |R|
    (:func:`similarities`' ``"ssim"``; lower is better: a class-sensitive map
    changes with the class).  ``.other`` the classes used."""
    x = x[0] if isinstance(x, (list, tuple)) and len(x) == 1 else x
    batch = check_images(model, x, target)
    k = batch.prepared.num_classes
    if k < 2:
        raise ValueError("random_logit needs a model with at least 2 classes")
    if other is None:
        other = (batch.targets + np.random.default_rng(seed).integers(1, k, batch.n)) % k
    other = np.asarray(other).astype(np.int32).reshape(-1)
    if other.shape != (batch.n,) or np.any(other < 0) or np.any(other >= k) or np.any(other == batch.targets):
        raise ValueError(f"other must be ({batch.n},) classes in 0..{k - 1}, each different from the target")
    explain = explainer(method, batch.prepared, params)
    r0 = explain(batch.x, batch.targets, batch_size) if relevance is None else relevance
    check_relevance(r0, batch.x)
    r1 = _explain_quiet(explain, batch.x, other, batch_size)
    sims = similarities(np.asarray(r0, np.float64), r1)
    return MetricResult(sims["ssim"], dict(similarity=sims, other=other, maps=r1), batch.targets, dict(seed=seed))
