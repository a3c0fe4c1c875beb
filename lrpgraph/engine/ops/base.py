"""The public op descriptions: what rules see instead of Keras classes.

Every graph node carries an op.  Its ``kind`` is what rule selection keys on, its
typed fields are what rules read (never the Keras layer):

=============  ===================  =================================================
kind           class                meaning
=============  ===================  =================================================
input          :class:`Input`       a model input
linear         :class:`Linear`      y = act(forward(x, kernel) + bias), forward linear in x
elementwise    :class:`Elementwise` y = fn(x) (relu, gelu, swish, sigmoid, ...)
pool_max       :class:`Pooling`     max pooling and global max pooling
pool_avg       :class:`Pooling`     average pooling and global average pooling
add            :class:`Add`         sums of (signed, scaled) inputs: Add, Subtract, Average
concat         :class:`Concat`      Concatenate
multiply       :class:`Multiply`    a value times a gate
reshape        :class:`Reshape`     shape-only ops (Flatten, Reshape, padding, slicing, cast,
                                    identity: :class:`Identity`)
softmax        :class:`Softmax`     softmax over ``axes`` (stripped at the output by a rewrite
                                    pass; in the middle of a graph: attention weights)
bilinear       :class:`Bilinear`    y = scale * einsum(equation, a, b) of two activations
                                    (q.k^T and attention.v, ``keras.ops.matmul``/``einsum``)
attention      :class:`Attention`   multi-head attention (split into its parts by a pass)
embedding      :class:`Embedding`   a table lookup of integer ids (the text model's input layer)
constant       :class:`Constant`    an output that does not depend on the input's values
noise          :class:`Noise`       Dropout and friends (removed by a rewrite pass)
layernorm      :class:`LayerNorm`   LayerNormalization (rules.LayerNorm)
nested         :class:`Nested`      a nested Functional/Sequential model (inlined by a pass)
chain          :class:`Chain`       several ops in a row (split into nodes by a pass)
unknown        :class:`Unknown`     anything else: needs a user rule or a registration
=============  ===================  =================================================

An op is called with a list of input tensors and returns a list of outputs.  Ops
other than :class:`Linear` and :class:`Elementwise` compute through ``call``, the
recorded Keras call (``lrpgraph.engine.graph.Call``).  Ops are frozen: a rewrite pass
makes a changed copy with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import tensorflow as tf

import keras

__all__ = [
    "Op", "Input", "Linear", "Elementwise", "Pooling", "Add", "Concat", "Multiply", "Reshape",
    "Identity", "Softmax", "Noise", "LayerNorm", "Nested", "Chain", "Unknown", "Bilinear",
    "Attention", "Embedding", "Constant", "replace", "wide_dtype", "variable_add", "variable_concat",
    "ELEMENTWISE",
]

replace = dataclasses.replace


class Op:
    """Base of the op descriptions.  ``kind`` (class attribute) is what rule
    selection keys on, ``subkind`` refines it (``kind/subkind`` in selectors)."""

    kind = "unknown"
    subkind = None

    def __call__(self, inputs):
        """Evaluate the op: list of input tensors -> list of outputs."""
        if self.call is None:
            raise ValueError(f"{self!r} has no computation: give it call=")
        return list(self.call(inputs))

    def __repr__(self):
        sub = f"/{self.subkind}" if self.subkind else ""
        return f"<{type(self).__name__} {self.kind}{sub}>"


_op = dataclass(frozen=True, eq=False, repr=False)


@_op
class Input(Op):
    """A model input (computes nothing)."""

    kind = "input"
    call: Callable | None = None


def _reader(value, what):
    """A zero-argument callable reading ``value`` where it is called: ``value``
    itself when callable, a reader for a Keras or TensorFlow variable, None for None."""
    if value is None:
        return None
    if isinstance(value, (keras.Variable, tf.Variable)):
        return lambda: tf.convert_to_tensor(getattr(value, "value", value))
    if callable(value):
        return value
    raise TypeError(
        f"{what}= must be a Keras variable (e.g. layer.kernel) or a zero-argument callable "
        f"returning a tensor, got {type(value).__name__}: a fixed value would be baked into the compiled "
        "function and miss later weight updates")


@_op
class Linear(Op):
    """y = act(forward(x, kernel) + bias): Dense, Conv*, DepthwiseConv, ConvTranspose,
    BatchNorm as an affine map, Rescaling, Normalization, a registered custom layer.

    ``forward(x, kernel)``: bias-free and linear in ``x``; rules call it with modified
    kernels.  ``kernel``, ``bias``: zero-argument callables returning tensors, read where
    they are called (inside the compiled function), or Keras variables (wrapped so);
    ``bias`` may be None.  ``activation``: ``(name, callable)`` of a fused activation
    (split off by a rewrite pass) or None.  ``channel_axis``: the output axis a bias of
    rank 1 broadcasts along.  ``kernel_out_axis``: the kernel axis indexing output
    channels, for folding a following BatchNorm (``"depthwise"`` for a depthwise kernel,
    None: not foldable).  ``depth_multiplier``: of a depthwise op.  ``scale_axes``: for
    an elementwise affine op (BatchNorm, layer scale), the input axes its kernel runs along.
    """

    kind = "linear"
    forward: Callable
    kernel: Callable
    bias: Callable | None = None
    activation: tuple | None = None
    channel_axis: int | None = -1
    kernel_out_axis: int | str | None = None
    depth_multiplier: int | None = None
    scale_axes: tuple | None = None
    subkind: str | None = None

    def __post_init__(self):
        if not callable(self.forward):
            raise TypeError(f"Linear forward= must be a function forward(x, kernel), got "
                            f"{type(self.forward).__name__}")
        if self.kernel is None:
            raise TypeError("Linear needs a kernel= (a Keras variable or a zero-argument callable)")
        object.__setattr__(self, "kernel", _reader(self.kernel, "kernel"))
        object.__setattr__(self, "bias", _reader(self.bias, "bias"))

    def add_bias(self, z, b):
        """z + b, broadcasting a per-channel bias along ``channel_axis``."""
        if b is None:
            return z
        if self.channel_axis in (-1, len(z.shape) - 1) or len(b.shape) != 1:
            return z + b
        shape = [1] * len(z.shape)
        shape[self.channel_axis] = -1
        return z + tf.reshape(b, shape)

    def __call__(self, inputs):
        y = self.add_bias(self.forward(inputs[0], self.kernel()),
                          self.bias() if self.bias is not None else None)
        if self.activation is not None:
            y = self.activation[1](y)
        return [y]


@_op
class Elementwise(Op):
    """y = fn(x), applied to every element; ``name`` is the activation's name
    ('relu', 'gelu', ...) and the op's subkind."""

    kind = "elementwise"
    fn: Callable
    name: str

    @property
    def subkind(self):
        return self.name

    def __call__(self, inputs):
        return [self.fn(inputs[0])]


