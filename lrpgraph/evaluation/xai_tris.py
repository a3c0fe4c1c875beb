"""An XAI-TRIS-style ground-truth benchmark that runs offline (issue 24 item 3).

After Clark, Wilming, Haufe, "XAI-TRIS: non-linear image benchmarks to quantify
false positive post-hoc attribution of feature importance", Machine Learning 2024:
tetromino patterns on noise backgrounds, so that the pixels that carry the class
are known exactly.  Single-channel images ``(N, S, S, 1)``, ``S = size``; a
tetromino is drawn on a grid of ``cell = S // 8`` pixel blocks.  Two classes, y in {0, 1}:

==========  ===================================================================
scenario    image x given the background eta (unit std) and the pattern mask a
==========  ===================================================================
``lin``     x = alpha * a_y + (1 - alpha) * eta; a_0 = T at the top left,
            a_1 = L at the bottom right (additive, fixed positions)
``mult``    x = (1 - alpha * a_y) * (1 + (1 - alpha) * eta): the pattern scales
            the (positive, mean 1) background down; same positions as ``lin``
``rigid``   as ``lin`` but the shape (y = 0: T, y = 1: L) sits at a random
            position and a random multiple of 90 degrees of rotation
``xor``     x = alpha * (s1 * a_T + s2 * a_L) + (1 - alpha) * eta with signs
            s1, s2 in {-1, +1}; y = 1 when s1 != s2 (the XOR of the signs), so
            neither pattern alone says anything about the class
==========  ===================================================================

The ground-truth mask is the set of pattern pixels that carry the class: a_y for
``lin``, ``mult``, ``rigid``; both patterns for ``xor``.  Backgrounds: ``white``
(iid N(0, 1)) or ``corr`` (white noise smoothed by a Gaussian of sigma = S / 8,
then rescaled to unit std; XAI-TRIS uses sigma 10 at 64 px), which puts
correlated noise, i.e. suppressor-like structure, next to the pattern.
``alpha`` (signal share) defaults to :data:`ALPHA` so that the tiny models learn.

:func:`train` fits a tiny CNN (3 conv, Flatten, Dense) and an MLP with a fixed seed
(a few seconds each on CPU); :func:`run` explains the test images with every
method of :data:`METHODS` (the LRP presets, SGLRP/CLRP, the gradient family, the
CAM family on the CNN, occlusion) plus ``random`` (uniform noise) and ``sobel``
(scikit-image's Sobel edge map of the input), scores the maps against the masks
with :mod:`.localisation` / :mod:`.localisation_metrics` (on |R| as XAI-TRIS does:
a negative-signed pattern pixel of ``xor`` is still an important pixel) and one
faithfulness metric (AOPC MoRF of region perturbation, on the signed maps), and
returns a table of means with percentile-bootstrap 95% intervals over the test
images.  ``lrpgraph benchmark xai-tris --out bench/`` runs it.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

import keras
from matplotlib.figure import Figure
from scipy.ndimage import gaussian_filter
from scipy.stats import rankdata
from skimage.filters import sobel

from ..methods.registry import create_analyzer, fill_bounds
from ..viz import save_figure
from . import localisation as L
from . import localisation_metrics as LM
from .perturbation import region_perturbation

__all__ = ["SCENARIOS", "BACKGROUNDS", "ALPHA", "EPOCHS", "SHAPES", "METHODS", "METRICS", "tetromino", "make_dataset",
           "build_model", "train", "explain", "score", "bootstrap_ci", "run", "BenchmarkTable", "figure"]

SCENARIOS = ("lin", "mult", "rigid", "xor")
BACKGROUNDS = ("white", "corr")
#: default signal share per scenario (white and correlated backgrounds alike)
ALPHA = {"lin": 0.35, "mult": 0.6, "rigid": 0.8, "xor": 0.45}
#: default training epochs per scenario (the translated/rotated shapes need more)
EPOCHS = {"lin": 8, "mult": 8, "rigid": 15, "xor": 8}
#: tetromino cell layouts (row, col) of the two shapes
SHAPES = {"T": ((0, 0), (0, 1), (0, 2), (1, 1)), "L": ((0, 0), (1, 0), (2, 0), (2, 1))}

# label -> (method name, parameters, models it applies to)
METHODS = {
    "LRP-0": ("lrp.z", {}, ("cnn", "mlp")),
    "LRP-eps": ("lrp.epsilon", {}, ("cnn", "mlp")),
    "LRP-z+": ("lrp.z_plus", {}, ("cnn", "mlp")),
    "LRP-a2b1": ("lrp.alpha_2_beta_1", {}, ("cnn", "mlp")),
    "LRP-w2": ("lrp.w_square", {}, ("cnn", "mlp")),
    "LRP-seqA-flat": ("lrp.sequential_preset_a_flat", {}, ("cnn", "mlp")),
    "EpsilonPlusFlat": ("epsilon_plus_flat", {}, ("cnn", "mlp")),
    "EpsilonGammaBox": ("epsilon_gamma_box", {}, ("cnn", "mlp")),
    "DeepTaylor-bounded": ("deep_taylor.bounded", {}, ("cnn", "mlp")),
    "SGLRP": ("sglrp", {}, ("cnn", "mlp")),
    "CLRP": ("clrp", {}, ("cnn", "mlp")),
    "Gradient": ("gradient", {}, ("cnn", "mlp")),
    "Input x Gradient": ("input_t_gradient", {}, ("cnn", "mlp")),
    "Integrated Gradients": ("integrated_gradients", {"steps": 16}, ("cnn", "mlp")),
    "SmoothGrad": ("smoothgrad", {"n": 16}, ("cnn", "mlp")),
    "Guided Backprop": ("guided_backprop", {}, ("cnn", "mlp")),
    "Deconvnet": ("deconvnet", {}, ("cnn", "mlp")),
    "Grad-CAM": ("gradcam", {"resize": True}, ("cnn",)),
    "Grad-CAM++": ("gradcampp", {"resize": True}, ("cnn",)),
    "Score-CAM": ("scorecam", {"resize": True}, ("cnn",)),
    "Guided Grad-CAM": ("guided_gradcam", {}, ("cnn",)),
    "Occlusion": ("occlusion", {}, ("cnn", "mlp")),
    "random": (None, {}, ("cnn", "mlp")),
    "sobel": (None, {}, ("cnn", "mlp")),
}

# column -> (title, better)
METRICS = {
    "mass": ("relevance mass", "higher"),
    "rank": ("relevance rank", "higher"),
    "pointing": ("pointing game", "higher"),
    "auc": ("loc. AUC", "higher"),
    "aopc": ("AOPC MoRF", "higher"),
}


def _check_choice(what, value, known):
    if value not in known:
        raise ValueError(f"unknown {what} {value!r}; known: {', '.join(known)}")


def tetromino(name, size=32, rotation=0, offset=(0, 0)):
    """Bool mask ``(size, size)`` of tetromino ``name`` ("T" or "L") drawn with square
    cells of ``size // 8`` pixels, rotated by ``rotation`` x 90 degrees inside its 3x3
    cell box, its box's top-left corner at pixel ``offset``."""
    _check_choice("tetromino", name, tuple(SHAPES))
    cell = size // 8
    if cell < 1:
        raise ValueError(f"size must be >= 8 (cells of size // 8 pixels), got {size}")
    box = np.zeros((3, 3), bool)
    for r, c in SHAPES[name]:
        box[r, c] = True
    box = np.rot90(box, int(rotation) % 4)
    big = np.kron(box, np.ones((cell, cell), bool))
    r0, c0 = int(offset[0]), int(offset[1])
    if r0 < 0 or c0 < 0 or r0 + 3 * cell > size or c0 + 3 * cell > size:
        raise ValueError(f"offset {offset} puts the tetromino's {3 * cell}-pixel box outside the {size}-pixel image")
    out = np.zeros((size, size), bool)
    out[r0:r0 + 3 * cell, c0:c0 + 3 * cell] = big
    return out


