"""The two-object localisation benchmark (offline): does an explanation separate
the target object from the other object of the scene?  (Not a speed benchmark:
those live in benchmarks/.)

Each scene holds two objects of different classes with their masks
(:func:`lrpgraph.evaluation.synthetic.two_object_scenes`, or any data set of that form).  Every
method explains the scene twice, once with each object's class as the target,
and every map is scored with the metrics of :mod:`lrpgraph.evaluation.localisation`:

=============  =========================================================  ======
column         per map                                                    better
=============  =========================================================  ======
``mass``       relevance mass: share of the positive relevance inside     higher
               the target's mask (Arras et al. 2022)
``pointing``   pointing game: the largest value lies in the target's      higher
               mask (Zhang et al. 2016)
``neg_other``  share of the negative relevance that lies on the OTHER     higher
               object (SGLRP's claim: evidence against the target sits
               on the competing object; Iwana et al. 2019)
``pos_other``  share of the positive relevance on the other object        lower
``zero``       the map is all zero (e.g. the original code's output       -
               ReLU gates a target whose logit is <= 0)
=============  =========================================================  ======

The table is the mean of each column over all (scene, target) pairs.

Usage::

    from lrpgraph.evaluation import synthetic, two_object
    scenes = synthetic.two_object_scenes(100, seed=12345)
    result = two_object.evaluate(two_object.paper_methods(model, low=0, high=1),
                                 scenes["x"], scenes["classes"], scenes["masks"])
    print(two_object.to_markdown(result))

The functions work on any model and data set with this layout; nothing here
knows about the shapes classes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..engine.prepared import prepare
from ..methods.registry import create_analyzer, fill_bounds
from . import localisation as M

__all__ = ["PAPER_METHODS", "METRICS", "paper_methods", "evaluate", "BenchmarkResult", "summarize",
           "to_markdown"]

# label -> (method name, extra parameters); low/high are added where the method takes them
PAPER_METHODS = {
    "LRP": ("lrp", {}),
    "CLRP": ("clrp", {}),
    "SGLRP": ("sglrp", {}),
    "SGLRPSeqA": ("sglrp_seq_a", {}),
    "SGLRPSeqB": ("sglrp_seq_b", {}),
    "Grad-CAM": ("gradcam", {"resize": True}),
    "Guided Grad-CAM": ("guided_gradcam", {}),
    "Gradient": ("gradient", {}),
    "Integrated gradients": ("integrated_gradients", {"steps": 32}),
}

METRICS = {
    "mass": ("mass in target", "higher"),
    "pointing": ("pointing game", "higher"),
    "neg_other": ("neg. share on other", "higher"),
    "pos_other": ("pos. share on other", "lower"),
    "zero": ("all-zero maps", None),
}


def paper_methods(model, low=0.0, high=1.0, methods=None, **overrides):
    """The benchmark's analyzers, ``{label: analyzer}``, in :data:`PAPER_METHODS` order.

    ``low``/``high`` are the bounds of the model input used by bounded Deep Taylor
    (the SGLRP code's LRP, CLRP and SGLRP): the shipped shapes model reads pixels
    in [0, 1], VGG16 with caffe preprocessing -123.68 / 151.061.  ``methods``
    picks labels (default: all).  ``overrides`` maps a label to a dict of extra
    parameters for that method (e.g. ``{"Grad-CAM": {"layer": "block3_conv2"}}``).
    """
    labels = list(PAPER_METHODS) if methods is None else list(methods)
    unknown = [m for m in labels if m not in PAPER_METHODS]
    if unknown:
        raise ValueError(f"unknown benchmark method(s) {unknown}; known: {list(PAPER_METHODS)}")
    out = {}
    for label in labels:
        name, params = PAPER_METHODS[label]
        params = fill_bounds(name, dict(params, **overrides.get(label, {})), low, high)
        out[label] = create_analyzer(name, model, **params)
    return out


@dataclass
class BenchmarkResult:
    """Per-(scene, target) scores: ``scores[label][metric]`` is an ``(N, 2)`` array
    (column k: object k of the scene as the target); ``target_logits`` the logits of
    the two objects' classes, ``(N, 2)``; ``top2`` whether the model's two largest
    logits are exactly the two objects, ``(N,)``."""

    scores: dict
    target_logits: np.ndarray
    top2: np.ndarray
    n_scenes: int
    meta: dict = field(default_factory=dict)


def _check_scenes(x, classes, masks):
    x, classes, masks = np.asarray(x), np.asarray(classes), np.asarray(masks)
    if x.ndim < 3:
        raise ValueError(f"x must be a batch of images (N, H, W[, C]), got shape {x.shape}")
    n = x.shape[0]
    if classes.shape != (n, 2):
        raise ValueError(f"classes must be (N, 2) = ({n}, 2): the two objects' classes per scene; got "
                         f"{classes.shape}")
    if masks.shape[:2] != (n, 2) or masks.ndim != 4:
        raise ValueError(f"masks must be (N, 2, H, W) with N = {n}: one mask per object; got {masks.shape}")
    if np.any(classes[:, 0] == classes[:, 1]):
        raise ValueError("each scene needs two objects of different classes (classes[:, 0] != classes[:, 1])")
    return x.astype(np.float32, copy=False), classes.astype(np.int64), masks.astype(bool)


def evaluate(analyzers, x, classes, masks, *, batch_size=32):
    """Score every analyzer on every (scene, target) pair.

    Parameters
    ----------
    analyzers : dict
        ``{label: object with analyze(x, target)}`` (Analyzer, CAM or wrapper).
    x : array (N, H, W, C)
        The scenes, already preprocessed for the model.
    classes : int array (N, 2)
        The classes of the two objects of each scene.
    masks : bool array (N, 2, H, W)
        ``masks[i, k]``: the pixels of object k of scene i.
    batch_size : int
        Scenes per analysis call (each call explains both targets at once).

    Returns
    -------
    BenchmarkResult
    """
    x, classes, masks = _check_scenes(x, classes, masks)
    if not analyzers:
        raise ValueError("analyzers is empty: pass {label: analyzer}, e.g. two_object.paper_methods(model)")
    n = len(x)
    first = next(iter(analyzers.values()))
    logits = prepare(first.model).logits(x)
    target_logits = np.take_along_axis(logits, classes, axis=1)
    top2 = np.sort(np.argsort(-logits, axis=1)[:, :2], axis=1) == np.sort(classes, axis=1)
    scores = {}
    for label, analyzer in analyzers.items():
        parts = []
        for s in range(0, n, batch_size):
            with warnings.catch_warnings():
                # gated targets (logit <= 0) are counted in the "zero" column instead
                warnings.simplefilter("ignore", RuntimeWarning)
                parts.append(np.asarray(analyzer.analyze(x[s:s + batch_size], target=classes[s:s + batch_size])))
        maps = np.concatenate(parts, axis=0)  # (N, 2, H, W, C)
        if maps.shape[:2] != (n, 2) or maps.shape[2:4] != masks.shape[2:]:
            raise ValueError(f"{label}: maps of shape {maps.shape} do not match the masks {masks.shape}; "
                             "the benchmark needs input-sized maps (CAM methods: resize=True)")
        s = {k: np.zeros((n, 2)) for k in METRICS}
        for k in (0, 1):
            m = maps[:, k]
            s["mass"][:, k] = M.relevance_mass(m, masks[:, k])
            s["pointing"][:, k] = M.pointing_game(m, masks[:, k])
            s["neg_other"][:, k] = M.negative_share(m, masks[:, 1 - k])
            s["pos_other"][:, k] = M.relevance_mass(m, masks[:, 1 - k])
            s["zero"][:, k] = ~np.any(m.reshape(n, -1) != 0, axis=1)
        scores[label] = s
    return BenchmarkResult(scores, target_logits, top2.all(axis=1), n)


def summarize(result, where=None):
    """``{label: {metric: mean}}`` over the (scene, target) pairs; ``where`` is an
    optional bool ``(N, 2)`` (or ``(N,)`` per scene) selection."""
    out = {}
    for label, s in result.scores.items():
        sel = np.ones((result.n_scenes, 2), bool) if where is None else np.broadcast_to(
            np.asarray(where, bool).reshape(result.n_scenes, -1), (result.n_scenes, 2))
        if not sel.any():
            raise ValueError("the selection `where` is empty")
        out[label] = {k: float(v[sel].mean()) for k, v in s.items()}
    return out


def to_markdown(result, where=None, digits=3):
    """The mean table as GitHub markdown (one row per method, best value of each
    scored column in bold)."""
    table = summarize(result, where)
    cols = list(METRICS)
    head = "| method | " + " | ".join(
        f"{METRICS[c][0]} {'↑' if METRICS[c][1] == 'higher' else '↓' if METRICS[c][1] == 'lower' else ''}".strip()
        for c in cols) + " |"
    lines = [head, "|---|" + "---:|" * len(cols)]
    best = {}
    for c in cols:
        if METRICS[c][1] is None:
            continue
        vals = [round(t[c], digits) for t in table.values()]
        best[c] = max(vals) if METRICS[c][1] == "higher" else min(vals)
    for label, t in table.items():
        cells = []
        for c in cols:
            v = round(t[c], digits)
            txt = f"{v:.{digits}f}"
            cells.append(f"**{txt}**" if best.get(c) == v else txt)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
