"""Stage 4: one tf.function holding the forward pass, the head and the reverse pass.

The reverse pass visits nodes in reverse topological order; relevance arriving
at a node output from several consumers is summed.  Weights are read from the
model's variables inside the function (never baked in as constants), and the
input signature has a None batch dimension with the targets as a tensor, so a
new batch size or a new target never retraces.
"""

from __future__ import annotations

import networkx as nx
import tensorflow as tf

from . import graph as G
from .context import Context

__all__ = ["infer_nonneg", "run_forward", "reverse_pass", "Program", "token_embeddings"]

_NONNEG_ACTS = {"relu", "relu6", "sigmoid", "softplus", "hard_sigmoid", "exp", "abs", "square",
                "sqrt"}
_NONNEG_IF_INPUTS = {"pool_max", "pool_avg", "reshape", "concat", "noise", "multiply"}


def infer_nonneg(g):
    """node -> True where the node's output is >= 0 for every input (ReLU and
    friends, and shape/pooling/merging ops of such outputs)."""
    out = {}
    for n in G.topo_order(g):
        op = g.nodes[n]["op"]
        ins = [out[u] for u in G.producers(g, n)]
        if op.kind == "elementwise":
            out[n] = op.subkind in _NONNEG_ACTS
        elif op.kind == "softmax":
            out[n] = True
        elif op.kind in _NONNEG_IF_INPUTS or (op.kind == "add" and op.subkind in ("add", "average")):
            out[n] = bool(ins) and all(ins)
        else:
            out[n] = False
    return out


def run_forward(g, inputs, nodes=None):
    """Evaluate the graph on concrete tensors: dict (node, out_index) -> tensor.
    ``nodes`` limits evaluation to those nodes (plus what they need)."""
    values = {}
    for i, n in enumerate(g.graph["inputs"]):
        values[(n, 0)] = inputs[i]
    for n in G.topo_order(g):
        op = g.nodes[n]["op"]
        if op.kind == "input" or (nodes is not None and n not in nodes):
            continue
        xs = [values[(u, o)] for u, o, _ in G.in_edges(g, n)]
        for i, t in enumerate(op(xs)):
            values[(n, i)] = t
    return values


# A rule's forward-side temporaries (modified weights and outputs) may be computed this
# many visited nodes ahead of its relevance: enough to overlap the reverse step above
# (an activation, a pooling and a linear node), few enough that only a layer or two of
# them are alive at once.
READY_LAG = 4


def reverse_pass(g, rules, values, seeds, nonneg, stop=(), order=None, tile=None, guards=None, record=None):
    """Propagate ``seeds`` ({(node, out): R}) down to the graph inputs (or to the
    nodes in ``stop``); returns the dict of relevances that reached them.

    ``record(node, R, R_in)``, when given, is called for every node a rule visits with the
    relevance at its output and the list its rule returned (one entry per input, None where
    an input gets none): what :func:`lrpgraph.coverage` sums to test each node's conservation.

    ``tile(t)`` maps a forward tensor to the reverse pass's batch (used when several
    heads or targets run as one batch).  ``guards``: a list that collects the rules'
    ``ctx.require_nonzero`` conditions."""
    order = order or G.topo_order(g)
    stop = set(stop)
    rel = dict(seeds)
    remat = {}

    def forward_value(key):
        # An elementwise op's output (a ReLU's, a GELU's) is recomputed from its input
        # where the reverse pass needs it: the forward pass then frees it once the next
        # layer has read it, and only the input (usually kept anyway: the pre-activation
        # output a linear rule divides by) stays alive, as in gradient checkpointing.
        u = key[0]
        if g.nodes[u]["op"].kind != "elementwise":
            return values[key]
        if key not in remat:
            (p, o, _), = G.in_edges(g, u)
            remat[key] = g.nodes[u]["op"]([forward_value((p, o))])[0]
        return remat[key]

    fetch = (lambda key: tile(forward_value(key))) if tile else forward_value
    recent = []  # the relevances the last nodes received: a rule's work waits for the oldest
    for n in reversed(order):
        op = g.nodes[n]["op"]
        if op.kind == "input" or n in stop or n not in rules:
            continue
        R = rel.pop((n, 0), None)
        if any(k[0] == n for k in rel):
            raise NotImplementedError(
                f"node {n!r} ({g.nodes[n]['class_name']}) has several outputs that carry relevance; "
                "multi-output ops are not supported")
        if R is None:
            continue
        edges = G.in_edges(g, n)
        recent = (recent + [R])[-READY_LAG:]
        # Everything the rule computes from the forward pass alone (modified weights and
        # outputs, stabilised denominators, recomputed and tiled copies of forward tensors)
        # waits for the relevance a few nodes above: made as soon as the forward pass
        # allows, every layer's would be alive at once (~10x the gradient's memory).
        with tf.control_dependencies([recent[0]]):
            xs = [fetch((u, o)) for u, o, _ in edges]
            y = fetch((n, 0))
            # with tile, rules may compute batch-independent parts once on `untiled`, then tile
            untiled = ([forward_value((u, o)) for u, o, _ in edges], forward_value((n, 0))) if tile else None
            ctx = Context(op, xs, y, nonneg=[nonneg.get(u, False) for u, _, _ in edges], name=n,
                          layer=g.nodes[n]["layer"], guards=guards, tile=tile, untiled=untiled, ready=recent[0])
            R_in = rules[n].backward(ctx, R)
        if len(R_in) != len(edges):
            raise ValueError(f"rule {rules[n]!r} returned {len(R_in)} relevances for node {n!r} "
                             f"with {len(edges)} inputs")
        if record is not None:
            record(n, R, R_in)
        for (u, o, _), r in zip(edges, R_in):
            if r is None:
                continue
            key = (u, o)
            rel[key] = rel[key] + r if key in rel else r
    return rel


