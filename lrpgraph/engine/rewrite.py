"""Stage 2: canonicalisation passes, each a pure function graph -> new graph.

Every pass keeps the model's function: the rewritten graph computes the same
outputs as the model (up to float rounding; the tests check each pass alone).
The one deliberate exception is :func:`strip_softmax`, which makes the graph
end at the logits.

:data:`DEFAULT_PASSES` is the pipeline :func:`canonicalize` runs.
"""

from __future__ import annotations

import keras
import networkx as nx
import numpy as np
import tensorflow as tf

from . import graph as G
from .ops import Attention, Bilinear, Chain, Elementwise, Linear, Multiply, Reshape, Softmax, replace

__all__ = [
    "inline_nested_models", "split_attention", "insert_casts", "remove_noise", "split_chains", "split_activations",
    "strip_softmax", "fold_batchnorm", "fold_input_affine", "fuse_hard_sigmoid", "mark_gates",
    "canonicalize", "DEFAULT_PASSES",
]


def _copy(g):
    h = g.copy()
    h.graph = dict(g.graph)
    h.graph["inputs"] = list(g.graph["inputs"])
    h.graph["outputs"] = list(g.graph["outputs"])
    return h


def _insert_after(g, n, new_id, attrs):
    """Insert node ``new_id`` between ``n`` (output 0) and all its consumers."""
    outs = G.consumers(g, n)
    g.add_node(new_id, **attrs)
    for v, out, slot in outs:
        g.remove_edges_from([(n, v, k) for k, d in g[n][v].items() if d["slot"] == slot and d["out"] == out])
        g.add_edge(new_id, v, out=0, slot=slot)
    g.add_edge(n, new_id, out=0, slot=0)
    g.graph["outputs"] = [(new_id, 0) if (o, i) == (n, 0) else (o, i) for o, i in g.graph["outputs"]]


def _node_attrs(g, n, **changes):
    d = dict(g.nodes[n])
    d.update(changes)
    return d


# ---- passes ----------------------------------------------------------------------

def inline_nested_models(g):
    """Replace each nested Functional/Sequential model node by its own graph
    (node ids prefixed ``outer_name/``), recursively."""
    g = _copy(g)
    while True:
        nested = [n for n in g.nodes if g.nodes[n]["op"].kind == "nested"]
        if not nested:
            return g
        for n in nested:
            _inline_one(g, n)


def _inline_one(g, n):
    op = g.nodes[n]["op"]
    expand = getattr(op, "expand", None)
    model = g.nodes[n]["layer"] if expand is None else expand(list(op.call.input_specs))
    sub = G.to_graph(model)
    prefix = f"{n}/"
    mapping = {m: prefix + m for m in sub.nodes}
    outer_inputs = G.in_edges(g, n)
    if len(outer_inputs) != len(sub.graph["inputs"]):
        raise ValueError(
            f"nested model {model.name!r} is called with {len(outer_inputs)} tensors but has "
            f"{len(sub.graph['inputs'])} inputs; pass its inputs as a list in model order"
        )
    feed = {sub_in: (u, o) for sub_in, (u, o, _) in zip(sub.graph["inputs"], outer_inputs)}
    for m, d in sub.nodes(data=True):
        if m in feed:
            continue
        g.add_node(mapping[m], **dict(d, name=mapping[m]))
    for u, v, d in sub.edges(data=True):
        if u in feed:
            src, out = feed[u]
            g.add_edge(src, mapping[v], out=out, slot=d["slot"])
        else:
            g.add_edge(mapping[u], mapping[v], out=d["out"], slot=d["slot"])

    def resolve(k):
        if k >= len(sub.graph["outputs"]):
            raise NotImplementedError(
                f"output {k} of {g.nodes[n]['class_name']} {n!r} is used, but its description computes "
                f"{len(sub.graph['outputs'])} output(s) ({model.name!r}); use only the outputs it describes, "
                "or describe the layer with lrpgraph.register_layer")
        o, i = sub.graph["outputs"][k]
        return feed[o] if o in feed else (mapping[o], i)

    for v, out, slot in G.consumers(g, n):
        src, src_out = resolve(out)
        g.add_edge(src, v, out=src_out, slot=slot)
    g.graph["outputs"] = [resolve(i) if o == n else (o, i) for o, i in g.graph["outputs"]]
    g.remove_node(n)


