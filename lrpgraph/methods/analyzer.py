"""The rule-preset method: :class:`Analyzer`, a :class:`lrpgraph.methods.base.Method`.

``Analyzer(model, preset, overrides=None, **params)`` takes the prepared model
(:func:`lrpgraph.prepare`, converted once per model), assigns the preset's rules
and compiles one :class:`lrpgraph.engine.compile.Program`; ``analyze(x, target)`` is
then one call of the compiled function per batch chunk.  Importing this module
registers every preset of :data:`lrpgraph.rules.PRESETS` in the method table.
"""

from __future__ import annotations

import tensorflow as tf

from ..engine.assign import assign_rules
from ..engine.compile import Program
from ..engine.heads import get_head
from .base import Method
from .registry import create_analyzer, methods, register  # noqa: F401  (re-exported)
from ..rules.presets import PRESETS, get_preset

__all__ = ["Analyzer"]


class Analyzer(Method):
    """Relevance / attribution analyzer for one (model, rule preset, parameters).

    Parameters
    ----------
    model : keras.Model or Prepared
        A Sequential or functional Keras 3 model (subclassed models must be
        wrapped in a functional model first), converted once per model.
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
    head : str, Head or callable, optional
        Replaces the preset's head (initial relevance), e.g. a user function
        ``head(logits, targets) -> R0`` (:mod:`lrpgraph.engine.heads`).
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
        self.name = self.preset.name
        unknown = set(params) - set(self.preset.defaults)
        if unknown:
            accepted = sorted(self.preset.defaults) or "none"
            raise TypeError(f"method {self.preset.name!r} got unknown parameter(s) {sorted(unknown)}; "
                            f"it accepts: {accepted}")
        super().__init__(model, neuron_selection_mode=neuron_selection_mode, output=output,
                         postprocess=postprocess)
        prepared = self.prepared
        self.params = dict(self.preset.defaults, **params)
        self.graph = prepared.graph
        self.output = prepared.output
        self.rules = assign_rules(self.graph, self.preset, self.params, overrides, nodes=prepared.needed)
        if head is None:
            head = self.preset.head
            if neuron_selection_mode == "all":
                head = "all_ones" if head == "one" else "all_logits"
        self.head = get_head(head)
        self.stop_at = None if stop_at is None else [
            prepared.layer_node(s) for s in ([stop_at] if isinstance(stop_at, str) else stop_at)]
        self.program = Program(prepared, self.rules, self.head, stop=self.stop_at,
                               multiply_input=self.preset.multiply_input, jit_compile=jit_compile)

    @property
    def single_output(self):
        return bool(self.stop_at)

    # -- public -----------------------------------------------------------------
    @property
    def traces(self):
        """How many times the compiled function was traced (1 per signature)."""
        return self.program.traces

    def compute(self, xs, targets):
        maps, logits, _ = self.program.fn([tf.convert_to_tensor(a) for a in xs], tf.convert_to_tensor(targets))
        return [m.numpy() for m in maps], logits.numpy()

    def compute_multi(self, xs, targets):
        maps, logits, _ = self.program.multi_fn([tf.convert_to_tensor(a) for a in xs],
                                                tf.convert_to_tensor(targets))
        return [m.numpy() for m in maps], logits.numpy()

    def traced(self, inputs, targets):
        """The analysis as traceable TensorFlow: (maps, logits, activations at the
        stop nodes) for a list of input tensors and (N,) int32 targets (-1: the
        predicted class).  For methods that run this analysis inside their own
        tf.function (integrated gradients, SmoothGrad)."""
        return self.program.analysis(inputs, targets)

    def predict_logits(self, x):
        """The logits the analysis starts from (the rewritten graph's output)."""
        return self.prepared.logits(x)


def _preset_factory(name):
    def factory(model, **params):
        return Analyzer(model, name, **params)
    factory.__name__ = factory.__qualname__ = f"Analyzer[{name}]"
    factory.__doc__ = f"``Analyzer(model, {name!r}, **params)``: {PRESETS[name].doc}"
    factory.parameters = frozenset(PRESETS[name].defaults)
    return factory


for _name, _preset in PRESETS.items():
    register(_name, _preset.doc)(_preset_factory(_name))