def token_embeddings(g, n):
    """The ``embedding`` nodes the (integer) input ``n`` feeds: those reached from ``n``
    without passing another embedding (ids may be cast on the way; a slice or reshape that
    changes their shape is refused by the Program)."""
    return sorted(G.first_reached(g, [n], "embedding"))


def reps_needed(n_seeds, copies):
    """Whether forward tensors must be tiled (several seeds or a dynamic target count)."""
    return n_seeds > 1 or not (isinstance(copies, int) and copies == 1)


def _compatible(a, b):
    """Shapes compatible as Keras has it: the same rank, and on each axis the same size or
    None (unknown) on either side: ids (None, 8) feed an Embedding whose output, traced
    inside a backbone built for any length, is (None, None, D)."""
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _check_token_layout(g, n, e):
    """An Embedding fed by input ``n`` must look up ids shaped like ``n`` (one vector per
    id), so that its relevance summed over the embedding axis is one value per token."""
    ids = g.nodes[n]["output_shapes"][0]
    emb = g.nodes[e]["output_shapes"][0]
    if emb is None or ids is None or not _compatible(emb[1:-1], ids[1:]):
        raise NotImplementedError(
            f"integer input {n!r} (shape {ids}) reaches Embedding {e!r} (output shape {emb}) with another "
            "shape; relevance per token needs the Embedding to look up the input's ids as they are. "
            "Slice or reshape after the Embedding instead of before it")


