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

The metrics of issue 24 (``.score`` of each function; modules
``faithfulness_more``, ``robustness``, ``complexity``, ``mprt``,
``localisation_metrics``, ``axiomatic``; docs/evaluation.md has the formulas):

==============================  ======================================================  ======
name                            function                                                better
==============================  ======================================================  ======
``road``                        ROAD, MoRF accuracy averaged over the percentages       lower
``irof``                        IROF, area over the normalised SLIC-segment curve       higher
``infidelity``                  infidelity (Yeh et al. 2019), Gaussian perturbations    lower
``sufficiency``                 sufficiency (Dasgupta et al. 2022), within the batch    higher
``monotonicity``                monotonicity (Arya et al. 2019), 1/0                    higher
``monotonicity_correlation``    monotonicity correlation (Nguyen & Martinez 2020)       higher
``faithfulness_estimate``       faithfulness estimate (Alvarez-Melis & Jaakkola 2018)   higher
``sensitivity_n``               sensitivity-n (Ancona et al. 2018), mean over n         higher
``max_sensitivity``             max-sensitivity (Yeh et al. 2019)                       lower
``avg_sensitivity``             average sensitivity                                     lower
``local_lipschitz``             local Lipschitz estimate (Alvarez-Melis & Jaakkola)     lower
``continuity``                  continuity under translation (Montavon et al. 2018)     lower
``relative_input_stability``    RIS (Agarwal et al. 2022)                               lower
``relative_output_stability``   ROS                                                     lower
``relative_repr_stability``     RRS                                                     lower
``sparseness``                  Gini index of |R| (Chalasani et al. 2020)               higher
``complexity``                  entropy of |R| / sum |R| (Bhatt et al. 2020)            lower
``effective_complexity``        entries with |R| > eps (Nguyen & Martinez 2020)         lower
``smooth_mprt``                 smooth MPRT (Hedstroem et al. 2023)                     lower
``efficient_mprt``              efficient MPRT: relative rise of the entropy            higher
``random_logit``                random logit SSIM (Sixt et al. 2020)                    lower
``pointing_game``               pointing game hit (masks)                               higher
``relevance_mass``              relevance mass accuracy (masks)                         higher
``relevance_rank``              relevance rank accuracy (masks)                         higher
``top_k_intersection``          top-k intersection (masks)                              higher
``localisation_auc``            ROC AUC of the map for the mask (masks)                 higher
``completeness``                relative completeness gap                               lower
``input_invariance``            relative change under a compensated input shift         lower
``non_sensitivity``             non-sensitivity count (Nguyen & Martinez 2020)          lower
==============================  ======================================================  ======