@_op
class Pooling(Op):
    """Pooling: ``mode`` 'max' (kind ``pool_max``) or 'avg' (kind ``pool_avg``, a positive
    linear map)."""

    mode: str
    call: Callable | None = None

    def __post_init__(self):
        if self.mode not in ("max", "avg"):
            raise ValueError(f"Pooling mode must be 'max' or 'avg', got {self.mode!r}")

    @property
    def kind(self):
        return f"pool_{self.mode}"


@_op
class Add(Op):
    """A sum of (signed, scaled) inputs; ``mode`` (the subkind): 'add', 'subtract',
    'average' or 'scaled' (x0 + s * x1)."""

    kind = "add"
    mode: str = "add"
    call: Callable | None = None

    @property
    def subkind(self):
        return self.mode


@_op
class Concat(Op):
    """Concatenation of the inputs."""

    kind = "concat"
    call: Callable | None = None


@_op
class Multiply(Op):
    """y = value * gate; ``gate_slot``: which input is the gate (set by the
    ``mark_gates`` rewrite pass where a sigmoid-like op makes one input), None: unknown."""

    kind = "multiply"
    call: Callable | None = None
    gate_slot: int | None = None


@_op
class Reshape(Op):
    """A shape-only op (Flatten, Reshape, Permute, padding, cropping, upsampling,
    slicing, cast); ``name`` (the subkind) says which."""

    kind = "reshape"
    name: str | None = None
    call: Callable | None = None

    @property
    def subkind(self):
        return self.name


@_op
class Identity(Reshape):
    """y = x."""

    name: str | None = "identity"

    def __call__(self, inputs):
        return [inputs[0]]


