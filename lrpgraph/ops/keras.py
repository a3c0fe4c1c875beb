"""The Keras adapter: one Keras layer call -> one op description (:mod:`lrpgraph.ops.base`).

:func:`describe` walks :data:`BUILDERS`, a table of (layer classes -> builder), in
order; the first builder that returns an op wins (a builder may decline with None).
Classes registered with :func:`register_layer` come before the table, so a user's
description of a class (and its subclasses) overrides the built-in one.  Matching
is by class (``isinstance``), never by name: ``keras.ops.add``'s class and
``keras.layers.Add`` are both called ``Add``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import keras
from keras import layers as L
from keras.src.backend import KerasTensor
from keras.src.ops import core as kcore
from keras.src.ops import nn as knn
from keras.src.ops import numpy as knp

from .base import (Add, Chain, Concat, Elementwise, Identity, Input, LayerNorm, Linear, Multiply,
                   Nested, Noise, Op, Pooling, Reshape, Softmax, Unknown, replace, wide_dtype)

__all__ = ["describe", "register_layer", "unregister_layer", "registrations_generation", "BUILDERS"]


def _var(v, dtype):
    v = v.value if hasattr(v, "value") else v
    return tf.cast(v, dtype)


def _reads(layer, attr):
    """A reader of ``layer.<attr>`` in the layer's compute dtype (None when absent)."""
    if getattr(layer, attr, None) is None:
        return None
    return lambda: _var(getattr(layer, attr), layer.compute_dtype)


def _act_name(act):
    if act is None:
        return "linear"
    return getattr(act, "__name__", type(act).__name__)


def _fused_activation(layer):
    act = getattr(layer, "activation", None)
    name = _act_name(act)
    return None if name == "linear" else (name, act)


def _channel_axis(layer):
    return -1 if getattr(layer, "data_format", "channels_last") == "channels_last" else 1


# ---- linear layers ---------------------------------------------------------------

def _dense_forward(x, k):
    return tf.matmul(x, k) if len(x.shape) == 2 else tf.tensordot(x, k, axes=[[len(x.shape) - 1], [0]])


def _dense(layer, call, rank):
    if getattr(layer, "quantization_mode", None):
        raise ValueError(f"layer {layer.name!r}: quantized Dense layers are not supported")
    # layer.kernel merges LoRA; without LoRA read the variable itself
    kernel = _reads(layer, "kernel" if getattr(layer, "lora_enabled", False) else "_kernel")
    return Linear(_dense_forward, kernel, _reads(layer, "bias"), _fused_activation(layer),
                  channel_axis=-1, kernel_out_axis=-1, subkind="dense")


def conv_forward(strides, padding, dilation_rate, data_format, causal_pad=0):
    """forward(x, k) of a convolution (``causal_pad`` > 0: left padding of a causal Conv1D)."""
    def forward(x, k):
        if causal_pad:
            pads = [[0, 0], [causal_pad, 0], [0, 0]] if data_format == "channels_last" else \
                [[0, 0], [0, 0], [causal_pad, 0]]
            x = tf.pad(x, pads)
        return keras.ops.conv(x, k, strides=strides, padding=padding, dilation_rate=dilation_rate,
                              data_format=data_format)
    return forward


def depthwise_forward(strides, padding, dilation_rate, data_format):
    """forward(x, k) of a depthwise convolution."""
    def forward(x, k):
        return keras.ops.depthwise_conv(x, k, strides=strides, padding=padding,
                                        dilation_rate=dilation_rate, data_format=data_format)
    return forward


def _conv(layer, call, rank):
    causal = layer.padding == "causal"
    forward = conv_forward(list(layer.strides), "valid" if causal else layer.padding, layer.dilation_rate,
                           layer.data_format,
                           layer.dilation_rate[0] * (layer.kernel_size[0] - 1) if causal else 0)
    return Linear(forward, _reads(layer, "kernel"), _reads(layer, "bias"), _fused_activation(layer),
                  channel_axis=_channel_axis(layer), kernel_out_axis=-1, subkind=f"conv{layer.rank}d")


