"""``lrpgraph.evaluate``: several methods x several metrics -> one table.

The metric names (``METRICS``, each with its default parameters):

==================  =============================================================  ======
name                per sample                                                     better
==================  =============================================================  ======
``aopc_morf``       AOPC, most relevant regions first (region_perturbation)        higher
``aopc_lerf``       AOPC, least relevant regions first                             lower
``deletion``        area under the deletion curve (softmax probability)            lower
``insertion``       area under the insertion curve (softmax probability)           higher
``faithfulness``    faithfulness correlation (Pearson)                             higher
``randomisation``   similarity to the original map after randomising every layer   lower
                    (columns ``rand_spearman_abs``, ``rand_ssim_abs``,
                    ``rand_spearman``, ``rand_ssim``; model_randomisation)
==================  =============================================================  ======

``"aopc"`` is short for ``aopc_morf`` and ``aopc_lerf``.  :data:`PER_SAMPLE_METRICS`
is the same set without ``randomisation`` (which needs the method, not only its
maps) as plain functions ``fn(model_or_prepared, x, maps, targets) -> (N,)`` for
the dataset runner.
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..methods.registry import create_analyzer, parameters
from .common import check_images
from .faithfulness import faithfulness_correlation
from .perturbation import deletion, insertion, region_perturbation
from .randomisation import SIMILARITIES, model_randomisation

__all__ = ["METRICS", "PER_SAMPLE_METRICS", "BETTER", "evaluate", "EvaluationTable", "expand_metrics"]

# metric name -> (function, default parameters, what the per-sample number is)
METRICS = {
    "aopc_morf": (region_perturbation, {"order": "morf"}, "aopc"),
    "aopc_lerf": (region_perturbation, {"order": "lerf"}, "aopc"),
    "deletion": (deletion, {}, "auc"),
    "insertion": (insertion, {}, "auc"),
    "faithfulness": (faithfulness_correlation, {}, "correlation"),
    "randomisation": (model_randomisation, {}, None),
}
ALIASES = {"aopc": ("aopc_morf", "aopc_lerf")}
BETTER = {"aopc_morf": "higher", "aopc_lerf": "lower", "deletion": "lower", "insertion": "higher",
          "faithfulness": "higher", **{f"rand_{s}": "lower" for s in SIMILARITIES}}


def _per_sample(name):
    fn, defaults, attr = METRICS[name]

    def metric(model, x, maps, targets, **params):
        return getattr(fn(model, x, maps, targets, **dict(defaults, **params)), attr)

    metric.__name__ = name
    metric.__doc__ = (f"{name}: ``{fn.__name__}(model, x, maps, targets, {defaults})``'s ``.{attr}``, (N,). "
                      f"Better: {BETTER[name]}.")
    return metric


#: metric name -> fn(model_or_prepared, x, maps, targets, **overrides) -> (N,) float array,
#: with the defaults of :data:`METRICS` (for the dataset runner's ``metrics=``)
PER_SAMPLE_METRICS = {name: _per_sample(name) for name in METRICS if METRICS[name][2] is not None}


def expand_metrics(metrics):
    """The metric names of ``metrics`` (a name, a comma-separated string or a list;
    ``"aopc"`` -> aopc_morf, aopc_lerf; ``"all"`` -> every metric), checked."""
    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",") if m.strip()]
    out = []
    for m in metrics:
        m = m.strip()
        names = tuple(METRICS) if m == "all" else ALIASES.get(m, (m,))
        for n in names:
            if n not in METRICS:
                raise ValueError(f"unknown metric {m!r}; known: {', '.join(list(METRICS) + list(ALIASES) + ['all'])}")
            if n not in out:
                out.append(n)
    if not out:
        raise ValueError("no metric given")
    return out


def _methods(methods):
    """[(label, name, params)] from a list of names or a dict label -> name | (name, params)."""
    if isinstance(methods, str):
        methods = [m for m in methods.split(",") if m.strip()]
    items = methods.items() if isinstance(methods, dict) else [(m, m) for m in methods]
    out = []
    for label, spec in items:
        if isinstance(spec, str):
            name, params = spec, {}
        elif isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str):
            name, params = spec[0], dict(spec[1])
        else:
            raise TypeError(f"method {label!r}: pass a method name or (name, params), got {spec!r}")
        out.append((str(label), name, params))
    if not out:
        raise ValueError("no method given")
    return out


@dataclass
class EvaluationTable:
    """The result of :func:`evaluate`.

    ``columns``: dict of arrays, one row per method: ``"method"`` (labels) and, per
    metric column, the mean over the samples (NaN-aware) and ``<column>_std``;
    ``per_sample[label][column]``: (N,) arrays; ``curves[label][metric]``: the
    :class:`PerturbationCurve` of the curve metrics; ``randomisation[label]``: the
    :class:`RandomisationResult`; ``targets`` (N,); ``params``.  Render with
    :meth:`to_markdown`, :meth:`to_text` or :meth:`to_csv`."""

    columns: dict
    per_sample: dict
    curves: dict = field(default_factory=dict)
    randomisation: dict = field(default_factory=dict)
    targets: np.ndarray = None
    params: dict = field(default_factory=dict)

    @property
    def metric_columns(self):
        return [c for c in self.columns if c != "method" and not c.endswith("_std")]

    def _rows(self, digits, std):
        head = ["method"] + [f"{c} ({BETTER.get(c, '?')})" for c in self.metric_columns]
        rows = []
        for i, label in enumerate(self.columns["method"]):
            row = [str(label)]
            for c in self.metric_columns:
                v, s = self.columns[c][i], self.columns[c + "_std"][i]
                row.append("nan" if not np.isfinite(v) else
                           (f"{v:.{digits}f} ± {s:.{digits}f}" if std else f"{v:.{digits}f}"))
            rows.append(row)
        return head, rows

    def to_markdown(self, digits=3, std=True):
        """A Markdown table: one row per method, mean ± standard deviation over the samples."""
        head, rows = self._rows(digits, std)
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)

    def to_text(self, digits=3, std=True):
        """A plain-text table with aligned columns."""
        head, rows = self._rows(digits, std)
        widths = [max(len(r[j]) for r in [head] + rows) for j in range(len(head))]
        fmt = lambda r: "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
        return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])

    def to_csv(self, path=None):
        """The columns (means and standard deviations) as CSV; written to ``path`` if
        given, returned as a string."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        names = list(self.columns)
        w.writerow(names)
        for i in range(len(self.columns["method"])):
            w.writerow([self.columns[c][i] if c == "method" else repr(float(self.columns[c][i])) for c in names])
        text = buf.getvalue()
        if path is not None:
            with open(path, "w") as f:
                f.write(text)
        return text

    def per_sample_csv(self, path=None):
        """One row per (method, sample): every per-sample column, as CSV."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        cols = self.metric_columns
        w.writerow(["method", "sample", "target"] + cols)
        for label, d in self.per_sample.items():
            for i in range(len(self.targets)):
                w.writerow([label, i, int(self.targets[i])] + [repr(float(d[c][i])) for c in cols])
        text = buf.getvalue()
        if path is not None:
            with open(path, "w") as f:
                f.write(text)
        return text

    def __str__(self):
        return self.to_text()


def evaluate(model, x, methods, target=None, metrics=("aopc",), *, params=None, input_range=None,
             batch_size=256, analyze_batch_size=None, progress=None):
    """Evaluate several methods with several metrics on one batch: an :class:`EvaluationTable`.

    ``methods``: a list of method names (``lrpgraph.methods()``) or a dict
    label -> name | (name, method parameters).  ``target``: an int, one per
    sample or None (the predicted class; resolved once, the same for every
    method).  ``metrics``: names of :data:`METRICS` (``"aopc"`` = MoRF and LeRF,
    ``"all"``).  ``params``: metric name -> parameter overrides (``"aopc"``
    applies to both orders), e.g. ``{"aopc": {"patch": 4}}``.  ``input_range``:
    (low, high) given to the methods that take bounds (``low``/``high``).
    ``batch_size``: perturbed images per compiled step; ``analyze_batch_size``:
    images per analysis call.  ``progress``: callable(str) told each step.
    """
    names = expand_metrics(metrics)
    specs = _methods(methods)
    params = dict(params or {})
    unknown = [k for k in params if k not in METRICS and k not in ALIASES]
    if unknown:
        raise ValueError(f"params for unknown metric(s) {unknown}; known: {list(METRICS) + list(ALIASES)}")
    batch = check_images(model, x, target, batch_size=analyze_batch_size)
    prepared = batch.prepared
    say = progress or (lambda s: None)
    labels, per_sample, curves, rands = [], {}, {}, {}
    for label, name, mparams in specs:
        if input_range is not None:
            accepted = parameters(name)
            for k, v in zip(("low", "high"), input_range):
                if k in accepted:
                    mparams.setdefault(k, v)
        analyzer = create_analyzer(name, prepared, **mparams)
        say(f"{label}: maps")
        maps = analyzer.analyze(batch.x, target=batch.targets, batch_size=analyze_batch_size)
        labels.append(label)
        row, crow = {}, {}
        for m in names:
            fn, defaults, attr = METRICS[m]
            kw = dict(defaults)
            for alias, members in ALIASES.items():
                if m in members:
                    kw.update(params.get(alias, {}))
            kw.update(params.get(m, {}))
            say(f"{label}: {m}")
            if m == "randomisation":
                res = fn(prepared.model, batch.x, maps, batch.targets, method=name, params=mparams,
                         batch_size=analyze_batch_size, **kw)
                rands[label] = res
                for s, v in res.last.items():
                    row[f"rand_{s}"] = v
                continue
            kw.setdefault("batch_size", batch_size)
            res = fn(prepared, batch.x, maps, batch.targets, **kw)
            row[m] = np.asarray(getattr(res, attr), np.float64)
            if hasattr(res, "curve"):
                crow[m] = res
        per_sample[label], curves[label] = row, crow
    cols = list(per_sample[labels[0]])
    columns = {"method": np.asarray(labels)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        for c in cols:
            vals = np.stack([per_sample[lab][c] for lab in labels])
            columns[c] = np.nanmean(vals, axis=1)
            columns[c + "_std"] = np.nanstd(vals, axis=1)
    return EvaluationTable(columns, per_sample, curves, rands, batch.targets,
                           dict(metrics=names, params=params, n=batch.n))
