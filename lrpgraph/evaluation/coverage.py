"""``lrpgraph.coverage(model)``: every node, its rule in each preset, and whether it conserves.

:func:`lrpgraph.check` says which rule each node gets and which nodes no rule covers.
Coverage adds the measurement: it runs each preset's reverse pass once on a sample and
records, at every node the pass visits, the relevance at the node's output ``R`` and the
relevances its rule hands to the node's inputs ``R_in`` (``Program.node_relevance``).  A
node conserves on the sample when, per sample,

    |sum(R_in) - sum(R)| <= tolerance * sum(|R|)

(sums over every axis but the batch one; ``R_in`` summed over the node's inputs; a node
whose tensors do not all have the batch first, such as a mixture of experts' expert-first
(E, N, T, H) tensors, is judged on the whole batch's sums).  The
scale ``sum(|R|)`` is the relevance mass at the node, so a node whose positive and negative
relevance cancel is judged against what it moves, not against a sum near zero.  This is
the per-layer conservation of Bach et al., "On pixel-wise explanations ... by layer-wise
relevance propagation", PLoS ONE 2015 (eq. 2), tested node by node: it finds the layer
that leaks (a bias under LRP-epsilon keeps ``R b / z``; AttnLRP's softmax rule drops the
Taylor bias term) or that amplifies, which a total ``sum R / logit`` cannot locate.

Relevance that reaches a node without a rule (a constant: learned position tables, a
broadcast bias) stays there; coverage lists it as absorbed.  The token embeddings of a
text model end the pass (the map of a token is the relevance there, summed over the hidden
axis), so they are listed as the map, as the inputs are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from ..engine import graph as G
from ..engine.assign import UnsupportedLayerError
from ..engine.prepared import prepare
from ..methods.analyzer import Analyzer
from ..rules.presets import get_preset
from .check import check, rule_name

__all__ = ["coverage", "CoverageReport", "NodeCoverage", "DEFAULT_COVERAGE_PRESETS", "sample_inputs"]

DEFAULT_COVERAGE_PRESETS = ("attn_lrp", "cp_lrp")

# float32 reverse passes: a node's sums differ by rounding of order 1e-7 x (number of terms
# summed, up to ~1e4 here) x |R|; 1e-3 of the node's relevance mass is far above that and far
# below what a bias or an epsilon of a typical size takes (measured in tests/test_coverage.py)
DEFAULT_TOLERANCE = 1e-3

CONSERVES, LEAKS, ABSORBS, MAP, NONE, UNSUPPORTED, NOT_MEASURED = (
    "conserves", "LEAKS", "absorbs", "map", "no relevance", "UNSUPPORTED", "not measured")


@dataclass
class NodeCoverage:
    """One node: ``rules`` preset -> the rule's name ("UNSUPPORTED" where there is none);
    ``claims`` preset -> the rule's own promise (``rule.conservative(op)``); ``status``
    preset -> one of "conserves", "LEAKS" (sum R_in differs from sum R by more than the
    tolerance), "absorbs" (a constant: relevance stops here), "map" (an input or token
    embedding: where the map is read), "no relevance", "UNSUPPORTED", "not measured";
    ``error`` preset -> max over samples of |sum R_in - sum R| / sum |R| (None where not
    measured); ``relevance`` preset -> mean over samples of sum R at the node's output."""

    name: str
    class_name: str
    kind: str
    rules: dict = field(default_factory=dict)
    claims: dict = field(default_factory=dict)
    status: dict = field(default_factory=dict)
    error: dict = field(default_factory=dict)
    relevance: dict = field(default_factory=dict)

    def conserves(self, preset):
        """True / False where measured, None where not (a map, no relevance, unsupported)."""
        s = self.status.get(preset)
        return True if s == CONSERVES else False if s in (LEAKS, ABSORBS) else None


