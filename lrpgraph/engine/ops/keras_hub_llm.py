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

import inspect
import weakref

import keras
import numpy as np
import tensorflow as tf

from .base import ELEMENTWISE, Add, Bilinear, Elementwise, Embedding, LayerNorm, Linear, Nested, Reshape, Softmax
from .keras import einsum_forward, register_layer

__all__ = ["register", "RotaryOf", "ScoresOf", "CombineOf", "MaskedSoftmaxOf", "GatedProduct", "TokenLookup",
           "ReverseEmbedding", "SoftCap", "TakePosition", "causal_lm_model", "is_causal_lm",
           "llama_decoder_model", "gemma_decoder_model", "moe_decoder_model", "sparse_moe", "KernelEinsum",
           "RouterOf", "TopKOf", "RoutedSum", "GemmaSoftmaxOf", "transformer_decoder_model", "POSITION",
           "rotate", "SpanLogitSum", "span_logit_sum", "causal_lm_span_model", "SPAN_TARGETS"]

POSITION = "position"  # the name of the position input of :func:`causal_lm_model`
SPAN_TARGETS = "span_targets"  # the name of the targets input of :func:`causal_lm_span_model`


# ---- small layers with op descriptions ------------------------------------------------

class _Part(keras.layers.Layer):
    """A piece of a KerasHub layer's computation: takes its inputs in the dtype they come
    in (no autocast, as the KerasHub code it stands for), so mixed-precision models are
    reproduced as they compute."""

    def __init__(self, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)

class RotaryOf(_Part):
    """``rotary(x)``: a KerasHub rotary embedding (a layer, or a function such as Gemma's
    rotation and re-layout) applied to q or k (positions 0..T-1), linear in x for fixed
    positions."""

    def __init__(self, rotary, **kwargs):
        super().__init__(**kwargs)
        self.rotary = rotary

    def call(self, x):
        return self.rotary(x)


def _rotary_op(layer):
    rotary = layer.rotary

    def forward(x, k):
        return rotate(rotary, x) * tf.cast(k, x.dtype)

    return Linear(forward, lambda: tf.ones([], layer.compute_dtype), channel_axis=None, subkind="rotary")


# graph -> {(rotary class, config, rank, features, dtype): (T0, cos, sin)}: the tables of one trace
_TABLES = weakref.WeakKeyDictionary()


def rotate(rotary, x):
    """``rotary(x)`` (positions 0..T-1).  For KerasHub's ``RotaryEmbedding`` (and subclasses
    that keep its ``call``) on (batch, T, ..., features) the cos / sin tables (~60 graph ops)
    are made once per traced graph and rotary configuration, and each call applies them (the
    layer's own ``_apply_rotary_pos_emb``, as written out below): a prepared LLM calls the
    rotation twice per block in the forward pass and twice in the reverse pass, all on one
    sequence length.  A call on a longer sequence than the tables' in the same graph fails
    an assertion instead of rotating with wrong positions."""
    if not _standard_rotary(rotary, x) or tf.executing_eagerly():
        return rotary(x)
    graph = tf.compat.v1.get_default_graph()
    # every block has its own rotary layer, all configured alike: one set of tables
    config = sorted((k, repr(v)) for k, v in rotary.get_config().items() if k not in ("name", "trainable"))
    key = (type(rotary), tuple(config), len(x.shape), x.shape[-1], x.dtype)
    tables = _TABLES.setdefault(graph, {})
    if key not in tables:
        cos, sin = rotary._compute_cos_sin_embedding(x, 0, None)
        tables[key] = (tf.shape(x)[1], cos, sin)
        return _apply_rotation(x, cos, sin)
    t0, cos, sin = tables[key]
    t = tf.shape(x)[1]
    check = tf.debugging.assert_less_equal(t, t0, message="rotary embedding: a longer sequence than the first "
                                                          "one rotated in this traced graph")
    with tf.control_dependencies([check]):
        return _apply_rotation(x, cos[:, :t], sin[:, :t])


def _standard_rotary(rotary, x):
    try:
        # optional and heavy: imported only once a KerasHub model is being explained
        from keras_hub.src.layers.modeling.rotary_embedding import RotaryEmbedding
    except ImportError:  # pragma: no cover - another keras_hub layout: the layer's own call
        return False
    rank = len(x.shape)
    return (isinstance(rotary, RotaryEmbedding) and type(rotary).call is RotaryEmbedding.call
            and type(rotary)._apply_rotary_pos_emb is RotaryEmbedding._apply_rotary_pos_emb
            and rotary.sequence_axis == 1 and rotary.feature_axis in (-1, rank - 1) and rank >= 3)