@_op
class Softmax(Op):
    """Softmax over ``axes`` (a rewrite pass strips it where it makes a model output).
    Inside multi-head attention its second input, when present, is the boolean mask
    (masked positions get weight 0); rules give the mask no relevance."""

    kind = "softmax"
    call: Callable | None = None
    axes: tuple = (-1,)


ELEMENTWISE = "...,...->..."  # the equation of an elementwise product (a gated feed-forward's)


@_op
class Bilinear(Op):
    """y = scale * einsum(equation, a, b): a product of two activations (q.k^T and
    attention.v inside attention, ``keras.ops.matmul``/``einsum`` between two tensors).
    Linear in each input with the other held fixed.  ``const_slot``: which input
    plays the role of (attention) weights, i.e. is held constant by CP-LRP (set for
    attention.v by the attention split and, where one input is a softmax, by the
    ``mark_gates`` pass); None: neither.  ``scale_slot``: multiply that input by
    ``scale`` before the product (as Keras scales the query), None: scale the product.
    ``name`` (the subkind): 'scores' (q.k^T),
    'combine' (attention.v), 'matmul' or 'einsum'."""

    kind = "bilinear"
    equation: str
    scale: float = 1.0
    const_slot: int | None = None
    name: str | None = None
    scale_slot: int | None = None

    @property
    def subkind(self):
        return self.name

    def __call__(self, inputs):
        a, b = inputs
        if self.scale != 1.0 and self.scale_slot is not None:  # scale one factor first (Keras's rounding)
            if self.scale_slot == 0:
                a = a * tf.cast(self.scale, a.dtype)
            else:
                b = b * tf.cast(self.scale, b.dtype)
            return [self._product(a, b)]
        y = self._product(a, b)
        return [y if self.scale == 1.0 else y * tf.cast(self.scale, y.dtype)]

    def _product(self, a, b):
        # "...,...->..." (a gated product) is a * b: tf.einsum lowers it to a batched
        # matmul of 1x1 matrices, one per element (~10x slower than the multiply)
        if self.equation.replace(" ", "") == ELEMENTWISE:
            return a * b
        return tf.einsum(self.equation, a, b)


@_op
class Attention(Op):
    """Multi-head attention as parts (split into nodes by the ``split_attention``
    rewrite pass): ``query``, ``key``, ``value`` and ``output`` projections
    (:class:`Linear`), ``scores`` (:class:`Bilinear` of key and scaled query),
    ``softmax`` (:class:`Softmax`, with the mask as second input when one is given
    as a tensor) and ``combine`` (:class:`Bilinear` of the weights and the values).
    ``slots``: the input slot of each of 'query', 'key', 'value', 'mask' (None: absent;
    key defaults to value).  ``call``: the recorded call of the whole layer."""

    kind = "attention"
    query: Linear
    key: Linear
    value: Linear
    scores: Bilinear
    softmax: Softmax
    combine: Bilinear
    output: Linear
    slots: dict
    call: Callable | None = None


@_op
class Embedding(Op):
    """y = table[ids]: the lookup that turns integer token ids into vectors (the input
    layer of a text model).  ``table``: a Keras variable or zero-argument callable."""

    kind = "embedding"
    table: Callable
    call: Callable | None = None

    def __post_init__(self):
        object.__setattr__(self, "table", _reader(self.table, "table"))


@_op
class Constant(Op):
    """An op whose output does not depend on its input's values, only on its shape
    (a position embedding looked up for positions 0..T-1, ``zeros_like``): relevance
    reaching it is absorbed, as by a bias."""

    kind = "constant"
    call: Callable | None = None


@_op
class Noise(Op):
    """Dropout, GaussianNoise and friends: identities at inference (removed by a pass)."""

    kind = "noise"
    call: Callable | None = None


@_op
class LayerNorm(Op):
    """y = gamma * (x - mean(x)) / sqrt(var(x) + epsilon) + beta over ``axes`` (without
    the centring when ``rms_scaling``); its rule: ``rules.LayerNorm``.  ``gamma`` and
    ``beta``: Keras variables or zero-argument callables (None: absent)."""

    kind = "layernorm"
    call: Callable | None = None
    axes: tuple = (-1,)
    epsilon: float = 1e-3
    gamma: Callable | None = None
    beta: Callable | None = None
    rms_scaling: bool = False

    def __post_init__(self):
        object.__setattr__(self, "gamma", _reader(self.gamma, "gamma"))
        object.__setattr__(self, "beta", _reader(self.beta, "beta"))


