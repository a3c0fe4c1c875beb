"""Stage 1: a Keras 3 model becomes a networkx DAG, one node per layer call.

The graph is plain data.  Each node is one call of a Keras operation (a layer
called twice is two nodes); its attributes are listed, each once, with what sets it
and who reads it, in :class:`NodeAttrs`.  Edges are ``(producer, consumer, key)``
with data ``out`` (which output of the producer) and ``slot`` (which input slot of
the consumer), so ``x + x`` has two slots fed by two parallel edges.  Graph
attributes: ``inputs`` (input node ids, in model order), ``outputs`` (list of
``(node, out_index)`` in model order), ``output_names`` and ``model_name``.

Code outside the engine (the method families, the checks) reads nodes through the
named helpers here (:func:`op`, :func:`class_name`, :func:`layer`, :func:`recorded_call`,
:func:`output_shape`, :func:`output_dtype`), not raw keys.

Nested models stay single nodes here; :func:`lrpgraph.engine.rewrite.inline_nested_models`
expands them.
"""

from __future__ import annotations

from typing import Any, TypedDict

import networkx as nx

import keras
from keras import tree

from .ops import describe
from keras.src.backend import KerasTensor


class _NodeAttrsRequired(TypedDict):
    name: str
    layer: Any
    class_name: str
    call: Any
    op: Any
    n_inputs: int
    n_outputs: int
    output_shapes: list
    output_dtypes: list


class NodeAttrs(_NodeAttrsRequired, total=False):
    """The attributes of one graph node (``g.nodes[n]``): every key, what sets it, who reads it.

    Set by :func:`to_graph` on every node (rewrite passes that add nodes set them too):

    ==================  ============================================================  =====================================
    key                 value                                                         read by
    ==================  ============================================================  =====================================
    ``name``            the node id: the layer's name, ``name#k`` for its k-th        rewrite (inlining renames it)
                        extra call, ``outer/inner`` once inlined, ``id/suffix`` for
                        a node a pass split off
    ``layer``           the Keras ``Operation`` behind the node (None for a node a    assign (class selectors, ``NodeInfo``),
                        pass made: a cast, an attention part)                         compile (``Context.layer``), rewrite
                                                                                      (nested models, autocast), check
    ``class_name``      the operation's class name (``"Cast"``, ``"Activation"``      assign (``class:`` selectors, errors),
                        for nodes a pass made)                                        check, :func:`class_name` (CAM)
    ``call``            a :class:`Call` re-running the recorded call on new tensors   check (reference logits); the op holds
                        (None for input nodes and nodes a pass made)                  the same ``Call`` for its own forward
    ``op``              the op description (:mod:`lrpgraph.engine.ops`): what the     everything: rewrite, assign, compile,
                        node computes, as rules see it; passes replace it             prepared, :func:`op` (families)
    ``n_inputs``        number of input slots                                         rewrite (softmax stripping)
    ``n_outputs``       number of outputs                                             nothing in the library (reports, tests)
    ``output_shapes``   one shape tuple per output, batch dimension None; ``[None]``   prepared, compile, rewrite, check,
                        on the first part of a split ``Chain`` (its shape is not       :func:`output_shape` (CAM, rollout)
                        recorded)
    ``output_dtypes``   one dtype name per output                                     prepared, compile, rewrite (autocast)
    ==================  ============================================================  =====================================

    Added by a rewrite pass (:mod:`lrpgraph.engine.rewrite`) on the nodes it changes:

    ==================  ============================================================  =====================================
    ``fused_in``        ``split_activations``: on the split-off activation node, the  :func:`layer_output_nodes` (the layer's
                        id of the linear node it was fused into                       output is the activation's)
    ``folded``          ``fold_batchnorm``, ``fold_input_affine``: on the linear      :func:`layer_output_nodes` (a folded
                        node, the ids of the BatchNorm / Rescaling / Normalization    BatchNorm's output is this node's)
                        nodes folded into it, in folding order
    ``folded_input``    ``fold_input_affine``: the subset of ``folded`` that stood    :func:`layer_output_nodes` (their
                        *before* the node (their output no longer exists)             output is gone: not found)
    ``fused_from``      ``fuse_hard_sigmoid``: on the ``hard_sigmoid`` node, the      nothing in the library (provenance,
                        ids of the add and relu6 nodes fused into it                  for reports and tests)
    ``part_of``         ``split_attention``: on each part, the id of the attention    nothing in the library (provenance)
                        node it was split from
    ==================  ============================================================  =====================================

    ``tests/test_graph.py`` checks that canonical graphs carry exactly these keys.
    """

    fused_in: str
    folded: list
    folded_input: list
    fused_from: list
    part_of: str


NODE_KEYS = frozenset(NodeAttrs.__required_keys__ | NodeAttrs.__optional_keys__)