def einsum_shape(equation, a_shape, b_shape):
    """The output shape of ``einsum(equation, a, b)`` for static input shapes (None:
    unknown); an ellipsis stands for the leading axes of the longer operand."""
    lhs, out = equation.replace(" ", "").split("->")
    specs = lhs.split(",")
    sizes, ell = {}, ()
    for spec, shape in zip(specs, (a_shape, b_shape)):
        shape = tuple(shape)
        if "..." in spec:
            head, tail = spec.split("...")
            n = len(shape) - len(head) - len(tail)
            e = shape[len(head):len(head) + n]
            ell = e if len(e) >= len(ell) else ell
            spec, shape = head + tail, shape[:len(head)] + shape[len(head) + n:]
        for c, d in zip(spec, shape):
            if sizes.get(c) is None or (d is not None and d != 1):
                sizes[c] = d
    if "..." in out:
        head, tail = out.split("...")
        return tuple(sizes[c] for c in head) + tuple(ell) + tuple(sizes[c] for c in tail)
    return tuple(sizes[c] for c in out)


def split_attention(g):
    """A multi-head attention node (:class:`~lrpgraph.ops.Attention`) -> its parts,
    one node each, so that each gets a rule::

        q = query(x_q)              id/query    linear (EinsumDense)
        k = key(x_k)                id/key      linear
        v = value(x_v)              id/value    linear
        a = einsum(k, q / sqrt(d))  id/scores   bilinear/scores
        w = softmax(a [, mask])     id/softmax  softmax (masked; the mask is a second input)
        c = einsum(w, v)            id/combine  bilinear/combine (const_slot 0: the weights)
        y = output(c)               id          linear (the output projection keeps the id)

    Attention dropout is inactive at inference and leaves no node."""
    g = _copy(g)
    for n in [n for n in g.nodes if isinstance(g.nodes[n]["op"], Attention)]:
        op, d = g.nodes[n]["op"], g.nodes[n]
        ins = {slot: (u, out) for u, out, slot in G.in_edges(g, n)}
        shape_of = lambda e: g.nodes[e[0]]["output_shapes"][e[1]]  # noqa: E731
        dtype = d["output_dtypes"][0]

        def add(suffix, part, inputs, shape, class_name):
            pid = G.fresh_id(g, f"{n}/{suffix}")
            g.add_node(pid, **_node_attrs(g, n, name=pid, op=part, call=None, n_inputs=len(inputs), n_outputs=1,
                                          output_shapes=[shape], output_dtypes=[dtype], class_name=class_name,
                                          part_of=n))
            for slot, (u, out) in enumerate(inputs):
                g.add_edge(u, pid, out=out, slot=slot)
            return (pid, 0), shape

        def project(name, slot):
            lin = getattr(op, name)
            kshape = tuple(lin.kernel().shape)
            return add(name, lin, [ins[slot]], einsum_shape(_equation(lin), shape_of(ins[slot]), kshape),
                       "EinsumDense")

        q, q_shape = project("query", op.slots["query"])
        k, k_shape = project("key", op.slots["key"])
        v, v_shape = project("value", op.slots["value"])
        a, a_shape = add("scores", op.scores, [k, q], einsum_shape(op.scores.equation, k_shape, q_shape), "Einsum")
        mask = [ins[op.slots["mask"]]] if op.slots.get("mask") is not None else []
        w, _ = add("softmax", op.softmax, [a] + mask, a_shape, "Softmax")
        c, _ = add("combine", op.combine, [w, v], einsum_shape(op.combine.equation, a_shape, v_shape), "Einsum")
        g.remove_edges_from(list(g.in_edges(n, keys=True)))
        g.add_edge(c[0], n, out=0, slot=0)
        g.nodes[n]["op"] = op.output
        g.nodes[n]["n_inputs"] = 1
    return g


def _equation(linear):
    """The einsum equation of an EinsumDense op's forward (set by the Keras adapter)."""
    eq = getattr(linear.forward, "equation", None)
    if eq is None:
        raise ValueError("split_attention: the projections of an Attention op must be einsum Linear ops "
                         "(lrpgraph.engine.ops.keras.einsum_forward)")
    return eq


def _autocast_dtype(layer):
    """The dtype a Keras layer casts its floating inputs to before calling ``call``
    (Layer.__call__'s autocast), or None when it takes them as they come."""
    if not isinstance(layer, keras.Layer) or not getattr(layer, "autocast", False) \
            or not getattr(layer, "_convert_input_args", True):
        return None
    return tf.as_dtype(layer.compute_dtype)


