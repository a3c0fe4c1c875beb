"""One prepared model: the rewritten graph and everything every method needs of it.

``prepare(model)`` runs the first two stages (graph, rewrite passes) once per
model and returns a :class:`Prepared`: the canonical graph, the explained output,
the input specs, the nodes the output needs, the number of classes, input and
target validation, a compiled ``logits(x)`` and target resolution.  Every method
(:mod:`lrpgraph.methods`), the dataset runner, the evaluation metrics,
:func:`lrpgraph.check` and the CLI are built on it; ``prepare`` caches it on the
model object, so ``create_analyzer("sglrp", m)`` and ``create_analyzer("gradcam", m)``
convert ``m`` once.
"""

from __future__ import annotations

import weakref

import networkx as nx
import numpy as np
import tensorflow as tf

from . import graph as G
from .compile import run_forward, token_embeddings
from .ops import keras_hub as keras_hub_ops, registrations_generation
from .rewrite import canonicalize
from .. import targets
# re-export for one release: class_index lives in lrpgraph.targets
from ..targets import class_index  # noqa: F401

__all__ = ["Prepared", "prepare", "resolve_output", "class_index"]

_CACHE = weakref.WeakKeyDictionary()


def prepare(model, output=None, *, class_names=None, tokenizer=None):
    """The :class:`Prepared` form of ``model`` (built once per model and output).

    ``model`` may already be a :class:`Prepared` (returned as is; then ``output``
    must be None or the same).  ``class_names`` (a list, one per class) lets
    targets be given by name; it is attached to the cached object.  ``tokenizer`` (a
    KerasHub tokenizer, for a causal LM; default its preprocessor's) lets targets be
    given as token strings."""
    keras_hub_ops.register_if_loaded()  # KerasHub's ViT and text layers, once keras_hub is imported
    if isinstance(model, Prepared):
        if output is not None and resolve_output(model.graph, output) != model.output:
            raise ValueError(f"this prepared model explains output {model.output_name!r}; prepare the "
                             f"keras model again with output={output!r}")
        prepared = model
    else:
        G.require_graph_model(model)  # before the cache: a str or None cannot be weakly referenced
        key = (output, registrations_generation())  # a new register_layer: convert again
        per_model = _CACHE.get(model)
        if per_model is None:
            per_model = {}
            try:
                _CACHE[model] = per_model
            except TypeError:  # not weak-referenceable: no caching
                pass
        prepared = per_model.get(key)
        if prepared is None:
            prepared = per_model[key] = Prepared(model, output)
    if class_names is not None:
        prepared.set_class_names(class_names)
    if tokenizer is not None:
        prepared.tokenizer = tokenizer
    return prepared


def resolve_output(g, output):
    """The ``(node, out_index)`` of the model output ``output`` (None: the first;
    an int index or an output name)."""
    outs = g.graph["outputs"]
    names = g.graph["output_names"]
    if output is None:
        return outs[0]
    if isinstance(output, (int, np.integer)) and not isinstance(output, bool):
        if not 0 <= output < len(outs):
            raise ValueError(f"output index {output} out of range: the model has {len(outs)} output(s)")
        return outs[output]
    if output in names:
        return outs[names.index(output)]
    raise ValueError(f"unknown output {output!r}; the model's outputs are {names}")


def _input_spec(g, n):
    shape = g.nodes[n]["output_shapes"][0]
    dtype = g.nodes[n]["output_dtypes"][0]
    return tf.TensorSpec((None,) + tuple(shape[1:]), dtype, name=n.replace("/", "_").replace("#", "_"))


def _vocab_size(g, n, needed):
    """The smallest vocabulary of the Embeddings the integer input ``n`` feeds (None if none)."""
    sizes = [int(g.nodes[e]["op"].table().shape[0]) for e in token_embeddings(g, n) if e in needed]
    return min(sizes) if sizes else None


def _integer_input(a, name, spec):
    """An integer (or boolean) array for an integer model input: integer and boolean
    arrays as they are, floating ones only where every value is a whole number."""
    if a.dtype.kind in "iub":
        return a
    if a.dtype.kind == "f":
        ok = np.isfinite(a).all() and np.all(a == np.round(a))
        if ok:
            return a.astype(spec.dtype.as_numpy_dtype)
        raise TypeError(f"{name} has non-integer values (dtype {a.dtype}); the model's input is "
                        f"{spec.dtype.name} (token ids or a mask): pass integer ids, e.g. "
                        f"np.asarray(ids, 'int32')")
    raise TypeError(f"{name} has dtype {a.dtype}; the model's input is {spec.dtype.name} (token ids or a "
                    "mask): pass an integer array, e.g. np.asarray(ids, 'int32')")


