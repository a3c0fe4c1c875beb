"""Vision transformers (issue 14, vision half): the shipped shapes ViT is supported,
attention rollout equals a hand-computed rollout of Keras's own attention scores, and
on the trained ViT attn_lrp is more faithful (AOPC, region perturbation MoRF) than
gradient x input but not than attention rollout (measured and explained in
docs/methods/transformers.md)."""

import numpy as np
import pytest

import keras
from keras import layers as L

import lrpgraph
from lrpgraph import assets
from lrpgraph.evaluation import synthetic
from lrpgraph.evaluation import region_perturbation
from lrpgraph.methods.rollout import AttentionRollout, attention_softmax_nodes
from vit_layers import ClassToken


# ---- attention rollout against a hand-computed rollout ---------------------------------

def _tiny_vit(cls_token=False, size=(4, 6), patch=2, dim=8, depth=2, seed=0):
    """(H, W, 1) image -> patches -> EinsumDense -> [class token] -> depth x (MHA + Add) -> head."""
    keras.utils.set_random_seed(seed)
    h, w = size
    gh, gw = h // patch, w // patch
    inp = keras.Input((h, w, 1))
    x = L.Reshape((gh, patch, gw, patch, 1))(inp)
    x = L.EinsumDense("bhiwjc,ijcd->bhwd", output_shape=(gh, gw, dim), bias_axes="hwd", name="embed")(x)
    x = L.Reshape((gh * gw, dim))(x)
    if cls_token:
        x = ClassToken(name="cls")(x)
    for i in range(depth):
        x = L.Add()([x, L.MultiHeadAttention(2, 4, name=f"mha{i}")(x, x)])
    x = x[:, 0] if cls_token else L.GlobalAveragePooling1D()(x)
    model = keras.Model(inp, L.Dense(3, name="head")(x))
    rng = np.random.default_rng(seed)
    for v in model.weights:  # sharp, non-uniform attention
        v.assign(rng.normal(size=v.shape).astype("float32"))
    return model, rng.normal(size=(3, h, w, 1)).astype("float32")


def _keras_attention_weights(model, X, depth):
    """Each MultiHeadAttention's weights (B, heads, T, T), from Keras itself."""
    out = []
    for i in range(depth):
        mha = model.get_layer(f"mha{i}")
        inp = keras.Model(model.inputs, mha.input[0] if isinstance(mha.input, (list, tuple)) else mha.input)([X])
        _, scores = mha(inp, inp, return_attention_scores=True)
        out.append(np.asarray(scores))
    return out


def _numpy_rollout(weights):
    roll = np.eye(weights[0].shape[-1])[None]
    for a in weights:
        a = 0.5 * a.mean(axis=1) + 0.5 * np.eye(a.shape[-1])
        roll = (a / a.sum(-1, keepdims=True)) @ roll
    return roll


