"""Op descriptions: what rules see instead of Keras classes.

Every graph node carries an ``op``.  Its ``kind`` is what rule selection keys on:

=============  ==============================================================
kind           meaning
=============  ==============================================================
input          a model input
linear         y = f(x, kernel) + bias, linear in x (Dense, Conv*, Depthwise,
               ConvTranspose, BatchNorm as affine, Rescaling, Normalization,
               ConvNeXt's LayerScale, x + c / x * c / x / c with a constant c)
elementwise    y = act(x) (relu, gelu, swish, sigmoid, ...)
pool_max       max pooling and global max pooling
pool_avg       average pooling and global average pooling (positive, linear)
add            Add / Subtract / Average: sums of (signed, scaled) inputs
concat         Concatenate
multiply       Multiply: a value times a gate
reshape        shape-only ops (Flatten, Reshape, Permute, padding, cropping,
               upsampling, slicing, identity)
softmax        softmax (stripped at the output by a rewrite pass)
noise          Dropout and friends (removed by a rewrite pass)
layernorm      LayerNormalization (its normaliser sigma held constant: rules.LayerNorm)
nested         a nested Functional/Sequential model (inlined by a rewrite pass)
separable      SeparableConv (split into depthwise + pointwise by a rewrite pass)
unknown        anything else: needs a user rule
=============  ==============================================================

An op is called with a list of input tensors and returns a list of outputs.
Linear ops also expose ``fn(x, kernel, bias)`` so that rules can run them with
modified parameters; ``kernel()``/``bias()`` read the model's variables at call
time (inside the compiled function), so weights are never baked in.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import keras
from keras import layers as L
from keras.src.ops import nn as knn
from keras.src.ops import numpy as knp
from keras.src.ops import core as kcore
from keras.src.backend import KerasTensor

from .rules.base import wide_dtype


class Op:
    """A node's computation.  ``forward(inputs) -> list of outputs``."""

    kind = "unknown"

    def __init__(self, forward, kind=None, subkind=None, **meta):
        self.forward = forward
        if kind is not None:
            self.kind = kind
        self.subkind = subkind
        self.meta = meta

    def __call__(self, inputs):
        return self.forward(inputs)

    def __repr__(self):
        sub = f"/{self.subkind}" if self.subkind else ""
        return f"<{type(self).__name__} {self.kind}{sub}>"


class ElementwiseOp(Op):
    """y = act(x).  ``name`` is the activation's name ('relu', 'gelu', ...)."""

    kind = "elementwise"

    def __init__(self, fn, name):
        super().__init__(lambda xs: [fn(xs[0])], subkind=name)
        self.fn = fn
        self.name = name


class LinearOp(Op):
    """y = act(fn(x, kernel, bias)) where fn is linear in x for bias=None.

    ``kernel`` and ``bias`` are zero-argument callables returning tensors (or
    None): they read the model's variables where they are called.
    ``channel_axis`` is where a per-output-channel bias broadcasts.
    ``kernel_out_axis`` is the kernel axis indexing output channels (for
    folding a following BatchNorm), None when it cannot be folded.
    """

    kind = "linear"

    def __init__(self, fn, kernel, bias, subkind, activation=None, channel_axis=-1,
                 kernel_out_axis=None, depth_multiplier=None):
        super().__init__(self._forward, subkind=subkind)
        self.fn = fn
        self.kernel = kernel
        self.bias = bias
        self.activation = activation  # (name, callable) or None
        self.channel_axis = channel_axis
        self.kernel_out_axis = kernel_out_axis
        self.depth_multiplier = depth_multiplier

    def _forward(self, xs):
        b = self.bias() if self.bias is not None else None
        y = self.fn(xs[0], self.kernel(), b)
        if self.activation is not None:
            y = self.activation[1](y)
        return [y]

    def add_bias(self, z, b):
        """z + b, broadcasting a per-channel bias along ``channel_axis``."""
        if b is None:
            return z
        if self.channel_axis in (-1, len(z.shape) - 1) or len(b.shape) != 1:
            return z + b
        shape = [1] * len(z.shape)
        shape[self.channel_axis] = -1
        return z + tf.reshape(b, shape)

    def with_params(self, kernel, bias, subkind=None, activation="keep"):
        """A copy of this op reading other parameters."""
        op = LinearOp(self.fn, kernel, bias, subkind or self.subkind,
                      self.activation if activation == "keep" else activation,
                      self.channel_axis, self.kernel_out_axis, self.depth_multiplier)
        op.meta = dict(self.meta)
        return op


