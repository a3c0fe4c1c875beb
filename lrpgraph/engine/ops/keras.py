"""The Keras adapter: one Keras layer call -> one op description (:mod:`lrpgraph.engine.ops.base`).

:func:`describe` walks :data:`BUILDERS`, a table of (layer classes -> builder), in
order; the first builder that returns an op wins (a builder may decline with None).
Classes registered with :func:`register_layer` come before the table, so a user's
description of a class (and its subclasses) overrides the built-in one.  Matching
is by class (``isinstance``), never by name: ``keras.ops.add``'s class and
``keras.layers.Add`` are both called ``Add``.
"""

from __future__ import annotations

import inspect

import numpy as np
import tensorflow as tf

import keras
from keras import layers as L
from keras.src.backend import KerasTensor
from keras.src.ops import core as kcore
from keras.src.ops import nn as knn
from keras.src.ops import numpy as knp

from .base import (Add, Attention, Bilinear, Chain, Concat, Constant, Elementwise, Embedding, Identity,
                   Input, LayerNorm, Linear, Multiply, Nested, Noise, Op, Pooling, Reshape, Softmax,
                   Unknown, replace, wide_dtype)
from .recurrent import BUILDERS as RECURRENT_BUILDERS

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
        return _variable_arith(name, pos, call.args[1 - pos], call.input_specs[0].dtype)
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


# ---- transformers: EinsumDense, MultiHeadAttention, Embedding, matmul/einsum ---------

def einsum_forward(equation):
    """forward(x, k) = einsum(equation, x, k) (an EinsumDense without bias); the function
    carries ``equation`` as an attribute (the attention split reads it for shapes)."""
    def forward(x, k):
        return tf.einsum(equation, x, k)
    forward.equation = equation
    return forward


def _einsum_dense(layer, call=None, rank=None):
    if getattr(layer, "quantization_mode", None):
        raise ValueError(f"layer {layer.name!r}: quantized EinsumDense layers are not supported")
    # layer.kernel merges LoRA; without LoRA read the variable itself
    kernel = _reads(layer, "kernel" if getattr(layer, "lora_enabled", False) else "_kernel")
    return Linear(einsum_forward(layer.equation), kernel, _reads(layer, "bias"), _fused_activation(layer),
                  channel_axis=-1, kernel_out_axis=None, subkind="einsum_dense")


def _call_slots(layer, call):
    """{parameter name of layer.call: input slot} for the recorded call's tensors."""
    flat = keras.tree.flatten((call.args, call.kwargs))
    slot_of, k = {}, 0
    for i, a in enumerate(flat):
        if isinstance(a, KerasTensor):
            slot_of[i] = k
            k += 1
    args, kwargs = keras.tree.pack_sequence_as((call.args, call.kwargs), list(range(len(flat))))
    bound = inspect.signature(layer.call).bind(*args, **kwargs).arguments
    return {name: slot_of.get(i) for name, i in bound.items() if isinstance(i, int)}, bound


def _attention_problem(layer, call, slots, bound):
    """Why the call cannot be decomposed exactly (None: it can)."""
    flat = keras.tree.flatten((call.args, call.kwargs))
    value = lambda name: flat[bound[name]] if name in bound else None  # noqa: E731
    if type(layer)._compute_attention is not L.MultiHeadAttention._compute_attention or \
            type(layer).call is not L.MultiHeadAttention.call:
        return (f"{type(layer).__name__} overrides MultiHeadAttention's computation, which lrpgraph "
                "reproduces only for keras.layers.MultiHeadAttention itself")
    if getattr(layer, "_use_gate", False):
        return "use_gate=True (gated attention) is not decomposed; build the layer with use_gate=False"
    if value("return_attention_scores"):
        return "return_attention_scores=True gives two outputs; call the layer without it"
    if value("training") and layer.dropout > 0:
        return ("it is called with training=True and dropout > 0: attention dropout is random and cannot be "
                "explained; call it with training=None/False (inference)")
    for name in ("query_mask", "value_mask", "key_mask"):
        if value(name) is not None:
            return f"{name}= is not supported; pass the mask as attention_mask= (shape (B, T, S))"
    for name in ("query", "value", "key"):
        t = value(name)
        if isinstance(t, KerasTensor) and getattr(t, "_keras_mask", None) is not None:
            return (f"its {name} carries a Keras mask (Embedding(mask_zero=True) or Masking), which "
                    "lrpgraph does not propagate; pass the mask explicitly as attention_mask=")
    mask = value("attention_mask")
    if mask is not None and not isinstance(mask, KerasTensor):
        return "attention_mask= must be a model tensor (e.g. a keras.Input), not a constant"
    banded = value("use_causal_mask") or getattr(layer, "_sliding_window", None) is not None
    if banded and len(layer._attention_axes) != 1:
        return "a causal or sliding-window mask needs a single attention axis"
    return None