def _apply_rotation(x, cos, sin):
    """``x * cos + concat(-x2, x1) * sin`` with x1, x2 the halves of the last axis: KerasHub's
    ``_apply_rotary_pos_emb`` (its ``stack((-x2, x1), axis=-2)`` reshaped is this concat)."""
    x1, x2 = tf.split(x, 2, axis=-1)
    return x * cos + tf.concat([-x2, x1], axis=-1) * sin


class ScoresOf(_Part):
    """``einsum(equation, q, k) * scale``: attention logits, as KerasHub computes them
    (``scale_slot=0``: q scaled first, Gemma's query pre-attention scaling)."""

    def __init__(self, equation, scale, scale_slot=None, **kwargs):
        super().__init__(**kwargs)
        self.equation, self.scale, self.scale_slot = equation, float(scale), scale_slot

    def op(self):
        return Bilinear(self.equation, self.scale, name="scores", scale_slot=self.scale_slot)

    def call(self, q, k):
        return self.op()([q, k])[0]


class CombineOf(_Part):
    """``einsum(equation, weights, v)``: attention weights times values."""

    def __init__(self, equation, **kwargs):
        super().__init__(**kwargs)
        self.equation = equation

    def call(self, w, v):
        return tf.einsum(self.equation, w, v)


class MaskedSoftmaxOf(_Part):
    """The attention softmax of a KerasHub decoder block: the block's own mask (causal,
    padding, sliding window) and the attention layer's own masked softmax, on the scores
    and, when the block is called with one, the (batch, T) padding mask."""

    def __init__(self, block, attention, mask_fn, **kwargs):
        super().__init__(**kwargs)
        self.block, self.attention, self.mask_fn = block, attention, mask_fn

    def call(self, scores, padding_mask=None):
        mask = self.mask_fn(self.block, self.attention, scores, padding_mask)
        return self.attention._masked_softmax(scores, mask)


class GatedProduct(_Part):
    """``up * gate`` of a gated feed-forward (SwiGLU, GeGLU); the gate is the second input."""

    def call(self, up, gate):
        return up * gate


class TokenLookup(_Part):
    """The lookup of a ``ReversibleEmbedding`` (ids -> vectors)."""

    def __init__(self, embedding, **kwargs):
        super().__init__(**kwargs)
        self.embedding = embedding

    def call(self, ids):
        return self.embedding(ids)


class ReverseEmbedding(_Part):
    """``ReversibleEmbedding(x, reverse=True)`` without its soft-cap: x @ E^T (tied) or
    x @ W (untied)."""

    def __init__(self, embedding, **kwargs):
        super().__init__(**kwargs)
        self.embedding = embedding

    def call(self, x):
        return _reverse_forward(self.embedding)(x, _reverse_kernel(self.embedding)())


class SoftCap(_Part):
    """``c * tanh(x / c)`` (Gemma's final and attention logit soft-caps)."""

    def __init__(self, cap, **kwargs):
        super().__init__(**kwargs)
        self.cap = float(cap)

    def call(self, x):
        return soft_cap(x, self.cap)


class TakePosition(_Part):
    """``x[b, position[b]]``: the (batch, hidden) state at one position per sequence."""

    def call(self, x, position):
        return _take(x, position)


class SpanLogitSum(_Part):
    """``sum_p logits[b, p, targets[b, p]]`` over the positions p whose target is >= 0, as a
    (batch, 1) output: the summed logits of a span of tokens (each position's own next
    token), from the (batch, T, vocabulary) logits and the (batch, T) int targets (-1
    outside the span).  A positive linear map of the logits (an ``add`` op: relevance
    splits in proportion to each selected logit; the targets get none)."""

    def call(self, logits, targets):
        return span_logit_sum(logits, targets)