def _conv_transpose(layer, call, rank):
    def forward(x, k):
        return keras.ops.conv_transpose(x, k, strides=list(layer.strides), padding=layer.padding,
                                        output_padding=layer.output_padding,
                                        dilation_rate=layer.dilation_rate, data_format=layer.data_format)

    return Linear(forward, _reads(layer, "kernel"), _reads(layer, "bias"), _fused_activation(layer),
                  channel_axis=_channel_axis(layer), kernel_out_axis=-2,
                  subkind=f"conv{layer.rank}d_transpose")


def _depthwise(layer, call, rank):
    forward = depthwise_forward(layer.strides, layer.padding, layer.dilation_rate, layer.data_format)
    return Linear(forward, _reads(layer, "kernel"), _reads(layer, "bias"), _fused_activation(layer),
                  channel_axis=_channel_axis(layer), kernel_out_axis="depthwise",
                  depth_multiplier=layer.depth_multiplier, subkind="depthwise")


def _separable(layer, call, rank):
    """SeparableConv = depthwise (no bias) then a pointwise 1x1 convolution (bias, activation)."""
    fmt, axis = layer.data_format, _channel_axis(layer)
    dw = Linear(depthwise_forward(layer.strides, layer.padding, layer.dilation_rate, fmt),
                _reads(layer, "depthwise_kernel"), None, channel_axis=axis, kernel_out_axis="depthwise",
                depth_multiplier=layer.depth_multiplier, subkind="depthwise")
    pw = Linear(conv_forward(1, "valid", 1, fmt), _reads(layer, "pointwise_kernel"),
                _reads(layer, "bias") if layer.use_bias else None, _fused_activation(layer),
                channel_axis=axis, kernel_out_axis=-1, subkind=f"conv{layer.rank}d")
    return Chain((("", dw), ("pointwise", pw)))


def _broadcast_shape(rank, axes, sizes):
    shape = [1] * rank
    for a, s in zip(axes, sizes):
        shape[a] = s
    return shape


def _scale_forward(axes):
    """forward(x, k) = x * k, with ``k`` laid out along ``axes`` of x (None: broadcast as is)."""
    def forward(x, k):
        if axes is not None:
            sizes = list(k.shape) if len(axes) > 1 else [-1]
            k = tf.reshape(k, _broadcast_shape(len(x.shape), axes, sizes))
        return x * k
    return forward


def _batchnorm(layer, call, rank):
    axes = tuple(a % rank for a in (layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]))
    dtype = layer.compute_dtype
    stat = wide_dtype(dtype)

    def wide_scale():
        s = tf.math.rsqrt(_var(layer.moving_variance, stat) + layer.epsilon)
        return s * _var(layer.gamma, stat) if layer.scale else s

    def scale():
        return tf.cast(wide_scale(), dtype)

    def shift():
        t = -_var(layer.moving_mean, stat) * wide_scale()
        if layer.center:
            t = t + _var(layer.beta, stat)
        return tf.cast(t, dtype)

    def laid_out_shift():  # several axes: the bias laid out like the kernel
        b = shift()
        return tf.reshape(b, _broadcast_shape(rank, axes, b.shape))

    return Linear(_scale_forward(axes), scale, laid_out_shift if len(axes) > 1 else shift,
                  channel_axis=axes[0] if len(axes) == 1 else None, scale_axes=axes, subkind="batchnorm")


def _elementwise_affine(subkind, scale, offset, scale_axes=None):
    return Linear(_scale_forward(None), scale, offset, channel_axis=-1, scale_axes=scale_axes,
                  subkind=subkind)