class Call:
    """Re-runs one recorded call of a Keras operation on new tensors.

    ``Call(op, arguments)(inputs)`` substitutes ``inputs[i]`` for the i-th
    KerasTensor of the recorded call (in flattening order) and returns the
    flattened list of outputs.
    """

    def __init__(self, op, args, kwargs):
        self.op = op
        self.args = args
        self.kwargs = kwargs
        self._flat = tree.flatten((args, kwargs))
        self._slots = [i for i, a in enumerate(self._flat) if isinstance(a, KerasTensor)]
        self.input_specs = [self._flat[i] for i in self._slots]

    def fill(self, inputs):
        flat = list(self._flat)
        for i, value in zip(self._slots, inputs):
            flat[i] = value
        return tree.pack_sequence_as((self.args, self.kwargs), flat)

    def __call__(self, inputs):
        args, kwargs = self.fill(inputs)
        return tree.flatten(self.op(*args, **kwargs))


def _is_graph_model(model):
    try:
        model.inputs, model.outputs  # noqa: B018  (raises when there is no graph)
    except (AttributeError, ValueError):
        return False
    return bool(model.inputs) and bool(model.outputs) and all(
        isinstance(t, KerasTensor) for t in model.inputs + model.outputs
    )


def is_nested_model(op):
    """True when ``op`` is a Functional or Sequential model used as a layer."""
    return isinstance(op, keras.Model) and _is_graph_model(op)


def require_graph_model(model):
    """Raise a TypeError unless ``model`` is a Keras 3 model with a functional graph."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"expected a keras.Model, got {type(model).__name__}. Build a Sequential or "
            "functional keras.Model and pass that."
        )
    if not _is_graph_model(model):
        raise TypeError(
            f"model {model.name!r} ({type(model).__name__}) has no functional graph: it is "
            "a subclassed model, or a Sequential model that was never built with an input "
            "shape. lrpgraph needs the layer graph. Wrap it in a functional model, e.g. "
            "`inp = keras.Input(shape); model = keras.Model(inp, subclassed_model_layers(inp))`, "
            "writing call() as calls to layers; or give a Sequential model an "
            "`keras.Input(shape)` as its first element."
        )


def to_graph(model) -> nx.MultiDiGraph:
    """Convert a functional or Sequential Keras 3 model into a node-per-call DAG."""
    require_graph_model(model)
    g = nx.MultiDiGraph()
    ids = {}  # (id(op), node_index) -> node id
    rank = _call_ranks(model)  # name calls in call order: first `name`, then `name#1`, ...
    taken = set()

    def node_id(op, node_index):
        key = (id(op), node_index)
        if key not in ids:
            k = rank.get(key, 0)
            nid = op.name if k == 0 else f"{op.name}#{k}"
            while nid in taken:  # two distinct ops with one name
                k += 1
                nid = f"{op.name}#{k}"
            taken.add(nid)
            ids[key] = nid
        return ids[key]

    def visit(tensor):
        op, node_index, tensor_index = tensor._keras_history
        nid = node_id(op, node_index)
        if nid in g:
            return nid, tensor_index
        knode = op._inbound_nodes[node_index]
        outputs = list(knode.outputs)
        if knode.is_input:
            call = None
            n_inputs = 0
        else:
            call = Call(op, knode.arguments.args, knode.arguments.kwargs)
            n_inputs = len(call.input_specs)
        rank = len(call.input_specs[0].shape) if call is not None and call.input_specs else None
        g.add_node(nid, **NodeAttrs(
            name=nid,
            layer=op,
            class_name=type(op).__name__,
            call=call,
            op=describe(op, call, rank),
            n_inputs=n_inputs,
            n_outputs=len(outputs),
            output_shapes=[tuple(t.shape) for t in outputs],
            output_dtypes=[t.dtype for t in outputs],
        ))
        if call is not None:
            for slot, spec in enumerate(call.input_specs):
                src, out = visit(spec)
                g.add_edge(src, nid, out=out, slot=slot)
        return nid, tensor_index

    outputs = [visit(t) for t in model.outputs]
    inputs = []
    for t in model.inputs:
        op, node_index, _ = t._keras_history
        nid = node_id(op, node_index)
        if nid not in g:  # an input that no output depends on
            visit(t)
        inputs.append(nid)
    g.graph["inputs"] = inputs
    g.graph["outputs"] = outputs
    g.graph["output_names"] = [_output_name(model, i, nid) for i, (nid, _) in enumerate(outputs)]
    g.graph["model_name"] = model.name
    return g


def _call_ranks(model):
    """(id(op), node_index) -> rank of that call among the op's calls in this model."""
    calls, stack = {}, [t._keras_history for t in model.outputs + model.inputs]
    seen = set()
    while stack:
        op, node_index, _ = stack.pop()
        if (id(op), node_index) in seen:
            continue
        seen.add((id(op), node_index))
        calls.setdefault(id(op), []).append(node_index)
        stack.extend(t._keras_history for t in op._inbound_nodes[node_index].arguments.keras_tensors)
    return {(o, i): k for o, idx in calls.items() for k, i in enumerate(sorted(idx))}


def _output_name(model, index, nid):
    names = getattr(model, "output_names", None)
    if names and index < len(names):
        return names[index]
    return nid


# ---- small pure helpers over the graph ------------------------------------

def op(g, n):
    """The op description of node ``n`` (:mod:`lrpgraph.engine.ops`)."""
    return g.nodes[n]["op"]