@pytest.mark.parametrize("cls_token", [False, True])
def test_rollout_equals_a_hand_computed_rollout(cls_token, request):
    if cls_token:
        request.getfixturevalue("vit_layers")
    model, X = _tiny_vit(cls_token)
    an = lrpgraph.create_analyzer("attention_rollout", model)
    assert isinstance(an, AttentionRollout)
    assert an.nodes == ["mha0/softmax", "mha1/softmax"]
    assert an.grid == (2, 3) and an.prefix == (1 if cls_token else 0)
    assert an.head == ("cls" if cls_token else "mean")
    r = an.analyze(X)
    assert r.shape == (3, 4, 6, 1)
    roll = _numpy_rollout(_keras_attention_weights(model, X, 2))
    rel = roll[:, 0, 1:] if cls_token else roll.mean(axis=1)
    expected = np.repeat(np.repeat(rel.reshape(3, 2, 3), 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(r[..., 0], expected, rtol=1e-5, atol=1e-7)
    # the maps are not trivially uniform (the test would notice a wrong layer order)
    assert rel.std(axis=1).min() > 1e-3
    wrong_order = _numpy_rollout(_keras_attention_weights(model, X, 2)[::-1])
    wrong = wrong_order[:, 0, 1:] if cls_token else wrong_order.mean(axis=1)
    assert np.abs(wrong - rel).max() > 1e-4


def test_rollout_of_uniform_attention_is_uniform_in_closed_form():
    """Zero query/key kernels and biases: scores 0, A = 1/T; one layer: rollout =
    0.5/T + 0.5 I, mean over rows = 1/T for every token."""
    model, X = _tiny_vit(depth=1)
    mha = model.get_layer("mha0")
    for v in mha.query_dense.weights + mha.key_dense.weights:
        v.assign(np.zeros(v.shape, "float32"))
    r = lrpgraph.create_analyzer("attention_rollout", model).analyze(X)
    np.testing.assert_allclose(r, 1 / 6, rtol=1e-6)
    r_cls = lrpgraph.create_analyzer("attention_rollout", model, head="cls", prefix_tokens=0).analyze(X)
    # row 0 of 0.5/T + 0.5 I: token 0 gets 0.5 + 0.5/6, the others 0.5/6
    np.testing.assert_allclose(r_cls[0, :2, :2, 0], 0.5 + 0.5 / 6, rtol=1e-6)
    np.testing.assert_allclose(r_cls[0, 2:, :, 0], 0.5 / 6, rtol=1e-6)


def test_rollout_bad_input_is_a_clear_error():
    inp = keras.Input((8, 8, 3))
    cnn = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(inp))))
    with pytest.raises(ValueError, match="no attention weights.*MultiHeadAttention"):
        lrpgraph.create_analyzer("attention_rollout", cnn)
    model, _ = _tiny_vit()
    with pytest.raises(ValueError, match="head must be"):
        lrpgraph.create_analyzer("attention_rollout", model, head="first")
    with pytest.raises(ValueError, match="grid .4, 4. and prefix_tokens"):
        lrpgraph.create_analyzer("attention_rollout", model, grid=(4, 4))


# ---- the shipped shapes ViT -------------------------------------------------------------

@pytest.fixture(scope="module")
def vit():
    return assets.load_shapes_vit()


@pytest.fixture(scope="module")
def shapes_images():
    x, y, _ = synthetic.single_object_dataset(24, 64, seed=4242)
    return x, y


def test_shapes_vit_is_supported_and_accurate(vit, shapes_images):
    report = lrpgraph.check(vit, presets=("attn_lrp", "attn_lrp.gamma", "cp_lrp", "input_t_gradient"))
    assert report.ok and not report.unsupported, str(report)
    assert report.logits_rel_diff < 1e-5
    x, y = shapes_images
    assert (vit.predict(x, verbose=0).argmax(1) == y).mean() >= 0.8
    assert len(attention_softmax_nodes(lrpgraph.prepare(vit).graph)) == 3