def insert_casts(g):
    """Make Keras's input autocasting explicit: where a layer computing in one float
    dtype reads a tensor of another (a float64 input into float32 layers, a float32
    tensor into a mixed_float16 layer), insert a ``reshape/cast`` node.  The ops then
    see the dtype their parameters have; the cast's gradient hands relevance back in
    the producer's dtype."""
    g = _copy(g)
    casts = {}  # (producer, output, dtype) -> cast node: one cast serves every reader
    for n in list(g.nodes):
        target = _autocast_dtype(g.nodes[n]["layer"])
        if target is None or not target.is_floating:
            continue
        for u, out, slot in G.in_edges(g, n):
            have = tf.as_dtype(g.nodes[u]["output_dtypes"][out])
            if not have.is_floating or have == target:
                continue
            c = casts.get((u, out, target))
            if c is None:
                c = casts[(u, out, target)] = G.fresh_id(g, f"{u}/cast_{target.name}")
                g.add_node(c, name=c, layer=None, class_name="Cast", call=None,
                           op=Reshape("cast", lambda xs, t=target: [tf.cast(xs[0], t)]),
                           n_inputs=1, n_outputs=1, output_shapes=[g.nodes[u]["output_shapes"][out]],
                           output_dtypes=[target.name])
                g.add_edge(u, c, out=out, slot=0)
            g.remove_edges_from([(u, n, k) for k, d in g[u][n].items() if d["slot"] == slot and d["out"] == out])
            g.add_edge(c, n, out=0, slot=slot)
    return g


def remove_noise(g):
    """Drop Dropout, SpatialDropout, GaussianNoise, GaussianDropout, AlphaDropout and
    ActivityRegularization: identities at inference."""
    g = _copy(g)
    for n in [n for n in g.nodes if g.nodes[n]["op"].kind == "noise"]:
        G.bypass(g, n)
    return g


def split_chains(g):
    """A :class:`~lrpgraph.ops.Chain` node (SeparableConv: depthwise then pointwise) ->
    one node per part, in a row; the first part keeps the node id, the others get
    ``id/suffix``.  The last part's node produces the original output."""
    g = _copy(g)
    for n in [n for n in g.nodes if isinstance(g.nodes[n]["op"], Chain)]:
        (_, first), *rest = g.nodes[n]["op"].parts
        prev = n
        for suffix, op in rest:
            pid = G.fresh_id(g, f"{n}/{suffix}")
            _insert_after(g, prev, pid, _node_attrs(g, n, name=pid, op=op, call=None, n_inputs=1))
            prev = pid
        g.nodes[n]["op"] = first
        if rest:
            g.nodes[n]["output_shapes"] = [None]
    return g


def split_activations(g):
    """Linear op with a fused activation -> linear op + elementwise (or softmax) node."""
    g = _copy(g)
    for n in [n for n in g.nodes if isinstance(g.nodes[n]["op"], Linear) and g.nodes[n]["op"].activation]:
        op = g.nodes[n]["op"]
        name, fn = op.activation
        g.nodes[n]["op"] = replace(op, activation=None)
        if name == "softmax":
            act = Softmax(lambda xs, fn=fn: [fn(xs[0])])
        else:
            act = Elementwise(fn, name)
        aid = G.fresh_id(g, f"{n}/{name}")
        _insert_after(g, n, aid, _node_attrs(g, n, name=aid, op=act, call=None, n_inputs=1,
                                             class_name="Activation", fused_in=n))
    return g


def strip_softmax(g):
    """Make relevance start at the logits: remove a softmax that produces a model
    output (a Softmax/Activation('softmax') node or an activation fused into the
    last linear layer)."""
    g = _copy(g)
    for o, _ in list(g.graph["outputs"]):
        op = g.nodes[o]["op"]
        if op.kind == "softmax" and g.nodes[o]["n_inputs"] == 1:
            G.bypass(g, o)
        elif isinstance(op, Linear) and op.activation and op.activation[0] == "softmax":
            g.nodes[o]["op"] = replace(op, activation=None)
    return g


def _fold_scale(op, scale):
    """Kernel scaled along the output-channel axis of ``op``."""
    axis = op.kernel_out_axis

    def kernel():
        k = op.kernel()
        s = scale()
        if axis == "depthwise":
            return k * tf.reshape(s, (k.shape[-2], k.shape[-1]))
        shape = [1] * len(k.shape)
        shape[axis] = -1
        return k * tf.reshape(s, shape)

    return kernel


