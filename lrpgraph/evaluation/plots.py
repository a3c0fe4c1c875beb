"""Figures of an :class:`lrpgraph.evaluation.EvaluationTable`: perturbation curves per
method (mean and spread), the AOPC bar chart and the randomisation similarity
curves.  Like :mod:`lrpgraph.viz`, explicit :class:`matplotlib.figure.Figure`
objects (never pyplot); :func:`save_figures` writes PNGs with
:func:`lrpgraph.viz.save_figure`."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ..viz import save_figure

__all__ = ["perturbation_curves", "aopc_bar", "randomisation_curves", "save_figures"]

_LABELS = {"aopc_morf": "region perturbation, MoRF", "aopc_lerf": "region perturbation, LeRF",
           "deletion": "deletion", "insertion": "insertion"}


def _colours(n):
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def perturbation_curves(table, metric, spread="std", figsize=(6.0, 4.0)):
    """One line per method: the mean curve of ``metric`` over the samples, with a band
    of +- one standard deviation (``spread="std"``), the interquartile range
    (``"iqr"``) or none (None).  x axis: the replaced (inserted) fraction of regions."""
    labels = [lab for lab in table.columns["method"] if metric in table.curves.get(lab, {})]
    if not labels:
        raise ValueError(f"the table has no curves of {metric!r}; curves: "
                         f"{sorted({m for c in table.curves.values() for m in c})}")
    fig = Figure(figsize=figsize)
    ax = fig.add_subplot(1, 1, 1)
    for lab, col in zip(labels, _colours(len(labels))):
        res = table.curves[lab][metric]
        c, fr = res.curve, res.fractions
        ax.plot(fr, c.mean(axis=0), color=col, label=str(lab), lw=1.5)
        if spread == "std":
            lo, hi = c.mean(0) - c.std(0), c.mean(0) + c.std(0)
        elif spread == "iqr":
            lo, hi = np.percentile(c, 25, axis=0), np.percentile(c, 75, axis=0)
        elif spread is None:
            continue
        else:
            raise ValueError(f"spread must be 'std', 'iqr' or None, got {spread!r}")
        ax.fill_between(fr, lo, hi, color=col, alpha=0.15, lw=0)
    first = table.curves[labels[0]][metric]
    score = first.params.get("score", "logit")
    ax.set_xlabel("fraction of regions " + ("inserted" if metric == "insertion" else "replaced"))
    ax.set_ylabel(f"target {'probability' if score == 'softmax' else 'logit'}")
    ax.set_title(f"{_LABELS.get(metric, metric)} (mean, band: {spread}; {first.curve.shape[0]} images)")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return fig


def aopc_bar(table, columns=None, figsize=None):
    """Grouped bars: one group per method, one bar per column (default the AOPC
    columns present), error bars = standard deviation over the samples."""
    cols = [c for c in (columns or ("aopc_morf", "aopc_lerf")) if c in table.columns]
    if not cols:
        raise ValueError("the table has no AOPC column; evaluate with metrics=['aopc']")
    labels = [str(lab) for lab in table.columns["method"]]
    fig = Figure(figsize=figsize or (max(5.0, 0.7 * len(labels) + 2), 4.0))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(cols)
    pos = np.arange(len(labels))
    for j, (c, col) in enumerate(zip(cols, _colours(len(cols)))):
        ax.bar(pos + (j - (len(cols) - 1) / 2) * width, table.columns[c], width, yerr=table.columns[c + "_std"],
               color=col, label=c, capsize=2, error_kw={"lw": 0.7})
    ax.set_xticks(pos)
    ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("AOPC")
    ax.set_title("AOPC per method (MoRF: higher is better, LeRF: lower)")
    ax.legend(fontsize=8)
    return fig


def randomisation_curves(table, similarities=("spearman_abs", "ssim_abs"), figsize=None):
    """One panel per similarity: the mean similarity to the original map (+- std) after
    each step of the cascading randomisation (x axis: the layers, from the logits
    down), one line per method."""
    if not table.randomisation:
        raise ValueError("the table has no randomisation results; evaluate with metrics=['randomisation']")
    fig = Figure(figsize=figsize or (5.0 * len(similarities), 4.0))
    labels = list(table.randomisation)
    for k, s in enumerate(similarities):
        ax = fig.add_subplot(1, len(similarities), k + 1)
        for lab, col in zip(labels, _colours(len(labels))):
            res = table.randomisation[lab]
            v = res.similarity[s]
            x = np.arange(v.shape[1] + 1)
            mean = np.concatenate([[1.0], np.nanmean(v, axis=0)])
            std = np.concatenate([[0.0], np.nanstd(v, axis=0)])
            ax.plot(x, mean, marker="o", ms=3, color=col, label=str(lab), lw=1.3)
            ax.fill_between(x, mean - std, mean + std, color=col, alpha=0.12, lw=0)
        layers = ["original"] + list(table.randomisation[labels[0]].layers)
        ax.set_xticks(np.arange(len(layers)))
        ax.set_xticklabels(layers, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(f"similarity ({s})")
        ax.set_title(f"cascading randomisation: {s}")
        ax.axhline(0, color="k", lw=0.6)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def save_figures(table, out_dir, dpi=110):
    """Write every figure the table supports to ``out_dir``: ``curves_<metric>.png``
    per curve metric, ``aopc.png``, ``randomisation.png``.  Returns the paths."""
    out_dir = Path(out_dir)
    paths = []
    metrics = [m for m in table.params.get("metrics", []) if any(m in c for c in table.curves.values())]
    for m in metrics:
        paths.append(save_figure(perturbation_curves(table, m), out_dir / f"curves_{m}.png", dpi=dpi))
    if "aopc_morf" in table.columns or "aopc_lerf" in table.columns:
        paths.append(save_figure(aopc_bar(table), out_dir / "aopc.png", dpi=dpi))
    if table.randomisation:
        paths.append(save_figure(randomisation_curves(table), out_dir / "randomisation.png", dpi=dpi))
    return paths