def test_missing_vit_file_names_the_script(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_vit.py"):
        assets.load_shapes_vit(tmp_path / "nope.keras")


@pytest.fixture(scope="module")
def vit_aopc(vit, shapes_images):
    """AOPC (region perturbation, MoRF, 8x8 patches = the ViT's, uniform-noise baseline,
    every region) of each method's maps on the same images, target = the true class."""
    x, y = shapes_images
    maps = {
        "attn_lrp": lrpgraph.create_analyzer("attn_lrp", vit).analyze(x, y),
        "attn_lrp.gamma": lrpgraph.create_analyzer("attn_lrp.gamma", vit).analyze(x, y),
        "cp_lrp": lrpgraph.create_analyzer("cp_lrp", vit).analyze(x, y),
        "input_t_gradient": lrpgraph.create_analyzer("input_t_gradient", vit).analyze(x, y),
        "attention_rollout": lrpgraph.create_analyzer("attention_rollout", vit).analyze(x, y),
        "integrated_gradients": lrpgraph.create_analyzer("integrated_gradients", vit, steps=16).analyze(x, y),
    }
    aopc = {k: float(region_perturbation(vit, x, m, y, patch=8, steps=16).aopc.mean()) for k, m in maps.items()}
    return maps, aopc


def test_gradient_methods_run_on_the_vit(vit_aopc, shapes_images):
    maps, _ = vit_aopc
    x, _ = shapes_images
    for name in ("attn_lrp", "input_t_gradient", "integrated_gradients"):
        assert maps[name].shape == x.shape and np.all(np.isfinite(maps[name])), name
        assert np.abs(maps[name]).sum() > 0, name
    assert maps["attention_rollout"].shape == x.shape[:3] + (1,)


def test_attn_lrp_is_more_faithful_than_gradient_x_input(vit_aopc):
    """The first half of the issue's statement, for the preset named attn_lrp (AttnLRP as
    LXT computes it: epsilon ~ LRP-0 on the linear layers).  Measured (shipped model,
    24 images, seed 4242, target = the true class): attn_lrp 4.94, input_t_gradient 4.79
    (+3 %), integrated_gradients 4.66.  On 240 other images (seed 777) the margin is wide:
    4.95 against 3.93 (paired standard error 0.16), docs/methods/transformers.md."""
    _, aopc = vit_aopc
    print("AOPC (MoRF, 8x8, 16 steps):", aopc)
    assert aopc["attn_lrp"] > aopc["input_t_gradient"], aopc
    assert aopc["attn_lrp"] > aopc["integrated_gradients"], aopc
    assert aopc["attn_lrp.gamma"] > aopc["attn_lrp"], aopc  # gamma denoises (5.47; 5.27 on 240 images)


def test_attn_lrp_is_not_more_faithful_than_rollout_on_the_shapes_vit(vit_aopc):
    """The second half of the issue's statement does not hold, and the test asserts the
    truth: attn_lrp 4.94 < attention_rollout 5.19 here, 4.95 < 5.47 on 240 other images
    (paired se 0.15).  attn_lrp lowers the logit more than rollout with the first patch,
    then falls behind: it gives 39 % of the patches the object touches a negative sum, so
    MoRF replaces them last, yet replacing a patch with noise lowers the logit wherever it
    is (by 1.4 on average, background included); rollout is non-negative.  Ranking by
    attn_lrp's positive part gives 5.42 (240 images).  docs/methods/transformers.md.
    attn_lrp.gamma is above rollout on these 24 images (5.47) but not on the 240 (5.27 vs
    5.47, se 0.12), so no LRP preset is asserted to beat rollout."""
    _, aopc = vit_aopc
    assert aopc["attn_lrp"] < aopc["attention_rollout"], aopc
    assert aopc["cp_lrp"] < aopc["attention_rollout"], aopc


# ---- KerasHub's ViT (random weights, built from a config) ------------------------------

def _keras_hub_vit(pooling="token", zero_biases=False, seed=0):
    keras_hub = pytest.importorskip("keras_hub")

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2,
                                            hidden_dim=16, mlp_dim=32)
    model = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=4, pooling=pooling, activation=None)
    if zero_biases:  # everything that absorbs relevance as a bias does
        for v in model.weights:
            if v.path.split("/")[-1] in ("bias", "beta", "class_token", "embeddings"):
                v.assign(np.zeros(v.shape, "float32"))
    X = np.random.default_rng(seed).random((3, 32, 32, 3)).astype("float32")
    return model, X


@pytest.mark.parametrize("pooling", ["token", "gap"])
def test_keras_hub_vit_is_supported_and_exact(pooling):
    """The KerasHub classifier as it is: its ViTPatchingAndEmbedding, ViTEncoder and
    ViTEncoderBlocks expand into their sublayers (lrpgraph.engine.ops.keras_hub), so check lists
    every node as supported and the rewritten graph gives the model's logits."""
    model, X = _keras_hub_vit(pooling)
    report = lrpgraph.check(model, presets=("attn_lrp", "cp_lrp", "lrp.epsilon", "input_t_gradient"))
    assert report.ok and not report.unsupported and report.logits_rel_diff < 1e-5, str(report)
    assert report.kinds()["softmax"] == 2 and "nested" not in report.kinds()  # one attention per block
    prepared = lrpgraph.prepare(model)
    np.testing.assert_allclose(prepared.logits(X), model(X).numpy(), rtol=1e-5, atol=1e-6)
    for method in ("attn_lrp", "cp_lrp"):
        r = lrpgraph.create_analyzer(method, model).analyze(X, 1)
        assert r.shape == X.shape and np.all(np.isfinite(r)) and np.abs(r).sum() > 0, method
    an = lrpgraph.create_analyzer("attention_rollout", model)
    assert an.prefix == 1 and an.grid == (4, 4)
    assert an.analyze(X).shape == (3, 32, 32, 1)