def span_logit_sum(logits, targets):
    """See :class:`SpanLogitSum` (``tf.one_hot`` of -1 is a zero row)."""
    w = tf.one_hot(tf.cast(targets, tf.int32), tf.shape(logits)[-1], dtype=logits.dtype)
    return tf.reduce_sum(logits * w, axis=[1, 2])[:, None]


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
    # (sequence, padding mask, attention mask, cache, cache index): Phi3 names the last two otherwise
    mask = block._compute_self_attention_mask(dummy, padding_mask, None, None, None)
    # Qwen and Qwen3 apply their sliding window in _compute_attention (Mistral's is in the mask above)
    window = attention.use_sliding_window_attention if hasattr(attention, "use_sliding_window_attention") \
        else getattr(attention, "sliding_window_size", None)
    if window:
        mask = attention._mask_sliding_window(mask, cache_update_index=0)
    return mask


def _llama_attention(block, attn, h, padding):
    """The attention of a Llama-style block on normalised ``h`` (KerasTensors)."""
    groups = getattr(attn, "num_key_value_groups", None) or attn._num_key_value_groups
    q = _sub(attn, "query_dense")(h)
    k = _sub(attn, "key_dense")(h)
    if hasattr(attn, "_query_dense_layer_norm"):  # Qwen3: per-head RMSNorm of q and k
        q = attn._query_dense_layer_norm(q)
        k = attn._key_dense_layer_norm(k)
    q = RotaryOf(attn.rotary_embedding_layer, name="rotary_q")(q)
    k = RotaryOf(attn.rotary_embedding_layer, name="rotary_k")(k)
    v = _sub(attn, "value_dense")(h)
    if groups > 1:
        k = keras.ops.repeat(k, repeats=groups, axis=2)
        v = keras.ops.repeat(v, repeats=groups, axis=2)
    scores = ScoresOf(getattr(attn, "_dot_product_equation", "bquh,bkuh->buqk"), attn._inv_norm_factor,
                      name="scores")(q, k)
    sm = MaskedSoftmaxOf(block, attn, _llama_mask, name="softmax")
    w = sm(scores) if padding is None else sm(scores, padding)
    if w.dtype != attn.compute_dtype:
        w = keras.ops.cast(w, attn.compute_dtype)
    c = CombineOf(getattr(attn, "_combine_equation", "buqk,bkuh->bquh"), name="combine")(w, v)
    return _sub(attn, "output_dense")(c)


def _sub(layer, name):
    """The sublayer ``_name`` (Llama, Mistral, Qwen) or ``name`` (Mixtral)."""
    return getattr(layer, f"_{name}", None) or getattr(layer, name)


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


def _norms(layer):
    """The (attention, feed-forward) norms of a Llama-style block (Phi3 names them otherwise)."""
    if hasattr(layer, "_self_attention_layernorm"):
        return layer._self_attention_layernorm, layer._feedforward_layernorm
    return layer.pre_attention_layernorm, layer.post_attention_layernorm


def llama_decoder_model(layer, specs):
    """A functional model computing a Llama / Mistral / Qwen / Qwen3 / Phi3 decoder block at
    inference: ``y = x + attn(norm1(x))``, ``y + down(up(norm2(y)) * act(gate(norm2(y))))``."""
    x, inputs, padding = _block_inputs(layer, specs)
    norm1, norm2 = _norms(layer)
    attn = getattr(layer, "_self_attention_layer", None) or layer.attention
    y = keras.ops.add(_llama_attention(layer, attn, norm1(x), padding), x)
    h = norm2(y)
    f = _gated_ffw(h, _sub(layer, "feedforward_gate_dense"), _sub(layer, "feedforward_intermediate_dense"),
                   _sub(layer, "feedforward_output_dense"), layer.activation, layer.compute_dtype)
    return keras.Model(inputs, keras.ops.add(f, y), name=layer.name)


def _gemma_softmax_mask(block, attention, scores, padding_mask):
    """Gemma / Gemma3: the block's causal and padding mask, the attention's sliding window."""
    dummy = tf.zeros(tf.stack([tf.shape(scores)[0], tf.shape(scores)[-1], 1]), scores.dtype)
    mask = block._compute_attention_mask(dummy, padding_mask, **_gemma_mask_kwargs(block))
    full = mask
    if attention.use_sliding_window_attention:
        mask = attention._mask_sliding_window(mask, cache_update_index=0)
    return mask, full


def _gemma_mask_kwargs(block):
    names = inspect.signature(block._compute_attention_mask).parameters
    kw = {"cache": None, "cache_update_index": 0}
    if "vision_mask" in names:
        kw["vision_mask"] = None
    return kw