def class_name(g, n):
    """The class name of the operation behind node ``n`` (``"Conv2D"``, ``"Cast"``, ...)."""
    return g.nodes[n]["class_name"]


def layer(g, n):
    """The Keras operation behind node ``n`` (None for a node a rewrite pass made)."""
    return g.nodes[n]["layer"]


def recorded_call(g, n):
    """The :class:`Call` of node ``n`` (None for inputs and for nodes a rewrite pass made)."""
    return g.nodes[n]["call"]


def output_dtype(g, n, index=0):
    """The dtype name of output ``index`` of node ``n``."""
    return g.nodes[n]["output_dtypes"][index]


def output_shape(g, n, index=0):
    """The shape of output ``index`` of node ``n`` (batch dimension None), or None where
    the graph does not record it (the first part of a split ``Chain``)."""
    shapes = g.nodes[n].get("output_shapes")
    return shapes[index] if shapes else None


def in_edges(g, n):
    """Incoming edges of ``n`` as (producer, out_index, slot), sorted by slot."""
    return sorted(((u, d["out"], d["slot"]) for u, _, d in g.in_edges(n, data=True)), key=lambda e: e[2])


def consumers(g, n):
    """Outgoing edges of ``n`` as (consumer, out_index, slot)."""
    return [(v, d["out"], d["slot"]) for _, v, d in g.out_edges(n, data=True)]


def producers(g, n):
    """Producer node ids of ``n``, in slot order."""
    return [u for u, _, _ in in_edges(g, n)]


def is_output(g, n):
    return any(n == o for o, _ in g.graph["outputs"])


def topo_order(g):
    """Deterministic topological order (ties broken by insertion order)."""
    index = {n: i for i, n in enumerate(g.nodes)}
    return list(nx.lexicographical_topological_sort(g, key=lambda n: index[n]))


def bypass(g, n):
    """Remove single-input node ``n``, wiring its producer to its consumers."""
    (src, out, _), = in_edges(g, n)
    for v, _, slot in consumers(g, n):
        g.add_edge(src, v, out=out, slot=slot)
    g.graph["outputs"] = [(src, out) if o == n else (o, i) for o, i in g.graph["outputs"]]
    g.remove_node(n)


def fresh_id(g, base):
    """A node id derived from ``base`` that is not in ``g`` yet."""
    if base not in g:
        return base
    k = 1
    while f"{base}#{k}" in g:
        k += 1
    return f"{base}#{k}"


def first_reached(g, starts, kind):
    """The nodes of op ``kind`` reached from ``starts`` without passing another node of
    that kind (the first linear layers after the inputs, the embeddings token ids feed)."""
    found, seen, stack = set(), set(), list(starts)
    while stack:
        n = stack.pop()
        for v, _, _ in consumers(g, n):
            if v in seen:
                continue
            seen.add(v)
            if g.nodes[v]["op"].kind == kind:
                found.add(v)
            else:
                stack.append(v)
    return found


def layer_output_nodes(g, name, candidates=None):
    """The nodes whose output is the output of the Keras layer ``name``, one per call.

    ``name`` is a layer name (every call: ``conv``, ``conv#1``, ...) or one node id.
    After the rewrite passes the layer's output tensor can live on another node:

    - a fused activation (``Conv2D(..., activation="relu")``) is split into its own
      node (attribute ``fused_in``): the Keras layer's output is the activation's,
      so that node is returned, not the linear node before it;
    - a BatchNorm folded into the Conv/Dense before it (listed in that node's
      ``folded``) has that node's output.  A Rescaling/Normalization folded into the
      layer *after* it (``folded_input``) has no output left: it is not found.

    ``candidates``: consider only these nodes (e.g. the ones the output needs).
    Returns node ids in topological order; an empty list when nothing matches
    (callers word the error).  Used by ``stop_at=`` and the CAM layer lookup so
    that both mean the same tensor by a layer name.
    """
    pool = g.nodes if candidates is None else set(candidates)

    def names_layer(n):
        d = g.nodes[n]
        if n == name:
            return True
        if d.get("fused_in") is not None:
            return False
        folded = [f for f in d.get("folded", ()) if f not in d.get("folded_input", ())]
        return n.split("#")[0] == name or name in folded

    out = []
    for n in topo_order(g):
        if n not in pool or not names_layer(n):
            continue
        acts = [v for v, _, _ in consumers(g, n) if g.nodes[v].get("fused_in") == n]
        out.append(acts[0] if acts else n)
    return list(dict.fromkeys(out))


def layer_output_node(g, name, candidates=None):
    """The node whose output is layer ``name``'s output (its first call), by layer name
    or node id (:func:`layer_output_nodes`); ValueError listing the candidates."""
    hits = layer_output_nodes(g, name, candidates) or layer_output_nodes(g, name)
    if hits:
        return hits[0]
    pool = sorted(n for n in (candidates or g.nodes) if g.nodes[n]["op"].kind != "input")
    raise ValueError(f"no layer named {name!r} in the model; layers: {', '.join(pool)}")