@pytest.mark.parametrize("pooling", ["token", "gap"])
def test_keras_hub_vit_maps_equal_those_of_expand_vit(pooling):
    """Behaviour change (issue 14): the KerasHub model is explained directly; its maps are
    those of expand_vit(model), the same expansion as a standalone Keras model
    (measured: identical)."""
    from lrpgraph.engine.ops.keras_hub import expand_vit

    model, X = _keras_hub_vit(pooling)
    expanded = expand_vit(model)
    np.testing.assert_allclose(expanded(X).numpy(), model(X).numpy(), rtol=1e-5, atol=1e-6)
    assert {id(v) for v in expanded.weights} <= {id(v) for v in model.weights}  # shared, not copied
    for method in ("attn_lrp", "cp_lrp", "lrp.epsilon"):
        want = lrpgraph.create_analyzer(method, expanded).analyze(X, 1)
        got = lrpgraph.create_analyzer(method, model).analyze(X, 1)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max(), err_msg=method)


FRESH_VIT_CHECK = """
import keras_hub, lrpgraph
backbone = keras_hub.models.ViTBackbone(image_shape=(16, 16, 3), patch_size=8, num_layers=1, num_heads=2,
                                        hidden_dim=8, mlp_dim=16)
report = lrpgraph.check(keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=2), presets=("attn_lrp",))
print("SUPPORTED" if report.ok else report)
"""


def test_check_first_in_a_fresh_process_knows_the_vit():
    """lrpgraph.check registers the KerasHub descriptions itself, as prepare() does (the
    in-process tests above cannot show it: an earlier prepare() has registered them)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("keras_hub")
    proc = subprocess.run([sys.executable, "-c", FRESH_VIT_CHECK], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0 and proc.stdout.strip().endswith("SUPPORTED"), proc.stdout + proc.stderr


def test_keras_hub_vit_backbone_is_checked_and_its_output_named():
    """The backbone alone: every node supported, its (N, tokens, hidden) output reproduced;
    explaining it asks for a score vector (a classifier)."""
    model, X = _keras_hub_vit()
    report = lrpgraph.check(model.backbone, presets=("attn_lrp", "cp_lrp"), x=X)
    assert report.ok, str(report)
    with pytest.raises(ValueError, match=r"\(batch, classes\) score vector.*\(None, 17, 16\)"):
        lrpgraph.create_analyzer("attn_lrp", model.backbone)


def test_keras_hub_vit_channels_first_names_the_cause():
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.ViTBackbone(image_shape=(3, 32, 32), patch_size=8, num_layers=1, num_heads=2,
                                            hidden_dim=16, mlp_dim=32, data_format="channels_first")
    model = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=4, activation=None)
    report = lrpgraph.check(model, presets=("attn_lrp",))
    assert [u["class_name"] for u in report.unsupported] == ["ViTPatchingAndEmbedding"], str(report)
    with pytest.raises(lrpgraph.UnsupportedLayerError, match="channels_first.*data_format='channels_last'"):
        lrpgraph.create_analyzer("attn_lrp", model)


def test_keras_hub_vit_conservation():
    """Biases, LayerNorm betas, the class token and the position table zeroed: cp_lrp
    conserves to 1e-4 relative; attn_lrp's softmax rule does not (measured, seed 0:
    sum R / logit = 1.03, 1.34, 0.92)."""
    model, X = _keras_hub_vit(zero_biases=True)
    logits = model(X).numpy()[:, 1]
    r = lrpgraph.create_analyzer("cp_lrp", model).analyze(X, 1)
    np.testing.assert_allclose(r.reshape(3, -1).sum(1), logits, rtol=1e-4)
    ratio = lrpgraph.create_analyzer("attn_lrp", model).analyze(X, 1).reshape(3, -1).sum(1) / logits
    assert np.max(np.abs(ratio - 1)) > 0.05
