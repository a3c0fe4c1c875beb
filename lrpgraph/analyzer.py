"""Stage 5: the object a user holds.  numpy in, numpy out.

``Analyzer(model, preset, overrides=None, **params)`` converts, rewrites,
assigns rules and compiles once; ``analyze(x, target)`` is then one call of the
compiled function (per batch chunk).
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import tensorflow as tf

from . import graph as G
from . import postprocess as _postprocess
from .assign import assign_rules
from .compile import Program
from .heads import get_head
from .rewrite import canonicalize
from .rules.presets import get_preset

__all__ = ["Analyzer", "create_analyzer", "methods"]

NEURON_SELECTION_MODES = ("max_activation", "index", "all")


class Analyzer:
    """Relevance / attribution analyzer for one (model, method, parameters).

    Parameters
    ----------
    model : keras.Model
        A Sequential or functional Keras 3 model (subclassed models must be
        wrapped in a functional model first).
    preset : str or Preset
        A method name from :func:`lrpgraph.methods` (iNNvestigate's names:
        ``"lrp.epsilon"``, ``"deep_taylor.bounded"``, ``"gradient"``, ...).
    overrides : dict or list of (selector, rule), optional
        Rules that take precedence over the preset's, keyed by layer name,
        ``"re:REGEX"``, ``"class:Name"``, ``"kind:..."``, ``"first"``, a layer
        class or a predicate (docs/rules.md).
    neuron_selection_mode : {"max_activation", "index", "all"}
        As in iNNvestigate: explain the predicted class, the given ``target``
        (``analyze(x, target)``), or all logits at once.  A target passed to
        ``analyze`` always wins over "max_activation".
    output : int or str, optional
        Which model output to explain (index or output name); default the first.
    head : str or callable, optional
        Replaces the preset's head (initial relevance), e.g. a user function
        ``head(logits, targets) -> R0``.
    stop_at : str or list of str, optional
        Layer name(s) where the reverse pass stops: ``analyze`` then returns the
        relevance at those layers' outputs instead of at the input (used by the
        CAM family).
    jit_compile : bool
        Compile the analysis with XLA.
    postprocess : str, callable or list, optional
        Steps applied to the numpy maps after the analysis (none by default):
        "abs", "square" (iNNvestigate's ``gradient(postprocess=...)``), "relu",
        channel reductions "sum"/"max"/"absmax", "normalize" (min-max to
        [0, 1]); see :mod:`lrpgraph.postprocess`.
    **params
        The preset's parameters (``epsilon``, ``low``, ``high``, ``gamma``...);
        unknown names are an error.
    """

    def __init__(self, model, preset, overrides=None, *, neuron_selection_mode="max_activation",
                 output=None, head=None, stop_at=None, jit_compile=False, postprocess=None, **params):
        self.preset = get_preset(preset)
        self.postprocess = _postprocess.check(postprocess)
        self.model = model
        if neuron_selection_mode not in NEURON_SELECTION_MODES:
            raise ValueError(f"neuron_selection_mode must be one of {NEURON_SELECTION_MODES}, "
                             f"got {neuron_selection_mode!r}")
        self.neuron_selection_mode = neuron_selection_mode
        unknown = set(params) - set(self.preset.defaults)
        if unknown:
            accepted = sorted(self.preset.defaults) or "none"
            raise TypeError(f"method {self.preset.name!r} got unknown parameter(s) {sorted(unknown)}; "
                            f"it accepts: {accepted}")
        self.params = dict(self.preset.defaults, **params)
        self.graph = canonicalize(G.to_graph(model))
        self.output = _resolve_output(self.graph, output)
        out_shape = self.graph.nodes[self.output[0]]["output_shapes"][self.output[1]]
        if out_shape is None or len(out_shape) != 2:
            raise ValueError(f"the explained output must be a (batch, classes) score vector; output "
                             f"{self.output[0]!r} has shape {out_shape}. Pick another output with output=...")
        self.num_classes = out_shape[1]
        needed = {self.output[0]} | nx.ancestors(self.graph, self.output[0])
        self.rules = assign_rules(self.graph, self.preset, self.params, overrides, nodes=needed)
        if head is None:
            head = self.preset.head
            if neuron_selection_mode == "all":
                head = "all_ones" if head == "one" else "all_logits"
        self.head = get_head(head)
        self.input_specs = [_input_spec(self.graph, n) for n in self.graph.graph["inputs"]]
        self.stop_at = None if stop_at is None else [
            resolve_layer(self.graph, s, needed) for s in ([stop_at] if isinstance(stop_at, str) else stop_at)]
        self.program = Program(self.graph, self.rules, self.head, self.output, self.input_specs,
                               stop=self.stop_at, multiply_input=self.preset.multiply_input,
                               jit_compile=jit_compile)

    # -- public -----------------------------------------------------------------
    @property
    def traces(self):
        """How many times the compiled function was traced (1 per signature)."""
        return self.program.traces

    def analyze(self, x, target=None, *, neuron_selection=None, batch_size=None):
        """Relevance maps shaped like ``x`` (numpy).

        ``target``: an int, one int per sample, or None (the predicted class;
        required when the analyzer was built with neuron_selection_mode="index").
        A 2-D array (N, T) explains T targets per sample in one call and returns
        maps shaped (N, T, ...).  ``neuron_selection`` is iNNvestigate's alias of
        ``target``.  Models with several inputs take and return lists.
        """
        if neuron_selection is not None:
            if target is not None:
                raise TypeError("pass either target or neuron_selection, not both")
            target = neuron_selection
        xs, single = self._check_inputs(x)
        n = xs[0].shape[0]
        targets, multi = self._check_targets(target, n)
        fn = self.program.multi_fn if multi else self.program.fn
        outs, logits = [], []
        step = batch_size or n
        for s in range(0, n, step):
            chunk = [tf.convert_to_tensor(a[s:s + step]) for a in xs]
            maps, z, _ = fn(chunk, tf.convert_to_tensor(targets[s:s + step]))
            outs.append([m.numpy() for m in maps])
            logits.append(z.numpy())
        self.last_logits = np.concatenate(logits, axis=0)
        maps = [np.concatenate([o[i] for o in outs], axis=0) for i in range(len(outs[0]))]
        maps = [_postprocess.apply(m, self.postprocess, 2 if multi else 1) for m in maps]
        return maps[0] if len(maps) == 1 and (single or self.stop_at) else maps

    def predict_logits(self, x):
        """The logits the analysis starts from (the rewritten graph's output)."""
        xs, _ = self._check_inputs(x)
        targets = np.zeros(xs[0].shape[0], np.int32)
        _, logits, _ = self.program.fn([tf.convert_to_tensor(a) for a in xs], tf.convert_to_tensor(targets))
        return logits.numpy()

    # -- validation ---------------------------------------------------------------
    def _check_inputs(self, x):
        single = not isinstance(x, (list, tuple))
        xs = [x] if single else list(x)
        if len(xs) != len(self.input_specs):
            raise ValueError(f"model {self.model.name!r} has {len(self.input_specs)} input(s); got {len(xs)} "
                             "array(s). Pass a list with one array per model input.")
        out = []
        for i, (a, spec) in enumerate(zip(xs, self.input_specs)):
            a = a.numpy() if hasattr(a, "numpy") else np.asarray(a)
            name = f"input {i}" if len(xs) > 1 else "x"
            if a.dtype.kind not in "f":
                raise TypeError(f"{name} has dtype {a.dtype}; pass floating-point data (e.g. "
                                f"x.astype('float32') after the model's preprocessing)")
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
            if not np.all(np.isfinite(a)):
                bad = "NaN" if np.isnan(a).any() else "Inf"
                raise ValueError(f"{name} contains {bad} values; relevance of non-finite inputs is undefined")
            out.append(a.astype(spec.dtype.as_numpy_dtype, copy=False))
        sizes = {a.shape[0] for a in out}
        if len(sizes) != 1:
            raise ValueError(f"all inputs must have the same batch size, got {sorted(sizes)}")
        return out, single

    def _check_targets(self, target, n):
        if target is None:
            if self.neuron_selection_mode == "index":
                raise ValueError("neuron_selection_mode='index' needs a target: analyze(x, target=...)")
            return np.full(n, -1, np.int32), False
        t = np.asarray(target)
        if t.dtype.kind not in "iu":
            if t.dtype.kind == "f" and np.all(np.isfinite(t)) and np.all(t == np.round(t)):
                t = t.astype(np.int64)
            else:
                raise TypeError(f"target must be integer class indices, got dtype {t.dtype}")
        if t.ndim == 0:
            t = np.full(n, int(t))
        if t.ndim > 2 or t.shape[0] != n:
            raise ValueError(f"target must be an int, one int per sample (shape ({n},)) or (N, T) for T "
                             f"targets per sample; got shape {t.shape}")
        if t.size and (t.min() < 0 or t.max() >= self.num_classes):
            raise ValueError(f"target {t.min() if t.min() < 0 else t.max()} is out of range: the model has "
                             f"{self.num_classes} classes (0..{self.num_classes - 1})")
        return t.astype(np.int32), t.ndim == 2


def resolve_layer(g, name, candidates=None):
    """The node whose output is the layer's output (its first call), by layer name or node id
    (:func:`lrpgraph.graph.layer_output_nodes`: a fused activation's node, a folded
    BatchNorm's Conv); ValueError listing the candidates."""
    hits = G.layer_output_nodes(g, name, candidates) or G.layer_output_nodes(g, name)
    if hits:
        return hits[0]
    pool = sorted(n for n in (candidates or g.nodes) if g.nodes[n]["op"].kind != "input")
    raise ValueError(f"no layer named {name!r} in the model; layers: {', '.join(pool)}")


def _input_spec(g, n):
    shape = g.nodes[n]["output_shapes"][0]
    dtype = g.nodes[n]["output_dtypes"][0]
    return tf.TensorSpec((None,) + tuple(shape[1:]), dtype, name=n.replace("/", "_").replace("#", "_"))


def _resolve_output(g, output):
    outs = g.graph["outputs"]
    names = g.graph["output_names"]
    if output is None:
        return outs[0]
    if isinstance(output, int):
        if not 0 <= output < len(outs):
            raise ValueError(f"output index {output} out of range: the model has {len(outs)} output(s)")
        return outs[output]
    if output in names:
        return outs[names.index(output)]
    raise ValueError(f"unknown output {output!r}; the model's outputs are {names}")


def create_analyzer(name, model, **params):
    """``create_analyzer("lrp.epsilon", model, epsilon=0.01)``: iNNvestigate's entry point.

    ``name`` is any name from :func:`methods`: a rule preset or a registered method."""
    from .registry import FACTORIES
    from .rules.presets import PRESETS

    if name in PRESETS:
        return Analyzer(model, name, **params)
    if name in FACTORIES:
        return FACTORIES[name][0](model, **params)
    raise ValueError(f"unknown method {name!r}; known: {', '.join(sorted(methods()))}")


def methods():
    """dict method name -> one-line description, presets and registered methods."""
    from .registry import FACTORIES
    from .rules.presets import PRESETS

    out = {name: p.doc for name, p in PRESETS.items()}
    out.update({name: doc for name, (_, doc) in FACTORIES.items()})
    return out