class GemmaSoftmaxOf(MaskedSoftmaxOf):
    """Gemma's attention softmax over (b, kv, groups, t, s) logits: the masked softmax,
    and zero weights for a query that attends to no token (KerasHub zeroes its output)."""

    def call(self, scores, padding_mask=None):
        mask, full = _gemma_softmax_mask(self.block, self.attention, scores, padding_mask)
        w = self.attention.softmax(scores, mask=mask[:, None, None, :, :])
        w = keras.ops.cast(w, scores.dtype)
        none = keras.ops.all(keras.ops.equal(full, 0), axis=-1, keepdims=True)  # (b, t, 1)
        return keras.ops.where(none[:, None, None], keras.ops.zeros_like(w), w)


def _gemma_attention(block, attn, h, padding):
    q = attn.query_dense(h)
    k = attn.key_dense(h)
    if getattr(attn, "use_query_key_norm", False):  # Gemma3
        q, k = attn.query_norm(q), attn.key_norm(k)
    rope = lambda t: attn._apply_rope(t, 0)  # noqa: E731
    q = RotaryOf(rope, name="rotary_q")(q)
    k = RotaryOf(rope, name="rotary_k")(k)
    v = attn.value_dense(h)
    if attn.query_head_dim_normalize:
        scale = 1 / np.sqrt(attn.head_dim)
    else:
        scale = 1 / np.sqrt(attn.hidden_dim // attn.num_query_heads)
    kv, groups = attn.num_key_value_heads, attn.num_query_heads // attn.num_key_value_heads
    q = keras.layers.Reshape((-1, kv, groups, attn.head_dim), name="query_groups")(q)
    scores = ScoresOf("btkgh,bskh->bkgts", float(np.float32(scale)), scale_slot=0, name="scores")(q, k)
    if attn.logit_soft_cap is not None:
        scores = SoftCap(attn.logit_soft_cap, name="logit_soft_cap")(scores)
    sm = GemmaSoftmaxOf(block, attn, None, name="softmax")
    w = sm(scores) if padding is None else sm(scores, padding)
    c = CombineOf("bkgts,bskh->btkgh", name="combine")(w, v)
    c = keras.layers.Reshape((-1, attn.num_query_heads, attn.head_dim), name="heads")(c)
    return attn.output_dense(c)


def gemma_decoder_model(layer, specs):
    """A functional model computing a Gemma / Gemma2 / Gemma3 decoder block (text only) at
    inference: ``y = x + post_norm(attn(pre_norm(x)))``, ``y + post_norm(ffw_linear(gelu(g1(h)) * g2(h)))``
    with ``h = pre_ffw_norm(y)``."""
    x, inputs, padding = _block_inputs(layer, specs)
    a = _gemma_attention(layer, layer.attention, layer.pre_attention_norm(x), padding)
    if layer.use_post_attention_norm:
        a = layer.post_attention_norm(a)
    y = keras.ops.add(x, a)
    h = layer.pre_ffw_norm(y)
    g = keras.activations.gelu(layer.gating_ffw(h), approximate=True)
    f = layer.ffw_linear(GatedProduct(name="gated")(layer.gating_ffw_2(h), g))
    if layer.use_post_ffw_norm:
        f = layer.post_ffw_norm(f)
    return keras.Model(inputs, keras.ops.add(f, y), name=layer.name)


class KernelEinsum(_Part):
    """``einsum(equation, x, kernel())``: an expert bank's projection (all experts at once;
    ``kernel`` reads the variable, or a slice of it, where it is called)."""

    def __init__(self, equation, kernel, **kwargs):
        super().__init__(**kwargs)
        self.equation, self.kernel_fn = equation, kernel

    def call(self, x):
        return tf.einsum(self.equation, x, tf.cast(self.kernel_fn(), x.dtype))


class RouterOf(_Part):
    """The routing weights of a KerasHub sparse MoE block, (batch, T, experts): softmax of
    the router logits, the top-k kept (indices: constants), renormalised over them where
    the block does (``norm_top_k_prob``, always in Mixtral), zero elsewhere.  Renormalised,
    it is the softmax over the selected experts' logits (a masked softmax, its rule the
    softmax rule); without, ``softmax(l) * selected`` (:class:`TopKOf` after a softmax)."""

    def __init__(self, moe, **kwargs):
        super().__init__(**kwargs)
        self.moe = moe

    def call(self, logits):
        return _routing(keras.ops.softmax(logits, axis=-1), self.moe.top_k, True)


class TopKOf(_Part):
    """``p * selected(top_k(p))``: the top-k routing probabilities kept, not renormalised."""

    def __init__(self, moe, **kwargs):
        super().__init__(**kwargs)
        self.moe = moe

    def call(self, p):
        return _routing(p, self.moe.top_k, False)


def _routing(probs, k, normalize):
    """KerasHub's routing_full, laid out (batch, T, experts)."""
    top_p, top_i = keras.ops.top_k(probs, k=k)
    if normalize:
        top_p = top_p / keras.ops.sum(top_p, axis=-1, keepdims=True)
    one_hot = keras.ops.cast(keras.ops.one_hot(top_i, probs.shape[-1]), top_p.dtype)
    return keras.ops.sum(one_hot * top_p[..., None], axis=-2)


class RoutedSum(_Part):
    """``sum_e expert_out[e] * routing[..., e]``: the experts' outputs weighted by the routing."""

    def call(self, expert_out, routing):
        return tf.einsum("ebth,bte->bth", expert_out, routing)


def sparse_moe(moe, h):
    """A KerasHub sparse MoE block (Mixtral, Qwen3-MoE) on (B, T, H) ``h``: every expert on
    every token (as KerasHub computes it), weighted by the routing and summed."""
    logits = moe._sparse_feedforward_gate_dense(h)
    if getattr(moe, "norm_top_k_prob", True):
        routing = RouterOf(moe, name="router")(logits)
    else:
        routing = TopKOf(moe, name="top_k")(keras.layers.Softmax(axis=-1, name="router_softmax")(logits))
    bank = moe.expert_bank
    gate_kernel = bank._expert_feedforward_gate_dense
    if hasattr(bank, "_expert_feedforward_intermediate_dense"):  # Mixtral: separate gate and up kernels
        gate = KernelEinsum("bth,ehm->ebtm", _reader(gate_kernel), name="expert_gate")(h)
        up = KernelEinsum("bth,ehm->ebtm", _reader(bank._expert_feedforward_intermediate_dense),
                          name="expert_up")(h)
    else:  # Qwen3-MoE: one gate_up kernel, split in halves
        half = gate_kernel.shape[-1] // 2
        gate = KernelEinsum("bth,ehm->ebtm", _reader(gate_kernel, slice(0, half)), name="expert_gate")(h)
        up = KernelEinsum("bth,ehm->ebtm", _reader(gate_kernel, slice(half, None)), name="expert_up")(h)
    hidden = GatedProduct(name="expert_gated")(up, bank.activation(gate))
    out = KernelEinsum("ebti,eih->ebth", _reader(bank._expert_feedforward_output_dense), name="expert_out")(hidden)
    return RoutedSum(name="routed")(out, routing)


def _reader(variable, last=None):
    if last is None:
        return lambda: tf.convert_to_tensor(variable)
    return lambda: tf.convert_to_tensor(variable)[..., last]


def moe_decoder_model(layer, specs):
    """A functional model computing a Mixtral or Qwen3-MoE decoder block at inference:
    ``y = x + attn(norm1(x))``, ``y + moe(norm2(y))`` (or a dense gated MLP in Qwen3-MoE's
    ``mlp_only_layers``)."""
    x, inputs, padding = _block_inputs(layer, specs)
    h = layer._self_attention_layernorm(x)
    y = keras.ops.add(_llama_attention(layer, layer._self_attention_layer, h, padding), x)
    h = layer._feedforward_layernorm(y)
    moe = getattr(layer, "_sparse_moe_block", None) or layer.mlp
    if hasattr(moe, "expert_bank"):
        f = sparse_moe(moe, h)
    else:  # Qwen3MoeMLP
        f = _gated_ffw(h, moe._feedforward_gate_dense, moe._feedforward_intermediate_dense,
                       moe._feedforward_output_dense, moe.activation, moe.compute_dtype)
    return keras.Model(inputs, keras.ops.add(f, y), name=layer.name)


def _decoder_mask(block, attention, scores, padding_mask):
    """KerasHub's ``TransformerDecoder`` (GPT-2): its causal and padding mask."""
    t = tf.shape(scores)[-1]
    dummy = tf.zeros(tf.stack([tf.shape(scores)[0], t, 1]), scores.dtype)
    return block._compute_self_attention_mask(
        decoder_sequence=dummy, decoder_padding_mask=padding_mask, decoder_attention_mask=None,
        use_causal_mask=True, self_attention_cache=None, self_attention_cache_update_index=None)


def transformer_decoder_model(layer, specs):
    """A functional model computing KerasHub's ``TransformerDecoder`` without cross-attention
    (GPT-2's block) at inference: the cached multi-head attention written out (query, key,
    value projections, the query scaled in q.k^T, the causal and padding masked softmax,
    attention.v, the output projection), residuals, the two LayerNorms (pre- or
    post-norm) and the Dense/activation MLP."""
    if layer._cross_attention_layer is not None:
        raise NotImplementedError(f"TransformerDecoder {layer.name!r} has cross-attention; lrpgraph describes "
                                  "decoder-only blocks (GPT-2)")
    x, inputs, padding = _block_inputs(layer, specs)
    attn = layer._self_attention_layer
    first = layer.normalize_first
    h = layer._self_attention_layer_norm(x) if first else x
    q, k, v = attn._query_dense(h), attn._key_dense(h), attn._value_dense(h)
    scores = ScoresOf(attn._dot_product_equation, float(attn._inverse_sqrt_key_dim), scale_slot=1,
                      name="scores")(k, q)  # Keras scales the query, then einsum(key, query)
    sm = MaskedSoftmaxOf(layer, attn, _decoder_mask, name="softmax")
    w = sm(scores) if padding is None else sm(scores, padding)
    y = keras.ops.add(attn._output_dense(CombineOf(attn._combine_equation, name="combine")(w, v)), x)
    if not first:
        y = layer._self_attention_layer_norm(y)
    h = layer._feedforward_layer_norm(y) if first else y
    out = keras.ops.add(layer._feedforward_output_dense(layer._feedforward_intermediate_dense(h)), y)
    if not first:
        out = layer._feedforward_layer_norm(out)
    return keras.Model(inputs, out, name=layer.name)


# ---- the causal LM's explained output ------------------------------------------------------

def is_causal_lm(model):
    """True for a KerasHub ``CausalLM`` whose backbone has a ``ReversibleEmbedding``
    ``token_embedding`` (the LM head: the embedding called in reverse)."""
    if "keras_hub" not in type(model).__module__ and not any("keras_hub" in c.__module__
                                                              for c in type(model).__mro__):
        return False
    try:
        import keras_hub  # optional and heavy (lrpgraph[transformers]): imported only for a KerasHub model
    except ImportError:  # pragma: no cover
        return False
    backbone = getattr(model, "backbone", None)
    return isinstance(model, keras_hub.models.CausalLM) and backbone is not None and \
        isinstance(getattr(backbone, "token_embedding", None), _reversible_classes())


def _reversible_classes():
    """KerasHub's ReversibleEmbedding and Keras's (KerasHub 0.32 uses Keras's where it has one)."""
    import keras_hub  # optional and heavy: imported only once a KerasHub model is seen

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


def causal_lm_span_model(model):
    """A functional model of the KerasHub causal LM ``model`` with the inputs
    ``{"token_ids", "padding_mask", "span_targets"}`` and a (batch, 1) output: the sum over
    the positions p with ``span_targets[b, p] >= 0`` of ``model(inputs)[b, p,
    span_targets[b, p]]`` (:class:`SpanLogitSum`).  Explaining its one output explains the
    summed logits of a span of generated tokens in one forward and one reverse pass per
    sequence (the LM head runs at every position)."""
    backbone = model.backbone
    inputs = {name: keras.Input(shape=tuple(t.shape[1:]), dtype=t.dtype, name=name)
              for name, t in _named_inputs(backbone).items()}
    ids = inputs.get("token_ids")
    if ids is None:
        raise NotImplementedError(f"backbone {backbone.name!r} has no 'token_ids' input")
    targets = keras.Input(shape=tuple(ids.shape[1:]), dtype="int32", name=SPAN_TARGETS)
    logits = backbone.token_embedding(backbone(inputs), reverse=True)
    out = SpanLogitSum(name="span_logit_sum")(logits, targets)
    return keras.Model(dict(inputs, **{SPAN_TARGETS: targets}), out, name=f"{model.name}_span")


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
    register_layer(ScoresOf, lambda layer: layer.op())
    register_layer(CombineOf, lambda layer: Bilinear(layer.equation, 1.0, const_slot=0, name="combine"))
    register_layer(MaskedSoftmaxOf, lambda layer: Softmax(None, (-1,)))
    register_layer(GatedProduct, lambda layer: Bilinear(ELEMENTWISE, 1.0, const_slot=1, name="gated"))
    register_layer(TokenLookup, lambda layer: Embedding(layer.embedding.embeddings))
    register_layer(ReverseEmbedding, _describe_reverse)
    register_layer(SoftCap, lambda layer: Elementwise(lambda x: soft_cap(x, layer.cap), "soft_cap"))
    register_layer(TakePosition, lambda layer: _take_op())
    register_layer(SpanLogitSum, lambda layer: Add("add"))
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
    for module, norm, block in _GEMMA:
        cls_norm, cls_block = _class(module, norm), _class(module, block)
        if cls_norm is not None:  # x * rsqrt(mean(x^2) + eps) * (1 + scale)
            register_layer(cls_norm, lambda layer: _rms(layer, lambda: 1.0 + tf.convert_to_tensor(layer.scale)),
                           replace=False)
        if cls_block is not None:
            register_layer(cls_block, lambda layer: Nested(expand=lambda specs: gemma_decoder_model(layer, specs)),
                           replace=False)
    register_layer(GemmaSoftmaxOf, lambda layer: Softmax(None, (-1,)))
    register_layer(KernelEinsum, lambda layer: Linear(einsum_forward(layer.equation), layer.kernel_fn,
                                                      channel_axis=None, subkind="einsum"))
    register_layer(RouterOf, lambda layer: Softmax(None, (-1,)))
    register_layer(TopKOf, lambda layer: Reshape("top_k", None))
    register_layer(RoutedSum, lambda layer: Bilinear("ebth,bte->bth", 1.0, const_slot=1, name="routed"))
    from keras_hub.layers import TransformerDecoder  # optional and heavy: registered once a KerasHub model is seen

    register_layer(TransformerDecoder,
                   lambda layer: Nested(expand=lambda specs: transformer_decoder_model(layer, specs)), replace=False)
    for module, norm, block in _MOE:
        cls_norm, cls_block = _class(module, norm), _class(module, block)
        if cls_norm is not None:
            register_layer(cls_norm, _rms, replace=False)
        if cls_block is not None:
            register_layer(cls_block, lambda layer: Nested(expand=lambda specs: moe_decoder_model(layer, specs)),
                           replace=False)


_MOE = (
    ("mixtral.mixtral_layer_norm", "MixtralLayerNormalization", None),
    ("mixtral.mixtral_decoder", None, "MixtralTransformerDecoder"),
    ("qwen3_moe.qwen3_moe_layernorm", "Qwen3MoeLayerNorm", None),
    ("qwen3_moe.qwen3_moe_decoder", None, "Qwen3MoeTransformerDecoder"),
)


_GEMMA = (
    ("gemma.rms_normalization", "RMSNormalization", None),
    ("gemma.gemma_decoder_block", None, "GemmaDecoderBlock"),
    ("gemma3.gemma3_layers", "RMSNormalization", None),
    ("gemma3.gemma3_decoder_block", None, "Gemma3DecoderBlock"),
)


def _take_op():
    return Reshape("take_position", None)


_LLAMA_LIKE = (
    ("llama.llama_layernorm", "LlamaLayerNorm", None),
    ("llama.llama_decoder", None, "LlamaTransformerDecoder"),
    ("mistral.mistral_layer_norm", "MistralLayerNormalization", None),
    ("mistral.mistral_transformer_decoder", None, "MistralTransformerDecoder"),
    ("qwen.qwen_layernorm", "QwenLayerNorm", None),
    ("qwen.qwen_decoder", None, "QwenTransformerDecoder"),
    ("qwen3.qwen3_decoder", None, "Qwen3TransformerDecoder"),
    ("phi3.phi3_layernorm", "Phi3LayerNorm", None),
    ("phi3.phi3_decoder", None, "Phi3Decoder"),
)


def _class(module, name):
    if name is None:
        return None
    try:
        mod = __import__(f"keras_hub.src.models.{module}", fromlist=[name])
    except ImportError:  # another keras_hub layout: no description, the generic error
        return None
    return getattr(mod, name, None)