``"aopc"`` is short for ``aopc_morf`` and ``aopc_lerf``; the groups
``"@faithfulness"``, ``"@robustness"``, ``"@complexity"``, ``"@randomisation"``,
``"@localisation"``, ``"@axiomatic"`` name their metrics; ``"all"`` is every metric
except the localisation ones (they need ``masks=``).  The metrics in
:data:`NEEDS_METHOD` re-explain inputs or models: :func:`evaluate` gives them the
method; those in :data:`NEEDS_MASKS` need ``evaluate(..., masks=)``.
:data:`PER_SAMPLE_METRICS` is every metric that needs only the maps, as plain
functions ``fn(model_or_prepared, x, maps, targets) -> (N,)`` for the dataset
runner.
"""

from __future__ import annotations

import csv
import inspect
import io
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..methods.registry import create_analyzer, fill_bounds
from .common import check_images
from .faithfulness import faithfulness_correlation
from .perturbation import deletion, insertion, region_perturbation
from .randomisation import SIMILARITIES, model_randomisation
from . import axiomatic as _ax, complexity as _cx, faithfulness_more as _fm, localisation_metrics as _lm
from . import mprt as _mprt, robustness as _rb

__all__ = ["METRICS", "PER_SAMPLE_METRICS", "BETTER", "NEEDS_METHOD", "NEEDS_MASKS", "GROUPS", "evaluate",
           "EvaluationTable", "expand_metrics", "metric_params", "check_metric_params", "summary_columns"]

# metric name -> (function, default parameters, what the per-sample number is)
METRICS = {
    "aopc_morf": (region_perturbation, {"order": "morf"}, "aopc"),
    "aopc_lerf": (region_perturbation, {"order": "lerf"}, "aopc"),
    "deletion": (deletion, {}, "auc"),
    "insertion": (insertion, {}, "auc"),
    "faithfulness": (faithfulness_correlation, {}, "correlation"),
    "randomisation": (model_randomisation, {}, None),
    # issue 24
    "road": (_fm.road, {}, "score"),
    "irof": (_fm.irof, {}, "score"),
    "infidelity": (_fm.infidelity, {}, "score"),
    "sufficiency": (_fm.sufficiency, {}, "score"),
    "monotonicity": (_fm.monotonicity, {}, "score"),
    "monotonicity_correlation": (_fm.monotonicity_correlation, {}, "score"),
    "faithfulness_estimate": (_fm.faithfulness_estimate, {}, "score"),
    "sensitivity_n": (_fm.sensitivity_n, {}, "score"),
    "max_sensitivity": (_rb.max_sensitivity, {}, "score"),
    "avg_sensitivity": (_rb.avg_sensitivity, {}, "score"),
    "local_lipschitz": (_rb.local_lipschitz_estimate, {}, "score"),
    "continuity": (_rb.continuity, {}, "score"),
    "relative_input_stability": (_rb.relative_input_stability, {}, "score"),
    "relative_output_stability": (_rb.relative_output_stability, {}, "score"),
    "relative_repr_stability": (_rb.relative_representation_stability, {}, "score"),
    "sparseness": (_cx.sparseness, {}, "score"),
    "complexity": (_cx.complexity, {}, "score"),
    "effective_complexity": (_cx.effective_complexity, {}, "score"),
    "smooth_mprt": (_mprt.smooth_mprt, {}, "score"),
    "efficient_mprt": (_mprt.efficient_mprt, {}, "score"),
    "random_logit": (_mprt.random_logit, {}, "score"),
    "pointing_game": (_lm.pointing_game_metric, {}, "score"),
    "relevance_mass": (_lm.relevance_mass_metric, {}, "score"),
    "relevance_rank": (_lm.relevance_rank_metric, {}, "score"),
    "top_k_intersection": (_lm.top_k_metric, {}, "score"),
    "localisation_auc": (_lm.auc_metric, {}, "score"),
    "completeness": (_ax.completeness, {}, "score"),
    "input_invariance": (_ax.input_invariance, {}, "score"),
    "non_sensitivity": (_ax.non_sensitivity, {}, "score"),
}
#: metric groups (Quantus's six categories); ``"@group"`` in a metric list names them all
GROUPS = {
    "faithfulness": ("aopc_morf", "aopc_lerf", "deletion", "insertion", "faithfulness", "road", "irof", "infidelity",
                     "sufficiency", "monotonicity", "monotonicity_correlation", "faithfulness_estimate",
                     "sensitivity_n"),
    "robustness": ("max_sensitivity", "avg_sensitivity", "local_lipschitz", "continuity", "relative_input_stability",
                   "relative_output_stability", "relative_repr_stability"),
    "complexity": ("sparseness", "complexity", "effective_complexity"),
    "randomisation": ("randomisation", "smooth_mprt", "efficient_mprt", "random_logit"),
    "localisation": ("pointing_game", "relevance_mass", "relevance_rank", "top_k_intersection", "localisation_auc"),
    "axiomatic": ("completeness", "input_invariance", "non_sensitivity"),
}
#: metrics that re-explain (perturbed inputs, another class, a randomised or shifted model): evaluate() passes
#: ``method=`` and ``params=``
NEEDS_METHOD = frozenset({"randomisation", *GROUPS["robustness"], "smooth_mprt", "efficient_mprt", "random_logit",
                          "input_invariance"})
#: metrics scored against ground-truth masks: evaluate(..., masks=)
NEEDS_MASKS = frozenset(GROUPS["localisation"])
ALIASES = {"aopc": ("aopc_morf", "aopc_lerf"), **{f"@{g}": names for g, names in GROUPS.items()}}
BETTER = {"aopc_morf": "higher", "aopc_lerf": "lower", "deletion": "lower", "insertion": "higher",
          "faithfulness": "higher", **{f"rand_{s}": "lower" for s in SIMILARITIES},
          "road": "lower", "irof": "higher", "infidelity": "lower", "sufficiency": "higher", "monotonicity": "higher",
          "monotonicity_correlation": "higher", "faithfulness_estimate": "higher", "sensitivity_n": "higher",
          **{m: "lower" for m in GROUPS["robustness"]}, "sparseness": "higher", "complexity": "lower",
          "effective_complexity": "lower", "smooth_mprt": "lower", "efficient_mprt": "higher",
          "random_logit": "lower", **{m: "higher" for m in GROUPS["localisation"]}, "completeness": "lower",
          "input_invariance": "lower", "non_sensitivity": "lower"}


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
PER_SAMPLE_METRICS = {name: _per_sample(name) for name in METRICS
                      if METRICS[name][2] is not None and name not in NEEDS_METHOD and name not in NEEDS_MASKS}


def expand_metrics(metrics):
    """The metric names of ``metrics`` (a name, a comma-separated string or a list;
    ``"aopc"`` -> aopc_morf, aopc_lerf; ``"@robustness"`` etc. -> a group; ``"all"`` ->
    every metric but the localisation ones), checked."""
    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",") if m.strip()]
    out = []
    for m in metrics:
        m = m.strip()
        names = tuple(n for n in METRICS if n not in NEEDS_MASKS) if m == "all" else ALIASES.get(m, (m,))
        for n in names:
            if n not in METRICS:
                raise ValueError(f"unknown metric {m!r}; known: {', '.join(list(METRICS) + list(ALIASES) + ['all'])}")
            if n not in out:
                out.append(n)
    if not out:
        raise ValueError("no metric given")
    return out


def metric_params(name, params=None):
    """The keyword arguments of metric ``name``: its defaults (:data:`METRICS`), then
    ``params``' entries for the aliases naming it (``"aopc"``, ``"@group"``), then
    its own entry (``params``: metric or alias -> overrides)."""
    params = params or {}
    kw = dict(METRICS[name][1])
    for alias, members in ALIASES.items():
        if name in members:
            kw.update(params.get(alias, {}))
    kw.update(params.get(name, {}))
    return kw


def check_metric_params(params):
    """``params`` as a dict, its keys checked against the metric names and aliases."""
    params = dict(params or {})
    unknown = [k for k in params if k not in METRICS and k not in ALIASES]
    if unknown:
        raise ValueError(f"params for unknown metric(s) {unknown}; known: {list(METRICS) + list(ALIASES)}")
    return params


def summary_columns(labels, per_sample):
    """The :class:`EvaluationTable` columns of ``per_sample`` (label -> column -> (N,)):
    ``"method"`` and, per column, the NaN-aware mean and standard deviation over the samples."""
    cols = list(per_sample[labels[0]])
    columns = {"method": np.asarray(labels)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        for c in cols:
            vals = np.stack([per_sample[lab][c] for lab in labels])
            columns[c] = np.nanmean(vals, axis=1)
            columns[c + "_std"] = np.nanstd(vals, axis=1)
    return columns


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


def evaluate(model, x, methods, target=None, metrics=("aopc",), *, params=None, input_range=None, masks=None,
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
    images per analysis call.  ``masks``: (N, H, W) bool ground-truth masks, needed by
    the localisation metrics (:data:`NEEDS_MASKS`).  The metrics of
    :data:`NEEDS_METHOD` get the method (name and parameters) to re-explain with.
    ``progress``: callable(str) told each step.
    """
    names = expand_metrics(metrics)
    specs = _methods(methods)
    params = check_metric_params(params)
    batch = check_images(model, x, target, batch_size=analyze_batch_size)
    need_masks = [m for m in names if m in NEEDS_MASKS]
    if need_masks and masks is None:
        raise ValueError(f"the localisation metric(s) {need_masks} need the ground-truth masks: pass masks= "
                         f"(N, H, W) bool, one per image")
    prepared = batch.prepared
    say = progress or (lambda s: None)
    labels, per_sample, curves, rands = [], {}, {}, {}
    for label, name, mparams in specs:
        if input_range is not None:
            mparams = fill_bounds(name, mparams, *input_range)
        analyzer = create_analyzer(name, prepared, **mparams)
        say(f"{label}: maps")
        maps = analyzer.analyze(batch.x, target=batch.targets, batch_size=analyze_batch_size)
        labels.append(label)
        row, crow = {}, {}
        for m in names:
            fn, _, attr = METRICS[m]
            kw = metric_params(m, params)
            say(f"{label}: {m}")
            if m == "randomisation":
                res = fn(prepared.model, batch.x, maps, batch.targets, method=name, params=mparams,
                         batch_size=analyze_batch_size, **kw)
                rands[label] = res
                for s, v in res.last.items():
                    row[f"rand_{s}"] = v
                continue
            if m in NEEDS_MASKS:
                res = fn(prepared, batch.x, maps, batch.targets, masks=masks, **kw)
            elif m in NEEDS_METHOD:
                kw.setdefault("batch_size", analyze_batch_size)
                res = fn(prepared, batch.x, maps, batch.targets, method=name, params=mparams, **kw)
            else:
                if "batch_size" in inspect.signature(fn).parameters:
                    kw.setdefault("batch_size", batch_size)
                res = fn(prepared, batch.x, maps, batch.targets, **kw)
            row[m] = np.asarray(getattr(res, attr), np.float64)
            if hasattr(res, "curve"):
                crow[m] = res
        per_sample[label], curves[label] = row, crow
    columns = summary_columns(labels, per_sample)
    return EvaluationTable(columns, per_sample, curves, rands, batch.targets,
                           dict(metrics=names, params=params, n=batch.n))