def _var(v, dtype):
    v = v.value if hasattr(v, "value") else v
    return tf.cast(v, dtype)


def _act_name(act):
    if act is None:
        return "linear"
    return getattr(act, "__name__", type(act).__name__)


def _fused_activation(layer):
    act = getattr(layer, "activation", None)
    name = _act_name(act)
    if name == "linear":
        return None
    return (name, act)


def _bias_fn(layer, attr="bias"):
    if getattr(layer, attr, None) is None:
        return None
    return lambda: _var(getattr(layer, attr), layer.compute_dtype)


def _channel_axis(layer, rank):
    return -1 if getattr(layer, "data_format", "channels_last") == "channels_last" else 1


# ---- linear layer constructors ---------------------------------------------

def _dense(layer):
    if getattr(layer, "quantization_mode", None):
        raise ValueError(f"layer {layer.name!r}: quantized Dense layers are not supported")
    if getattr(layer, "lora_enabled", False):
        kernel = lambda: _var(layer.kernel, layer.compute_dtype)  # noqa: E731  (layer.kernel merges LoRA)
    else:
        kernel = lambda: _var(layer._kernel, layer.compute_dtype)  # noqa: E731

    def fn(x, k, b):
        y = tf.matmul(x, k) if len(x.shape) == 2 else tf.tensordot(x, k, axes=[[len(x.shape) - 1], [0]])
        return y if b is None else y + b

    return LinearOp(fn, kernel, _bias_fn(layer), "dense", _fused_activation(layer),
                    channel_axis=-1, kernel_out_axis=-1)


def _conv(layer):
    rank = layer.rank
    strides, padding = list(layer.strides), layer.padding
    dilation, data_format = layer.dilation_rate, layer.data_format
    axis = _channel_axis(layer, rank)
    op_ref = {}

    def fn(x, k, b):
        if padding == "causal":
            pad = layer.dilation_rate[0] * (layer.kernel_size[0] - 1)
            pads = [[0, 0], [pad, 0], [0, 0]] if data_format == "channels_last" else [[0, 0], [0, 0], [pad, 0]]
            x = tf.pad(x, pads)
            y = keras.ops.conv(x, k, strides=strides, padding="valid", dilation_rate=dilation,
                               data_format=data_format)
        else:
            y = keras.ops.conv(x, k, strides=strides, padding=padding, dilation_rate=dilation,
                               data_format=data_format)
        return op_ref["op"].add_bias(y, b)

    op = LinearOp(fn, lambda: _var(layer.kernel, layer.compute_dtype), _bias_fn(layer),
                  f"conv{rank}d", _fused_activation(layer), channel_axis=axis, kernel_out_axis=-1)
    op_ref["op"] = op
    return op


def _conv_transpose(layer):
    rank = layer.rank
    axis = _channel_axis(layer, rank)
    op_ref = {}

    def fn(x, k, b):
        y = keras.ops.conv_transpose(x, k, strides=list(layer.strides), padding=layer.padding,
                                     output_padding=layer.output_padding,
                                     dilation_rate=layer.dilation_rate, data_format=layer.data_format)
        return op_ref["op"].add_bias(y, b)

    op = LinearOp(fn, lambda: _var(layer.kernel, layer.compute_dtype), _bias_fn(layer),
                  f"conv{rank}d_transpose", _fused_activation(layer), channel_axis=axis,
                  kernel_out_axis=-2)
    op_ref["op"] = op
    return op


