"""KerasHub decoder LLMs (lrpgraph.ops.keras_hub_llm): tiny configs with random weights.

- the rewritten graph reproduces the causal LM's logits at the explained position (with
  and without padding);
- cp_lrp conserves the explained logit on these bias-free models;
- attn_lrp and cp_lrp equal LXT's Input x Gradient formulation of AttnLRP / CP-LRP
  (``lxt.efficient``: RMSNorm with the variance detached, q/4, k/4, v/2 in attention or q
  and k detached for CP-LRP, the identity rule's gradient y/x on the activation, the
  gradient halved at gate * up or the gate detached), written out below in TensorFlow
  from the layers' weights, independently of lrpgraph's graph;
- hand-computed values for RMSNorm and rotary embeddings on 4-feature inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import lrpgraph
from lxt_reference import dense as _apply, divide_gradient as _divide_gradient, identity_rule as _identity_rule, \
    layer_norm as _ln

keras_hub = pytest.importorskip("keras_hub")
import keras  # noqa: E402

VOCAB, T = 50, 7

COMMON = dict(vocabulary_size=VOCAB, num_layers=2, num_query_heads=4, hidden_dim=16, intermediate_dim=32,
              num_key_value_heads=2)


def _llama():
    return keras_hub.models.LlamaCausalLM(keras_hub.models.LlamaBackbone(**COMMON), preprocessor=None)


def _llama3():
    return keras_hub.models.Llama3CausalLM(keras_hub.models.Llama3Backbone(**COMMON), preprocessor=None)


def _llama_tied():
    return keras_hub.models.LlamaCausalLM(keras_hub.models.LlamaBackbone(**COMMON, tie_word_embeddings=True),
                                          preprocessor=None)


def _mistral():  # sliding window 3 < T: the band mask matters
    return keras_hub.models.MistralCausalLM(keras_hub.models.MistralBackbone(**COMMON, sliding_window=3),
                                            preprocessor=None)


def _qwen():  # biases on q, k, v
    return keras_hub.models.QwenCausalLM(keras_hub.models.QwenBackbone(**COMMON), preprocessor=None)


def _qwen3():  # q/k RMSNorm per head
    return keras_hub.models.Qwen3CausalLM(keras_hub.models.Qwen3Backbone(**COMMON, head_dim=4), preprocessor=None)


GEMMA = dict(vocabulary_size=VOCAB, num_layers=2, num_query_heads=4, num_key_value_heads=2, hidden_dim=16,
             intermediate_dim=32, head_dim=4)


def _gemma():
    return keras_hub.models.GemmaCausalLM(keras_hub.models.GemmaBackbone(**GEMMA), preprocessor=None)


def _gemma2():  # post-norms, attention and final logit soft-caps, a sliding window of 3
    return keras_hub.models.GemmaCausalLM(keras_hub.models.GemmaBackbone(
        **GEMMA, use_post_ffw_norm=True, use_post_attention_norm=True, attention_logit_soft_cap=2.0,
        final_logit_soft_cap=3.0, use_sliding_window_attention=True, sliding_window_size=3,
        query_head_dim_normalize=False), preprocessor=None)


def _gemma3():  # q/k norms, post-norms, sliding window (text only)
    return keras_hub.models.Gemma3CausalLM(backbone=keras_hub.models.Gemma3Backbone(
        image_size=16, **GEMMA, use_post_ffw_norm=True, use_post_attention_norm=True,
        use_sliding_window_attention=True, sliding_window_size=3), preprocessor=None)


def _mixtral():  # 4 experts, top 2 (renormalised), sliding window 3
    return keras_hub.models.MixtralCausalLM(keras_hub.models.MixtralBackbone(
        **COMMON, num_experts=4, top_k=2, sliding_window=3), preprocessor=None)


def _qwen3_moe():  # top 2 of 4 not renormalised, q/k norms; layer 1 a dense MLP
    return keras_hub.models.Qwen3MoeCausalLM(keras_hub.models.Qwen3MoeBackbone(
        **COMMON, moe_intermediate_dim=8, num_experts=4, top_k=2, head_dim=4, mlp_only_layers=[1]),
        preprocessor=None)


def _phi3():
    return keras_hub.models.Phi3CausalLM(keras_hub.models.Phi3Backbone(**COMMON), preprocessor=None)


def _gpt2():  # biases everywhere, LayerNorm, learned positions, GELU MLP, tied head
    return keras_hub.models.GPT2CausalLM(keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=4, hidden_dim=16, intermediate_dim=32, max_sequence_length=16),
        preprocessor=None)


FAMILIES = {"llama": _llama, "llama3": _llama3, "llama_tied": _llama_tied, "mistral": _mistral, "qwen": _qwen,
            "qwen3": _qwen3, "phi3": _phi3, "gemma": _gemma, "gemma2": _gemma2, "gemma3": _gemma3, "gpt2": _gpt2,
            "mixtral": _mixtral, "qwen3_moe": _qwen3_moe}
GEMMAS = {"gemma", "gemma2", "gemma3"}
BIASED = {"qwen", "gpt2"}

_MODELS = {}


def model(family):
    if family not in _MODELS:
        keras.utils.set_random_seed(7)
        lm = FAMILIES[family]()
        _randomize_norms(lm)
        _MODELS[family] = lm
    return _MODELS[family]


def _randomize_norms(lm):
    """Norm scales of 1 and biases of 0 (their initial values) would hide a missing or
    doubled scale or bias."""
    rng = np.random.RandomState(3)
    for v in lm.weights:
        if v.path.endswith(("scale", "gamma")):
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype(v.dtype))
        elif v.path.endswith(("bias", "beta")):
            v.assign(rng.uniform(-0.1, 0.1, v.shape).astype(v.dtype))


def inputs(padded):
    rng = np.random.RandomState(11)
    ids = rng.randint(1, VOCAB, (3, T)).astype("int32")
    mask = np.ones_like(ids)
    if padded:
        mask[1, 4:] = 0
        mask[2, 6:] = 0
        ids[mask == 0] = 0
    return {"token_ids": ids, "padding_mask": mask}


def last_token(mask):
    return mask.shape[1] - 1 - np.argmax(mask[:, ::-1] != 0, axis=1)


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_logits_match_model(family, padded):
    lm = model(family)
    x = inputs(padded)
    full = lm(x).numpy()
    pos = last_token(x["padding_mask"])
    got = lrpgraph.prepare(lm).logits(x)
    # float32 forward of the same ops in the same order; 1e-5 absolute on logits of order 0.1-1
    np.testing.assert_allclose(got, full[np.arange(3), pos], atol=1e-5)
    # an explicit position, the same for every sequence
    got = lrpgraph.prepare(lm).logits(lrpgraph.prepare(lm).fill_position(x, 2))
    np.testing.assert_allclose(got, full[:, 2], atol=1e-5)


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - BIASED))
def test_cp_lrp_conserves(family):
    lm = model(family)
    x = inputs(True)
    exp = lrpgraph.create_analyzer("cp_lrp", lm, epsilon=1e-12).explain(x, "predicted")
    assert exp.maps.shape == (3, T)
    logit = exp.logits[np.arange(3), exp.targets]
    # bias-free: CP-LRP is conservative; float32 sums over ~10^3 terms, 1e-4 relative
    np.testing.assert_allclose(exp.maps.sum(1), logit, rtol=1e-4)
    assert np.all(exp.maps[x["padding_mask"] == 0] == 0)  # padding gets nothing


# ---- LXT's Input x Gradient formulation, in TensorFlow ------------------------------------------

def _rms(x, layer, one_plus=False):
    w = tf.convert_to_tensor(layer.scale)
    if one_plus:
        w = 1.0 + w
    var = tf.reduce_mean(tf.square(x), axis=-1, keepdims=True)
    return x * tf.stop_gradient(tf.math.rsqrt(var + layer.epsilon)) * w


def _rope(x, max_wavelength):
    """Llama's rotary embedding, (B, T, H, D): x cos + rotate_half(x) sin, positions 0..T-1."""
    d = x.shape[-1]
    inv = max_wavelength ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    freq = np.outer(np.arange(x.shape[1]), inv)
    emb = np.concatenate([freq, freq], axis=-1)[None, :, None, :]
    x1, x2 = x[..., :d // 2], x[..., d // 2:]
    return x * np.cos(emb).astype("float32") + tf.concat([-x2, x1], -1) * np.sin(emb).astype("float32")


def _mask(pad, t, window):
    i, j = np.arange(t)[:, None], np.arange(t)[None, :]
    band = j <= i
    if window is not None:
        band &= i - j < window
    return tf.logical_and(band[None], tf.cast(pad, bool)[:, None, :])


def _sub(layer, name):
    return getattr(layer, f"_{name}", None) or getattr(layer, name)


def _lxt_moe(moe, f, mode):
    """LXT's experts_forward (qwen3_moe.py): the top-k indices constant, the identity rule and
    /2 inside each expert, /2 at expert_out * routing weight; CP-LRP: the routing weights
    and the gates constant."""
    logits = _apply(moe._sparse_feedforward_gate_dense, f)
    if mode == "cp":
        logits = tf.stop_gradient(logits)
    p = tf.nn.softmax(logits, axis=-1)
    top_p, top_i = tf.math.top_k(p, k=moe.top_k)
    if getattr(moe, "norm_top_k_prob", True):
        top_p = top_p / tf.reduce_sum(top_p, axis=-1, keepdims=True)
    routing = tf.reduce_sum(tf.one_hot(top_i, p.shape[-1]) * top_p[..., None], axis=-2)  # (b, t, e)
    bank = moe.expert_bank
    wg = tf.convert_to_tensor(bank._expert_feedforward_gate_dense)
    if hasattr(bank, "_expert_feedforward_intermediate_dense"):
        wu = tf.convert_to_tensor(bank._expert_feedforward_intermediate_dense)
    else:
        wg, wu = tf.split(wg, 2, axis=-1)
    gate = tf.einsum("bth,ehm->ebtm", f, wg)
    gate = _identity_rule(tf.nn.silu, gate) if mode == "attn" else tf.nn.silu(tf.stop_gradient(gate))
    hidden = tf.einsum("bth,ehm->ebtm", f, wu) * gate
    if mode == "attn":
        hidden = _divide_gradient(hidden, 2.0)
    out = tf.einsum("ebti,eih->ebth", hidden, tf.convert_to_tensor(bank._expert_feedforward_output_dense))
    weighted = out * tf.transpose(routing, (2, 0, 1))[..., None]
    if mode == "attn":
        weighted = _divide_gradient(weighted, 2.0)
    return tf.reduce_sum(weighted, axis=0)


def lxt_llama(lm, x, position, target, mode):
    """relevance per token of the logit ``target`` at ``position``: LXT's Input x Gradient
    (``mode`` "attn": AttnLRP, "cp": CP-LRP) on a Llama-style model, from its weights."""
    bb = lm.backbone
    ids, pad = tf.constant(x["token_ids"]), tf.constant(x["padding_mask"])
    emb = tf.gather(tf.convert_to_tensor(bb.token_embedding.embeddings), ids)
    with tf.GradientTape() as tape:
        tape.watch(emb)
        h = emb
        for block in bb.transformer_layers:
            attn = getattr(block, "_self_attention_layer", None) or block.attention
            norm1 = getattr(block, "_self_attention_layernorm", None) or block.pre_attention_layernorm
            norm2 = getattr(block, "_feedforward_layernorm", None) or block.post_attention_layernorm
            a = _rms(h, norm1)
            q = _apply(_sub(attn, "query_dense"), a)
            k = _apply(_sub(attn, "key_dense"), a)
            v = _apply(_sub(attn, "value_dense"), a)
            if hasattr(attn, "_query_dense_layer_norm"):
                q, k = _rms(q, attn._query_dense_layer_norm), _rms(k, attn._key_dense_layer_norm)
            wave = attn.rotary_embedding_layer.max_wavelength
            q, k = _rope(q, wave), _rope(k, wave)
            groups = q.shape[2] // k.shape[2]
            k, v = tf.repeat(k, groups, axis=2), tf.repeat(v, groups, axis=2)
            if mode == "attn":
                q, k, v = _divide_gradient(q, 4.0), _divide_gradient(k, 4.0), _divide_gradient(v, 2.0)
            else:
                q, k = tf.stop_gradient(q), tf.stop_gradient(k)
            s = tf.einsum("bquh,bkuh->buqk", q, k) / np.sqrt(q.shape[-1]).astype("float32")
            window = getattr(block, "sliding_window", None)
            s = tf.where(_mask(pad, s.shape[-1], window)[:, None], s, -1e9)
            w = tf.nn.softmax(s, axis=-1)
            c = tf.einsum("buqk,bkuh->bquh", w, v)
            h = h + _apply(_sub(attn, "output_dense"), c)
            f = _rms(h, norm2)
            mlp = getattr(block, "_sparse_moe_block", None) or getattr(block, "mlp", block)
            if hasattr(mlp, "expert_bank"):
                h = h + _lxt_moe(mlp, f, mode)
                continue
            g = _apply(_sub(mlp, "feedforward_gate_dense"), f)
            g = _identity_rule(tf.nn.silu, g) if mode == "attn" else tf.nn.silu(tf.stop_gradient(g))
            m = _apply(_sub(mlp, "feedforward_intermediate_dense"), f) * g
            if mode == "attn":
                m = _divide_gradient(m, 2.0)
            h = h + _apply(_sub(mlp, "feedforward_output_dense"), m)
        h = _rms(h, bb.layer_norm)
        h = tf.gather(h, position, axis=1, batch_dims=1)
        te = bb.token_embedding
        kernel = tf.transpose(te.embeddings) if te.tie_weights else tf.convert_to_tensor(te.reverse_embeddings)
        logits = h @ kernel
        out = tf.reduce_sum(tf.gather(logits, target, axis=1, batch_dims=1))
    return (emb * tape.gradient(out, emb)).numpy().sum(-1), logits.numpy()


def _soft_cap(cap):
    return lambda t: cap * tf.tanh(t / cap)


def lxt_gemma(lm, x, position, target, mode):
    """As :func:`lxt_llama` for Gemma / Gemma2 / Gemma3: RMSNorm with (1 + scale), the
    embedding times sqrt(hidden), GeGLU, q scaled before q.k^T, grouped heads by reshape,
    soft-caps by the identity rule (y / x times the gradient, as on any activation)."""
    bb = lm.backbone
    ids, pad = tf.constant(x["token_ids"]), tf.constant(x["padding_mask"])
    emb = tf.gather(tf.convert_to_tensor(bb.token_embedding.embeddings), ids)
    with tf.GradientTape() as tape:
        tape.watch(emb)
        h = emb * tf.cast(tf.sqrt(float(bb.hidden_dim)), emb.dtype)
        for block in bb.transformer_layers:
            attn = block.attention
            a = _rms(h, block.pre_attention_norm, one_plus=True)
            q, k, v = _apply(attn.query_dense, a), _apply(attn.key_dense, a), _apply(attn.value_dense, a)
            if getattr(attn, "use_query_key_norm", False):
                q, k = _rms(q, attn.query_norm, one_plus=True), _rms(k, attn.key_norm, one_plus=True)
            q, k = attn._apply_rope(q, 0), attn._apply_rope(k, 0)  # a fixed linear map of q, k
            if mode == "attn":
                q, k, v = _divide_gradient(q, 4.0), _divide_gradient(k, 4.0), _divide_gradient(v, 2.0)
            else:
                q, k = tf.stop_gradient(q), tf.stop_gradient(k)
            dim = attn.head_dim if attn.query_head_dim_normalize else attn.hidden_dim // attn.num_query_heads
            q = q * np.float32(1 / np.sqrt(dim))
            b, t, nq, hd = q.shape
            kv = attn.num_key_value_heads
            q = tf.reshape(q, (b, t, kv, nq // kv, hd))
            s = tf.einsum("btkgh,bskh->bkgts", q, k)
            if attn.logit_soft_cap is not None:
                s = _identity_rule(_soft_cap(attn.logit_soft_cap), s)
            # KerasHub's band |i - j| < window, within the causal mask
            window = attn.sliding_window_size if attn.use_sliding_window_attention else None
            s = tf.where(_mask(pad, t, window)[:, None, None], s, -1e9)
            w = tf.nn.softmax(s, axis=-1)
            c = tf.reshape(tf.einsum("bkgts,bskh->btkgh", w, v), (b, t, nq, hd))
            o = _apply(attn.output_dense, c)
            if block.use_post_attention_norm:
                o = _rms(o, block.post_attention_norm, one_plus=True)
            h = h + o
            f = _rms(h, block.pre_ffw_norm, one_plus=True)
            g = _apply(block.gating_ffw, f)
            gelu = lambda z: tf.nn.gelu(z, approximate=True)  # noqa: E731
            g = _identity_rule(gelu, g) if mode == "attn" else gelu(tf.stop_gradient(g))
            m = _apply(block.gating_ffw_2, f) * g
            if mode == "attn":
                m = _divide_gradient(m, 2.0)
            o = _apply(block.ffw_linear, m)
            if block.use_post_ffw_norm:
                o = _rms(o, block.post_ffw_norm, one_plus=True)
            h = h + o
        h = _rms(h, bb.layer_norm, one_plus=True)
        h = tf.gather(h, position, axis=1, batch_dims=1)
        te = bb.token_embedding
        kernel = tf.transpose(te.embeddings) if te.tie_weights else tf.convert_to_tensor(te.reverse_embeddings)
        logits = h @ kernel
        if te.logit_soft_cap is not None:
            logits = _identity_rule(_soft_cap(te.logit_soft_cap), logits)
        out = tf.reduce_sum(tf.gather(logits, target, axis=1, batch_dims=1))
    return (emb * tape.gradient(out, emb)).numpy().sum(-1), logits.numpy()


def lxt_gpt2(lm, x, position, target, mode):
    """As :func:`lxt_llama` for GPT-2 (LXT's gpt2.py): LayerNorm with the std detached,
    learned positions added to the token embeddings (not an input: they absorb their share,
    as a bias), the identity rule on GELU (AttnLRP and CP-LRP), q/4, k/4, v/2 or q, k detached."""
    bb = lm.backbone
    ids, pad = tf.constant(x["token_ids"]), tf.constant(x["padding_mask"])
    emb = tf.gather(tf.convert_to_tensor(bb.token_embedding.embeddings), ids)
    t = emb.shape[1]
    with tf.GradientTape() as tape:
        tape.watch(emb)
        h = emb + tf.convert_to_tensor(bb.position_embedding.position_embeddings)[:t]
        for block in bb.transformer_layers:
            attn = block._self_attention_layer
            a = _ln(h, block._self_attention_layer_norm)
            q, k, v = _apply(attn._query_dense, a), _apply(attn._key_dense, a), _apply(attn._value_dense, a)
            if mode == "attn":
                q, k, v = _divide_gradient(q, 4.0), _divide_gradient(k, 4.0), _divide_gradient(v, 2.0)
            else:
                q, k = tf.stop_gradient(q), tf.stop_gradient(k)
            s = tf.einsum("bkuh,bquh->buqk", k, q / np.sqrt(q.shape[-1]).astype("float32"))
            s = tf.where(_mask(pad, t, None)[:, None], s, -1e9)
            c = tf.einsum("buqk,bkuh->bquh", tf.nn.softmax(s, axis=-1), v)
            h = h + _apply(attn._output_dense, c)
            f = _ln(h, block._feedforward_layer_norm)
            inter = block._feedforward_intermediate_dense
            g = _apply(inter, f)
            g = _identity_rule(inter.activation, g)  # LXT's mlp_forward, in both variants
            h = h + _apply(block._feedforward_output_dense, g)
        h = _ln(h, bb.layer_norm)
        h = tf.gather(h, position, axis=1, batch_dims=1)
        logits = h @ tf.transpose(bb.token_embedding.embeddings)
        out = tf.reduce_sum(tf.gather(logits, target, axis=1, batch_dims=1))
    return (emb * tape.gradient(out, emb)).numpy().sum(-1), logits.numpy()


@pytest.mark.parametrize("method", ["attn_lrp", "cp_lrp"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_equals_lxt(family, method):
    lm = model(family)
    x = inputs(True)
    pos = last_token(x["padding_mask"])
    exp = lrpgraph.create_analyzer(method, lm, epsilon=1e-12).explain(x, "predicted")
    reference = lxt_gemma if family in GEMMAS else lxt_gpt2 if family == "gpt2" else lxt_llama
    ref, logits = reference(lm, x, pos, exp.targets, "attn" if method == "attn_lrp" else "cp")
    np.testing.assert_allclose(logits, exp.logits, atol=1e-5)  # the reference computes the same model
    scale = np.abs(ref).max()
    # float32 reverse passes in different orders: 1e-4 of the map's maximum
    np.testing.assert_allclose(exp.maps, ref, atol=1e-4 * scale)


# ---- hand-computed values on 4-feature inputs -----------------------------------------------------

def test_rmsnorm_by_hand():
    """y = x * w / sqrt(mean(x^2) + eps); the identity rule hands feature t its output,
    R_in = y_t at t, 0 elsewhere (cp_lrp and attn_lrp alike)."""
    from keras_hub.src.models.llama.llama_layernorm import LlamaLayerNorm

    inp = keras.Input((4,))
    norm = LlamaLayerNorm(epsilon=1e-6)
    m = keras.Model(inp, norm(inp))
    norm.scale.assign([1.0, 0.5, 2.0, 1.0])
    x = np.array([[1.0, 2.0, 3.0, 4.0]], "float32")
    y = np.array([1.0, 1.0, 6.0, 4.0]) / np.sqrt(7.5 + 1e-6)  # mean(x^2) = 30 / 4
    for method in ("attn_lrp", "cp_lrp"):
        exp = lrpgraph.create_analyzer(method, m, epsilon=1e-12).explain(x, 2)
        np.testing.assert_allclose(exp.logits[0], y, rtol=1e-6)  # float32 of a 4-term mean
        np.testing.assert_allclose(exp.maps[0], [0.0, 0.0, y[2], 0.0], rtol=1e-6, atol=1e-7)


def test_rotary_by_hand():
    """RoPE on (T=2, 1 head, D=4), max wavelength 10^4: frequencies (1, 0.01); at position 1,
    x = (1, 0, 1, 0) rotates to out_0 = cos 1 - sin 1.  Explaining out_0 there: the epsilon
    rule through the rotation (linear in x) gives x * d out_0 / dx = (cos 1, 0, -sin 1, 0),
    nothing at position 0."""
    from keras_hub.src.layers.modeling.rotary_embedding import RotaryEmbedding
    from lrpgraph.engine.ops.keras_hub_llm import RotaryOf

    inp = keras.Input((2, 1, 4))
    out = keras.layers.Reshape((8,))(RotaryOf(RotaryEmbedding(max_wavelength=10000))(inp))
    m = keras.Model(inp, out)
    x = np.array([[[[0.5, -1.0, 2.0, 1.0]], [[1.0, 0.0, 1.0, 0.0]]]], "float32")
    c, s = np.cos(1.0), np.sin(1.0)
    for method in ("attn_lrp", "cp_lrp"):
        exp = lrpgraph.create_analyzer(method, m, epsilon=1e-12).explain(x, 4)
        assert exp.logits[0, 4] == pytest.approx(c - s, abs=1e-6)  # float32 cos/sin
        want = np.zeros((2, 1, 4))
        want[1, 0] = [c, 0.0, -s, 0.0]
        np.testing.assert_allclose(exp.maps[0], want, atol=1e-6)


def test_rotary_tables_shared_in_a_trace():
    """Inside one traced graph the cos / sin tables of identically configured rotary layers
    are made once (rotate); each call still equals the layer's own rotation (the same float32
    ops: exact), shorter sequences slice the tables, and a longer one fails loudly."""
    from keras_hub.src.layers.modeling.rotary_embedding import RotaryEmbedding
    from lrpgraph.engine.ops.keras_hub_llm import rotate

    r1, r2 = RotaryEmbedding(max_wavelength=10000), RotaryEmbedding(max_wavelength=10000)
    a, b = (tf.random.normal([2, n, 3, 8], seed=n) for n in (5, 3))

    @tf.function(autograph=False)
    def both(a, b):
        return rotate(r1, a), rotate(r2, a), rotate(r2, b)

    ya, ya2, yb = both(a, b)
    np.testing.assert_array_equal(ya, r1(a))
    np.testing.assert_array_equal(ya2, r2(a))
    np.testing.assert_array_equal(yb, r2(b))
    spec = tf.TensorSpec([None, None, 3, 8])  # lengths unknown when traced: the run-time check
    longer = tf.function(lambda b, a: (rotate(r1, b), rotate(r1, a)), autograph=False, input_signature=[spec, spec])
    with pytest.raises(tf.errors.InvalidArgumentError, match="longer sequence"):
        longer(b, a)


def test_two_expert_moe_by_hand():
    """A Mixtral MoE with 2 experts (both selected, weights r = softmax(l)), one intermediate
    unit each: y = sum_e r_e c_e silu(a_e . x)(b_e . x).  Explaining y_j, in closed form:
    cp_lrp: routing and gates constant, R_x_i = sum_e x_i b_ei / u_e * r_e o_ej;
    attn_lrp: half to the routing weight (the softmax rule on to the router logits, then
    epsilon through the router), half to the expert, split again by the uniform rule between
    gate (identity rule through silu) and up."""
    from keras_hub.src.models.mixtral.mixtral_decoder import MixtralSparseMoeBlock
    from lrpgraph.engine.ops.keras_hub_llm import sparse_moe

    moe = MixtralSparseMoeBlock(hidden_dim=4, intermediate_dim=1, num_experts=2, top_k=2)
    moe.build((None, None, 4))
    wr = np.array([[0.5, -0.3], [0.2, 0.4], [-0.1, 0.3], [0.3, 0.1]], "float32")
    a = np.array([[0.6, -0.2, 0.4, 0.1], [-0.3, 0.5, 0.2, 0.7]], "float32")   # gate rows, per expert
    b = np.array([[0.3, 0.8, -0.5, 0.2], [0.9, -0.4, 0.1, 0.6]], "float32")   # up rows
    c = np.array([[1.0, -0.5, 0.3, 0.2], [0.4, 0.7, -0.6, 1.1]], "float32")   # out rows
    moe._sparse_feedforward_gate_dense.kernel.assign(wr)
    moe.expert_bank._expert_feedforward_gate_dense.assign(a[:, :, None])
    moe.expert_bank._expert_feedforward_intermediate_dense.assign(b[:, :, None])
    moe.expert_bank._expert_feedforward_output_dense.assign(c[:, None, :])
    inp = keras.Input((1, 4))
    m = keras.Model(inp, keras.layers.Reshape((4,))(sparse_moe(moe, inp)))
    x = np.array([1.0, 2.0, -0.5, 0.8])
    j = 1
    logits = x @ wr
    r = np.exp(logits) / np.exp(logits).sum()
    g, u = a @ x, b @ x
    silu = g / (1 + np.exp(-g))
    o = (silu * u)[:, None] * c                       # (expert, feature)
    y = (r[:, None] * o).sum(0)
    ro = r * o[:, j]                                  # each expert's share of y_j
    cp = sum(x * b[e] / u[e] * ro[e] for e in range(2))
    attn = sum(x * a[e] / g[e] * 0.25 * ro[e] + x * b[e] / u[e] * 0.25 * ro[e] for e in range(2))
    r_route = 0.5 * ro
    r_logit = logits * (r_route - r * r_route.sum())  # the softmax rule
    attn = attn + sum(x * wr[:, e] / logits[e] * r_logit[e] for e in range(2))
    # float32 graph vs float64 closed form on values of order 1
    for method, want in (("cp_lrp", cp), ("attn_lrp", attn)):
        exp = lrpgraph.create_analyzer(method, m, epsilon=1e-12).explain(x[None, None].astype("float32"), j)
        np.testing.assert_allclose(exp.logits[0], y, rtol=1e-5)
        np.testing.assert_allclose(exp.maps[0, 0], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cp.sum(), y[j], rtol=1e-12)  # the closed form conserves (no bias)


@pytest.mark.slow  # generate() compiles KerasHub's sampler: ~25 s
def test_explain_generation():
    """Greedy generation explained token by token: each row is the cp_lrp map of the
    generated token's logit at the position before it, which is the largest logit there;
    it conserves that logit and gives nothing to the token itself or later ones."""
    import lrpgraph.text

    lm = model("llama")
    lm.compile(sampler="greedy")
    e = lrpgraph.text.explain_generation(lm, np.array([5, 7, 9]), 6, "cp_lrp", epsilon=1e-12)
    g = len(e.ids) - 3
    assert e.prompt_length == 3 and e.relevance.shape == (g, len(e.ids)) and g == 3
    x = {"token_ids": np.repeat(e.ids[None], g, 0), "padding_mask": np.ones((g, len(e.ids)), "int32")}
    prepared = lrpgraph.prepare(lm)
    logits = prepared.logits(prepared.fill_position(x, np.arange(2, 2 + g)))
    np.testing.assert_array_equal(logits.argmax(1), e.ids[3:])  # greedy: the argmax was generated
    np.testing.assert_allclose(e.logits, logits.max(1), rtol=1e-6)
    np.testing.assert_allclose(e.relevance.sum(1), e.logits, rtol=1e-4)  # bias-free cp_lrp conserves
    for row in range(g):
        assert np.all(e.relevance[row, 3 + row:] == 0)  # causal: not the token itself, nor later ones
    np.testing.assert_allclose(e.span(), e.relevance.sum(0))
    # spans= explains each span from one seed (one row): the sum of its tokens' rows (the test above)
    s = lrpgraph.text.explain_generation(lm, np.array([5, 7, 9]), 6, "cp_lrp", epsilon=1e-12,
                                         spans=[(0, None), (1, 2)])
    assert set(s.spans) == {(0, 3), (1, 2)}
    for (start, stop), (r, z) in s.spans.items():
        want = s.relevance[start:stop].sum(0)  # float32 rounding of the same linear maps
        np.testing.assert_allclose(s.span(start, stop), want, atol=1e-5 * np.abs(want).max())
        np.testing.assert_allclose(z, s.logits[start:stop].sum(), rtol=1e-5)


@pytest.mark.parametrize("method", ["attn_lrp", "cp_lrp"])
def test_span_in_one_pass_is_the_sum_of_its_tokens(method):
    """A span of tokens explained from one seed covering all its positions (causal_lm_span_model:
    one forward and one reverse pass per row) equals the sum of the per-token maps (the logit
    of token p at position p - 1 each), since every rule of both presets is linear in the
    relevance it receives; its output is the sum of those logits."""
    from lrpgraph.engine.ops.keras_hub_llm import SPAN_TARGETS, causal_lm_span_model

    lm = model("llama")
    ids = inputs(False)["token_ids"][:1]
    span = np.arange(3, T)  # tokens 3..6, explained at positions 2..5
    single = lrpgraph.create_analyzer(method, lm, epsilon=1e-12)
    rows = single.explain({"token_ids": np.repeat(ids, len(span), 0),
                           "padding_mask": np.ones((len(span), T), "int32")}, ids[0, span], position=span - 1)
    targets = np.full((1, T), -1, "int32")
    targets[0, span - 1] = ids[0, span]
    m = causal_lm_span_model(lm)
    exp = lrpgraph.create_analyzer(method, m, epsilon=1e-12).explain(
        {"token_ids": ids, "padding_mask": np.ones_like(ids), SPAN_TARGETS: targets}, 0)
    got = exp.maps[lrpgraph.prepare(m).input_nodes.index("token_ids")][0]
    want = rows.maps.sum(0)
    # float32: two summation orders of the same linear maps (measured ~1e-7 of the max)
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(exp.logits[0, 0], rows.logits[np.arange(len(span)), ids[0, span]].sum(), rtol=1e-5)
    assert np.all(got[span[-1]:] == 0)  # causal: nothing to the last token (its logit is not in the span)


def test_position_and_target_errors():
    lm = model("llama")
    a = lrpgraph.create_analyzer("cp_lrp", lm)
    x = inputs(False)
    with pytest.raises(ValueError, match="out of range"):
        a.analyze(x, 3, position=T)
    with pytest.raises(ValueError, match="one int per sequence"):
        a.analyze(x, 3, position=[1, 2])
    with pytest.raises(ValueError, match="no token"):
        a.analyze(dict(x, padding_mask=np.zeros_like(x["padding_mask"])), 3)
    with pytest.raises(TypeError, match="tokenizer"):
        a.analyze(x, "hello")
    # several targets per sequence: (N, 2) targets give (N, 2, T) maps, each the single-target map
    two = a.analyze(x, np.array([[3, 4]] * 3))
    np.testing.assert_allclose(two[:, 1], a.analyze(x, 4), rtol=1e-5, atol=1e-7)


def test_relevance_trace_conserves_through_blocks():
    """cp_lrp on a bias-free Llama: the relevance at the residual stream after every block
    (read in the one pass that makes the map) sums to the explained logit (each block
    conserves), row 0 is the usual map, and a block's row is what an analysis stopped at
    that block's output gives."""
    import lrpgraph.text

    lm = model("llama")
    x = inputs(True)
    tr = lrpgraph.text.relevance_trace(lm, x, "predicted", "cp_lrp", epsilon=1e-12)
    exp = lrpgraph.create_analyzer("cp_lrp", lm, epsilon=1e-12).explain(x, "predicted")
    assert tr.shape == (3, 3, T)
    np.testing.assert_allclose(tr[:, 0], exp.maps, rtol=1e-5, atol=1e-8)
    first = lrpgraph.text.block_outputs(lm)[0]
    stopped = lrpgraph.create_analyzer("cp_lrp", lm, epsilon=1e-12, stop_at=first).analyze(x, "predicted")
    # the same float32 operations in another function: a few ulps of the row's largest value
    np.testing.assert_allclose(tr[:, 1], stopped.sum(-1), rtol=1e-5, atol=1e-6 * np.abs(tr[:, 1]).max())
    logit = exp.logits[np.arange(3), exp.targets]
    np.testing.assert_allclose(tr.sum(-1), np.repeat(logit[:, None], 3, 1), rtol=1e-4)  # float32 sums
    # after the last block all of it sits at the explained position: the final norm and the
    # LM head read only that position
    pos = last_token(x["padding_mask"])
    np.testing.assert_allclose(tr[np.arange(3), 2, pos], logit, rtol=1e-4)


def test_bfloat16_llama():
    """A bfloat16 Llama: the pieces of the expansion take their inputs as they come (no
    autocast to float32), so the graph computes what the model computes, in bfloat16."""
    keras.utils.set_random_seed(7)
    lm = keras_hub.models.LlamaCausalLM(keras_hub.models.LlamaBackbone(**COMMON, dtype="bfloat16"),
                                        preprocessor=None)
    x = inputs(True)
    full = np.asarray(lm(x), "float32")[np.arange(3), last_token(x["padding_mask"])]
    exp = lrpgraph.create_analyzer("cp_lrp", lm).explain(x, "predicted")
    # bfloat16 keeps 8 bits of mantissa: a few ulps of the largest logit
    np.testing.assert_allclose(exp.logits.astype("float32"), full, atol=4 * 2.0 ** -8 * np.abs(full).max())
    assert exp.maps.dtype == np.dtype("bfloat16") or str(exp.maps.dtype) == "bfloat16"
    logit = exp.logits[np.arange(3), exp.targets].astype("float32")
    np.testing.assert_allclose(exp.maps.astype("float32").sum(1), logit, rtol=0.05)  # bf16 sums of 7 tokens


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_check_reports_every_node_supported(family):
    """lrpgraph.check on the causal LM itself ((N, T, vocabulary) logits, every position): every
    node has a rule in both presets and the rewritten graph reproduces the logits."""
    report = lrpgraph.check(model(family), presets=("attn_lrp", "cp_lrp"))
    assert not report.unsupported and report.logits_error is None
    assert report.logits_rel_diff < 1e-5  # float32, same ops (max |diff| / max |logit|)
    kinds = {n.kind for n in report.nodes}
    assert {"layernorm", "bilinear/scores", "bilinear/combine", "softmax", "embedding"} <= kinds


def test_relevance_per_hidden_unit():
    """stop_at the embedding lookup: relevance per (token, hidden unit), which sums over the
    hidden axis to the per-token map."""
    lm = model("qwen3")
    x = inputs(True)
    node = next(n for n in lrpgraph.prepare(lm).graph if n.endswith("token_embedding/lookup"))
    per_unit = lrpgraph.create_analyzer("attn_lrp", lm, stop_at=node).analyze(x, 3)
    per_token = lrpgraph.create_analyzer("attn_lrp", lm).analyze(x, 3)
    assert per_unit.shape == (3, T, 16)
    np.testing.assert_allclose(per_unit.sum(-1), per_token, rtol=1e-5, atol=1e-7)  # same pass, float32 sum