def _fixed(size):
    """The fixed positions of ``lin``/``mult``/``xor``: T at the top left, L at the bottom right."""
    cell = size // 8
    return tetromino("T", size, 0, (cell, cell)), tetromino("L", size, 0, (size - 4 * cell, size - 4 * cell))


def _background(rng, n, size, background):
    eta = rng.standard_normal((n, size, size))
    if background == "corr":
        eta = gaussian_filter(eta, sigma=(0, size / 8, size / 8), mode="wrap")
        eta /= eta.reshape(n, -1).std(axis=1)[:, None, None]
    return eta


def make_dataset(scenario, n, *, size=32, background="white", alpha=None, seed=0):
    """``{"x": (n, size, size, 1) float32, "y": (n,) int, "masks": (n, size, size) bool,
    "signs": (n, 2) (xor only, else zeros)}`` for one scenario (module docstring), classes
    balanced (y alternates 0, 1, ... before a seeded shuffle).  Same seed, same data."""
    _check_choice("scenario", scenario, SCENARIOS)
    _check_choice("background", background, BACKGROUNDS)
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    alpha = ALPHA[scenario] if alpha is None else float(alpha)
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha (the signal share) must be in (0, 1], got {alpha}")
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    eta = _background(rng, n, size, background)
    t_mask, l_mask = _fixed(size)
    signs = np.zeros((n, 2), np.int64)
    if scenario in ("lin", "mult"):
        masks = np.where(y[:, None, None] == 0, t_mask, l_mask)
        a = masks.astype(np.float64)
        x = alpha * a + (1 - alpha) * eta if scenario == "lin" else (1 - alpha * a) * (1 + (1 - alpha) * eta)
    elif scenario == "rigid":
        cell = size // 8
        masks = np.zeros((n, size, size), bool)
        for i in range(n):
            r0, c0 = rng.integers(0, size - 3 * cell + 1, size=2)
            masks[i] = tetromino("TL"[y[i]], size, rng.integers(4), (r0, c0))
        x = alpha * masks + (1 - alpha) * eta
    else:  # xor
        signs = rng.choice([-1, 1], size=(n, 2))
        # y = 1 exactly when the signs differ: flip the second sign where it disagrees with y
        signs[:, 1] = np.where((signs[:, 0] != signs[:, 1]) == (y == 1), signs[:, 1], -signs[:, 1])
        masks = np.broadcast_to(t_mask | l_mask, (n, size, size)).copy()
        x = alpha * (signs[:, :1, None] * t_mask + signs[:, 1:, None] * l_mask) + (1 - alpha) * eta
    return {"x": x[..., None].astype(np.float32), "y": y.astype(np.int64), "masks": masks, "signs": signs}


