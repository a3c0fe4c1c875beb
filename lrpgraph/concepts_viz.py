"""Pictures of concepts: the concept atlas, the per-prediction panel and the
attribution graph drawn (matplotlib Figures, never pyplot; save with
:func:`lrpgraph.viz.save_figure`).

* :func:`concept_atlas`: for chosen channels of a layer, one row each: every
  reference sample cropped to its receptive-field box, its conditional heatmap
  (same crop) beside it;
* :func:`prediction_panel`: the top concepts of one prediction, one row each: the
  concept's share of the relevance at the layer, its conditional heatmap over the
  input, and its reference samples (cropped);
* :func:`draw_attribution_graph`: the networkx graph of
  :func:`lrpgraph.concepts.attribution_graph`, layers as columns, edge widths by share.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .concepts import read_samples
from .data.sources import make_source
from .viz import heatmap_rgb

__all__ = ["concept_atlas", "prediction_panel", "draw_attribution_graph", "reference_inputs"]


def _display(img):
    """(H, W, 3) in [0, 1] for imshow: min-max over the image (a constant one is grey)."""
    a = np.asarray(img, np.float64)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    lo, hi = a.min(), a.max()
    return np.full_like(a, 0.5) if hi <= lo else (a - lo) / (hi - lo)


def _crop(a, box):
    y0, x0, y1, x1 = (int(v) for v in box)
    return a[y0:y1, x0:x1]


def _axis(ax, img, title=None):
    ax.imshow(img, interpolation="none")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def reference_inputs(refs, data, prepared, batch_size=32, channels=None, **source_options):
    """{dataset index: (x, label)} of the reference samples of ``channels`` (default
    every channel of ``refs``), read from ``data`` (any dataset-runner source;
    ``source_options`` as :func:`lrpgraph.data.make_source`'s, e.g. ``preprocess``)."""
    rows = _rows(refs, channels)
    source = make_source(data, prepared, **source_options)
    return read_samples(source, batch_size, refs.indices[rows])


def _rows(refs, channels):
    chans = list(refs.channels)
    if channels is None:
        return list(range(len(chans)))
    missing = [c for c in channels if int(c) not in chans]
    if missing:
        raise ValueError(f"channels {missing} are not in the reference samples (layer {refs.layer!r} has "
                         f"{len(chans)} concept channels)")
    return [chans.index(int(c)) for c in channels]


def concept_atlas(explainer, refs, samples, channels, k=None, target="label"):
    """The concept atlas: one row per channel, for each of its (first ``k``)
    reference samples the input cropped to its receptive-field box and the
    conditional heatmap R(x | {layer: [c]}) in the same crop.

    ``explainer``: the :class:`lrpgraph.concepts.ConceptExplainer` (its method);
    ``refs``: :class:`lrpgraph.concepts.ReferenceSamples`; ``samples``: what
    :func:`reference_inputs` returns; ``target``: "label", "predicted" or a class."""
    rows = _rows(refs, channels)
    k = refs.indices.shape[1] if k is None else min(int(k), refs.indices.shape[1])
    fig = Figure(figsize=(2 * k * 1.1, 1.3 * len(rows) + 0.3))
    axes = fig.subplots(len(rows), 2 * k, squeeze=False)
    for r, row in enumerate(rows):
        c = int(refs.channels[row])
        for j in range(k):
            i = int(refs.indices[row, j])
            a_img, a_map = axes[r, 2 * j], axes[r, 2 * j + 1]
            if i < 0 or i not in samples:
                a_img.axis("off")
                a_map.axis("off")
                continue
            x, label = samples[i]
            t = label if target == "label" else (None if target == "predicted" else target)
            m = explainer.conditional(x[None], t, {refs.layer: [c]})[0, 0]
            box = refs.boxes[row, j] if refs.boxes is not None else (0, 0) + tuple(x.shape[:2])
            _axis(a_img, _crop(_display(x), box), f"#{i}" if j else f"{refs.layer} ch {c}\n#{i}")
            _axis(a_map, _crop(heatmap_rgb(m), box))
    fig.subplots_adjust(wspace=0.05, hspace=0.35)
    return fig


def prediction_panel(explainer, x, target, layer, refs=None, samples=None, top=5, n_refs=4):
    """The top ``top`` concepts of one prediction at ``layer``: for each, its share
    R_c / sum_c' |R_c'|, its conditional heatmap over ``x`` and (with ``refs`` and
    ``samples``) its first ``n_refs`` reference samples cropped to their boxes."""
    x = np.asarray(x)
    if x.ndim == len(explainer.prepared.input_specs[0].shape):
        x = x[0]
    share = explainer.channel_relevance(x[None], target, [layer], normalise=True)[layer][0]
    order = np.argsort(-share, kind="stable")[:top]
    maps = explainer.conditional(x[None], target, {layer: [int(c) for c in order]})[0]
    full = explainer.analyzer.analyze(x[None], target)[0]
    n_ref = n_refs if refs is not None and samples is not None else 0
    fig = Figure(figsize=(1.4 * (2 + n_ref), 1.4 * (len(order) + 1)))
    axes = fig.subplots(len(order) + 1, 2 + n_ref, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    _axis(axes[0, 0], _display(x), "input")
    _axis(axes[0, 1], heatmap_rgb(full), "all concepts")
    for r, c in enumerate(order, start=1):
        _axis(axes[r, 0], heatmap_rgb(maps[r - 1]), f"ch {int(c)}: {100 * share[c]:.0f}%")
        _axis(axes[r, 1], _display(x) * 0.3 + 0.7 * heatmap_rgb(maps[r - 1]), "over input")
        if n_ref:
            row = list(refs.channels).index(int(c))
            for j in range(min(n_ref, refs.indices.shape[1])):
                i = int(refs.indices[row, j])
                if i in samples:
                    box = refs.boxes[row, j] if refs.boxes is not None else (0, 0) + tuple(x.shape[:2])
                    _axis(axes[r, 2 + j], _crop(_display(samples[i][0]), box), f"ref #{i}")
    fig.subplots_adjust(wspace=0.05, hspace=0.4)
    return fig


def draw_attribution_graph(g, title=None):
    """Draw an attribution graph: one column per layer (upper left), a node per
    (layer, channel) labelled with its relevance, edges as wide as their share."""
    layers = []
    for _, d in g.nodes(data=True):
        if d["layer"] not in layers:
            layers.append(d["layer"])
    cols = {layer: [n for n, d in g.nodes(data=True) if d["layer"] == layer] for layer in layers}
    pos = {}
    for i, layer in enumerate(layers):
        nodes = cols[layer]
        for j, n in enumerate(nodes):
            pos[n] = (i, -(j - (len(nodes) - 1) / 2))
    fig = Figure(figsize=(2.5 * len(layers), 0.6 * max(len(v) for v in cols.values()) + 1.5))
    ax = fig.subplots()
    for u, v, d in g.edges(data=True):
        (x0, y0), (x1, y1) = pos[u], pos[v]
        w = abs(d.get("share", 0.0))
        ax.plot([x0, x1], [y0, y1], color="tab:red" if d["relevance"] >= 0 else "tab:blue",
                linewidth=0.5 + 6 * min(w, 1.0), alpha=0.7, zorder=1)
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, f"{100 * d.get('share', 0.0):.0f}%", fontsize=6, ha="center")
    for n, d in g.nodes(data=True):
        x, y = pos[n]
        ax.scatter([x], [y], s=300, color="white", edgecolors="black", zorder=2)
        ax.text(x, y, str(d["channel"]), ha="center", va="center", fontsize=7, zorder=3)
        ax.text(x, y - 0.3, f"{d['relevance']:.3g}", ha="center", fontsize=6)
    for i, layer in enumerate(layers):
        ax.text(i, max(p[1] for p in pos.values()) + 0.7, layer, ha="center", fontsize=8, weight="bold")
    ax.set_xlim(-0.6, len(layers) - 0.4)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return fig