def _depthwise(layer):
    axis = _channel_axis(layer, layer.rank)
    op_ref = {}

    def fn(x, k, b):
        y = keras.ops.depthwise_conv(x, k, strides=layer.strides, padding=layer.padding,
                                     dilation_rate=layer.dilation_rate, data_format=layer.data_format)
        return op_ref["op"].add_bias(y, b)

    op = LinearOp(fn, lambda: _var(layer.kernel, layer.compute_dtype), _bias_fn(layer),
                  "depthwise", _fused_activation(layer), channel_axis=axis,
                  kernel_out_axis="depthwise", depth_multiplier=layer.depth_multiplier)
    op_ref["op"] = op
    return op


def _broadcast_shape(rank, axes, sizes):
    shape = [1] * rank
    for a, s in zip(axes, sizes):
        shape[a] = s
    return shape


def _batchnorm(layer, rank):
    axes = [a % rank for a in (layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis])]
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

    def fn(x, k, b):
        shape = _broadcast_shape(len(x.shape), axes, k.shape) if len(axes) > 1 else None
        if shape is None:
            k = tf.reshape(k, _broadcast_shape(len(x.shape), axes, [-1]))
            b = None if b is None else tf.reshape(b, _broadcast_shape(len(x.shape), axes, [-1]))
        else:
            k = tf.reshape(k, shape)
            b = None if b is None else tf.reshape(b, shape)
        y = x * k
        return y if b is None else y + b

    op = LinearOp(fn, scale, shift, "batchnorm", None, channel_axis=axes[0] if len(axes) == 1 else None)
    op.meta["axes"] = axes
    return op


def _elementwise_affine(subkind, scale, offset):
    def fn(x, k, b):
        y = x * k
        return y if b is None else y + b

    return LinearOp(fn, scale, offset, subkind, None, channel_axis=-1)


def _rescaling(layer):
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


def _normalization(layer):
    if layer.invert:
        raise ValueError(f"layer {layer.name!r}: Normalization(invert=True) is not supported")
    dtype = layer.compute_dtype

    def scale():
        var = _var(layer.variance, dtype)
        return 1.0 / tf.maximum(tf.sqrt(var), keras.config.epsilon())

    def shift():
        return -_var(layer.mean, dtype) * scale()

    return _elementwise_affine("normalization", scale, shift)


def _separable(layer, call):
    op = Op(call, kind="separable")
    op.meta["layer"] = layer
    return op


# ---- activations -------------------------------------------------------------

_ACTIVATION_OPS = {
    knn.Relu: "relu", knn.Relu6: "relu6", knn.Sigmoid: "sigmoid", knn.Softplus: "softplus",
    knn.Softsign: "softsign", knn.Silu: "silu", knn.LeakyRelu: "leaky_relu",
    knn.HardSigmoid: "hard_sigmoid", knn.HardSilu: "hard_silu", knn.Elu: "elu", knn.Selu: "selu",
    knn.Gelu: "gelu", knn.Celu: "celu", knn.LogSigmoid: "log_sigmoid", knn.HardTanh: "hard_tanh",
    knp.Tanh: "tanh", knp.Exp: "exp", knp.Absolute: "abs", knp.Square: "square", knp.Sqrt: "sqrt",
}

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


def _activation_layer(layer, call):
    if isinstance(layer, L.Softmax):
        return Op(call, kind="softmax")
    if isinstance(layer, L.Activation):
        name = _act_name(layer.activation)
        if name == "softmax":
            return Op(call, kind="softmax")
        if name == "linear":
            return Op(call, kind="reshape", subkind="identity")
        return ElementwiseOp(layer.activation, name)
    if isinstance(layer, L.ReLU):
        name = "relu"
        if layer.max_value is not None and float(layer.max_value) == 6.0 and not layer.negative_slope:
            name = "relu6"
        elif layer.negative_slope:
            name = "leaky_relu"
        return ElementwiseOp(lambda x: layer(x), name)
    names = {L.LeakyReLU: "leaky_relu", L.ELU: "elu", L.PReLU: "prelu"}
    for cls, name in names.items():
        if isinstance(layer, cls):
            return ElementwiseOp(lambda x: layer(x), name)
    return None


# ---- application-specific layers and constant arithmetic ----------------------