def build_model(kind, size=32, seed=0):
    """The tiny models: ``"cnn"`` (Conv 8 -> pool -> Conv 16 -> pool -> Conv 16 ->
    Flatten -> Dense 32 -> Dense 2 logits, ReLUs) or ``"mlp"`` (Flatten -> Dense 64 ->
    Dense 32 -> Dense 2).  The Flatten head (not global pooling) lets the CNN read
    where a pattern is and combine the two signs of ``xor``; the plain CAM method,
    which needs GlobalAveragePooling -> Dense, is therefore not in the table."""
    _check_choice("model", kind, ("cnn", "mlp"))
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 1))
    if kind == "cnn":
        h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
        h = keras.layers.MaxPooling2D(2)(h)
        h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(h)
        h = keras.layers.MaxPooling2D(2)(h)
        h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv3")(h)
        h = keras.layers.Flatten()(h)
        h = keras.layers.Dense(32, activation="relu")(h)
    else:
        h = keras.layers.Flatten()(inp)
        h = keras.layers.Dense(64, activation="relu")(h)
        h = keras.layers.Dense(32, activation="relu")(h)
    out = keras.layers.Dense(2, name="logits")(h)
    return keras.Model(inp, out, name=f"xai_tris_{kind}")


def train(kind, data, *, epochs=8, seed=0, batch_size=64, learning_rate=3e-3):
    """Fit :func:`build_model` ``(kind)`` on ``data`` (from :func:`make_dataset`) with Adam
    and softmax cross-entropy; returns the model (weights fixed by ``seed``, up to
    thread-order float noise)."""
    model = build_model(kind, data["x"].shape[1], seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(data["x"], data["y"], epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
    return model


def _sobel(x):
    return np.stack([sobel(img[..., 0].astype(np.float64)) for img in x])[..., None]


def explain(label, model, x, target, *, low, high, seed=0, batch_size=64):
    """The maps ``(N, S, S, 1)`` of method ``label`` (a key of :data:`METHODS`) for ``x``."""
    _check_choice("method", label, tuple(METHODS))
    name, params, _ = METHODS[label]
    if label == "random":
        return np.random.default_rng(seed).uniform(size=x.shape)
    if label == "sobel":
        return _sobel(x)
    params = dict(params)
    if name == "occlusion":
        params.setdefault("window", max(1, x.shape[1] // 8))
    analyzer = create_analyzer(name, model, **fill_bounds(name, params, low, high))
    parts = []
    for s in range(0, len(x), batch_size):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            parts.append(np.asarray(analyzer.analyze(x[s:s + batch_size], target=target[s:s + batch_size])))
    maps = np.concatenate(parts)
    if maps.shape != x.shape:
        raise ValueError(f"{label}: maps of shape {maps.shape}, expected input-sized {x.shape}")
    return maps


def score(maps, masks, *, model=None, x=None, target=None, faithfulness=True):
    """Per-sample scores ``{column: (N,)}`` of :data:`METRICS`: the localisation metrics on
    |maps| (channel summed), AOPC MoRF (region perturbation, patch S // 8, uniform
    baseline) on the signed maps when ``faithfulness`` and a model are given."""
    a = np.abs(np.asarray(maps, np.float64)).sum(-1)
    out = {"mass": L.relevance_mass(a, masks), "rank": LM.relevance_rank_accuracy(a, masks),
           "pointing": L.pointing_game(a, masks).astype(np.float64), "auc": LM.roc_auc(a, masks)}
    if faithfulness and model is not None:
        out["aopc"] = region_perturbation(model, x, maps.astype(np.float32), target,
                                          patch=max(1, x.shape[1] // 8), order="morf").aopc
    return out


def bootstrap_ci(values, *, n_boot=1000, level=0.95, seed=0):
    """(mean, low, high): the mean of ``values`` and its percentile-bootstrap interval
    (Efron & Tibshirani 1993) from ``n_boot`` resamples of the samples; NaNs dropped."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, v.size, size=(n_boot, v.size))
    means = v[idx].mean(axis=1)
    q = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, q)), float(np.quantile(means, 1 - q))


@dataclass
class BenchmarkTable:
    """``rows``: one dict per (scenario, background, model, method) with ``accuracy`` (the
    model's test accuracy) and per metric ``(mean, low, high)``; ``examples``: for the
    figure, ``{(scenario, background, model): {"x", "masks", "maps": {label: maps}}}``."""

    rows: list
    meta: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)

    def to_markdown(self, digits=2):
        """One Markdown table per (scenario, background, model), methods sorted by relevance
        mass; each cell ``mean [low, high]``; the best mean of each column in bold."""
        out = []
        keys = list(dict.fromkeys((r["scenario"], r["background"], r["model"]) for r in self.rows))
        cols = [c for c in METRICS if any(c in r for r in self.rows)]
        for key in keys:
            rows = sorted([r for r in self.rows if (r["scenario"], r["background"], r["model"]) == key],
                          key=lambda r: -r["mass"][0])
            acc = rows[0]["accuracy"]
            out.append(f"**{key[0].upper()} / {key[1]} / {key[2].upper()}** (test accuracy {acc:.3f})\n")
            out.append("| method | " + " | ".join(f"{METRICS[c][0]} {'↑' if METRICS[c][1] == 'higher' else '↓'}"
                                                   for c in cols) + " |")
            out.append("|---|" + "---:|" * len(cols))
            best = {c: max(round(r[c][0], digits) for r in rows if np.isfinite(r[c][0])) for c in cols}
            for r in rows:
                cells = []
                for c in cols:
                    m, lo, hi = r[c]
                    txt = f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
                    cells.append(f"**{txt}**" if round(m, digits) == best[c] else txt)
                out.append(f"| {r['method']} | " + " | ".join(cells) + " |")
            out.append("")
        return "\n".join(out)

    def ranking_markdown(self, metric="mass", digits=2):
        """The ranking table of one metric: a row per method, a column per (scenario,
        background, model) with ``mean [low, high]``, and the method's mean rank over the
        columns (1 = best; ties share the mean rank); rows sorted by mean rank."""
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        keys = list(dict.fromkeys((r["scenario"], r["background"], r["model"]) for r in self.rows))
        labels = list(dict.fromkeys(r["method"] for r in self.rows))
        cell = {(r["scenario"], r["background"], r["model"], r["method"]): r[metric] for r in self.rows if metric in r}
        if not cell:
            raise ValueError(f"the table has no {metric!r} column (run with faithfulness=True for 'aopc')")
        ranks = {m: [] for m in labels}
        for k in keys:
            present = [m for m in labels if k + (m,) in cell and np.isfinite(cell[k + (m,)][0])]
            sign = -1 if METRICS[metric][1] == "higher" else 1
            for m, rk in zip(present, rankdata([sign * cell[k + (m,)][0] for m in present])):
                ranks[m].append(rk)
        order = sorted(labels, key=lambda m: np.mean(ranks[m]) if ranks[m] else np.inf)
        head = "| method | mean rank | " + " | ".join(f"{s.upper()}/{b}/{m.upper()}" for s, b, m in keys) + " |"
        lines = [head, "|---|---:|" + "---:|" * len(keys)]
        for m in order:
            cells = []
            for k in keys:
                v = cell.get(k + (m,))
                cells.append("–" if v is None else f"{v[0]:.{digits}f} [{v[1]:.{digits}f}, {v[2]:.{digits}f}]")
            mr = f"{np.mean(ranks[m]):.1f}" if ranks[m] else "–"
            lines.append(f"| {m} | {mr} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def mean_ranks(self, metric):
        """``{method: mean rank}`` over the (scenario, background, model) columns where the
        method has a finite value (1 = best; ties share the mean rank)."""
        keys = list(dict.fromkeys((r["scenario"], r["background"], r["model"]) for r in self.rows))
        cell = {(r["scenario"], r["background"], r["model"], r["method"]): r[metric][0]
                for r in self.rows if metric in r and np.isfinite(r[metric][0])}
        sign = -1 if METRICS[metric][1] == "higher" else 1
        ranks = {}
        for k in keys:
            present = [m for (*kk, m) in cell if tuple(kk) == k]
            for m, rk in zip(present, rankdata([sign * cell[k + (m,)] for m in present])):
                ranks.setdefault(m, []).append(rk)
        return {m: float(np.mean(v)) for m, v in ranks.items()}

    def summary_markdown(self, sort_by="mass"):
        """One row per method, its mean rank by every metric of the table (1 = best),
        sorted by ``sort_by``'s; the number of columns each method was ranked in."""
        cols = [c for c in METRICS if any(c in r for r in self.rows)]
        mr = {c: self.mean_ranks(c) for c in cols}
        n = {}
        for r in self.rows:
            n[r["method"]] = n.get(r["method"], 0) + 1
        order = sorted(mr[sort_by], key=mr[sort_by].get)
        lines = ["| method | columns | " + " | ".join(f"rank by {METRICS[c][0]}" for c in cols) + " |",
                 "|---|---:|" + "---:|" * len(cols)]
        for m in order:
            lines.append(f"| {m} | {n[m]} | " + " | ".join(f"{mr[c].get(m, float('nan')):.1f}" for c in cols) + " |")
        return "\n".join(lines)

    @classmethod
    def from_csv(cls, path):
        """Read a table written by :meth:`to_csv` back (rows and the accuracies; no examples)."""
        with open(path) as f:
            head, *body = [line.rstrip("\n").split(",") for line in f if line.strip()]
        cols = [c for c in head[5::3]]
        rows = []
        for vals in body:
            r = {"scenario": vals[0], "background": vals[1], "model": vals[2], "accuracy": float(vals[3]),
                 "method": vals[4]}
            for i, c in enumerate(cols):
                r[c] = tuple(float(v) for v in vals[5 + 3 * i:8 + 3 * i])
            rows.append(r)
        return cls(rows)

    def to_csv(self, path=None):
        """The rows as CSV (mean, low, high per metric); written to ``path`` when given."""
        cols = [c for c in METRICS if any(c in r for r in self.rows)]
        head = ["scenario", "background", "model", "accuracy", "method"] + [f"{c}{s}" for c in cols
                                                                            for s in ("", "_low", "_high")]
        lines = [",".join(head)]
        for r in self.rows:
            vals = [r["scenario"], r["background"], r["model"], f"{r['accuracy']:.4f}", r["method"]]
            vals += [f"{v:.6g}" for c in cols for v in r[c]]
            lines.append(",".join(vals))
        text = "\n".join(lines) + "\n"
        if path is not None:
            with open(path, "w") as f:
                f.write(text)
        return text


def run(*, scenarios=SCENARIOS, backgrounds=("white",), models=("cnn", "mlp"), methods=None, n_train=2000,
        n_test=100, size=32, epochs=None, seed=0, faithfulness=True, n_boot=1000, log=None):
    """The whole benchmark: per (scenario, background) a training and a test set (seeds
    ``seed`` and ``seed + 1``), per model kind a trained model, per method the maps of
    the test images for their true class, scored and bootstrapped.  ``epochs``: None for
    :data:`EPOCHS` of each scenario.  ``methods``: labels
    of :data:`METHODS` (default all; those not for a model kind are skipped there).
    ``log``: a callable taking a line of progress text."""
    for s in scenarios:
        _check_choice("scenario", s, SCENARIOS)
    for b in backgrounds:
        _check_choice("background", b, BACKGROUNDS)
    for m in models:
        _check_choice("model", m, ("cnn", "mlp"))
    labels = list(METHODS) if methods is None else list(methods)
    for m in labels:
        _check_choice("method", m, tuple(METHODS))
    log = log or (lambda line: None)
    rows, examples = [], {}
    for scen in scenarios:
        for bg in backgrounds:
            tr = make_dataset(scen, n_train, size=size, background=bg, seed=seed)
            te = make_dataset(scen, n_test, size=size, background=bg, seed=seed + 1)
            low, high = float(min(tr["x"].min(), te["x"].min())), float(max(tr["x"].max(), te["x"].max()))
            for kind in models:
                t0 = time.perf_counter()
                model = train(kind, tr, epochs=EPOCHS[scen] if epochs is None else epochs, seed=seed)
                logits = model.predict(te["x"], verbose=0)
                acc = float((logits.argmax(1) == te["y"]).mean())
                log(f"{scen}/{bg}/{kind}: test accuracy {acc:.3f} (trained in {time.perf_counter() - t0:.1f} s)")
                ex = {"x": te["x"][:4], "masks": te["masks"][:4], "y": te["y"][:4], "maps": {}}
                for label in labels:
                    if kind not in METHODS[label][2]:
                        continue
                    t0 = time.perf_counter()
                    maps = explain(label, model, te["x"], te["y"], low=low, high=high, seed=seed)
                    sc = score(maps, te["masks"], model=model, x=te["x"], target=te["y"],
                               faithfulness=faithfulness)
                    row = {"scenario": scen, "background": bg, "model": kind, "method": label, "accuracy": acc}
                    for c, v in sc.items():
                        row[c] = bootstrap_ci(v, n_boot=n_boot, seed=seed)
                    rows.append(row)
                    ex["maps"][label] = maps[:4]
                    log(f"  {label}: mass {row['mass'][0]:.3f} ({time.perf_counter() - t0:.1f} s)")
                examples[(scen, bg, kind)] = ex
    meta = dict(scenarios=list(scenarios), backgrounds=list(backgrounds), models=list(models), methods=labels,
                n_train=n_train, n_test=n_test, size=size, epochs=epochs, seed=seed, n_boot=n_boot)
    return BenchmarkTable(rows, meta, examples)


def figure(table, path, *, methods=("LRP-eps", "Gradient", "Grad-CAM", "sobel"), model="cnn", background=None):
    """A PNG: per scenario one example input, its ground truth and ``methods``' |maps|
    (the first test image of class 1) on ``model``."""
    keys = [k for k in table.examples if k[2] == model and (background is None or k[1] == background)]
    if not keys:
        raise ValueError(f"no examples for model {model!r} in the table")
    methods = [m for m in methods if any(m in table.examples[k]["maps"] for k in keys)]
    fig = Figure(figsize=(1.9 * (2 + len(methods)), 1.9 * len(keys)))
    axes = fig.subplots(len(keys), 2 + len(methods), squeeze=False)
    for i, k in enumerate(keys):
        ex = table.examples[k]
        j = int(np.argmax(ex["y"] == 1)) if (ex["y"] == 1).any() else 0
        v = np.abs(ex["x"][j, ..., 0]).max()
        axes[i, 0].imshow(ex["x"][j, ..., 0], cmap="gray", vmin=-v, vmax=v)
        axes[i, 0].set_ylabel(f"{k[0].upper()}/{k[1]}", fontsize=8)
        axes[i, 1].imshow(ex["masks"][j], cmap="gray")
        for c, m in enumerate(methods):
            ax = axes[i, 2 + c]
            if m in ex["maps"]:
                ax.imshow(np.abs(ex["maps"][m][j]).sum(-1), cmap="hot")
        for c, t in enumerate(["input", "ground truth"] + list(methods)):
            if i == 0:
                axes[i, c].set_title(t, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)