@dataclass
class CoverageReport:
    """What :func:`coverage` returns.

    ``nodes``: :class:`NodeCoverage` per node (topological order, inputs first);
    ``unsupported``: the check's list (node, class_name, kind, presets, reason, fix);
    ``totals``: preset -> {"relevance": (N,) sum of the map(s), "logit": (N,) the explained
    logit, "ratio": their quotient} (absent where the preset could not run; ``errors`` then
    says why); ``check``: the :class:`lrpgraph.evaluation.check.CheckReport` it is built on."""

    model_name: str
    presets: tuple
    nodes: list
    unsupported: list
    totals: dict
    errors: dict
    tolerance: float
    check: object

    def leaks(self, preset):
        """The names of the nodes that do not conserve under ``preset`` (LEAKS or absorbs)."""
        return [n.name for n in self.nodes if n.conserves(preset) is False]

    def node(self, name):
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r}; the nodes are {[n.name for n in self.nodes][:20]}...")

    def rows(self):
        """The table as a list of plain dicts, one per node."""
        out = []
        for n in self.nodes:
            row = {"node": n.name, "class": n.class_name, "kind": n.kind}
            for p in self.presets:
                row[f"{p} rule"] = n.rules.get(p)
                row[f"{p} status"] = n.status.get(p)
                row[f"{p} error"] = n.error.get(p)
            out.append(row)
        return out

    def _cells(self):
        head = ["node", "class", "kind"]
        for p in self.presets:
            head += [f"{p} rule", f"{p} conserves"]
        rows = []
        for n in self.nodes:
            r = [n.name, n.class_name, n.kind]
            for p in self.presets:
                e = n.error.get(p)
                s = n.status.get(p, "")
                r += [n.rules.get(p, "-"), s if e is None else f"{s} ({e:.1e})"]
            rows.append(r)
        return head, rows

    def _summary(self):
        out = []
        for p in self.presets:
            if p in self.totals:
                t = self.totals[p]
                ratio = ", ".join(f"{v:.3g}" for v in t["ratio"])
                leaks = self.leaks(p)
                out.append(f"{p}: sum R / logit per sample = {ratio}; {len(leaks)} node(s) not conserving"
                           + (f": {', '.join(leaks[:12])}{' ...' if len(leaks) > 12 else ''}" if leaks else ""))
            else:
                out.append(f"{p}: not measured: {self.errors.get(p)}")
        for u in self.unsupported:
            out.append(f"unsupported: {u['node']} ({u['class_name']}, kind {u['kind']}), presets "
                       f"{', '.join(u['presets'])}: {u['reason']}")
        return out

    def __str__(self):
        head, rows = self._cells()
        widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
        line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
        out = [f"lrpgraph.coverage: model {self.model_name!r}, {len(self.nodes)} nodes, tolerance "
               f"{self.tolerance:.0e} of each node's relevance mass", line(head), line(["-" * w for w in widths])]
        return "\n".join(out + [line(r) for r in rows] + self._summary())

    def to_markdown(self):
        """The node table and the summary as Markdown."""
        head, rows = self._cells()
        esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
        return "\n".join(out + [""] + [f"- {s}" for s in self._summary()])

    def _repr_pretty_(self, p, cycle):  # IPython
        p.text(str(self))


def sample_inputs(prepared, n=2, length=8, seed=0):
    """A seeded sample for ``prepared``: standard-normal floats (unknown axes ``length``
    x 4), token ids uniform in [1, vocabulary) for an input feeding an Embedding, ones for
    any other integer input (masks), and a causal LM's default position (the last token).
    A list in the model's input order."""
    rng = np.random.default_rng(seed)
    xs = {}
    for name, spec in zip(prepared.input_nodes, prepared.input_specs):
        if name == prepared.position_input:
            continue
        dt = spec.dtype.as_numpy_dtype
        if spec.dtype.is_floating:
            shape = [n] + [4 * length if d is None else d for d in spec.shape[1:]]
            xs[name] = rng.standard_normal(shape).astype(dt)
            continue
        shape = [n] + [length if d is None else d for d in spec.shape[1:]]
        vocab = prepared.vocab_sizes.get(name)
        xs[name] = rng.integers(1, vocab, size=shape).astype(dt) if vocab and vocab > 1 else np.ones(shape, dt)
    if prepared.position_input is not None:
        xs = prepared.fill_position(xs)
    return [xs[name] for name in prepared.input_nodes]


def _array(t):
    return np.asarray(t.numpy() if hasattr(t, "numpy") else t, np.float64)


def _per_sample(t, rows):
    """(sum, sum of |.|) over every axis but the first, float64, per row; a tensor whose first
    axis is not the batch's (a broadcast constant's relevance, an expert-first (E, N, ...)
    tensor of a mixture of experts) counts as its total spread evenly (see :func:`_node_error`)."""
    a = _array(t)
    if a.ndim >= 1 and a.shape[0] == rows:
        return a.reshape(rows, -1).sum(1), np.abs(a).reshape(rows, -1).sum(1)
    return np.full(rows, a.sum() / rows), np.full(rows, np.abs(a).sum() / rows)


def _node_error(R, R_in, rows):
    """(per-row sum of R, per-row mass, max relative error): per sample where every tensor
    has the batch first, else (an expert-first layout) over the whole batch at once."""
    out, mass = _per_sample(R, rows)
    ins = [r for r in R_in if r is not None]
    got = sum((_per_sample(r, rows)[0] for r in ins), np.zeros(rows))
    batch_first = all(_array(t).ndim >= 1 and _array(t).shape[0] == rows for t in [R] + ins)
    if not batch_first:
        out_t, got_t, mass_t = out.sum(), got.sum(), mass.sum()
        return out, mass, float(abs(got_t - out_t) / mass_t) if mass_t > 0 else 0.0
    return out, mass, float(np.max(np.abs(got - out) / np.where(mass > 0, mass, 1.0)))