def _check_ids(a, name, vocab):
    """Token ids must index the embedding table: 0 <= id < vocab."""
    bad_mask = ((a < 0) | (a >= vocab)).reshape(a.shape[0], -1)
    if bad_mask.any():
        bad = np.nonzero(bad_mask.any(axis=1))[0]
        flat = a.reshape(a.shape[0], -1)[bad[0]]
        val = flat[bad_mask[bad[0]]][0]
        raise ValueError(f"{name} has token id {int(val)} out of range in sample(s) {bad[:10].tolist()}: the "
                         f"model's Embedding has a vocabulary of {vocab} (ids 0..{vocab - 1}). Tokenize with "
                         "the model's own vocabulary, or map unknown words to its out-of-vocabulary id")


class Prepared:
    """A Keras model converted once: what every method shares.

    Attributes
    ----------
    model : keras.Model
    graph : networkx.MultiDiGraph
        The canonical (rewritten) graph, :func:`lrpgraph.engine.rewrite.canonicalize`.
    output : (node, out_index)
        The explained output; ``output_node`` is its node, ``output_name`` its name.
    input_specs : list of tf.TensorSpec
        One per model input, batch dimension None.
    needed : frozenset
        The nodes the output depends on (the only ones any method evaluates).
    num_classes : int
        Width of the explained output, a (batch, classes) score vector.
    class_names : list of str or None
        Optional, for targets given by name.
    """

    def __init__(self, model, output=None):
        self.source = model
        # a KerasHub causal LM: explain the next-token logits at one position per sequence
        # (an extra integer input, by default the last non-padding token; see fill_position)
        self.position_input = None
        if keras_hub_ops.is_causal_lm(model):
            model = keras_hub_ops.causal_lm_model(model)
            self.position_input = keras_hub_ops.keras_hub_llm.POSITION
        self.model = model
        self.graph = canonicalize(G.to_graph(model))
        self.output = resolve_output(self.graph, output)
        self.output_node = self.output[0]
        self.output_name = self.graph.graph["output_names"][self.graph.graph["outputs"].index(self.output)]
        out_shape = self.graph.nodes[self.output_node]["output_shapes"][self.output[1]]
        if out_shape is None or len(out_shape) != 2:
            raise ValueError(f"the explained output must be a (batch, classes) score vector; output "
                             f"{self.output_node!r} has shape {out_shape}. Pick another output with output=...")
        self.num_classes = int(out_shape[1])
        self.needed = frozenset({self.output_node} | nx.ancestors(self.graph, self.output_node))
        self.input_nodes = list(self.graph.graph["inputs"])
        self.input_specs = [_input_spec(self.graph, n) for n in self.input_nodes]
        # integer inputs (token ids) -> the vocabulary size of the Embedding(s) they feed
        self.vocab_sizes = {n: _vocab_size(self.graph, n, self.needed) for n, spec in
                            zip(self.input_nodes, self.input_specs) if not spec.dtype.is_floating}
        self.class_names = None
        # a causal LM's tokenizer (targets as token strings): its preprocessor's, or prepare(tokenizer=)
        self.tokenizer = getattr(getattr(self.source, "preprocessor", None), "tokenizer", None) \
            if self.position_input is not None else None
        self.logits_fn = tf.function(self.forward, input_signature=[list(self.input_specs)],
                                     reduce_retracing=True, autograph=False)

    @property
    def name(self):
        return self.model.name

    def set_class_names(self, names):
        names = [str(n) for n in names]
        if len(names) != self.num_classes:
            raise ValueError(f"class_names has {len(names)} entries; the model has {self.num_classes} classes")
        self.class_names = names

    # -- traceable pieces (for use inside other tf.functions) ---------------------
    def activations(self, inputs, nodes=None):
        """dict (node, out_index) -> tensor for the nodes the output needs (or
        ``nodes`` and their ancestors); ``inputs`` a list of tensors."""
        return run_forward(self.graph, list(inputs), self.needed if nodes is None else nodes)

    def forward(self, inputs):
        """The logits (the rewritten graph's output) for a list of input tensors."""
        return self.activations(inputs)[self.output]

    # targets with -1 replaced by the predicted class (argmax of the logits), in the graph
    resolve_predicted = staticmethod(targets.resolve_predicted_tf)

    # -- numpy front ------------------------------------------------------------------
    def logits(self, x, batch_size=None):
        """The logits the analyses start from, for numpy input(s) (validated)."""
        xs, _ = self.check_inputs(x)
        n = xs[0].shape[0]
        step = batch_size or n
        out = [self.logits_fn([tf.convert_to_tensor(a[s:s + step]) for a in xs]).numpy()
               for s in range(0, n, step)]
        return np.concatenate(out, axis=0)

    def layer_node(self, name):
        """The node whose output is the Keras layer ``name``'s output (see
        :func:`lrpgraph.engine.graph.layer_output_node`)."""
        return G.layer_output_node(self.graph, name, self.needed)

    # -- validation ---------------------------------------------------------------------
    def check_inputs(self, x):
        """(list of arrays in the model's input dtypes, single) for ``x``: an array for a
        one-input model, a list/tuple with one array per input, or a dict by input name
        (then the arrays, and the maps, come in the order of ``input_nodes``).  Errors name the
        cause and the fix: count, dtype, rank, shape, empty batch, NaN/Inf.

        Where the model's input is integer (token ids, an attention mask), integer or
        boolean arrays are taken, and floating arrays whose values are whole numbers
        (a float array of ids is cast; 2.5 is an error).  Ids that feed an
        ``Embedding`` must lie in [0, vocabulary size): an error names the samples."""
        if isinstance(x, dict):  # by input name, e.g. KerasHub's {"token_ids": ..., "padding_mask": ...}
            if self.position_input is not None and self.position_input not in x:
                x = self.fill_position(x)
            if set(x) != set(self.input_nodes):
                raise ValueError(f"the input dict has keys {sorted(x)}; model {self.model.name!r} takes "
                                 f"{self.input_nodes}. Pass one array per input name")
            x = [x[n] for n in self.input_nodes]
        single = not isinstance(x, (list, tuple))
        xs = [x] if single else list(x)
        if len(xs) != len(self.input_specs):
            raise ValueError(f"model {self.model.name!r} has {len(self.input_specs)} input(s); got {len(xs)} "
                             "array(s). Pass a list with one array per model input.")
        out = []
        for i, (a, spec, node) in enumerate(zip(xs, self.input_specs, self.input_nodes)):
            a = a.numpy() if hasattr(a, "numpy") else np.asarray(a)
            name = f"input {i}" if len(xs) > 1 else "x"
            if spec.dtype.is_floating and a.dtype.kind not in "f":
                raise TypeError(f"{name} has dtype {a.dtype}; pass floating-point data (e.g. "
                                f"x.astype('float32') after the model's preprocessing)")
            if not spec.dtype.is_floating:
                a = _integer_input(a, name, spec)
            if a.ndim != len(spec.shape):
                raise ValueError(f"{name} has rank {a.ndim} (shape {a.shape}); the model expects rank "
                                 f"{len(spec.shape)}: (batch,) + {tuple(spec.shape[1:])}. Add a batch "
                                 "axis with x[None] for one sample.")
            for ax, (got, want) in enumerate(zip(a.shape[1:], spec.shape[1:]), start=1):
                if want is not None and got != want:
                    raise ValueError(f"{name} has shape {a.shape}; the model expects (batch,) + "
                                     f"{tuple(spec.shape[1:])} (axis {ax} differs)")
            if a.shape[0] == 0:
                raise ValueError(f"{name} is an empty batch (shape {a.shape})")
            if spec.dtype.is_floating:
                finite = np.isfinite(a).reshape(a.shape[0], -1).all(axis=1)
                if not finite.all():
                    bad = np.nonzero(~finite)[0]
                    what = "NaN" if np.isnan(a[bad]).any() else "Inf"
                    raise ValueError(f"{name} contains {what} values (sample(s) {bad[:10].tolist()}); relevance "
                                     "of non-finite inputs is undefined")
            elif self.vocab_sizes.get(node):
                _check_ids(a, name, self.vocab_sizes[node])
            out.append(a.astype(spec.dtype.as_numpy_dtype, copy=False))
        sizes = {a.shape[0] for a in out}
        if len(sizes) != 1:
            raise ValueError(f"all inputs must have the same batch size, got {sorted(sizes)}")
        return out, single

    @property
    def token_input(self):
        """The index of the token-id input whose map a causal LM's analysis returns (None:
        every input's map)."""
        return None if self.position_input is None else self.input_nodes.index("token_ids")

    def fill_position(self, x, position=None):
        """The input dict of a causal LM with its ``position`` entry: ``position`` (an int,
        or one per sequence) or, when None, the last non-padding token of each sequence
        (the last index where ``padding_mask`` is nonzero; the last token without a mask).
        The logits explained are the next-token logits at that position."""
        if self.position_input is None:
            raise ValueError(f"position= is for causal language models; model {self.model.name!r} is not one")
        if not isinstance(x, dict) or "token_ids" not in x:
            raise ValueError("a causal LM takes a dict {'token_ids': (N, T) ids, 'padding_mask': (N, T)} "
                             f"(position= fills {self.position_input!r}); got {type(x).__name__}")
        ids = np.asarray(x["token_ids"])
        if ids.ndim != 2:
            raise ValueError(f"token_ids has shape {ids.shape}; a causal LM takes (batch, T) token ids")
        n, t = ids.shape
        if position is None:
            mask = np.asarray(x["padding_mask"]) if "padding_mask" in x else np.ones_like(ids)
            if mask.shape != ids.shape:
                raise ValueError(f"padding_mask has shape {mask.shape}; token_ids has {ids.shape}")
            empty = ~(mask != 0).any(axis=1)
            if empty.any():
                raise ValueError(f"sequence(s) {np.nonzero(empty)[0][:10].tolist()} have no token (padding_mask all "
                                 "0): there is no last token to explain; pass position=")
            position = t - 1 - np.argmax((mask != 0)[:, ::-1], axis=1)
        p = np.asarray(position)
        if p.dtype.kind not in "iu":
            raise TypeError(f"position must be integer token indices, got dtype {p.dtype}")
        p = np.broadcast_to(p, (n,)) if p.ndim == 0 else p
        if p.shape != (n,):
            raise ValueError(f"position must be an int or one int per sequence (shape ({n},)); got shape {p.shape}")
        if p.min() < -t or p.max() >= t:
            raise ValueError(f"position {int(p.min() if p.min() < -t else p.max())} is out of range for sequences of "
                             f"{t} tokens")
        return dict(x, **{self.position_input: (p % t).astype(np.int32)})

    def require_float_inputs(self, method):
        """A clear error where ``method`` perturbs or interpolates the inputs and the model
        has integer inputs (token ids cannot be interpolated or noised)."""
        ints = [f"{n!r} ({spec.dtype.name})" for n, spec in zip(self.input_nodes, self.input_specs)
                if not spec.dtype.is_floating]
        if ints:
            raise TypeError(f"{method} perturbs the model's inputs, but input(s) {', '.join(ints)} are integer "
                            "(token ids or a mask), which cannot be interpolated or noised. Explain text models "
                            "with attn_lrp, cp_lrp, lrp.epsilon, gradient or input_t_gradient (relevance per "
                            "token at the Embedding)")

    def check_targets(self, target, n, *, required=False):
        """(int32 targets, multi): ``target`` an int, a class name, one per sample
        ((n,)), several per sample ((n, T), multi=True), or None (-1: the predicted
        class; an error when ``required``); :func:`lrpgraph.targets.to_indices`.  A causal LM
        prepared with a tokenizer also takes tokens as its vocabulary spells them."""
        token_id = self._token_id if getattr(self, "tokenizer", None) is not None else None
        return targets.to_indices(target, n, self.num_classes, self.class_names, required=required,
                                  token_id=token_id)

    def _token_id(self, token):
        """The vocabulary id of ``token`` (exact spelling, as the tokenizer's vocabulary has it)."""
        try:
            i = self.tokenizer.token_to_id(token)
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"target {token!r} is not a token of the tokenizer's vocabulary ({e}); pass a "
                             "vocabulary id, or the token as the vocabulary spells it (e.g. with its leading "
                             "space marker)") from None
        if i is None or int(i) < 0:
            raise ValueError(f"target {token!r} is not a token of the tokenizer's vocabulary")
        return int(i)

    def __repr__(self):
        return (f"<Prepared {self.model.name!r}: {self.graph.number_of_nodes()} nodes, output "
                f"{self.output_name!r}, {self.num_classes} classes>")
