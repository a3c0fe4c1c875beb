"""KerasHub's ViT-family vision towers (lrpgraph.engine.ops.keras_hub_vision): DeiT, DINOv2
(register tokens, layer scale, interpolated position table; GELU MLP and SwiGLU),
SigLIP's vision encoder (attention-pooling head) and CLIP's vision encoder (pre-norm,
quick_gelu, class embedding), from tiny configs with random weights, each with a small
Dense head on its class token or pooled output:

- the rewritten graph reproduces the model's logits;
- cp_lrp conserves the explained logit on bias-free configurations;
- attn_lrp and cp_lrp equal LXT's Input x Gradient formulation (tests/lxt_reference.py)
  written out below in TensorFlow from the layers' weights, independently of lrpgraph's graph;
- DINOv2's per-stage outputs are described; an output a description does not compute is
  named when used.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import lrpgraph
from lrpgraph.engine import graph as G
from lrpgraph.engine import rewrite as RW
from lrpgraph.engine.ops import keras_hub as hub_ops
from lxt_reference import attention, dense, divide_gradient, identity_rule, layer_norm

keras_hub = pytest.importorskip("keras_hub")
import keras  # noqa: E402
from keras_hub.src.models.clip.clip_layers import CLIPVisionPooler  # noqa: E402

IMAGE = (16, 16, 3)  # patch 8: 4 patches
SMALL = dict(num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32)
CLASSES = 3


def _head(encoder, first_token=True):
    inp = keras.Input(IMAGE, name="image")
    y = encoder({"images": inp})
    if first_token:
        y = y[:, 0]
    return keras.Model(inp, keras.layers.Dense(CLASSES, name="head")(y))


def _deit():
    backbone = keras_hub.models.DeiTBackbone(image_shape=IMAGE, patch_size=8, **SMALL)
    return keras_hub.models.DeiTImageClassifier(backbone=backbone, num_classes=CLASSES, activation=None)


def _dinov2(swiglu=False):
    # position table trained at 32x32, interpolated to 16x16 at build time; 2 register tokens
    backbone = keras_hub.models.DINOV2Backbone(patch_size=8, image_shape=IMAGE, position_embedding_shape=(32, 32, 3),
                                               num_register_tokens=2, layer_scale_init_value=0.5,
                                               use_swiglu_ffn=swiglu, **SMALL)
    return _head(backbone)


def _siglip():  # the attention-pooling head's output, (batch, hidden)
    return _head(keras_hub.models.SigLIPVisionEncoder(patch_size=8, image_shape=IMAGE, **SMALL), first_token=False)


def _clip():  # KerasHub's own pooler (the first token)
    encoder = keras_hub.models.CLIPVisionEncoder(patch_size=8, image_shape=IMAGE, **SMALL)
    inp = keras.Input(IMAGE, name="image")
    y = CLIPVisionPooler(name="vision_pooler")(encoder({"images": inp}))
    return keras.Model(inp, keras.layers.Dense(CLASSES, name="head")(y))


TOWERS = {"deit": _deit, "dinov2": _dinov2, "dinov2_swiglu": lambda: _dinov2(True), "siglip": _siglip,
          "clip": _clip}
ATTENTIONS = {"deit": 2, "dinov2": 2, "dinov2_swiglu": 2, "siglip": 3, "clip": 2}  # SigLIP: + the pooling head
# everything that absorbs relevance as a bias does (the probe stays: CP-LRP sends it nothing)
BIASES = ("bias", "beta", "class_token", "distillation_token", "cls_token", "register_tokens", "class_embedding",
          "position_embedding", "interpolated_position_embeddings", "embeddings")

_MODELS = {}


def model(tower, bias_free=False):
    """The tower with random kernels, norms, biases, tokens, layer scales and (SigLIP, CLIP) a shuffled
    ``position_ids`` (their initial values, 1, 0 and 0..T-1 or all 0, would hide a missing or
    doubled term, or a table read without the ids)."""
    key = (tower, bias_free)
    if key not in _MODELS:
        keras.utils.set_random_seed(5)
        m = TOWERS[tower]()
        rng = np.random.RandomState(3)
        for v in m.weights:
            leaf = v.path.split("/")[-1]
            if leaf == "position_ids":
                v.assign(rng.permutation(v.shape[-1])[None].astype(v.dtype))
            elif bias_free and leaf in BIASES:
                v.assign(np.zeros(v.shape, v.dtype))
            elif leaf == "kernel":  # DINOv2 initialises with std 0.02: its MLP would hardly count
                v.assign(rng.normal(0, 1 / np.sqrt(np.prod(v.shape[:-1])), v.shape).astype(v.dtype))
            elif leaf in ("gamma", "lambda1"):
                v.assign(rng.uniform(0.5, 1.5, v.shape).astype(v.dtype))
            elif leaf in ("bias", "beta", "class_token", "distillation_token", "cls_token", "register_tokens"):
                v.assign(rng.uniform(-0.3, 0.3, v.shape).astype(v.dtype))
        _MODELS[key] = m
    return _MODELS[key]


def images():
    return np.random.RandomState(11).uniform(-1, 1, (3,) + IMAGE).astype("float32")


@pytest.mark.parametrize("tower", sorted(TOWERS))
def test_supported_and_logits_match(tower):
    m, X = model(tower), images()
    report = lrpgraph.check(m, presets=("attn_lrp", "cp_lrp", "attn_lrp.gamma"), x=X)
    assert report.ok and not report.unsupported, str(report)
    kinds = report.kinds()
    assert "nested" not in kinds and "unknown" not in kinds and kinds["softmax"] == ATTENTIONS[tower], kinds
    # float32 forward of the same ops in the same order (only the tokens' concatenation is
    # written as zeros + tokens): 1e-5 relative on logits of order 1
    np.testing.assert_allclose(lrpgraph.prepare(m).logits(X), m(X).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tower", sorted(TOWERS))
def test_cp_lrp_conserves_without_biases(tower):
    """Biases, LayerNorm betas, the class/distillation/register tokens and the position
    tables zeroed: every cp_lrp rule conserves (the LayerNorm rule holds sigma constant,
    layer scale and the probe's attention are linear in the values), so the map sums to the
    explained logit.  float32 sums over ~10^3 terms: 1e-4 relative."""
    m, X = model(tower, bias_free=True), images()
    logits = m(X).numpy()
    for target in range(CLASSES):
        r = lrpgraph.create_analyzer("cp_lrp", m, epsilon=1e-12).analyze(X, target)
        np.testing.assert_allclose(r.reshape(len(X), -1).sum(1), logits[:, target], rtol=1e-4)


# ---- LXT's Input x Gradient formulation, from the layers' weights ----------------------------------

def _patches(conv, x):
    y = conv(x)
    return tf.reshape(y, (y.shape[0], -1, y.shape[-1]))


def _tokens(t, n):
    t = tf.reshape(tf.convert_to_tensor(t), (1, -1, t.shape[-1]))
    return tf.repeat(t, n, axis=0)


def _mlp(fc1, fc2, h):
    """fc2(act(fc1(h))) with the identity rule on the activation (LXT's mlp_forward, both variants)."""
    return dense(fc2, identity_rule(fc1.activation, dense(fc1, h)))


def _deit_forward(m, x, mode):
    bb = m.backbone
    emb, enc = bb.get_layer("deit_patching_and_embedding"), bb.get_layer("deit_encoder")
    n = x.shape[0]
    t = tf.concat([_tokens(emb.class_token, n), _tokens(emb.distillation_token, n),
                   _patches(emb.patch_embedding, x)], axis=1) + emb.position_embedding
    for block in enc.encoder_layers:
        h = layer_norm(t, block.layer_norm_1)
        t = t + attention(block.mha, h, h, mode)
        t = t + _mlp(block.mlp.dense, block.output_layer.dense, layer_norm(t, block.layer_norm_2))
    return dense(m.output_dense, layer_norm(t, enc.layer_norm)[:, 0])


def _dinov2_forward(m, x, mode):
    bb = m.layers[1]
    emb, enc = bb.get_layer("embeddings"), bb.get_layer("encoder")
    n = x.shape[0]
    t = tf.concat([_tokens(emb.cls_token, n), _patches(emb.patch_embeddings.projection, x)], axis=1)
    t = t + emb.interpolated_position_embeddings
    t = tf.concat([t[:, :1], _tokens(emb.register_tokens, n), t[:, 1:]], axis=1)
    for block in enc.layers:
        h = layer_norm(t, block.norm1)
        t = t + attention(block.attention.attention, h, h, mode) * block.layer_scale1.lambda1
        h = layer_norm(t, block.norm2)
        mlp = block.mlp
        if hasattr(mlp, "weights_in"):  # SwiGLU: identity rule on silu, /2 at the product; CP-LRP: gate constant
            a, b = tf.split(dense(mlp.weights_in, h), 2, axis=-1)
            if mode == "attn":
                f = divide_gradient(identity_rule(tf.nn.silu, a) * b, 2.0)
            else:
                f = tf.nn.silu(tf.stop_gradient(a)) * b
            f = dense(mlp.weights_out, f)
        else:
            f = _mlp(mlp.fc1, mlp.fc2, h)
        t = t + f * block.layer_scale2.lambda1
    return dense(m.get_layer("head"), layer_norm(t, bb.get_layer("layernorm"))[:, 0])


def _table_at_ids(emb):
    return tf.gather(tf.convert_to_tensor(emb.position_embedding.embeddings), tf.convert_to_tensor(emb.position_ids))


def _siglip_forward(m, x, mode):
    enc = m.layers[1]
    emb = enc.embedding
    t = _patches(emb.patch_embedding, x) + _table_at_ids(emb)
    for block in enc.encoder_layers:
        h = layer_norm(t, block.layer_norm1)
        t = t + attention(block.self_attn, h, h, mode)
        t = t + _mlp(block.mlp.fc1, block.mlp.fc2, layer_norm(t, block.layer_norm2))
    t = layer_norm(t, enc.post_layer_norm)
    pool = enc.head  # the probe is a constant of the model: no input, no relevance
    h = attention(pool.attention, _tokens(pool.probe, x.shape[0]), t, mode)
    h = h + _mlp(pool.mlp.fc1, pool.mlp.fc2, layer_norm(h, pool.layer_norm))
    return dense(m.get_layer("head"), h[:, 0])


def _clip_forward(m, x, mode):
    enc = m.layers[1]
    emb = enc.embedding
    t = tf.concat([_tokens(emb.class_embedding, x.shape[0]), _patches(emb.patch_embedding, x)], axis=1)
    t = layer_norm(t + _table_at_ids(emb), enc.pre_layer_norm)
    for block in enc.encoder_layers:
        h = layer_norm(t, block.layer_norm_1)
        t = t + attention(block.attention, h, h, mode, causal=block.use_causal_mask)
        f = identity_rule(block.activation, dense(block.dense_1, layer_norm(t, block.layer_norm_2)))
        t = t + dense(block.dense_2, f)
    return dense(m.get_layer("head"), layer_norm(t, enc.layer_norm)[:, 0])


FORWARDS = {"deit": _deit_forward, "dinov2": _dinov2_forward, "dinov2_swiglu": _dinov2_forward,
            "siglip": _siglip_forward, "clip": _clip_forward}


def lxt_relevance(tower, m, X, target, mode):
    """LXT's AttnLRP (``mode`` "attn") or CP-LRP ("cp") of logit ``target``: the image times
    the gradient of the modified forward pass; and that pass's logits."""
    x = tf.constant(X)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = FORWARDS[tower](m, x, mode)
        y = tf.reduce_sum(logits[:, target])
    return (x * tape.gradient(y, x)).numpy(), logits.numpy()


@pytest.mark.parametrize("method", ["attn_lrp", "cp_lrp"])
@pytest.mark.parametrize("tower", sorted(TOWERS))
def test_equals_lxt(tower, method):
    m, X = model(tower), images()
    ref, logits = lxt_relevance(tower, m, X, 1, "attn" if method == "attn_lrp" else "cp")
    # the reference computes the same model (float32, other op order)
    np.testing.assert_allclose(logits, m(X).numpy(), rtol=1e-5, atol=1e-5)
    r = lrpgraph.create_analyzer(method, m, epsilon=1e-12).analyze(X, 1)
    # float32 reverse passes in different orders: 1e-4 of the map's maximum
    np.testing.assert_allclose(r, ref, atol=1e-4 * np.abs(ref).max())
    assert np.abs(ref).max() > 0


def test_channels_first_names_the_cause():
    """A channels_first patch embedding is not described (as for the ViT): the reason says
    how to get a channels_last model with the same weights."""
    encoder = keras_hub.models.CLIPVisionEncoder(patch_size=8, image_shape=(3, 16, 16), data_format="channels_first",
                                                 **SMALL)
    inp = keras.Input((3, 16, 16))
    m = keras.Model(inp, keras.layers.Dense(2)(encoder({"images": inp})[:, 0]))
    report = lrpgraph.check(m, presets=("attn_lrp",))
    assert [u["class_name"] for u in report.unsupported] == ["CLIPVisionEmbedding"], str(report)
    with pytest.raises(lrpgraph.UnsupportedLayerError, match="channels_first.*data_format='channels_last'"):
        lrpgraph.create_analyzer("attn_lrp", m)


def test_dinov2_stage_outputs_are_the_encoder_s():
    """DINOv2's encoder returns (x, {"stage1": ..., "stage2": ...}); its description returns
    the same structure, so a head on an intermediate stage (``backbone.pyramid_outputs``)
    reproduces the logits and is explained."""
    bb = model("dinov2").layers[1]
    inp = keras.Input(IMAGE, name="image")
    stage1 = keras.Model(bb.inputs, bb.pyramid_outputs["stage1"])({"images": inp})
    m = keras.Model(inp, keras.layers.Dense(CLASSES, name="head1")(stage1[:, 0]))
    X = images()
    # float32, same ops: 1e-5 as above
    np.testing.assert_allclose(lrpgraph.prepare(m).logits(X), m(X).numpy(), rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(lrpgraph.create_analyzer("cp_lrp", m).analyze(X, 0)))


def test_an_undescribed_output_is_named():
    """DeiT's encoder also returns the hidden states and attention scores it was not asked
    for (empty tensors); its description computes the first output only, and a model using
    another one gets an error naming the layer and the output."""
    hub_ops.register()  # what prepare() and check() do first
    bb = model("deit").backbone
    inp = keras.Input(IMAGE)
    h, states, _ = bb.get_layer("deit_encoder")(bb.get_layer("deit_patching_and_embedding")(inp))
    m = keras.Model(inp, [h, states])
    with pytest.raises(NotImplementedError, match="output 1 of DeiTEncoder 'deit_encoder'.*computes 1 output"):
        RW.canonicalize(G.to_graph(m))