def fold_batchnorm(g):
    """Fold a BatchNormalization into the Conv/Dense directly before it:
    w' = w * s, b' = b * s + t with s = gamma / sqrt(var + eps), t = beta - mean * s.
    A BatchNormalization anywhere else stays an affine linear op.  ConvNeXt's layer
    scale (y = x * gamma, no shift) folds the same way."""
    g = _copy(g)
    for n in list(g.nodes):
        if n not in g:
            continue
        bn = g.nodes[n]["op"]
        if not (isinstance(bn, Linear) and bn.subkind in ("batchnorm", "layer_scale")):
            continue
        ins = G.in_edges(g, n)
        if len(ins) != 1:
            continue
        p, out, _ = ins[0]
        prev = g.nodes[p]["op"]
        if not (isinstance(prev, Linear) and prev.kernel_out_axis is not None and prev.activation is None):
            continue
        if len(G.consumers(g, p)) != 1 or G.is_output(g, p):
            continue
        rank = len(g.nodes[n]["output_shapes"][0])
        if bn.scale_axes != (prev.channel_axis % rank,):
            continue
        scale, shift = bn.kernel, bn.bias

        def bias(prev=prev, scale=scale, shift=shift):
            b = prev.bias() if prev.bias is not None else None
            t = shift() if shift is not None else None
            if b is None:
                return t
            return b * scale() if t is None else b * scale() + t

        folded = replace(prev, kernel=_fold_scale(prev, scale), bias=bias)
        g.nodes[p]["op"] = folded
        g.nodes[p]["folded"] = list(g.nodes[p].get("folded", [])) + [n]
        G.bypass(g, n)
    return g


_INPUT_AFFINE = ("rescaling", "normalization")
_PADDING = ("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D")
_FOLD_TARGETS = ("dense", "conv1d", "conv2d", "conv3d", "depthwise")


def fold_input_affine(g):
    """Fold a Rescaling or Normalization at the model input (y = a * x + c, a per
    channel) into the first Dense/Conv/DepthwiseConv after it, through zero padding:

        f(pad(a * x + c), W) + b = f(pad(x), W * a) + [f(pad(c * 1), W) + b]

    (``a`` scales the kernel's input-channel axis; the bracket is a constant bias
    map, which varies spatially where padding meets the border).  The linear op
    then sees the raw model input, so a bounded rule's ``low``/``high`` refer to
    the range of the model input (e.g. 0..255 for EfficientNet), not to the
    normalised range.  An affine op that cannot be folded stays a linear op."""
    g = _copy(g)
    while any(_fold_input_affine_once(g, n) for n in list(g.nodes)):
        pass
    return g


def _is_input_affine(g, n):
    op = g.nodes[n]["op"]
    return isinstance(op, Linear) and op.subkind in _INPUT_AFFINE and op.activation is None


def _is_cast(g, n):
    op = g.nodes[n]["op"]
    return op.kind == "reshape" and op.subkind == "cast"


def _fold_input_affine_once(g, n):
    if n not in g or not _is_input_affine(g, n) or len(G.in_edges(g, n)) != 1:
        return False
    if any(g.nodes[a]["op"].kind != "input" and not _is_input_affine(g, a) and not _is_cast(g, a)
           for a in nx.ancestors(g, n)):
        return False
    chain, cur = [], n
    while True:
        outs = G.consumers(g, cur)
        if len(outs) != 1 or G.is_output(g, cur):
            return False
        cur = outs[0][0]
        op = g.nodes[cur]["op"]
        if op.kind == "reshape" and op.subkind in _PADDING and len(G.in_edges(g, cur)) == 1:
            chain.append(cur)
            continue
        break
    target, top, aff = cur, g.nodes[cur]["op"], g.nodes[n]["op"]
    if not (isinstance(top, Linear) and top.subkind in _FOLD_TARGETS and len(G.in_edges(g, target)) == 1):
        return False
    shape = g.nodes[n]["output_shapes"][0]
    if shape is None or any(d is None for d in shape[1:]):
        return False  # the bias map needs a static input shape
    rank, axis = len(shape), top.channel_axis % len(shape)
    scale = np.asarray(aff.kernel())
    if scale.ndim > rank or any(d != 1 for i, d in enumerate((1,) * (rank - scale.ndim) + scale.shape)
                                if i != axis) or scale.size not in (1, shape[axis]):
        return False  # not a per-channel scale on the channel axis the linear op reads
    channels, pads = shape[axis], [g.nodes[c]["op"] for c in chain]
    offset_shape = [1] * rank
    offset_shape[axis] = -1

    def kernel(top=top, scale=aff.kernel, channels=channels):
        k = top.kernel()
        a = tf.broadcast_to(tf.reshape(tf.cast(scale(), k.dtype), [-1]), [channels])
        return k * tf.reshape(a, [channels, 1])  # input channels are kernel axis -2

    def bias(top=top, offset=aff.bias, pads=pads, shape=shape, offset_shape=offset_shape):
        k = top.kernel()
        b = top.bias() if top.bias is not None else None
        if offset is None:
            return b
        c = offset()
        if len(c.shape) > 1:
            c = tf.reshape(c, [-1])
        t = tf.ones([1] + list(shape[1:]), k.dtype) * tf.reshape(tf.cast(c, k.dtype), offset_shape)
        for pad in pads:
            t = pad([t])[0]
        m = top.forward(t, k)
        return m if b is None else top.add_bias(m, b)

    g.nodes[target]["op"] = replace(top, kernel=kernel, bias=bias)
    g.nodes[target]["folded"] = list(g.nodes[target].get("folded", [])) + [n]
    g.nodes[target]["folded_input"] = list(g.nodes[target].get("folded_input", [])) + [n]  # output gone
    G.bypass(g, n)
    return True