def coverage(model, presets=DEFAULT_COVERAGE_PRESETS, sample=None, *, target=None, overrides=None, output=None,
             tolerance=DEFAULT_TOLERANCE, **params):
    """Every node of ``model`` with its op kind, its rule in each preset and whether it
    conserves relevance on a sample; the unsupported layers with the reason.

    Parameters
    ----------
    model : keras.Model (a KerasHub causal LM included) or Prepared
    presets : str or sequence of str
        Rule presets to cover (default AttnLRP and CP-LRP).
    sample : array, list or dict, optional
        What the model takes (a causal LM: ``{"token_ids", "padding_mask"}``, position
        optional); default :func:`sample_inputs` (2 samples, 8 tokens).
    target : optional
        The explained class / token per sample (default the predicted one).
    overrides, output, **params
        As for :class:`lrpgraph.Analyzer` (``epsilon=...`` applies to every preset that
        takes it).
    tolerance : float
        A node conserves where ``|sum R_in - sum R| <= tolerance * sum |R|`` per sample.

    Returns
    -------
    CoverageReport
        ``print(report)`` or ``report.to_markdown()``: the table; ``report.rows()`` the
        same as dicts; ``report.leaks(preset)`` the nodes that do not conserve.
    """
    presets = (presets,) if isinstance(presets, str) else tuple(presets)
    prepared = prepare(model, output)
    xs = sample_inputs(prepared) if sample is None else prepared.check_inputs(sample)[0]
    report = check(prepared, presets, overrides, x=xs, output=output)
    g = prepared.graph
    nodes = [NodeCoverage(n, G.class_name(g, n), "input") for n in prepared.input_nodes]
    nodes += [NodeCoverage(c.name, c.class_name, c.kind,
                           rules={p: (UNSUPPORTED if p in c.problems else rule_name(c.rules.get(p))) for p in presets},
                           status={p: UNSUPPORTED for p in c.problems})
              for c in report.nodes]
    by_name = {n.name: n for n in nodes}
    totals, errors = {}, {}
    targets, _ = prepared.check_targets(target, xs[0].shape[0])
    for p in presets:
        if any(p in c.problems for c in report.nodes):
            errors[p] = "the preset has no rule for the node(s) listed as unsupported"
            for n in nodes:
                n.status.setdefault(p, NOT_MEASURED)
            continue
        try:
            analyzer = Analyzer(prepared, p, overrides, **{k: v for k, v in params.items()
                                                           if k in _preset_defaults(p)})
        except (UnsupportedLayerError, ValueError, TypeError) as e:
            errors[p] = f"{type(e).__name__}: {e}"
            continue
        totals[p] = _measure(analyzer, xs, targets, by_name, p, tolerance)
    for n in nodes:
        for p in presets:
            n.status.setdefault(p, NONE)
    return CoverageReport(prepared.name, presets, nodes, report.unsupported, totals, errors, tolerance, report)


def _preset_defaults(name):
    return get_preset(name).defaults


def _measure(analyzer, xs, targets, by_name, p, tolerance):
    """One eager reverse pass of ``analyzer``'s program; fills status / error / relevance."""
    program = analyzer.program
    g = program.g
    rows = [None]

    def record(n, R, R_in):
        if rows[0] is None:
            rows[0] = int(R.shape[0])
        out, mass, err = _node_error(R, R_in, rows[0])
        node = by_name.get(n)
        if node is None:  # a node the check does not list (outside the explained output's ancestors)
            return
        node.relevance[p] = float(out.mean())
        if not mass.any():
            node.status[p] = NONE
            return
        if all(r is None for r in R_in):  # a constant, or a rule that passes nothing on
            node.status[p] = ABSORBS
            node.error[p] = 1.0
            return
        node.error[p] = err
        node.status[p] = CONSERVES if err <= tolerance else LEAKS
        node.claims[p] = bool(analyzer.rules[n].conservative(G.op(g, n)))

    logits, resolved, left = program.node_relevance([tf.convert_to_tensor(a) for a in xs],
                                                    tf.convert_to_tensor(targets), record)
    n_rows = rows[0] or xs[0].shape[0]
    stop = set(program.reverse_stop)
    total = np.zeros(n_rows)
    for (u, _), r in left.items():
        s, mass = _per_sample(r, n_rows)
        node = by_name.get(u)
        if u in stop:
            total += s
            if node is not None:
                node.status[p] = MAP
                node.relevance[p] = float(s.mean())
        elif node is not None:
            node.relevance[p] = float(s.mean())
            node.status[p] = ABSORBS if mass.any() else NONE
    for u in program.tokens:  # token ids: their map is read at the embeddings they feed
        if u in by_name:
            by_name[u].status[p] = MAP
    logits = logits.numpy()
    n = logits.shape[0]
    explained = logits[np.arange(n), resolved.numpy()]
    # a multi-seed head runs n_seeds x N rows: the total of the first seed's rows
    total = total[:n]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = total / explained
    return {"relevance": total, "logit": explained, "ratio": ratio}