def _rescaling(layer, call, rank):
    dtype = layer.compute_dtype
    # the values Keras multiplies by: its cast rounds a Python float through float32
    # even for a float64 layer, and the rewrite must reproduce the model, not improve it
    scale = keras.ops.convert_to_numpy(keras.ops.cast(layer.scale, dtype))
    offset = keras.ops.convert_to_numpy(keras.ops.cast(layer.offset, dtype))
    if scale.ndim > 0 and keras.config.image_data_format() == "channels_first":
        scale = scale.reshape(scale.shape + (1,) * (3 - scale.ndim))
        offset = offset.reshape(offset.shape + (1,) * (3 - offset.ndim)) if offset.ndim else offset
    return _elementwise_affine("rescaling", lambda: tf.constant(scale, dtype),
                               lambda: tf.constant(offset, dtype))


def _normalization(layer, call, rank):
    if layer.invert:
        raise ValueError(f"layer {layer.name!r}: Normalization(invert=True) is not supported")
    dtype = layer.compute_dtype

    def scale():
        var = _var(layer.variance, dtype)
        return 1.0 / tf.maximum(tf.sqrt(var), keras.config.epsilon())

    def shift():
        return -_var(layer.mean, dtype) * scale()

    return _elementwise_affine("normalization", scale, shift)


def _layernorm(layer, call, rank):
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return LayerNorm(call, tuple(axis), layer.epsilon, layer.gamma, layer.beta,
                     bool(getattr(layer, "rms_scaling", False)))


def _layer_scale(layer, call, rank):
    """ConvNeXt's layer scale y = x * gamma (gamma per channel): an elementwise linear op."""
    return _elementwise_affine("layer_scale", _reads(layer, "gamma"), None, scale_axes=((rank or 1) - 1,))


_CONST_ARITH = {knp.Add: "add", knp.Subtract: "subtract", knp.Multiply: "multiply",
                knp.TrueDivide: "divide", knp.Divide: "divide"}