class Program:
    """A compiled analysis of one prepared graph with one rule assignment and one head.

    ``fn(inputs, targets)`` -> (relevance per input (or per stop node), logits,
    activations at the stop nodes).  Targets are (N,) int32, -1 meaning "the
    predicted class"; ``multi_fn`` takes (N, T) targets and returns relevances
    shaped (N, T, ...).  ``analysis`` / ``multi_analysis`` are the untraced bodies,
    usable inside another tf.function.

    The head is a :class:`lrpgraph.engine.heads.Head`.  With several seeds per sample the
    seeds run as one batched pass and ``head.combine`` merges them, unless the
    head's one-pass form is exact here (``one_pass``): every rule on the path is
    linear in the relevance it receives and, where the head needs it, conserves
    it (then a guard checks the denominators at run time and falls back to the
    batched pass when one is zero).
    """

    def __init__(self, prepared, rules, head, stop=None, multiply_input=False, jit_compile=False):
        g = prepared.graph
        self.g = g
        self.head = head
        self.output = prepared.output
        self._resolve = prepared.resolve_predicted  # -1 -> the predicted class
        self.needed = prepared.needed
        self.stop = list(stop) if stop else list(g.graph["inputs"])
        below = set().union(*(nx.descendants(g, s) for s in self.stop))
        self.rules = {n: r for n, r in rules.items() if n in below}
        self.multiply_input = multiply_input
        self.out_dtype = tf.as_dtype(g.nodes[self.output[0]]["output_dtypes"][self.output[1]])
        # integer inputs (token ids): the reverse pass stops at the Embeddings they feed
        self.tokens = {} if stop else {
            n: [e for e in token_embeddings(g, n) if e in self.needed] for n in self.stop
            if not tf.as_dtype(g.nodes[n]["output_dtypes"][0]).is_floating}
        for n, embs in self.tokens.items():
            for e in embs:
                _check_token_layout(g, n, e)
        self.reverse_stop = self.stop + sorted({e for embs in self.tokens.values() for e in embs})
        self.order = G.topo_order(g)
        self.nonneg = infer_nonneg(g)
        self.n_seeds = int(head.n_seeds)
        self.one_pass = False  # run the head's one-pass form
        self.guarded = False   # ... behind a run-time conservation guard
        if self.n_seeds > 1 and head.one_pass is not None and self._linear():
            if not head.one_pass_needs_conservation:
                self.one_pass = True
            elif not multiply_input and self.stop == list(g.graph["inputs"]) and self._conserving():
                self.one_pass = self.guarded = True
        self.traces = 0
        target_spec = tf.TensorSpec([None], tf.int32, name="targets")
        multi_spec = tf.TensorSpec([None, None], tf.int32, name="targets")
        specs = list(prepared.input_specs)
        self.fn = tf.function(self.analysis, input_signature=[specs, target_spec],
                              jit_compile=jit_compile, reduce_retracing=True, autograph=False)
        self.multi_fn = tf.function(self.multi_analysis, input_signature=[specs, multi_spec],
                                    jit_compile=jit_compile, reduce_retracing=True, autograph=False)

    def _path(self):
        inputs = set(self.g.graph["inputs"])
        return [n for n in self.needed - inputs if n in self.rules]

    def _linear(self):
        """Every rule between the stop nodes and the output is linear in R."""
        return all(self.rules[n].linear_in_relevance for n in self._path())

    def _conserving(self):
        """Every node between the inputs and the output has a rule that conserves."""
        inputs = set(self.g.graph["inputs"])
        return all(n in self.rules and self.rules[n].conservative(self.g.nodes[n]["op"])
                   for n in self.needed - inputs)

    # -- traced bodies -----------------------------------------------------------
    def _forward(self, inputs):
        values = run_forward(self.g, inputs, self.needed)
        return values, values[self.output]

    def _maps(self, inputs, values, logits, targets, copies):
        """The head's final maps for ``copies`` x N seeds."""
        if self.n_seeds == 1:
            return self._backward(values, self.head.seeds(logits, targets), 1, copies)

        def batched(values):
            seeds = self.head.seeds(logits, targets)
            seeds = tf.concat(tf.unstack(seeds, axis=0), axis=0)
            maps = self._backward(values, seeds, self.n_seeds, copies)
            return [self._combine(m, logits, targets) for m in maps]

        if not self.one_pass:
            return batched(values)
        guards = [] if self.guarded else None
        maps = self._backward(values, self.head.one_pass(logits, targets), 1, copies, guards)
        if not guards:
            return maps
        # A zero denominator lost relevance (sum A(s) != sum s): take the batched pass.  It
        # runs the forward pass again, so that the branch captures the inputs, not every
        # layer's output (which would stay alive through the whole one-pass reverse pass).
        return tf.cond(tf.reduce_all(tf.stack(guards)), lambda: maps,
                       lambda: batched(self._forward(inputs)[0]))

    def _backward(self, values, seeds, n_seeds, copies, guards=None, record=None, rel_out=None):
        """Reverse pass for a batch of ``copies`` x ``n_seeds`` x N seeds (``record``: see
        :func:`reverse_pass`; ``rel_out``, a dict, receives every relevance left at the end)."""
        reps = copies * n_seeds
        tile = None
        if reps_needed(n_seeds, copies):
            memo = {}

            def tile(t, reps=reps):
                if id(t) not in memo:  # static multiples keep tracing cheap
                    mult = [reps] + [1] * (len(t.shape) - 1)
                    memo[id(t)] = (t, tf.tile(t, mult if isinstance(reps, int) else tf.stack(mult)))
                return memo[id(t)][1]
        rel = reverse_pass(self.g, self.rules, values, {self.output: seeds}, self.nonneg, self.reverse_stop,
                           self.order, tile, guards, record)
        if rel_out is not None:
            rel_out.update(rel)
        fetch = (lambda key: values[key]) if tile is None else (lambda key: tile(values[key]))
        maps = []
        for n in self.stop:
            x = fetch((n, 0))
            r = rel.get((n, 0))
            if n in self.tokens:
                maps.append(self._token_map(rel, r, x, fetch, n))
                continue
            r = tf.zeros_like(x) if r is None else tf.cast(r, x.dtype)
            if self.multiply_input:
                r = r * x
            maps.append(r)
        return maps

    def _token_map(self, rel, r, ids, fetch, n):
        """The map of an integer input ``n`` (token ids), in the logits' float dtype:
        at each Embedding it feeds, the relevance reaching the embedding vectors summed
        over the embedding axis (``rules.TokenSum``; for the gradient presets the
        gradient w.r.t. the embedding output, times that output for input_t_gradient),
        plus any relevance reaching the ids by another path (none for a mask).  The reverse
        pass stops at those Embeddings, so a rule assigned to them is not called: every
        method's token map is this sum, by construction."""
        total = tf.zeros(tf.shape(ids), self.out_dtype) if r is None else tf.cast(r, self.out_dtype)
        for e in self.tokens[n]:
            re = rel.get((e, 0))
            if re is None:
                continue
            re = tf.cast(re, self.out_dtype)
            if self.multiply_input:
                re = re * tf.cast(fetch((e, 0)), self.out_dtype)
            total = total + tf.reshape(tf.reduce_sum(re, axis=-1), tf.shape(ids))
        return total

    def analysis(self, inputs, targets):
        """The untraced body of ``fn``: usable inside another tf.function (wrappers
        such as integrated gradients call it on perturbed batches)."""
        self.traces += 1
        values, logits = self._forward(inputs)
        targets = self._resolve(logits, targets)
        maps = self._maps(inputs, values, logits, targets, 1)
        return maps, logits, [values[(n, 0)] for n in self.stop]

    def recorded_analysis(self, inputs, targets, record):
        """The untraced body of ``fn`` for a one-seed head that also calls
        ``record(node, R, R_in)`` for every node the reverse pass visits (``R`` the
        relevance at the node's output, N rows): trace it in the caller's tf.function and
        return what ``record`` kept, to read the relevance at inner nodes from the same
        pass as the maps.  Returns (maps, logits)."""
        if self.n_seeds != 1:
            raise ValueError(f"recording inner relevances needs a one-seed head; this head has {self.n_seeds} "
                             "seeds per sample (read each seed with node_relevance)")
        self.traces += 1
        values, logits = self._forward(inputs)
        targets = self._resolve(logits, targets)
        return self._backward(values, self.head.seeds(logits, targets), 1, 1, record=record), logits

    def node_relevance(self, inputs, targets, record):
        """Run the analysis eagerly (one target per sample, (N,) int32, -1 the predicted class)
        and call ``record(node, R, R_in)`` for every node the reverse pass visits (the relevance
        at its output, the list its rule returned); a head with several seeds runs them as one
        batch of ``n_seeds`` x N rows, uncombined.  Returns (logits, resolved targets, the
        relevances left where the pass ended: {(node, out): R} at the stop nodes, the token
        embeddings, and nodes without a rule (constants), which absorb what reaches them)."""
        values, logits = self._forward(inputs)
        targets = self._resolve(logits, targets)
        seeds = self.head.seeds(logits, targets)
        if self.n_seeds > 1:
            seeds = tf.concat(tf.unstack(seeds, axis=0), axis=0)
        left = {}
        self._backward(values, seeds, self.n_seeds, 1, record=record, rel_out=left)
        return logits, targets, left

    def multi_analysis(self, inputs, targets):
        """The untraced body of ``multi_fn``."""
        self.traces += 1
        values, logits = self._forward(inputs)
        n = tf.shape(targets)[0]
        t = tf.shape(targets)[1]
        logits_t = tf.tile(logits, [t, 1])
        flat = tf.reshape(tf.transpose(self._resolve(tf.repeat(logits[:, None, :], t, axis=1), targets)), [-1])
        maps = self._maps(inputs, values, logits_t, flat, t)
        out = []
        for m in maps:
            m = tf.reshape(m, tf.concat([[t, n], tf.shape(m)[1:]], 0))
            perm = [1, 0] + list(range(2, len(m.shape)))
            out.append(tf.transpose(m, perm))
        return out, logits, [values[(s, 0)] for s in self.stop]

    def _combine(self, m, logits, targets):
        s = self.n_seeds
        m = tf.reshape(m, tf.concat([[s, -1], tf.shape(m)[1:]], 0))
        return self.head.combine(m, logits, targets)