def _const(g, n, subkind, scale, offset):
    op = g.nodes[n]["op"]
    if not (isinstance(op, Linear) and op.subkind == subkind):
        return False
    k = np.asarray(op.kernel())
    rtol = max(1e-6, float(np.finfo(k.dtype).eps))  # the constant as the op's dtype holds it
    off = None if op.bias is None else np.asarray(op.bias())
    return np.allclose(k, scale, rtol=rtol, atol=0) and (
        offset is None and off is None or off is not None and np.allclose(off, offset, rtol=rtol))


def fuse_hard_sigmoid(g):
    """``relu6(x + 3) * (1/6)`` written with keras ops (MobileNetV3's hard sigmoid) ->
    one elementwise ``hard_sigmoid`` node, so that :func:`mark_gates` sees the gate."""
    g = _copy(g)
    for m in list(g.nodes):
        if m not in g:
            continue
        if not (_const(g, m, "const_multiply", 1 / 6, None) or _const(g, m, "const_divide", 1 / 6, None)):
            continue
        (r, _, _), = G.in_edges(g, m)
        rop = g.nodes[r]["op"]
        if not (rop.kind == "elementwise" and rop.subkind == "relu6") or len(G.in_edges(g, r)) != 1:
            continue
        (a, _, _), = G.in_edges(g, r)
        if not _const(g, a, "const_add", 1.0, 3.0) or len(G.in_edges(g, a)) != 1:
            continue
        if any(len(G.consumers(g, u)) != 1 or G.is_output(g, u) for u in (a, r)):
            continue
        G.bypass(g, a)
        G.bypass(g, r)
        g.nodes[m]["op"] = Elementwise(lambda x: tf.nn.relu6(x + 3.0) * (1.0 / 6.0), "hard_sigmoid")
        g.nodes[m]["fused_from"] = [a, r]
    return g


GATE_ACTIVATIONS = ("sigmoid", "hard_sigmoid", "hard_silu_gate", "softmax")


def mark_gates(g):
    """For each Multiply, record which input is the gate (made by a sigmoid-like op);
    for each bilinear product without one, which input is a softmax (the attention
    weights CP-LRP holds constant)."""
    g = _copy(g)
    for n in g.nodes:
        op = g.nodes[n]["op"]
        if not isinstance(op, Multiply):
            continue
        slots = [slot for u, _, slot in G.in_edges(g, n)
                 if g.nodes[u]["op"].kind in ("elementwise", "softmax")
                 and (g.nodes[u]["op"].subkind in GATE_ACTIVATIONS or g.nodes[u]["op"].kind == "softmax")]
        if len(slots) == 1:
            g.nodes[n]["op"] = replace(op, gate_slot=slots[0])
    for n in g.nodes:  # a product of softmax weights and another tensor: attention
        op = g.nodes[n]["op"]
        if isinstance(op, Bilinear) and op.const_slot is None:
            slots = [slot for u, _, slot in G.in_edges(g, n) if g.nodes[u]["op"].kind == "softmax"]
            if len(slots) == 1:
                g.nodes[n]["op"] = replace(op, const_slot=slots[0])
    return g


DEFAULT_PASSES = (
    inline_nested_models,
    split_attention,
    insert_casts,
    remove_noise,
    split_chains,
    split_activations,
    strip_softmax,
    fold_batchnorm,
    fold_input_affine,
    fuse_hard_sigmoid,
    mark_gates,
)


def canonicalize(g, passes=DEFAULT_PASSES):
    """Run the rewrite passes in order and return the new graph."""
    for p in passes:
        g = p(g)
    return g