def _constant_arith(layer, call, rank):
    """``x + c``, ``c + x``, ``x - c``, ``c - x``, ``x * c``, ``c * x``, ``x / c`` with a
    constant c (e.g. MobileNetV3's ``relu6(x + 3) * (1/6)``): y = k * x + b, an
    elementwise linear op.  None when the call is not of that form."""
    name = _CONST_ARITH.get(type(layer))
    if name is None or call is None or call.kwargs or len(call.args) != 2 or len(call.input_specs) != 1:
        return None
    pos = 0 if isinstance(call.args[0], KerasTensor) else 1
    if isinstance(call.args[1 - pos], keras.Variable):
        return None  # a variable may change after the graph is built: not a constant
    try:
        c = np.asarray(call.args[1 - pos], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if name == "divide" and pos == 1:
        return None  # c / x is not linear in x
    k, b = {"add": (1.0, c), "subtract": (1.0, -c) if pos == 0 else (-1.0, c),
            "multiply": (c, None), "divide": (1.0 / c, None)}[name]
    dtype = call.input_specs[0].dtype
    kernel = np.asarray(k, np.float64)
    return _elementwise_affine(f"const_{name}", lambda: tf.constant(kernel, dtype),
                               None if b is None else (lambda: tf.constant(b, dtype)))


# ---- activations, pooling, merging, shapes ----------------------------------------

_ACTIVATION_OPS = {
    knn.Relu: "relu", knn.Relu6: "relu6", knn.Sigmoid: "sigmoid", knn.Softplus: "softplus",
    knn.Softsign: "softsign", knn.Silu: "silu", knn.LeakyRelu: "leaky_relu",
    knn.HardSigmoid: "hard_sigmoid", knn.HardSilu: "hard_silu", knn.Elu: "elu", knn.Selu: "selu",
    knn.Gelu: "gelu", knn.Celu: "celu", knn.LogSigmoid: "log_sigmoid", knn.HardTanh: "hard_tanh",
    knp.Tanh: "tanh", knp.Exp: "exp", knp.Absolute: "abs", knp.Square: "square", knp.Sqrt: "sqrt",
}


def _activation_op(layer, call, rank):
    name = _ACTIVATION_OPS.get(type(layer))  # the exact class: subclasses are other functions
    return None if name is None else Elementwise(lambda x: call([x])[0], name)


def _activation(layer, call, rank):
    if isinstance(layer, L.Softmax):
        return Softmax(call)
    name = _act_name(layer.activation)
    if name == "softmax":
        return Softmax(call)
    if name == "linear":
        return Identity()
    return Elementwise(layer.activation, name)


def _relu(layer, call, rank):
    name = "relu"
    if layer.max_value is not None and float(layer.max_value) == 6.0 and not layer.negative_slope:
        name = "relu6"
    elif layer.negative_slope:
        name = "leaky_relu"
    return Elementwise(lambda x: layer(x), name)


def _named_elementwise(name):
    return lambda layer, call, rank: Elementwise(lambda x: layer(x), name)


def _application_class(module, name):
    """A layer class defined inside keras.src.applications (None if absent)."""
    try:
        mod = __import__(f"keras.src.applications.{module}", fromlist=[name])
    except ImportError:  # pragma: no cover - other Keras versions
        return None
    return getattr(mod, name, None)


_LAYER_SCALE = _application_class("convnext", "LayerScale")            # y = x * gamma
_CUSTOM_SCALE = _application_class("inception_resnet_v2", "CustomScaleLayer")  # x0 + x1 * s

_SHAPE_LAYERS = (
    L.Flatten, L.Reshape, L.Permute, L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
    L.Cropping1D, L.Cropping2D, L.Cropping3D, L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
    L.RepeatVector, L.Identity,
)
_SHAPE_OPS = tuple(getattr(m, n) for m, n in [
    (knp, "Reshape"), (knp, "Transpose"), (knp, "ExpandDims"), (knp, "Squeeze"), (knp, "GetItem"),
    (knp, "Ravel"), (knp, "Pad"), (kcore, "Slice"), (kcore, "Cast")] if hasattr(m, n))
_NOISE_LAYERS = (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
                 L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization)
_MAXPOOL = (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.GlobalMaxPooling1D,
            L.GlobalMaxPooling2D, L.GlobalMaxPooling3D, knn.MaxPool)
_AVGPOOL = (L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D, L.GlobalAveragePooling1D,
            L.GlobalAveragePooling2D, L.GlobalAveragePooling3D, knn.AveragePool, knp.Mean)

# (layer classes -> builder(layer, call, input_rank)), tried in order; a builder may
# return None to pass the layer on.  Order matters: SeparableConv and DepthwiseConv
# come before the convolutions, constant arithmetic before Add/Multiply.
BUILDERS = [
    ((L.InputLayer,), lambda layer, call, rank: Input()),
    ((keras.Model,), lambda layer, call, rank: Nested(call)),
    ((L.Lambda,), lambda layer, call, rank: Unknown("a Lambda layer's function is opaque to the rules", call)),
    ((L.SeparableConv1D, L.SeparableConv2D), _separable),
    ((L.DepthwiseConv1D, L.DepthwiseConv2D), _depthwise),
    ((L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose), _conv_transpose),
    ((L.Conv1D, L.Conv2D, L.Conv3D), _conv),
    ((L.Dense,), _dense),
    ((L.BatchNormalization,), _batchnorm),
    ((L.Rescaling,), _rescaling),
    ((L.Normalization,), _normalization),
    ((L.LayerNormalization,), _layernorm),
    (tuple(c for c in (_LAYER_SCALE,) if c is not None), _layer_scale),
    (tuple(c for c in (_CUSTOM_SCALE,) if c is not None), lambda layer, call, rank: Add("scaled", call)),
    (tuple(_CONST_ARITH), _constant_arith),
    ((L.Softmax, L.Activation), _activation),
    ((L.ReLU,), _relu),
    ((L.LeakyReLU,), _named_elementwise("leaky_relu")),
    ((L.ELU,), _named_elementwise("elu")),
    ((L.PReLU,), _named_elementwise("prelu")),
    (tuple(_ACTIVATION_OPS), _activation_op),
    ((knn.Softmax,), lambda layer, call, rank: Softmax(call)),
    (_NOISE_LAYERS, lambda layer, call, rank: Noise(call)),
    (_MAXPOOL, lambda layer, call, rank: Pooling("max", call)),
    (_AVGPOOL, lambda layer, call, rank: Pooling("avg", call)),
    ((L.Add, knp.Add), lambda layer, call, rank: Add("add", call)),
    ((L.Subtract, knp.Subtract), lambda layer, call, rank: Add("subtract", call)),
    ((L.Average,), lambda layer, call, rank: Add("average", call)),
    ((L.Concatenate, knp.Concatenate), lambda layer, call, rank: Concat(call)),
    ((L.Multiply, knp.Multiply), lambda layer, call, rank: Multiply(call)),
    (_SHAPE_LAYERS + _SHAPE_OPS, lambda layer, call, rank: Reshape(type(layer).__name__, call)),
]


# ---- user-registered layer classes ---------------------------------------------------

_REGISTERED = {}  # layer class -> describe(layer) -> Op
_GENERATION = [0]  # bumped by every (un)registration


def register_layer(layer_class, describe):
    """Tell lrpgraph what a custom layer computes, so that rules apply to it.

    ``describe(layer)`` returns one of the op descriptions of :mod:`lrpgraph.ops`, e.g.
    for a layer computing ``x @ w + b``::

        lrpgraph.register_layer(MyDense, lambda layer: lrpgraph.ops.Linear(
            forward=lambda x, k: tf.matmul(x, k), kernel=layer.w, bias=layer.b))

    A :class:`~lrpgraph.ops.Linear` then gets every preset's linear rule.  Kernel and bias
    are Keras variables (read inside the compiled function, never baked in) or
    zero-argument callables; they are cast to the layer's compute dtype.  Ops other than
    ``Linear``/``Elementwise`` given without ``call=`` compute through the layer itself.
    The registration covers subclasses and takes precedence over lrpgraph's own
    description of the class.  Registering a class again replaces its description.
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(f"register_layer needs a keras.layers.Layer subclass, got {layer_class!r}")
    if not callable(describe):
        raise TypeError(f"register_layer needs describe(layer) -> an lrpgraph.ops op, got {describe!r}")
    _REGISTERED[layer_class] = describe
    _GENERATION[0] += 1


def unregister_layer(layer_class):
    """Forget a :func:`register_layer` registration (no-op when there is none)."""
    if _REGISTERED.pop(layer_class, None) is not None:
        _GENERATION[0] += 1


def registrations_generation():
    """A number that changes whenever a registration changes (models prepared before
    it describe their layers the old way: :func:`lrpgraph.prepare` converts again)."""
    return _GENERATION[0]


def _cast_reader(read, dtype):
    return None if read is None else (lambda: tf.cast(read(), dtype))


def _registered(layer, call):
    cls = next((c for c in type(layer).__mro__ if c in _REGISTERED), None)
    if cls is None:
        return None
    op = _REGISTERED[cls](layer)
    if not isinstance(op, Op):
        raise TypeError(
            f"the describe function registered for {cls.__name__} returned {type(op).__name__} for layer "
            f"{layer.name!r}; it must return an lrpgraph.ops op description such as "
            "lrpgraph.ops.Linear(forward=..., kernel=..., bias=...)")
    if isinstance(op, Linear):
        dtype = layer.compute_dtype
        return replace(op, kernel=_cast_reader(op.kernel, dtype), bias=_cast_reader(op.bias, dtype))
    if getattr(op, "call", False) is None:
        return replace(op, call=call)
    return op


def describe(layer, call, input_rank=None):
    """The op for one call of ``layer`` (``call`` re-runs the recorded call;
    ``input_rank``: the rank of its first input)."""
    op = _registered(layer, call)
    if op is not None:
        return op
    for classes, build in BUILDERS:
        if classes and isinstance(layer, classes):
            op = build(layer, call, input_rank)
            if op is not None:
                return op
    return Unknown("no built-in op description for this class", call)
