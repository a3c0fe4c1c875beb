"""Concepts: Concept Relevance Propagation (CRP) on the compiled reverse pass.

Achtibat et al., "From attribution maps to human-understandable explanations
through Concept Relevance Propagation", Nature Machine Intelligence 5, 2023; the
definitions follow zennit-crp 0.6.0 where it is right (docs/concepts.md lists
where it is not, and what is done instead).

A *concept* is a channel c of a layer l (the last axis of its output, NHWC).  With
R^l the relevance at the output of layer l (what reaches it from every consumer),

* conditional relevance (CRP eq. 6): the pass is the method's, except that at each
  conditioned layer l the relevance at its output is masked to the chosen channels,
  R^l <- R^l * 1[c in theta_l], *before* the layer's own rule runs.  Several layers
  in one condition mean their intersection (the relevance that flows through every
  chosen channel).  For the gradient preset this is the masked gradient.
* channel relevance: R^l_c = sum_{h,w} R^l_{h,w,c} (zennit-crp's
  ``ChannelConcept.attribute``), and its normalised form R^l_c / sum_c' |R^l_c'|.

Many conditions run as many *seeds* of one reverse pass, exactly as several targets
do (:mod:`lrpgraph.engine.heads`): a head that repeats the method's seed S times, and a rule
wrapper that multiplies the per-seed relevance by a (S, C) mask at the conditioned
layers (``Context.per_seed``/``merge_seeds``).  The rules themselves do not change, so
every rule-preset method works.

Public entry points: :func:`conditional`, :func:`channel_relevance`,
:func:`attribution_graph`, :func:`reference_samples` (with the dataset runner), and
:class:`ConceptExplainer` which holds the compiled passes of one (model, method).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import networkx as nx
import numpy as np
import tensorflow as tf

from .data.driver import drive
from .data.executors import InProcess, Mirrored
from .data.job import BlockJob
from .data.reader import open_store
from .data.reductions import ClassSum, TopK
from .data.sources import make_source
from .data.spec import JobSpec
from .engine import graph as G
from .engine.compile import Program
from .engine.heads import Head
from .methods.analyzer import Analyzer
from .methods.base import Method
from .methods.registry import register
from .rules.presets import PRESETS

__all__ = ["ConceptExplainer", "conditional", "channel_relevance", "attribution_graph", "normalise_conditions",
           "reference_samples", "ReferenceSamples", "ConceptStatistics", "read_samples", "rf_box", "from_store",
           "conv_layers", "ALL_CONV"]


# ---- conditions --------------------------------------------------------------------------

def _channel_set(v, layer, n_channels, allow_empty=False):
    items = [v] if isinstance(v, (int, np.integer)) else list(v)
    out = set()
    for c in items:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise TypeError(f"conditions[{layer!r}]: channels are ints, got {c!r}")
        if not 0 <= int(c) < n_channels:
            raise ValueError(f"conditions[{layer!r}]: channel {c} is out of range; the layer has "
                             f"{n_channels} channels (0..{n_channels - 1})")
        out.add(int(c))
    if not out and not allow_empty:
        raise ValueError(f"conditions[{layer!r}] names no channel")
    return frozenset(out)


def normalise_conditions(conditions, n_channels):
    """The seeds of a condition spec: a list of ``{layer: frozenset(channels)}``.

    ``conditions`` is

    * a dict ``{layer: channels}``: each entry of a layer's list (an int, or a list of
      ints meaning their union) is one choice; several layers give every combination
      (``itertools.product`` in the dict's order), each the intersection of its
      layers' choices.  ``{"conv": [3, 5, 9]}`` is three maps, one per channel;
      ``{"conv": [[3, 5]]}`` is one map through channel 3 or 5;
      ``{"conv5": [3], "conv4": [1, 2]}`` is two maps: through (conv5 3 and conv4 1),
      through (conv5 3 and conv4 2);
    * a list of dicts ``{layer: int or list}`` (zennit-crp's form), one map per dict,
      a list value meaning the union of its channels (``[]``: no channel, the
      relevance that does not pass through the layer, with ``exclude_parallel=False``).

    ``n_channels(layer)`` gives a layer's channel count (for the range check)."""
    if isinstance(conditions, dict):
        if not conditions:
            raise ValueError("conditions is empty; pass {layer_name: [channels]}")
        per_layer = []
        for layer, v in conditions.items():
            items = [v] if isinstance(v, (int, np.integer)) else list(v)
            if not items:
                raise ValueError(f"conditions[{layer!r}] names no channel")
            per_layer.append([(layer, _channel_set(c, layer, n_channels(layer))) for c in items])
        return [dict(combo) for combo in itertools.product(*per_layer)]
    if isinstance(conditions, (list, tuple)) and conditions and all(isinstance(c, dict) for c in conditions):
        return [{layer: _channel_set(v, layer, n_channels(layer), allow_empty=True) for layer, v in c.items()}
                for c in conditions]
    raise TypeError("conditions must be a dict {layer_name: [channels]} or a list of such dicts "
                    f"(one map each); got {type(conditions).__name__}")


# ---- the pieces the compiled pass sees ---------------------------------------------------------

class _Slot:
    """Per trace: the masks of the conditioned nodes and what the pass recorded."""

    def __init__(self):
        self.masks = {}
        self.record = ()
        self.recorded = {}
        self.activations = {}
        self.keep = {}


class _ConceptRule:
    """Wraps a node's rule: masks the relevance at the node's output per seed (at a
    conditioned layer), records it summed over space (at a recorded layer), runs the
    node's own rule on it, and (``excludes``) zeroes, per seed, what the rule hands to
    inputs that bypass a conditioned layer (``exclude_parallel``).  Linear and
    conservative as the rule it wraps (the masks are linear maps around it)."""

    def __init__(self, inner, node, slot, excludes=()):
        self.inner = inner
        self.node = node
        self.slot = slot
        self.excludes = list(excludes)  # (conditioned node, input slots that bypass it)
        self.linear_in_relevance = inner.linear_in_relevance

    def conservative(self, op):
        return self.inner.conservative(op) and not self.excludes

    def backward(self, ctx, R):
        mask = self.slot.masks.get(self.node)
        if mask is not None:
            R = _mask(ctx, R, mask)
        if self.node in self.slot.record:
            self.slot.recorded[self.node] = _per_channel(ctx, R)
            y = ctx.untiled[1] if ctx.tile is not None else ctx.output
            self.slot.activations[self.node] = _per_channel(_ONE_SEED, y)[0]
        R_in = list(self.inner.backward(ctx, R))
        for cond, slots in self.excludes:
            keep = self.slot.keep.get(cond)
            if keep is None:
                continue
            for i in slots:
                if R_in[i] is not None:
                    R_in[i] = _scale_seeds(ctx, R_in[i], keep)
        return R_in

    def __repr__(self):
        return f"Concept({self.inner!r})"


def _scale_seeds(ctx, R, keep):
    """R (S*N, ...) times keep (S,) per seed."""
    keep = tf.cast(keep, R.dtype)
    rank = len(R.shape)
    if ctx.tile is None:
        return R * keep[0]
    k = tf.reshape(keep, tf.concat([tf.shape(keep), [1] * rank], 0))
    return ctx.merge_seeds(ctx.per_seed(R) * k)


def _mask(ctx, R, mask):
    """R (S*N, ..., C) times mask (S, C) per seed."""
    mask = tf.cast(mask, R.dtype)
    rank = len(R.shape)
    if ctx.tile is None:  # one seed per sample
        return R * tf.reshape(mask[0], [1] * (rank - 1) + [-1])
    m = tf.reshape(mask, tf.concat([tf.shape(mask)[:1], [1] * (rank - 1), tf.shape(mask)[1:]], 0))
    return ctx.merge_seeds(ctx.per_seed(R) * m)


def _per_channel(ctx, R):
    """R (S*N, ..., C) summed over the axes between batch and channel: (S, N, C)."""
    s = tf.reduce_sum(R, axis=list(range(1, len(R.shape) - 1))) if len(R.shape) > 2 else R
    return ctx.per_seed(s) if ctx.tile is not None else s[None]


class _OneSeed:
    tile = None


_ONE_SEED = _OneSeed()


class _RepeatHead(Head):
    """The method's one seed, repeated ``n`` times; the maps come back (N, n, ...)."""

    def __init__(self, inner, n):
        self.inner = inner
        self.n_seeds = int(n)

    def seeds(self, logits, targets):
        s = self.inner.seeds(logits, targets)
        return s if self.n_seeds == 1 else tf.tile(s[None], [self.n_seeds, 1, 1])

    def combine(self, maps, logits, targets):
        return tf.transpose(maps, [1, 0] + list(range(2, len(maps.shape))))


@dataclass
class _Pass:
    fn: object
    body: object  # the untraced body of fn (usable inside another tf.function)
    cond_nodes: list
    record_nodes: list


class ConceptExplainer:
    """The compiled concept passes of one (model, rule-preset method).

    ``ConceptExplainer(model, "epsilon_plus_flat", **params)``; ``overrides`` as in
    :class:`lrpgraph.Analyzer`.  One compiled function per (number of seeds,
    conditioned layers, recorded layers); the channels themselves are a tensor
    argument, so new channels never retrace."""

    def __init__(self, model, method="epsilon_plus_flat", overrides=None, **params):
        if isinstance(method, Analyzer):
            self.analyzer = method
        elif isinstance(method, str):
            if method not in PRESETS:
                raise ValueError(f"concepts run on rule presets (the LRP presets and the gradient family); "
                                 f"{method!r} is not one. Presets: {', '.join(sorted(PRESETS))}")
            self.analyzer = Analyzer(model, method, overrides, **params)
        else:
            raise TypeError(f"method must be a preset name or an lrpgraph.Analyzer, got {type(method).__name__}")
        if self.analyzer.head.n_seeds != 1:
            raise ValueError(f"method {self.analyzer.name!r} starts {self.analyzer.head.n_seeds} seeds per sample; "
                             "concepts need a one-seed head (an LRP or gradient preset)")
        if self.analyzer.stop_at:
            raise ValueError("concepts need the reverse pass down to the input; build the Analyzer without stop_at")
        self.prepared = self.analyzer.prepared
        if len(self.prepared.input_specs) != 1:
            raise ValueError(f"concepts explain one-input models; {self.prepared.name!r} has "
                             f"{len(self.prepared.input_specs)} inputs")
        self.graph = self.prepared.graph
        self._passes = {}

    @property
    def method(self):
        return self.analyzer.name

    # -- layers ----------------------------------------------------------------------------
    def node(self, layer):
        """The graph node carrying the Keras layer ``layer``'s output."""
        n = self.prepared.layer_node(layer)
        if n not in self.analyzer.rules:
            raise ValueError(f"layer {layer!r} carries no relevance in this model's reverse pass "
                             "(it is not between the input and the explained output)")
        return n

    def n_channels(self, layer):
        """The channel count (last axis) of layer ``layer``'s output."""
        shape = G.output_shape(self.graph, self.node(layer))
        if shape is None or shape[-1] is None:
            raise ValueError(f"layer {layer!r} has no static channel count (output shape {shape})")
        return int(shape[-1])

    # -- compiled passes ----------------------------------------------------------------------
    def _bypass(self, cond_nodes):
        """node -> [(conditioned node, input slots)]: the edges on which relevance
        reaches an ancestor of a conditioned layer l without passing through l (from a
        node that is neither l nor an ancestor of l: a shortcut around l)."""
        out = {}
        for c in cond_nodes:
            anc = nx.ancestors(self.graph, c)
            for w in self.analyzer.rules:
                if w == c or w in anc:
                    continue
                slots = [i for i, (u, _, _) in enumerate(G.in_edges(self.graph, w)) if u in anc]
                if slots:
                    out.setdefault(w, []).append((c, slots))
        return out

    def _pass(self, n_seeds, cond_nodes, record_nodes):
        key = (n_seeds, tuple(cond_nodes), tuple(record_nodes))
        if key not in self._passes:
            slot = _Slot()
            rules = dict(self.analyzer.rules)
            bypass = self._bypass(cond_nodes)
            for n in set(cond_nodes) | set(record_nodes) | set(bypass):
                rules[n] = _ConceptRule(rules[n], n, slot, bypass.get(n, ()))
            program = Program(self.prepared, rules, _RepeatHead(self.analyzer.head, n_seeds),
                              multiply_input=self.analyzer.preset.multiply_input)
            spec = self.prepared.input_specs[0]

            def run(x, targets, masks, keeps):
                slot.masks = dict(zip(cond_nodes, masks))
                slot.keep = dict(zip(cond_nodes, keeps))
                slot.record = tuple(record_nodes)
                slot.recorded = {}
                slot.activations = {}
                maps, logits, _ = program.analysis([x], targets)
                m = maps[0]
                if n_seeds == 1:
                    m = m[:, None]
                recorded = []
                for node in record_nodes:
                    r = slot.recorded.get(node)
                    if r is None:  # no relevance reached it
                        c = G.output_shape(self.graph, node)[-1]
                        r = tf.zeros([n_seeds, tf.shape(x)[0], c], logits.dtype)
                    recorded.append(tf.transpose(r, [1, 0, 2]))
                acts = [slot.activations.get(node, tf.zeros_like(r[:, 0])) for node, r in zip(record_nodes, recorded)]
                return m, logits, recorded, acts

            mask_specs = [tf.TensorSpec([n_seeds, G.output_shape(self.graph, n)[-1]], tf.float32)
                          for n in cond_nodes]
            keep_specs = [tf.TensorSpec([n_seeds], tf.float32) for _ in cond_nodes]
            fn = tf.function(run, input_signature=[spec, tf.TensorSpec([None], tf.int32), mask_specs, keep_specs],
                             reduce_retracing=True, autograph=False)
            self._passes[key] = _Pass(fn, run, list(cond_nodes), list(record_nodes))
        return self._passes[key]

    def _masks(self, seeds, exclude_parallel):
        """(conditioned nodes, (S, C) float32 masks, (S,) keeps) for normalised seeds;
        keep 0: the seed is conditioned on the layer and its bypassing relevance is dropped."""
        layers = sorted({layer for s in seeds for layer in s})
        nodes = [self.node(layer) for layer in layers]
        masks, keeps = [], []
        for layer in layers:
            m = np.ones((len(seeds), self.n_channels(layer)), np.float32)
            k = np.ones(len(seeds), np.float32)
            for i, s in enumerate(seeds):
                if layer in s:
                    m[i] = 0
                    m[i, sorted(s[layer])] = 1
                    k[i] = 0 if exclude_parallel else 1
            masks.append(m)
            keeps.append(k)
        return nodes, masks, keeps

    def run(self, x, target=None, conditions=None, record=(), batch_size=None, exclude_parallel=True):
        """The core call: ``(maps (N, S, ...), logits (N, K), targets (N,),
        {layer: (N, S, C) relevance per channel at that layer})``.

        ``conditions``: as :func:`normalise_conditions` (None: one unconditioned
        seed); ``record``: layer names whose output relevance (after their mask)
        is summed over space; ``exclude_parallel``: see :func:`conditional`."""
        seeds = [{}] if conditions is None else normalise_conditions(conditions, self.n_channels)
        nodes, masks, keeps = self._masks(seeds, exclude_parallel)
        record = [record] if isinstance(record, str) else list(record)
        rec_nodes = [self.node(layer) for layer in record]
        xs, _ = self.prepared.check_inputs(x)
        x = xs[0]
        n = x.shape[0]
        targets, multi = self.prepared.check_targets(target, n)
        if multi:
            raise ValueError("concepts explain one class per sample; pass target as an int, a class name or (N,) "
                             "classes")
        p = self._pass(len(seeds), nodes, rec_nodes)
        step = n if batch_size is None else int(batch_size)
        outs = []
        for s in range(0, n, max(step, 1)):
            m, z, r, a = p.fn(tf.convert_to_tensor(x[s:s + step]), tf.convert_to_tensor(targets[s:s + step]),
                              [tf.convert_to_tensor(a) for a in masks], [tf.convert_to_tensor(k) for k in keeps])
            outs.append((m.numpy(), z.numpy(), [v.numpy() for v in r], [v.numpy() for v in a]))
        maps = np.concatenate([o[0] for o in outs])
        logits = np.concatenate([o[1] for o in outs])
        rec = {layer: np.concatenate([o[2][i] for o in outs]) for i, layer in enumerate(record)}
        self.last_activations = {layer: np.concatenate([o[3][i] for o in outs]) for i, layer in enumerate(record)}
        resolved = np.where(targets < 0, logits.argmax(-1), targets).astype(np.int32)
        return maps, logits, resolved, rec

    # -- the public views ----------------------------------------------------------------------
    def conditional(self, x, target=None, conditions=None, batch_size=None, exclude_parallel=True):
        """Conditional heatmaps (N, S, ...): see :func:`conditional`."""
        if conditions is None:
            raise ValueError("conditional needs conditions, e.g. {'block5_conv3': [12, 40]}")
        return self.run(x, target, conditions, batch_size=batch_size, exclude_parallel=exclude_parallel)[0]

    def channel_relevance(self, x, target=None, layers=(), normalise=False, conditions=None, batch_size=None,
                          exclude_parallel=True):
        """{layer: (N, C)} (or (N, S, C) with conditions): see :func:`channel_relevance`."""
        layers = [layers] if isinstance(layers, str) else list(layers)
        if not layers:
            raise ValueError("channel_relevance needs at least one layer name")
        _, _, _, rec = self.run(x, target, conditions, record=layers, batch_size=batch_size,
                                exclude_parallel=exclude_parallel)
        out = {}
        for layer, r in rec.items():
            if normalise:
                r = _normalise(r)
            out[layer] = r[:, 0] if conditions is None else r
        return out


def _normalise(r):
    """R_c / sum_c' |R_c'| over the last axis; 0 where every R_c' is 0."""
    d = np.abs(r).sum(axis=-1, keepdims=True)
    return np.divide(r, d, out=np.zeros_like(r), where=d > 0)


def _explainer(model, method, params):
    if isinstance(model, ConceptExplainer):
        if params:
            raise TypeError("pass method parameters when building the ConceptExplainer, not with it")
        return model
    return ConceptExplainer(model, method, **params)


def conditional(model, x, target=None, conditions=None, method="epsilon_plus_flat", batch_size=None,
                exclude_parallel=True, **params):
    """Conditional relevance maps (CRP): the relevance that flows through chosen channels.

    R(x | theta): the method's reverse pass, except that at each layer l named in a
    condition theta the relevance at l's output is multiplied by the indicator of the
    chosen channels, R^l_{...,c} <- R^l_{...,c} 1[c in theta_l], before l's own rule
    runs (Achtibat et al. 2023, eq. 6; several layers: the intersection).  For rules
    linear in the relevance the maps of a partition of a layer's channels sum to the
    unconditioned map.  For the gradient presets it is the masked gradient.

    ``exclude_parallel`` (default, as zennit-crp): relevance that reaches the input
    around a conditioned layer l (a shortcut from above l into l's ancestors) is
    dropped for the seeds conditioned on l, so the map is the relevance that passes
    through l's chosen channels.  On a chain (no branch around l) it changes nothing.
    Where a shortcut bypasses l: with it on, the maps of a partition of l's channels sum
    to the map through l, and adding the map around l (``[{l: []}]`` with it off) gives
    the unconditioned map; with it off, every seed keeps the shortcut's relevance, so
    all channels as one seed give the unconditioned map but S per-channel maps sum to
    it plus (S - 1) times the map around l.

    ``model``: a keras.Model, Prepared, or :class:`ConceptExplainer` (reuses its compiled
    passes); ``conditions``: ``{layer: [c1, c2, ...]}`` (one map per channel; a nested
    list is a union; several layers combine, see :func:`normalise_conditions`) or a list
    of dicts (one map each); ``method``: any rule preset; ``params``: its parameters.

    Returns (N, S, H, W, C) for S conditions (shaped like the input after N, S)."""
    return _explainer(model, method, params).conditional(x, target, conditions, batch_size=batch_size,
                                                         exclude_parallel=exclude_parallel)


def channel_relevance(model, x, target=None, layers=(), method="epsilon_plus_flat", normalise=False,
                      conditions=None, batch_size=None, **params):
    """Relevance per channel at each listed layer's output, in one reverse pass.

    R^l_c = sum_{spatial} R^l_{...,c}, ``{layer: (N, C)}``; with ``normalise`` the
    per-sample share R^l_c / sum_c' |R^l_c'| (zennit-crp's ``abs_norm``).  Summed over
    c it is the relevance total reaching layer l (the target logit for a conservative
    preset on a bias-free model).  With ``conditions`` it is the relevance per channel
    of each conditional pass, (N, S, C) (what :func:`attribution_graph` reads)."""
    return _explainer(model, method, params).channel_relevance(x, target, layers, normalise, conditions,
                                                               batch_size=batch_size)


def attribution_graph(model, x, target=None, layer=None, channel=None, lower_layer=None,
                      method="epsilon_plus_flat", top=3, **params):
    """How concept (``layer``, ``channel``) draws its relevance from lower concepts.

    One sample ``x`` (a batch of one, or one sample without the batch axis).
    ``lower_layer``: a layer name, or a list of layer names from upper to lower for a
    recursive graph.  For the first lower layer: condition on {layer: [channel]} and
    read R^{lower}_c' for every c' (the relevance of the concept that passes through
    c'); keep the ``top`` channels by |R|; for each kept c', recurse with the condition
    {layer: [channel], lower: [c']} into the next listed layer (zennit-crp's
    ``ConceptAttributionGraph``: relevance flows only through the path so far).

    Returns a networkx.DiGraph: nodes ``(layer, channel)`` with attribute
    ``relevance`` (of the first path that reached it), edges upper -> lower with ``relevance`` (the
    lower node's conditional relevance) and ``share`` (its fraction of the upper
    node's relevance).  The root holds the relevance of (layer, channel) itself."""
    if layer is None or channel is None or lower_layer is None:
        raise ValueError("attribution_graph needs layer, channel and lower_layer")
    ex = _explainer(model, method, params)
    x = np.asarray(x)
    if x.ndim == len(ex.prepared.input_specs[0].shape) - 1:
        x = x[None]
    if x.shape[0] != 1:
        raise ValueError(f"attribution_graph explains one sample; got a batch of {x.shape[0]}")
    lowers = [lower_layer] if isinstance(lower_layer, str) else list(lower_layer)
    root = ex.channel_relevance(x, target, [layer])[layer][0, int(channel)]
    g = nx.DiGraph()
    g.add_node((layer, int(channel)), layer=layer, channel=int(channel), relevance=float(root))
    frontier = [((layer, int(channel)), {layer: [int(channel)]}, float(root))]
    for lower in lowers:
        nxt = []
        for node, cond, rel in frontier:
            r = ex.channel_relevance(x, target, [lower], conditions=[cond])[lower][0, 0]
            order = np.argsort(-np.abs(r), kind="stable")[:top]
            for c in order:
                child = (lower, int(c))
                if child not in g:  # reached again by another path: its edge says how much
                    g.add_node(child, layer=lower, channel=int(c), relevance=float(r[c]))
                share = float(r[c] / rel) if rel != 0 else 0.0
                g.add_edge(node, child, relevance=float(r[c]), share=share)
                nxt.append((child, dict(cond, **{lower: [int(c)]}), float(r[c])))
        frontier = nxt
    return g


# ---- dataset scale: reference samples and class statistics ---------------------------------------

#: rows of the per-sample map :class:`ConceptStatistics` stores
STAT_ROWS = ("relevance", "relevance_share", "activation")


#: ``layer=ALL_CONV``: every convolution layer of the model (see :func:`conv_layers`)
ALL_CONV = "all conv"

#: the Keras layer classes :func:`conv_layers` counts as convolutions
CONV_CLASSES = frozenset({"Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
                          "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"})


def conv_layers(explainer):
    """The names of the model's convolution layers (:data:`CONV_CLASSES`, nested models
    included) whose output carries relevance in ``explainer``'s reverse pass, in the
    order of the model's layers.  A BatchNorm folded into a conv leaves the conv's
    name on the folded output; a fused activation, on the activation's output."""
    out = []

    def walk(layers):
        for lay in layers:
            if hasattr(lay, "layers") and lay.layers and not type(lay).__name__ in CONV_CLASSES:
                walk(lay.layers)
            elif type(lay).__name__ in CONV_CLASSES and lay.name not in out:
                try:
                    explainer.node(lay.name)
                except ValueError:
                    continue
                out.append(lay.name)

    walk(explainer.prepared.model.layers)
    if not out:
        raise ValueError(f"model {explainer.prepared.name!r} has no convolution layer on the reverse pass; "
                         "name the layers: layer=['dense_1', ...]")
    return out


def _layer_list(explainer, layer):
    """(layers, single) for ``layer``: one name, a list of names, or :data:`ALL_CONV`."""
    if isinstance(layer, str):
        if layer == ALL_CONV and layer not in {lay.name for lay in explainer.prepared.model.layers}:
            return conv_layers(explainer), False
        return [layer], True
    if isinstance(layer, (list, tuple)) and layer and all(isinstance(v, str) for v in layer):
        if len(set(layer)) != len(layer):
            raise ValueError(f"layer lists {layer} name a layer twice")
        return list(layer), False
    raise TypeError(f"layer must be a layer name, a non-empty list of names or {ALL_CONV!r}; got {layer!r}")


@register("concepts", "per sample, (3, C): relevance per channel of a layer (or of several, side by side), its share, "
                      "and the summed activation")
class ConceptStatistics(Method):
    """A :class:`lrpgraph.Method` whose "map" is the concept statistics of one or more layers.

    For each sample, (3, C): ``relevance`` R^l_c (summed over space, for the target
    class), ``relevance_share`` R^l_c / sum_c' |R^l_c'| (per layer) and ``activation``
    sum_{space} a^l_c (zennit-crp's ``max_target="sum"``), computed in one reverse
    pass of ``base`` (a rule preset).  With several layers (``layer=[...]`` or
    :data:`ALL_CONV`) the one pass records every layer and the columns are the
    layers' chosen channels side by side, in the order of :attr:`layers`
    (:attr:`offsets` gives where each starts).  The dataset runner stores these and
    merges the running top-k per channel and the class sums (:func:`reference_samples`).

    ``channels``: None (all), a list (one layer) or ``{layer: [channels]}`` (the
    layers not named keep all of theirs).

    Registered as ``"concepts"`` so that Ray actors build it by name:
    ``create_analyzer("concepts", model, layer="block3_conv1", base="epsilon_plus_flat")``."""

    name = "concepts"
    supports_all = False

    def __init__(self, model, layer=None, base="epsilon_plus_flat", channels=None, **params):
        if layer is None:
            raise ValueError("ConceptStatistics needs layer=, the name of the layer whose channels are concepts "
                             f"(or a list of names, or {ALL_CONV!r})")
        self.explainer = ConceptExplainer(model, base, **params)
        super().__init__(self.explainer.prepared, neuron_selection_mode="index")
        self.layers, single = _layer_list(self.explainer, layer)
        self.layer, self.base = (self.layers[0] if single else list(self.layers)), self.explainer.method
        if channels is not None and not isinstance(channels, dict):
            if not single:
                raise ValueError("with several layers pass channels as {layer: [channels]} (or None: all)")
            channels = {self.layers[0]: channels}
        channels = channels or {}
        unknown = sorted(set(channels) - set(self.layers))
        if unknown:
            raise ValueError(f"channels name layers {unknown} that are not mined ({self.layers})")
        self.channels_of, self.offsets, columns = {}, {}, []
        for lay in self.layers:
            n = self.explainer.n_channels(lay)
            chans = list(range(n)) if channels.get(lay) is None else [int(c) for c in channels[lay]]
            bad = [c for c in chans if not 0 <= c < n]
            if bad:
                raise ValueError(f"channels {bad} are out of range; layer {lay!r} has {n} channels")
            self.offsets[lay] = len(columns)
            self.channels_of[lay] = chans
            columns += [(lay, c) for c in chans]
        self.channels = self.channels_of[self.layers[0]] if single else \
            {lay: self.channels_of[lay] for lay in self.layers}
        self.params = {"layer": self.layer, "base": self.base, "channels": self.channels,
                       **getattr(self.explainer.analyzer, "params", {})}

        self._fn = tf.function(self.traced, input_signature=[list(self.prepared.input_specs),
                                                             tf.TensorSpec([None], tf.int32)],
                               reduce_retracing=True, autograph=False)

    def traced(self, inputs, targets):
        """(maps [(N, 3, C)], logits, None) as traceable TensorFlow for a list of input
        tensors and (N,) int32 targets (-1: the predicted class); what the
        MirroredStrategy executor runs on each replica."""
        p = self.explainer._pass(1, [], [self.explainer.node(lay) for lay in self.layers])
        _, logits, rec, acts = p.body(inputs[0], targets, [], [])
        parts = []
        for lay, r, a in zip(self.layers, rec, acts):
            r = r[:, 0]
            share = tf.math.divide_no_nan(r, tf.reduce_sum(tf.abs(r), axis=-1, keepdims=True))
            parts.append(tf.gather(tf.stack([r, share, a], axis=1), self.channels_of[lay], axis=-1))
        return [parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)], logits, None

    def compute(self, xs, targets):
        maps, logits, _ = self._fn([tf.convert_to_tensor(a) for a in xs], tf.convert_to_tensor(targets))
        return [maps[0].numpy().astype(np.float32)], logits.numpy()


def relevance_score(block):
    """TopK score: the relevance per channel (row 0 of :class:`ConceptStatistics`)."""
    return block.maps[:, 0]


def activation_score(block):
    """TopK score: the summed activation per channel (row 2)."""
    return block.maps[:, 2]


def concept_reductions(k):
    """The reductions of a concept job: top-k by relevance, top-k by activation, class sums."""
    return [TopK(k, relevance_score, name="topk_relevance"), TopK(k, activation_score, name="topk_activation"),
            ClassSum(name="class_statistics")]


@dataclass
class ReferenceSamples:
    """What :func:`reference_samples` returns.

    ``channels`` (C,) the concept channels of ``layer``; ``indices`` (C, k) the
    dataset indices of each channel's reference samples (-1: fewer than k samples),
    ``values`` (C, k) their scores (relevance or activation, as ``mode``);
    ``class_relevance`` (K, C) the mean relevance share of each channel over the
    samples explained for each class (CRP's glocal view; NaN for a class with no
    sample), ``class_count`` (K,); ``boxes`` (C, k, 4) int (y0, x0, y1, x1),
    half-open, the receptive-field box of each reference sample, or None;
    ``store`` the :class:`lrpgraph.data.Attributions` of the run (per-sample
    statistics in ``store.relevance``, (N, 3, C_all): this layer's are the columns
    ``offset : offset + len(channels)``; ``offset`` is 0 for a one-layer run)."""

    layer: str
    mode: str
    channels: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    class_relevance: np.ndarray
    class_count: np.ndarray
    boxes: np.ndarray | None
    store: object
    offset: int = 0

    def top_classes(self, channel, n=3):
        """The classes in which ``channel`` is most relevant on average."""
        col = list(self.channels).index(int(channel))
        v = np.nan_to_num(self.class_relevance[:, col], nan=-np.inf)
        return np.argsort(-v, kind="stable")[:n]

    def top_concepts(self, cls, n=5):
        """The channels most relevant on average for class ``cls``."""
        v = np.nan_to_num(self.class_relevance[int(cls)], nan=-np.inf)
        return self.channels[np.argsort(-v, kind="stable")[:n]]


def reference_samples(model, data, layer, channels="all", k=8, mode="relevance", method="epsilon_plus_flat",
                      target="label", store=None, batch_size=32, resume=True, progress=False, rf=True,
                      rf_threshold=0.1, executor=None, strategy=None, on_block=None, preprocess="auto", image_size=None,
                      **params):
    """The k reference samples of each concept over a whole dataset (CRP sect. 2.3).

    ``model``: a Keras model, or a :class:`ConceptStatistics` (then ``layer``, ``method``,
    ``channels`` and ``params`` are its own): a model builds and traces a new statistics
    pass per call (about 1.4 s on the shapes model); a ConceptStatistics built once is
    traced once and reused across calls (resuming, several datasets).

    ``layer``: a layer name (returns one :class:`ReferenceSamples`), or a list of
    names, or :data:`ALL_CONV` (every convolution layer, :func:`conv_layers`): then
    one reverse pass per block records every listed layer's statistics, and the
    result is ``{layer: ReferenceSamples}`` (one store; ``channels`` is then None/
    "all" or ``{layer: [channels]}``).

    Relevance maximisation (``mode="relevance"``): the samples x with the largest
    R^l_c(x) (the channel's relevance to the explained class, summed over space);
    activation maximisation (``"activation"``): the largest sum_space a^l_c(x).  Both
    are kept (the store holds both top-k reductions); ``mode`` says which one is
    returned.  The run is the dataset runner's (:func:`lrpgraph.data.drive`): one
    block per ``batch_size`` samples through :class:`ConceptStatistics`, the running
    top-k per channel (:class:`lrpgraph.data.TopK`) merged per block -- a merge keeps
    the k largest of the union (ties to the lower index), associative and
    commutative, so a resumed run, a Ray run and one process give the same top-k.
    Class statistics come from the same pass (:class:`lrpgraph.data.ClassSum` of the
    relevance shares).

    ``rf``: also the receptive-field box of each reference sample: the bounding box of
    the pixels whose conditional relevance |sum_channels R(x | {layer: [c]})| is at
    least ``rf_threshold`` times its maximum (zennit-crp's ``rf=True`` crops to the
    receptive field of the most relevant neuron; this box is of the whole
    conditional map).  ``executor``: a :class:`lrpgraph.data.RayExecutor` built with
    ``method="concepts"`` and the same params, or None (this process);
    ``strategy``: a ``tf.distribute.MirroredStrategy`` splitting each block over its
    replicas (:class:`lrpgraph.data.Mirrored`);
    ``on_block(block, attributions)`` as in :func:`lrpgraph.explain_dataset`.
    """
    if mode not in ("relevance", "activation"):
        raise ValueError(f"mode must be 'relevance' or 'activation', got {mode!r}")
    if store is None:
        raise ValueError("reference_samples writes a resumable store: pass store='concepts.zarr'")
    if rf and callable(target) and not isinstance(target, str):
        raise ValueError("rf=True needs the class of each reference sample: pass target as 'label', 'predicted', "
                         "a class or an array, or rf=False with a callable target")
    stats = model if isinstance(model, ConceptStatistics) else ConceptStatistics(
        model, layer=layer, base=method, channels=None if isinstance(channels, str) and channels == "all"
        else channels, **params)
    spec = JobSpec(target=target, batch_size=batch_size, reductions=concept_reductions(k), preprocess=preprocess,
                   image_size=image_size)
    if strategy is not None:
        if executor is not None:
            raise ValueError("pass either strategy= (MirroredStrategy in this process) or executor= (Ray), not both")
        executor = Mirrored(strategy)
        job = executor.job(stats, spec)
    else:
        executor = executor or InProcess()
        job = BlockJob(stats, spec)
    source = make_source(data, job.prepared, **spec.source_options())
    att = drive(job, source, store, executor, resume=resume, progress=progress, on_block=on_block)
    refs = from_store(att, mode)
    for r in ([refs] if isinstance(refs, ReferenceSamples) else refs.values()) if rf else ():
        r.boxes = _boxes(stats.explainer, source, batch_size, r.layer, r.channels, r.indices, target, rf_threshold)
    return refs


def from_store(store, mode="relevance", layer=None):
    """:class:`ReferenceSamples` read back from a concept store (a path or
    :class:`lrpgraph.data.Attributions`) written by :func:`reference_samples`
    (boxes: None; the CLI keeps them in ``concepts.npz`` beside the store).  A store of
    several layers gives ``{layer: ReferenceSamples}``, or the one named by ``layer``."""

    att = open_store(store) if isinstance(store, str) else store
    method = att.meta.get("method", {})
    if method.get("name") != "concepts":
        raise ValueError(f"{att.store.path} is not a concept store (its method is {method.get('name')!r}); write "
                         "one with reference_samples or `lrpgraph concepts`")
    params = method.get("params", {})
    red = att.reductions
    if red.get("topk_relevance") is None:
        raise ValueError(f"{att.store.path} holds no computed block yet; run reference_samples on it first")
    top = red["topk_relevance" if mode == "relevance" else "topk_activation"]
    cs = red["class_statistics"]
    cnt = cs["count"]
    with np.errstate(invalid="ignore", divide="ignore"):
        class_rel = np.where(cnt[:, None] > 0, cs["sum"][:, 1] / np.maximum(cnt, 1)[:, None], np.nan)
    stored = params.get("layer")
    if isinstance(stored, str):
        if layer is not None and layer != stored:
            raise ValueError(f"{att.store.path} holds the concepts of layer {stored!r}, not {layer!r}")
        return ReferenceSamples(stored, mode, np.asarray(params.get("channels")), top["indices"], top["values"],
                                class_rel, cnt, None, att)
    out, off = {}, 0
    for lay in stored:
        ch = np.asarray(params["channels"][lay])
        cols = slice(off, off + len(ch))
        out[lay] = ReferenceSamples(lay, mode, ch, top["indices"][cols], top["values"][cols], class_rel[:, cols], cnt,
                                    None, att, off)
        off += len(ch)
    if layer is None:
        return out
    if layer not in out:
        raise ValueError(f"{att.store.path} holds no layer {layer!r}; it holds {', '.join(stored)}")
    return out[layer]


def read_samples(source, block_size, indices):
    """{index: (x, label)} for the wanted dataset indices."""
    want = sorted({int(i) for i in np.ravel(indices) if i >= 0})
    blocks = sorted({i // block_size for i in want})
    out = {}
    for b, x, labels, _, _ in source.blocks(block_size, blocks):
        for j in range(len(x)):
            i = b * block_size + j
            if i in want:
                out[i] = (x[j], -1 if labels is None else int(labels[j]))
    return out


def rf_box(heatmap, threshold=0.1):
    """(y0, x0, y1, x1) half-open bounding box of |heatmap| >= threshold * max|heatmap|
    for an (H, W) map; the whole image when the map is zero."""
    a = np.abs(np.asarray(heatmap, np.float64))
    h, w = a.shape
    m = a.max()
    if m <= 0:
        return np.array([0, 0, h, w])
    ys, xs = np.nonzero(a >= threshold * m)
    return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])


def _sample_target(target, i, label):
    """The class explained for dataset sample ``i`` under a job's ``target``."""
    if isinstance(target, str):
        return label if target == "label" else (None if target == "predicted" else target)
    if isinstance(target, np.ndarray):
        return target[i]
    if callable(target):
        raise ValueError("rf=True needs the class of each reference sample: pass target as 'label', 'predicted', "
                         "a class or an array, or rf=False with a callable target")
    return target


def _boxes(explainer, source, block_size, layer, channels, indices, target, threshold):
    samples = read_samples(source, block_size, indices)
    boxes = np.zeros(indices.shape + (4,), np.int64)
    # one seed count for every sample (padded with repeats): one compiled pass, no retracing
    width = max((int((indices == i).sum()) for i in samples), default=1)
    for i, (x, label) in samples.items():
        where = np.argwhere(indices == i)  # (channel row, rank)
        t = _sample_target(target, i, label)
        conds = [{layer: int(channels[r])} for r, _ in where]
        maps = explainer.conditional(x[None], t, conds + conds[:1] * (width - len(conds)))[0]
        for (r, j), m in zip(where, maps):
            boxes[r, j] = rf_box(m.sum(axis=-1) if m.ndim == 3 else m, threshold)
    return boxes