def _band_mask(scores, causal, window):
    """The (1, T, S) boolean mask of use_causal_mask / sliding_window, as Keras builds it
    (lower triangle from the top left; |i - j| < window)."""
    t, s = tf.shape(scores)[-2], tf.shape(scores)[-1]
    ones = tf.ones(tf.stack([t, s]), tf.int32)
    lower = -1 if window is None else window - 1
    upper = 0 if causal else (-1 if window is None else window - 1)
    return tf.cast(tf.linalg.band_part(ones, lower, upper), tf.bool)[None]


def attention_softmax(layer, causal):
    """The masked softmax of ``layer`` (a MultiHeadAttention): inputs [scores] or
    [scores, attention_mask]; the mask combined with the causal and sliding-window
    masks as Keras combines them, then the layer's own masked softmax."""
    window = getattr(layer, "_sliding_window", None)

    def call(xs):
        scores = xs[0]
        mask = tf.cast(xs[1], tf.bool) if len(xs) > 1 else None
        if causal or window is not None:
            band = _band_mask(scores, causal, window)
            mask = band if mask is None else tf.logical_and(mask, band)
        return [layer._masked_softmax(scores, mask)]
    return call


def _multi_head_attention(layer, call, rank):
    slots, bound = _call_slots(layer, call)
    problem = _attention_problem(layer, call, slots, bound)
    if problem is not None:
        return Unknown(f"MultiHeadAttention {layer.name!r}: {problem}", call)
    flat = keras.tree.flatten((call.args, call.kwargs))
    causal = bool(flat[bound["use_causal_mask"]]) if "use_causal_mask" in bound else False
    slots = {"query": slots["query"], "value": slots["value"],
             "key": slots.get("key") if slots.get("key") is not None else slots["value"],
             "mask": slots.get("attention_mask")}
    softmax = Softmax(attention_softmax(layer, causal), tuple(int(a) for a in np.atleast_1d(layer._softmax.axis)))
    return Attention(
        query=_einsum_dense(layer.query_dense), key=_einsum_dense(layer.key_dense),
        value=_einsum_dense(layer.value_dense),
        scores=Bilinear(layer._dot_product_equation, float(layer._inverse_sqrt_key_dim), name="scores",
                        scale_slot=1),  # Keras scales the query, then einsum(key, query)
        softmax=softmax,
        combine=Bilinear(layer._combine_equation, 1.0, const_slot=0, name="combine"),
        output=_einsum_dense(layer.output_dense), slots=slots, call=call)


def _embedding(layer, call, rank):
    if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
        return Unknown("quantized or LoRA Embedding layers are not described", call)
    return Embedding(_reads(layer, "embeddings"), call)


def _tensor_args(call):
    return [isinstance(a, KerasTensor) for a in call.args] if call is not None and not call.kwargs else None


def _variable_reader(v, dtype):
    return lambda: tf.cast(v.value if hasattr(v, "value") else v, dtype)


def _matmul(layer, call, rank):
    """matmul(a, b) of two activations -> Bilinear; of an activation and a variable -> Linear."""
    kinds = _tensor_args(call)
    if kinds is None or len(kinds) != 2:
        return None
    ranks = [len(a.shape) if hasattr(a, "shape") else 0 for a in call.args]
    if min(ranks) < 2:
        return None
    if all(kinds):
        return Bilinear("...ij,...jk->...ik", name="matmul")
    if kinds[0] and isinstance(call.args[1], keras.Variable) and ranks[1] == 2:
        return Linear(_dense_forward, _variable_reader(call.args[1], call.input_specs[0].dtype),
                      channel_axis=-1, subkind="matmul")
    return None