@_op
class Nested(Op):
    """A nested Functional/Sequential model called as a layer (inlined by a pass).

    ``expand`` (optional) describes a subclassed layer by a functional model that
    computes what it computes with its own sublayers (same weights):
    ``expand(input_specs) -> keras.Model`` gets the recorded call's input tensors (in
    slot order) and returns a model taking them in that order; the pass inlines that
    model instead of the layer (``lrpgraph.register_layer(Cls, lambda layer:
    Nested(expand=...))``)."""

    kind = "nested"
    call: Callable | None = None
    expand: Callable | None = None


@_op
class Chain(Op):
    """Several ops applied in a row, e.g. SeparableConv = depthwise then pointwise.
    ``parts``: ``((suffix, op), ...)``; the ``split_chains`` rewrite pass makes each
    part a node (the first keeps the node id, the others get ``id/suffix``)."""

    kind = "chain"
    parts: tuple = ()

    def __call__(self, inputs):
        for _, op in self.parts:
            inputs = op(inputs)
        return inputs


@_op
class Unknown(Op):
    """An op no rule understands; ``reason`` says why."""

    kind = "unknown"
    reason: str = "no built-in op description for this class"
    call: Callable | None = None


def _times_kernel(x, k):
    return x * k


def variable_add(variable):
    """The op of a layer computing y = x + v with a trainable ``variable`` v (a learned
    position embedding, broadcast over the batch): a :class:`Linear` y = x * 1 + v whose
    bias is v, so every preset's linear rule treats it as a bias (LRP-epsilon: v absorbs
    its share of the relevance).  For ``lrpgraph.register_layer(MyPositionEmbedding,
    lambda layer: lrpgraph.ops.variable_add(layer.position_embedding))``."""
    bias = _reader(variable, "variable")
    return Linear(_times_kernel, lambda: tf.ones([], bias().dtype), bias, channel_axis=None,
                  subkind="variable_add")


def variable_concat(variable, axis=1, at_end=False):
    """The op of a layer concatenating a trainable ``variable`` (a class token of shape
    (D,), (1, D) or (1, 1, D), broadcast over the batch) to x along ``axis`` (before x,
    after it when ``at_end``), as ViT-style code does: y = concat([broadcast(v), x]).
    A :class:`Linear` whose forward pads x with zeros where the token goes and whose
    bias is the token placed there, so the token absorbs the relevance reaching its
    position (it is a constant of the model, not part of the input)."""
    token = _reader(variable, "variable")

    def forward(x, k):
        rank = len(x.shape)
        pads = [[0, 0]] * rank
        n = _token_layout(token(), rank).shape[axis % rank]
        pads[axis % rank] = [0, n] if at_end else [n, 0]
        return tf.pad(x, pads) * k

    return _ConcatLinear(forward, lambda: tf.ones([], token().dtype), token, channel_axis=None,
                         subkind="variable_concat", axis=axis, at_end=at_end)


def _token_layout(t, rank):
    """The token as a tensor of ``rank`` with leading axes of 1 (the batch)."""
    while len(t.shape) < rank:
        t = tf.expand_dims(t, 0)
    return t


@_op
class _ConcatLinear(Linear):
    """A :class:`Linear` whose bias is a token placed along ``axis`` (see :func:`variable_concat`)."""

    axis: int = 1
    at_end: bool = False

    def add_bias(self, z, b):
        if b is None:
            return z
        rank = len(z.shape)
        axis = self.axis % rank
        t = tf.cast(_token_layout(b, rank), z.dtype)
        n_tok = t.shape[axis]
        n_x = z.shape[axis] - n_tok
        zeros_shape = [1] * rank
        for a in range(1, rank):
            zeros_shape[a] = t.shape[a] if a != axis else n_x
        zeros = tf.zeros(zeros_shape, z.dtype)
        placed = tf.concat([zeros, t] if self.at_end else [t, zeros], axis=axis)
        return z + placed


def wide_dtype(dtype):
    """The dtype for statistics (variances, means) of ``dtype`` data: float32 for
    float16/bfloat16/float32, as Keras computes them, and float64 kept as float64."""
    return tf.float64 if tf.as_dtype(dtype) == tf.float64 else tf.float32
