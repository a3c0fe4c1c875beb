"""``lrpgraph.check(model)``: can this model be explained, and with which rules?

The check runs the first three stages (graph, rewrite passes, rule assignment)
without compiling anything and reports, per node of the rewritten graph, its op
kind and the rule each preset gives it; nodes that no rule covers are listed with
the reason and the fix instead of an exception deep inside compilation.  It also
evaluates the rewritten graph on a random input and compares its logits with the
Keras model's own (with the output softmax switched off), which tests every
rewrite pass (BatchNorm folding, input-affine folding, splits, inlining) on this
model: ``max |logits_rewritten - logits_keras| / max |logits_keras|``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import tensorflow as tf

import keras

from ..engine import graph as G
from ..engine.assign import UnsupportedLayerError, assign_rules
from ..engine.compile import run_forward
from ..engine.ops import Linear, keras_hub as keras_hub_ops
from ..engine.prepared import Prepared, resolve_output
from ..engine.rewrite import canonicalize, inline_nested_models
from ..rules.presets import get_preset

__all__ = ["check", "CheckReport", "NodeCheck", "DEFAULT_CHECK_PRESETS", "reference_logits", "rule_name"]

DEFAULT_CHECK_PRESETS = ("lrp.epsilon", "lrp.z_plus", "deep_taylor.bounded", "lrp.sequential_preset_a_flat",
                         "gradient")


@dataclass
class NodeCheck:
    """One node of the rewritten graph: ``rules`` maps preset name -> Rule (None
    where the preset has none; ``problems`` then holds the reason)."""

    name: str
    class_name: str
    kind: str
    rules: dict
    problems: dict = field(default_factory=dict)

    @property
    def supported(self):
        return not self.problems


@dataclass
class CheckReport:
    """Result of :func:`check`.

    ``nodes``: list of :class:`NodeCheck` in topological order; ``unsupported``:
    the nodes some preset cannot handle, each with ``reason`` and ``fix``;
    ``logits_rel_diff``: max relative difference of the rewritten graph's logits to
    the model's (None if they could not be computed, then ``logits_error`` says why);
    ``ok``: every node supported and the logits reproduced within ``tolerance``.
    """

    model_name: str
    presets: tuple
    nodes: list
    unsupported: list
    logits_rel_diff: float | None
    logits_error: str | None
    tolerance: float
    output: str

    @property
    def ok(self):
        return not self.unsupported and self.logits_ok

    @property
    def logits_ok(self):
        return self.logits_rel_diff is not None and self.logits_rel_diff <= self.tolerance

    def kinds(self):
        """op kind -> number of nodes."""
        out = {}
        for n in self.nodes:
            out[n.kind] = out.get(n.kind, 0) + 1
        return out

    def __str__(self):
        head = ["node", "class", "kind"] + list(self.presets)
        rows = [[n.name, n.class_name, n.kind] + [
            rule_name(n.rules.get(p)) if p not in n.problems else "UNSUPPORTED" for p in self.presets]
            for n in self.nodes]
        widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
        line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
        out = [f"lrpgraph.check: model {self.model_name!r}, output {self.output!r}, {len(self.nodes)} nodes",
               line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
        if self.logits_rel_diff is not None:
            verdict = "reproduced" if self.logits_ok else "NOT reproduced"
            out.append(f"logits {verdict}: max relative difference {self.logits_rel_diff:.2e} "
                       f"(tolerance {self.tolerance:.0e})")
        else:
            out.append(f"logits not compared: {self.logits_error}")
        if self.unsupported:
            out.append(f"{len(self.unsupported)} unsupported node(s):")
            for u in self.unsupported:
                out.append(f"  {u['node']} ({u['class_name']}, kind {u['kind']}), presets {', '.join(u['presets'])}: "
                           f"{u['reason']}\n    fix: {u['fix']}")
        else:
            out.append("every node has a rule in every checked preset")
        return "\n".join(out)

    def _repr_pretty_(self, p, cycle):  # IPython
        p.text(str(self))


def rule_name(rule):
    """A rule as ``Class(param=value, ...)`` (its public, non-None attributes); "-" for None."""
    if rule is None:
        return "-"
    args = {k: v for k, v in vars(rule).items() if not k.startswith("_") and v is not None}
    short = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in args.items())
    return f"{type(rule).__name__}({short})" if short else type(rule).__name__


def _reason(g, n, preset, message):
    op = G.op(g, n)
    if getattr(op, "reason", None):
        return op.reason
    if "handles only" in message:
        return message.split(": ", 1)[0] if ": " in message else message
    return f"preset {preset.name!r} has no rule for op kind {op.kind!r}"


def check(model, presets=DEFAULT_CHECK_PRESETS, overrides=None, *, x=None, output=None, tolerance=1e-4,
          seed=0):
    """Report how lrpgraph sees ``model``: per node the op kind and each preset's rule,
    the unsupported nodes with reason and fix, and whether the rewritten graph
    reproduces the model's logits.

    Parameters
    ----------
    model : keras.Model or Prepared
        A :class:`lrpgraph.Prepared` is checked on its own graph (a causal LM's: with the
        position input, explaining one position's logits).
    presets : str or sequence of str
        Method presets to check (default: a handful of the main ones).
    overrides : dict or list, optional
        The overrides you would pass to :class:`lrpgraph.Analyzer`.
    x : array or list of arrays, optional
        Input for the logits comparison (default: a seeded standard-normal batch of 2,
        unknown dimensions set to 32).
    output : int or str, optional
        The output to check (default the first).
    tolerance : float
        Largest accepted max |Δlogit| / max |logit|.

    Returns
    -------
    CheckReport
        ``print(report)`` shows the table; ``report.ok``, ``report.unsupported``,
        ``report.logits_rel_diff`` and ``report.nodes`` hold the data.
    """
    presets = (presets,) if isinstance(presets, str) else tuple(presets)
    keras_hub_ops.register_if_loaded()  # KerasHub's ViT and text layers, as prepare() does
    if isinstance(model, Prepared):  # its graph as it is: node names are those its methods see
        g, model = model.graph, model.model
    else:
        g = canonicalize(G.to_graph(model))
    out = resolve_output(g, output)
    needed = {out[0]} | nx.ancestors(g, out[0])
    order = [n for n in G.topo_order(g) if n in needed and G.op(g, n).kind != "input"]
    nodes = {n: NodeCheck(n, G.class_name(g, n), _kind(g, n), {}) for n in order}
    problems = {}
    for name in presets:
        preset = get_preset(name)
        params = dict(preset.defaults)
        for n in order:
            try:
                nodes[n].rules[name] = assign_rules(g, preset, params, overrides, nodes={n})[n]
            except UnsupportedLayerError as e:
                nodes[n].rules[name] = None
                nodes[n].problems[name] = str(e)
                key = (n, _reason(g, n, preset, str(e)))
                problems.setdefault(key, []).append(name)
    unsupported = [{
        "node": n, "class_name": G.class_name(g, n), "kind": G.op(g, n).kind,
        "presets": names, "reason": reason,
        "fix": (f"give it a rule: lrpgraph.Analyzer(model, preset, overrides={{{n.split('#')[0]!r}: rule}}) "
                "with a built-in rule (e.g. lrpgraph.rules.Gradient() for the plain chain rule, "
                "lrpgraph.rules.Pass() for a shape-preserving elementwise op) or your own "
                "lrpgraph.rules.Rule subclass (docs/rules.md)"),
    } for (n, reason), names in problems.items()]
    diff, error = None, None
    try:
        xs = _inputs(g, x, seed)
        want = reference_logits(model, g.graph["outputs"].index(out), xs)
        got = _rewritten_logits(g, out, needed, xs)
        scale = float(np.max(np.abs(want)))
        diff = float(np.max(np.abs(got - want)) / (scale if scale > 0 else 1.0))
    except Exception as e:  # noqa: BLE001 - reported, not raised: the check's job
        error = f"{type(e).__name__}: {e}"
    return CheckReport(model.name, presets, list(nodes.values()), unsupported, diff, error, tolerance,
                       g.graph["output_names"][g.graph["outputs"].index(out)])


def _kind(g, n):
    op = G.op(g, n)
    return f"{op.kind}/{op.subkind}" if op.subkind else op.kind


def _inputs(g, x, seed):
    """Arrays in each model input's own dtype (float64 models are checked in float64)."""
    dtypes = [tf.as_dtype(G.output_dtype(g, n)).as_numpy_dtype for n in g.graph["inputs"]]
    if x is not None:
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        return [np.asarray(a, dtype=dt) for a, dt in zip(xs, dtypes)]
    rng = np.random.default_rng(seed)
    xs = []
    # an unknown length: 32 (8 for text models, below any learned position table's length)
    free = 32 if all(np.issubdtype(dt, np.floating) for dt in dtypes) else 8
    for n, dt in zip(g.graph["inputs"], dtypes):
        shape = [2] + [free if d is None else d for d in G.output_shape(g, n)[1:]]
        if np.issubdtype(dt, np.floating):
            xs.append(rng.standard_normal(shape).astype(dt))
        else:  # token ids / masks: 0 and 1 are valid ids of any vocabulary and valid mask values
            xs.append(rng.integers(0, 2, size=shape).astype(dt))
    return xs


def _rewritten_logits(g, out, needed, xs):
    # eager: one forward pass costs less than tracing a tf.function for it
    return run_forward(g, [tf.constant(a) for a in xs], needed)[out].numpy()


def reference_logits(model, index, xs):
    """The Keras model's own output number ``index`` on the arrays ``xs``, with an
    output softmax switched off (the layer's ``activation`` temporarily set to
    linear, or the logits taken at the input of a Softmax layer)."""
    g0 = inline_nested_models(G.to_graph(model))
    node = g0.graph["outputs"][index][0]
    op, layer = G.op(g0, node), G.layer(g0, node)
    inputs = [tf.constant(a) for a in xs]
    inputs = inputs[0] if len(inputs) == 1 else inputs
    if isinstance(model.input, dict):  # e.g. KerasHub: {"token_ids": ..., "padding_mask": ...}
        inputs = keras.tree.pack_sequence_as(model.input, list(inputs) if isinstance(inputs, list) else [inputs])
    softmax_act = op.kind == "softmax" or (isinstance(op, Linear) and op.activation is not None
                                           and op.activation[0] == "softmax")
    if softmax_act and hasattr(layer, "activation"):
        saved = layer.activation
        layer.activation = keras.activations.linear
        try:
            y = model(inputs, training=False)
        finally:
            layer.activation = saved
    elif op.kind == "softmax":  # a Softmax layer: read the tensor that enters it
        y = keras.Model(model.inputs, G.recorded_call(g0, node).input_specs[0])(inputs, training=False)
        return np.asarray(y)
    else:
        y = model(inputs, training=False)
    if isinstance(y, dict):
        y = y[model.output_names[index]]
    elif isinstance(y, (list, tuple)):
        y = y[index]
    return np.asarray(y)
