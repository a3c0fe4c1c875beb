"""KerasHub's decoder LLMs described to lrpgraph (registered lazily, like the ViT and BERT).

A KerasHub causal LM (``keras_hub.models.LlamaCausalLM`` and friends) is a functional
model: the backbone (functional: token embedding, decoder blocks, final norm) and the
token embedding called in reverse (the LM head).  The blocks are subclassed layers; each
is a :class:`~lrpgraph.ops.Nested` op whose ``expand`` builds a functional model of the
block's own sublayers (same variables) plus a few small layers of this module, each with
an op description, so that every part gets a rule:

==============================  ===========================================================
RMSNorm (``LlamaLayerNorm``,    :class:`~lrpgraph.ops.LayerNorm` with ``rms_scaling``:
``MistralLayerNormalization``,  ``x * rsqrt(mean(x^2) + eps) * w``; the rule holds the
``QwenLayerNorm``,              normaliser constant (AttnLRP's identity rule, LXT's
``Qwen3LayerNorm``)             ``rms_norm_forward``), so each feature keeps its relevance
query/key projections           the layers' ``EinsumDense`` (linear)
rotary embedding                :class:`RotaryOf`: a :class:`~lrpgraph.ops.Linear` whose
                                forward is the layer's rotation (linear in q, k for fixed
                                positions; kernel the scalar 1)
grouped-query attention         ``keras.ops.repeat`` of the key/value heads: a ``reshape``
                                op, its gradient sums relevance back over the copies
q.k^T, attention.v              :class:`ScoresOf` / :class:`CombineOf`: ``bilinear`` ops
                                (uniform rule in ``attn_lrp``; the weights constant in
                                ``cp_lrp``)
masked softmax                  :class:`MaskedSoftmaxOf`: a ``softmax`` op computing the
                                causal, padding and sliding-window mask with the block's
                                own code (the padding mask is its second input and gets no
                                relevance)
gated feed-forward              ``act(gate(x))`` an ``elementwise`` op (identity rule),
                                ``up(x) * act(gate(x))`` a :class:`GatedProduct`
                                ``bilinear`` op with the gate as ``const_slot`` (uniform
                                rule in ``attn_lrp``: half to each factor; ``cp_lrp``: the
                                gate constant)
``ReversibleEmbedding``         the lookup of ids: an ``embedding`` op; called in reverse
                                (the LM head): a ``linear`` op ``x @ E^T`` (tied) or
                                ``x @ W`` (untied), then the final soft-cap
                                ``c * tanh(z / c)`` as an ``elementwise`` op (identity rule)
==============================  ===========================================================

The fused ``keras.ops.dot_product_attention`` path KerasHub takes where a fused kernel is
available is never used: the expansion writes the explicit softmax form, whose forward is
the same function.  Dropout (inactive at inference) is left out.  The expansions read
KerasHub's attribute names (checked against keras-hub 0.32); ``tests/test_llm.py`` checks
that the rewritten model reproduces the logits and LXT's Input x Gradient form of AttnLRP
and CP-LRP.

The explained output: :func:`causal_lm_model` makes a functional model of a causal LM with
a third input, ``position`` (one int per sequence), whose output is the (batch, vocabulary)
logits at that position (the hidden state at ``position`` taken before the LM head, so the
head runs once per sequence).  :func:`lrpgraph.prepare` applies it to a causal LM, and
``analyze(inputs, target, position=...)`` fills ``position`` (default: the last
non-padding token of each sequence).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from .base import Bilinear, Elementwise, Embedding, LayerNorm, Linear, Nested, Softmax
from .keras import register_layer

__all__ = ["register", "RotaryOf", "ScoresOf", "CombineOf", "MaskedSoftmaxOf", "GatedProduct", "TokenLookup",
           "ReverseEmbedding", "SoftCap", "TakePosition", "causal_lm_model", "is_causal_lm",
           "llama_decoder_model", "POSITION"]

POSITION = "position"  # the name of the position input of :func:`causal_lm_model`


# ---- small layers with op descriptions ------------------------------------------------

class RotaryOf(keras.layers.Layer):
    """``rotary(x)``: a KerasHub rotary embedding layer applied to q or k (positions
    0..T-1), linear in x for fixed positions."""

    def __init__(self, rotary, **kwargs):
        super().__init__(**kwargs)
        self.rotary = rotary

    def call(self, x):
        return self.rotary(x)


def _rotary_op(layer):
    rotary = layer.rotary

    def forward(x, k):
        return rotary(x) * k

    return Linear(forward, lambda: tf.ones([], layer.compute_dtype), channel_axis=None, subkind="rotary")


class ScoresOf(keras.layers.Layer):
    """``einsum(equation, q, k) * scale``: attention logits, as KerasHub computes them."""

    def __init__(self, equation, scale, **kwargs):
        super().__init__(**kwargs)
        self.equation, self.scale = equation, float(scale)

    def call(self, q, k):
        return Bilinear(self.equation, self.scale, name="scores")([q, k])[0]


class CombineOf(keras.layers.Layer):
    """``einsum(equation, weights, v)``: attention weights times values."""

    def __init__(self, equation, **kwargs):
        super().__init__(**kwargs)
        self.equation = equation

    def call(self, w, v):
        return tf.einsum(self.equation, w, v)


class MaskedSoftmaxOf(keras.layers.Layer):
    """The attention softmax of a KerasHub decoder block: the block's own mask (causal,
    padding, sliding window) and the attention layer's own masked softmax, on the scores
    and, when the block is called with one, the (batch, T) padding mask."""

    def __init__(self, block, attention, mask_fn, **kwargs):
        super().__init__(**kwargs)
        self.block, self.attention, self.mask_fn = block, attention, mask_fn

    def call(self, scores, padding_mask=None):
        mask = self.mask_fn(self.block, self.attention, scores, padding_mask)
        return self.attention._masked_softmax(scores, mask)


class GatedProduct(keras.layers.Layer):
    """``up * gate`` of a gated feed-forward (SwiGLU, GeGLU); the gate is the second input."""

    def call(self, up, gate):
        return up * gate


class TokenLookup(keras.layers.Layer):
    """The lookup of a ``ReversibleEmbedding`` (ids -> vectors)."""

    def __init__(self, embedding, **kwargs):
        super().__init__(**kwargs)
        self.embedding = embedding

    def call(self, ids):
        return self.embedding(ids)


class ReverseEmbedding(keras.layers.Layer):
    """``ReversibleEmbedding(x, reverse=True)`` without its soft-cap: x @ E^T (tied) or
    x @ W (untied)."""

    def __init__(self, embedding, **kwargs):
        super().__init__(**kwargs)
        self.embedding = embedding

    def call(self, x):
        return _reverse_forward(self.embedding)(x, _reverse_kernel(self.embedding)())


class SoftCap(keras.layers.Layer):
    """``c * tanh(x / c)`` (Gemma's final and attention logit soft-caps)."""

    def __init__(self, cap, **kwargs):
        super().__init__(**kwargs)
        self.cap = float(cap)

    def call(self, x):
        return soft_cap(x, self.cap)


class TakePosition(keras.layers.Layer):
    """``x[b, position[b]]``: the (batch, hidden) state at one position per sequence."""

    def call(self, x, position):
        return _take(x, position)


def _take(x, position):
    return tf.gather(x, tf.cast(position, tf.int32), axis=1, batch_dims=1)


def soft_cap(x, cap):
    """``cap * tanh(x / cap)`` as KerasHub computes it."""
    return keras.ops.multiply(keras.ops.tanh(keras.ops.divide(x, cap)), cap)


def _reverse_kernel(embedding):
    if embedding.tie_weights:
        return lambda: tf.transpose(tf.convert_to_tensor(embedding.embeddings))
    return lambda: tf.convert_to_tensor(embedding.reverse_embeddings)


def _reverse_forward(embedding):
    dtype = embedding.reverse_dtype

    def forward(x, k):
        if dtype is not None:
            x, k = tf.cast(x, dtype), tf.cast(k, dtype)
        return tf.matmul(x, k) if len(x.shape) == 2 else tf.tensordot(x, k, axes=[[len(x.shape) - 1], [0]])
    return forward


def _describe_reverse(layer):
    return Linear(_reverse_forward(layer.embedding), _reverse_kernel(layer.embedding), channel_axis=-1,
                  subkind="reverse_embedding")


# ---- the expansions ----------------------------------------------------------------------

def _input_like(spec, name):
    return keras.Input(batch_shape=tuple(spec.shape), dtype=spec.dtype, name=name)


def reversible_embedding_model(layer, specs):
    """A functional model computing one call of a ``ReversibleEmbedding``: the lookup
    (integer ids) or the reverse projection (float hidden states), then the soft-cap."""
    if len(specs) != 1:
        raise NotImplementedError(f"ReversibleEmbedding {layer.name!r} is called with {len(specs)} tensors")
    if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
        raise NotImplementedError(f"ReversibleEmbedding {layer.name!r}: quantized or LoRA embeddings are not "
                                  "described")
    x = _input_like(specs[0], "x")
    if not tf.as_dtype(specs[0].dtype).is_floating:
        return keras.Model(x, TokenLookup(layer, name="lookup")(x), name=layer.name)
    y = ReverseEmbedding(layer, name="reverse")(x)
    if layer.logit_soft_cap is not None:
        y = SoftCap(layer.logit_soft_cap, name="soft_cap")(y)
    return keras.Model(x, y, name=layer.name)


def _llama_mask(block, attention, scores, padding_mask):
    """The (B, T, S) mask of a Llama/Mistral/Qwen/Qwen3 block (causal, padding, and the
    attention's sliding window where it has one), by the block's own code."""
    t = tf.shape(scores)[-1]
    dummy = tf.zeros(tf.stack([tf.shape(scores)[0], t, 1]), scores.dtype)
    mask = block._compute_self_attention_mask(decoder_sequence=dummy, decoder_padding_mask=padding_mask,
                                              decoder_attention_mask=None, self_attention_cache=None,
                                              self_attention_cache_update_index=None)
    # Qwen and Qwen3 apply their sliding window in _compute_attention (Mistral's is in the mask above)
    window = attention.use_sliding_window_attention if hasattr(attention, "use_sliding_window_attention") \
        else getattr(attention, "sliding_window_size", None)
    if window:
        mask = attention._mask_sliding_window(mask, cache_update_index=0)
    return mask


def _llama_attention(block, attn, h, padding):
    """The attention of a Llama-style block on normalised ``h`` (KerasTensors)."""
    groups = getattr(attn, "num_key_value_groups", None) or attn._num_key_value_groups
    q = attn._query_dense(h)
    k = attn._key_dense(h)
    if hasattr(attn, "_query_dense_layer_norm"):  # Qwen3: per-head RMSNorm of q and k
        q = attn._query_dense_layer_norm(q)
        k = attn._key_dense_layer_norm(k)
    q = RotaryOf(attn.rotary_embedding_layer, name="rotary_q")(q)
    k = RotaryOf(attn.rotary_embedding_layer, name="rotary_k")(k)
    v = attn._value_dense(h)
    if groups > 1:
        k = keras.ops.repeat(k, repeats=groups, axis=2)
        v = keras.ops.repeat(v, repeats=groups, axis=2)
    scores = ScoresOf(attn._dot_product_equation, attn._inv_norm_factor, name="scores")(q, k)
    sm = MaskedSoftmaxOf(block, attn, _llama_mask, name="softmax")
    w = sm(scores) if padding is None else sm(scores, padding)
    if w.dtype != attn.compute_dtype:
        w = keras.ops.cast(w, attn.compute_dtype)
    c = CombineOf(attn._combine_equation, name="combine")(w, v)
    return attn._output_dense(c)


def _gated_ffw(h, gate_dense, up_dense, down_dense, activation, compute_dtype, cast_gate=True):
    g = gate_dense(h)
    if cast_gate and g.dtype != "float32":
        g = keras.ops.cast(g, "float32")
    g = activation(g)
    if g.dtype != compute_dtype:
        g = keras.ops.cast(g, compute_dtype)
    return down_dense(GatedProduct(name="gated")(up_dense(h), g))


def _block_inputs(layer, specs):
    x = _input_like(specs[0], "x")
    inputs, padding = [x], None
    for i, spec in enumerate(specs[1:]):
        if len(spec.shape) != 2 or padding is not None:
            raise NotImplementedError(f"{type(layer).__name__} {layer.name!r}: input {i + 1} of shape {spec.shape}; "
                                      "lrpgraph describes calls with a (batch, T) padding mask only (no cache, "
                                      "no attention mask)")
        padding = _input_like(spec, "padding_mask")
        inputs.append(padding)
    return x, inputs, padding


def llama_decoder_model(layer, specs):
    """A functional model computing a Llama / Mistral / Qwen / Qwen3 decoder block at
    inference: ``y = x + attn(norm1(x))``, ``y + down(up(norm2(y)) * act(gate(norm2(y))))``."""
    x, inputs, padding = _block_inputs(layer, specs)
    h = layer._self_attention_layernorm(x)
    y = keras.ops.add(_llama_attention(layer, layer._self_attention_layer, h, padding), x)
    h = layer._feedforward_layernorm(y)
    f = _gated_ffw(h, layer._feedforward_gate_dense, layer._feedforward_intermediate_dense,
                   layer._feedforward_output_dense, layer.activation, layer.compute_dtype)
    return keras.Model(inputs, keras.ops.add(f, y), name=layer.name)


# ---- the causal LM's explained output ------------------------------------------------------

def is_causal_lm(model):
    """True for a KerasHub ``CausalLM`` whose backbone has a ``ReversibleEmbedding``
    ``token_embedding`` (the LM head: the embedding called in reverse)."""
    if "keras_hub" not in type(model).__module__ and not any("keras_hub" in c.__module__
                                                              for c in type(model).__mro__):
        return False
    try:
        import keras_hub
    except ImportError:  # pragma: no cover
        return False
    backbone = getattr(model, "backbone", None)
    return isinstance(model, keras_hub.models.CausalLM) and backbone is not None and \
        isinstance(getattr(backbone, "token_embedding", None), _reversible_classes())


def _reversible_classes():
    """KerasHub's ReversibleEmbedding and Keras's (KerasHub 0.32 uses Keras's where it has one)."""
    import keras_hub

    found = [keras_hub.layers.ReversibleEmbedding]
    if hasattr(keras.layers, "ReversibleEmbedding"):
        found.append(keras.layers.ReversibleEmbedding)
    return tuple(dict.fromkeys(found))


def causal_lm_model(model):
    """A functional model of the KerasHub causal LM ``model`` with the inputs
    ``{"token_ids", "padding_mask", "position"}`` and the output
    ``token_embedding(backbone(inputs)[b, position[b]], reverse=True)``: the (batch,
    vocabulary) next-token logits at ``position`` of each sequence, what
    ``model(inputs)[b, position[b]]`` is (the LM head maps each position alone)."""
    backbone = model.backbone
    inputs = {name: keras.Input(shape=tuple(t.shape[1:]), dtype=t.dtype, name=name)
              for name, t in _named_inputs(backbone).items()}
    position = keras.Input(shape=(), dtype="int32", name=POSITION)
    h = backbone(inputs)
    h = TakePosition(name="take_position")(h, position)
    logits = backbone.token_embedding(h, reverse=True)
    return keras.Model(dict(inputs, **{POSITION: position}), logits, name=f"{model.name}_at_position")


def _named_inputs(backbone):
    if isinstance(backbone.input, dict):
        return backbone.input
    raise NotImplementedError(f"backbone {backbone.name!r} takes {type(backbone.input).__name__} inputs; "
                              "lrpgraph explains KerasHub causal LMs whose backbone takes a dict "
                              "{'token_ids', 'padding_mask'}")


# ---- registration ------------------------------------------------------------------------------

def _rms(layer, gamma=None):
    return LayerNorm(None, (-1,), float(layer.epsilon), layer.scale if gamma is None else gamma, None, True)


def register():
    """Register the descriptions of KerasHub's decoder-LLM layers (imports keras_hub)."""

    register_layer(RotaryOf, _rotary_op)
    register_layer(ScoresOf, lambda layer: Bilinear(layer.equation, layer.scale, name="scores"))
    register_layer(CombineOf, lambda layer: Bilinear(layer.equation, 1.0, const_slot=0, name="combine"))
    register_layer(MaskedSoftmaxOf, lambda layer: Softmax(None, (-1,)))
    register_layer(GatedProduct, lambda layer: Bilinear("...,...->...", 1.0, const_slot=1, name="gated"))
    register_layer(TokenLookup, lambda layer: Embedding(layer.embedding.embeddings))
    register_layer(ReverseEmbedding, _describe_reverse)
    register_layer(SoftCap, lambda layer: Elementwise(lambda x: soft_cap(x, layer.cap), "soft_cap"))
    register_layer(TakePosition, lambda layer: _take_op())
    # replace=False: a user's register_layer made before keras_hub was first seen stays
    for cls in _reversible_classes():
        register_layer(cls, lambda layer: Nested(expand=lambda specs: reversible_embedding_model(layer, specs)),
                       replace=False)
    for module, norm, block in _LLAMA_LIKE:
        cls_norm, cls_block = _class(module, norm), _class(module, block)
        if cls_norm is not None:
            register_layer(cls_norm, _rms, replace=False)
        if cls_block is not None:
            register_layer(cls_block, lambda layer: Nested(expand=lambda specs: llama_decoder_model(layer, specs)),
                           replace=False)
    qk_norm = _class("qwen3.qwen3_layernorm", "Qwen3LayerNorm")
    if qk_norm is not None:
        register_layer(qk_norm, _rms, replace=False)


def _take_op():
    from .base import Reshape
    return Reshape("take_position", None)


_LLAMA_LIKE = (
    ("llama.llama_layernorm", "LlamaLayerNorm", None),
    ("llama.llama_decoder", None, "LlamaTransformerDecoder"),
    ("mistral.mistral_layer_norm", "MistralLayerNormalization", None),
    ("mistral.mistral_transformer_decoder", None, "MistralTransformerDecoder"),
    ("qwen.qwen_layernorm", "QwenLayerNorm", None),
    ("qwen.qwen_decoder", None, "QwenTransformerDecoder"),
    ("qwen3.qwen3_decoder", None, "Qwen3TransformerDecoder"),
)


def _class(module, name):
    if name is None:
        return None
    try:
        mod = __import__(f"keras_hub.src.models.{module}", fromlist=[name])
    except ImportError:  # another keras_hub layout: no description, the generic error
        return None
    return getattr(mod, name, None)


_ = (math, np)  # noqa: keep imports used by the families added below