def _einsum(layer, call, rank):
    """einsum(eq, a, b) of two activations -> Bilinear; of an activation and a variable -> Linear."""
    eq = getattr(layer, "subscripts", None)
    if not isinstance(eq, str) or call is None or call.kwargs or len(call.args) != 2:
        return None
    a, b = call.args
    if isinstance(a, KerasTensor) and isinstance(b, KerasTensor):
        return Bilinear(eq, name="einsum")
    if isinstance(a, KerasTensor) and isinstance(b, keras.Variable):
        return Linear(einsum_forward(eq), _variable_reader(b, a.dtype), channel_axis=-1, subkind="einsum")
    return None


def _variable_arith(name, pos, v, dtype):
    """``x + v``, ``x - v``, ``v - x``, ``x * v``, ``x / v`` with a Keras variable v (a learned
    position embedding, a layer scale): an elementwise linear op reading v where it is
    called (a variable may change after the graph is built, so it is never baked in)."""
    read = _variable_reader(v, dtype)
    one = lambda: tf.ones([], dtype)  # noqa: E731
    if name == "add":
        return _elementwise_affine("variable_add", one, read)
    if name == "subtract":
        return _elementwise_affine("variable_add", one if pos == 0 else (lambda: -one()),
                                   (lambda: -read()) if pos == 0 else read)
    if name == "multiply":
        return _elementwise_affine("variable_scale", read, None)
    if name == "divide" and pos == 0:
        return _elementwise_affine("variable_scale", lambda: 1.0 / read(), None)
    return None


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


def _axes(axis):
    return tuple(int(a) for a in np.atleast_1d(axis))


def _activation(layer, call, rank):
    if isinstance(layer, L.Softmax):
        return Softmax(call, _axes(layer.axis))
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
    (knp, "Ravel"), (knp, "Pad"), (knp, "Repeat"), (kcore, "Slice"), (kcore, "Cast")] if hasattr(m, n))
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
    *RECURRENT_BUILDERS,  # LSTM, GRU, SimpleRNN, Bidirectional, Masking, mask ops (ops/recurrent.py)
    ((L.SeparableConv1D, L.SeparableConv2D), _separable),
    ((L.DepthwiseConv1D, L.DepthwiseConv2D), _depthwise),
    ((L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose), _conv_transpose),
    ((L.Conv1D, L.Conv2D, L.Conv3D), _conv),
    ((L.Dense,), _dense),
    ((L.EinsumDense,), _einsum_dense),
    ((L.MultiHeadAttention,), _multi_head_attention),
    ((L.Embedding,), _embedding),
    ((knp.Matmul,), _matmul),
    ((knp.Einsum,), _einsum),
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
    ((knn.Softmax,), lambda layer, call, rank: Softmax(call, _axes(getattr(layer, "axis", -1)))),
    (_NOISE_LAYERS, lambda layer, call, rank: Noise(call)),
    (_MAXPOOL, lambda layer, call, rank: Pooling("max", call)),
    (_AVGPOOL, lambda layer, call, rank: Pooling("avg", call)),
    (tuple(getattr(knp, n) for n in ("ZerosLike", "OnesLike") if hasattr(knp, n)),
     lambda layer, call, rank: Constant(call)),
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


def register_layer(layer_class, describe, *, replace=True):
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
    description of the class.  Registering a class again replaces its description;
    ``replace=False`` keeps an existing one (lrpgraph registers its descriptions of
    KerasHub's layers so, when keras_hub is first seen: a user's registration made
    before that stays).
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(f"register_layer needs a keras.layers.Layer subclass, got {layer_class!r}")
    if not callable(describe):
        raise TypeError(f"register_layer needs describe(layer) -> an lrpgraph.ops op, got {describe!r}")
    if not replace and layer_class in _REGISTERED:
        return
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
    reason = "no built-in op description for this class"
    if "attention" in type(layer).__name__.lower():  # a hint only; matching stays by class
        reason += (" (an attention layer: build it from keras.layers.MultiHeadAttention, or write its call "
                   "in the functional model with keras.ops.matmul/einsum and softmax, which lrpgraph "
                   "decomposes; or describe it with lrpgraph.register_layer)")
    return Unknown(reason, call)
