"""Stage 3: give every node of a rewritten graph its rule.

Precedence (docs/rules.md): user ``overrides`` in the order given, then the
preset's ``(selector, rule)`` pairs in order; the first match wins.  A node that
nothing matches is an error naming the layer, its class and the fix.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

import networkx as nx

from . import graph as G
from .context import Rule

__all__ = ["NodeInfo", "first_layers", "match", "assign_rules", "UnsupportedLayerError"]


class UnsupportedLayerError(ValueError):
    """A node has no rule: unknown layer class, or no preset entry for its op kind."""


@dataclass
class NodeInfo:
    """What selectors and predicates see of a node."""

    name: str
    class_name: str
    kind: str
    subkind: str | None
    layer: object
    is_first: bool

    @property
    def kind_path(self):
        return f"{self.kind}/{self.subkind}" if self.subkind else self.kind


def first_layers(g):
    """Linear nodes reached from a model input without passing another linear node (nor a
    recurrent layer, whose linear parts read the input: the Dense after an LSTM is not first)."""
    found = G.first_reached(g, g.graph["inputs"], "linear")
    return {n for n in found if not any(g.nodes[a]["op"].kind == "recurrent" for a in nx.ancestors(g, n))}


def node_info(g, n, firsts):
    d = g.nodes[n]
    op = d["op"]
    return NodeInfo(n, d["class_name"], op.kind, op.subkind, d["layer"], n in firsts)


def match(selector, info):
    """True when ``selector`` (see rules/presets.py) selects the node ``info``."""
    if callable(selector) and not isinstance(selector, str):
        if isinstance(selector, type):
            return info.layer is not None and isinstance(info.layer, selector)
        return bool(selector(info))
    if selector == "first":
        return info.is_first
    prefix, _, value = selector.partition(":")
    if not value:  # a bare string is a layer name
        return _name_matches(info.name, selector)
    if prefix == "kind":
        return fnmatch.fnmatchcase(info.kind_path, value) or fnmatch.fnmatchcase(info.kind, value)
    if prefix == "class":
        return info.class_name == value or (
            info.layer is not None and any(c.__name__ == value for c in type(info.layer).__mro__))
    if prefix == "name":
        return _name_matches(info.name, value)
    if prefix == "re":
        return re.fullmatch(value, info.name) is not None or re.fullmatch(value, _base(info.name)) is not None
    raise ValueError(f"unknown selector {selector!r}: use kind:, class:, name:, re:, 'first' or a callable")


def _base(name):
    """Layer name of a node id: 'conv1#1' -> 'conv1'; a fused activation keeps its suffix."""
    return name.split("#")[0]


def _name_matches(node, name):
    return node == name or _base(node) == name


def _as_rule(r, params):
    """A rule from an entry: a :class:`Rule`, a Rule class (instantiated), or a spec that
    builds one from the method's parameters (``build(params)``: the presets' entries,
    ``lrpgraph.rules.presets.spec``; duck-typed so that the engine does not import rules/)."""
    if isinstance(r, Rule):
        return r
    if isinstance(r, type) and issubclass(r, Rule):
        return r()
    if not isinstance(r, type) and callable(getattr(r, "build", None)):
        return r.build(params)
    raise TypeError(f"{r!r} is not a rule: pass a Rule instance (e.g. lrpgraph.rules.Epsilon(0.1))")


def normalize_overrides(overrides):
    """dict {selector: rule} or list of (selector, rule) -> list of (selector, rule)."""
    if overrides is None:
        return []
    items = overrides.items() if isinstance(overrides, dict) else overrides
    return [(s, r) for s, r in items]


def assign_rules(g, preset, params, overrides=None, nodes=None):
    """dict node -> Rule for ``nodes`` (default: every node but the inputs)."""
    firsts = first_layers(g)
    entries = [(s, r, True) for s, r in normalize_overrides(overrides)]
    entries += [(s, r, False) for s, r in preset.rules]
    built = {}
    out = {}
    for n in (g.nodes if nodes is None else [m for m in g.nodes if m in nodes]):
        op = g.nodes[n]["op"]
        if op.kind == "input":
            continue
        info = node_info(g, n, firsts)
        chosen = None
        for i, (sel, r, is_override) in enumerate(entries):
            if op.kind == "unknown" and not (is_override and _may_accept_unknown(sel)):
                continue
            if match(sel, info):
                if i not in built:
                    built[i] = _as_rule(r, params)
                chosen = built[i]
                break
        if chosen is None:
            raise UnsupportedLayerError(_unsupported_message(g, n, preset))
        if chosen.kinds and not any(fnmatch.fnmatchcase(op.kind, k) for k in chosen.kinds) \
                and op.kind != "unknown":
            raise UnsupportedLayerError(
                f"rule {chosen!r} selected for node {n!r} ({info.class_name}, op kind {op.kind!r}) "
                f"handles only {chosen.kinds}; choose another rule in overrides")
        out[n] = chosen
    return out


def _may_accept_unknown(selector):
    """An unknown op (a custom Layer, a Lambda: its computation is opaque) takes its rule
    only from a user override that names it: a layer name, ``re:``, ``class:``, a class, a
    predicate, or ``kind:unknown``; never from a preset entry or a wildcard ``kind:*``."""
    if isinstance(selector, str) and selector.startswith("kind:"):
        return selector[len("kind:"):].split("/")[0] == "unknown"
    return True


def _unsupported_message(g, n, preset):
    d = g.nodes[n]
    op = d["op"]
    reason = getattr(op, "reason", None) or f"preset {preset.name!r} has no rule for op kind {op.kind!r}"
    register = (
        f"Say what the layer computes with lrpgraph.register_layer({d['class_name']}, describe), e.g. "
        f"describe = lambda layer: lrpgraph.ops.Linear(forward=lambda x, k: tf.matmul(x, k), "
        f"kernel=layer.kernel, bias=layer.bias), and every preset applies its rules to it; or attach "
        if op.kind == "unknown" and d["class_name"] != "Lambda" else "Attach ")
    return (
        f"layer {n!r} of class {d['class_name']} is not supported: {reason}. "
        f"{register}a rule to it with overrides, e.g. "
        f"lrpgraph.Analyzer(model, {preset.name!r}, overrides={{{_base(n)!r}: lrpgraph.rules.Gradient()}}) "
        f"(or your own lrpgraph.rules.Rule subclass; see docs/rules.md)."
    )


def reachable_nodes(g, outputs):
    """Nodes from which an output is reachable (the ones the reverse pass visits)."""
    keep = set()
    for o, _ in outputs:
        keep.add(o)
        keep |= nx.ancestors(g, o)
    return keep