def _application_class(module, name):
    """A layer class defined inside keras.src.applications (None if absent)."""
    try:
        mod = __import__(f"keras.src.applications.{module}", fromlist=[name])
    except ImportError:  # pragma: no cover - other Keras versions
        return None
    return getattr(mod, name, None)


_LAYER_SCALE = _application_class("convnext", "LayerScale")            # y = x * gamma
_CUSTOM_SCALE = _application_class("inception_resnet_v2", "CustomScaleLayer")  # x0 + x1 * s


def _layer_scale(layer, rank):
    """ConvNeXt's layer scale y = x * gamma (gamma per channel): an elementwise linear op."""
    op = _elementwise_affine("layer_scale", lambda: _var(layer.gamma, layer.compute_dtype), None)
    op.meta["axes"] = [(rank or 1) - 1]
    return op


_CONST_ARITH = {knp.Add: "add", knp.Subtract: "subtract", knp.Multiply: "multiply",
                knp.TrueDivide: "divide", knp.Divide: "divide"}


def _constant_arith(layer, call):
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
    op = _elementwise_affine(f"const_{name}", lambda: tf.constant(kernel, dtype),
                             None if b is None else (lambda: tf.constant(b, dtype)))
    op.meta.update(scale=kernel, offset=b)
    return op


def describe(layer, call, input_rank=None):
    """Op for one call of ``layer`` (``call`` re-runs the recorded call)."""
    if isinstance(layer, L.InputLayer):
        return Op(None, kind="input")
    if isinstance(layer, keras.Model):
        return Op(call, kind="nested")
    if isinstance(layer, L.Lambda):
        return Op(call, kind="unknown", reason="a Lambda layer's function is opaque to the rules")
    # Linear layers.  (Order matters: SeparableConv and Depthwise are not BaseConv here.)
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        return _separable(layer, call)
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return _depthwise(layer)
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        return _conv_transpose(layer)
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        return _conv(layer)
    if isinstance(layer, L.Dense):
        return _dense(layer)
    if isinstance(layer, L.BatchNormalization):
        return _batchnorm(layer, input_rank)
    if isinstance(layer, L.Rescaling):
        return _rescaling(layer)
    if isinstance(layer, L.Normalization):
        return _normalization(layer)
    if isinstance(layer, L.LayerNormalization):
        return Op(call, kind="layernorm")
    if _LAYER_SCALE is not None and isinstance(layer, _LAYER_SCALE):
        return _layer_scale(layer, input_rank)
    if _CUSTOM_SCALE is not None and isinstance(layer, _CUSTOM_SCALE):
        return Op(call, kind="add", subkind="scaled")  # x0 + s * x1: a residual join
    const = _constant_arith(layer, call)
    if const is not None:
        return const
    act = _activation_layer(layer, call)
    if act is not None:
        return act
    for cls, name in _ACTIVATION_OPS.items():
        if type(layer) is cls:
            return Op(call, kind="elementwise", subkind=name)
    if isinstance(layer, knn.Softmax):
        return Op(call, kind="softmax")
    if isinstance(layer, _NOISE_LAYERS):
        return Op(call, kind="noise")
    if isinstance(layer, _MAXPOOL):
        return Op(call, kind="pool_max")
    if isinstance(layer, _AVGPOOL):
        return Op(call, kind="pool_avg")
    if isinstance(layer, (L.Add, knp.Add)):
        return Op(call, kind="add", subkind="add")
    if isinstance(layer, (L.Subtract, knp.Subtract)):
        return Op(call, kind="add", subkind="subtract")
    if isinstance(layer, L.Average):
        return Op(call, kind="add", subkind="average")
    if isinstance(layer, (L.Concatenate, knp.Concatenate)):
        return Op(call, kind="concat")
    if isinstance(layer, (L.Multiply, knp.Multiply)):
        return Op(call, kind="multiply")
    if isinstance(layer, _SHAPE_LAYERS) or isinstance(layer, _SHAPE_OPS):
        return Op(call, kind="reshape", subkind=type(layer).__name__)
    return Op(call, kind="unknown", reason="no built-in op description for this class")
