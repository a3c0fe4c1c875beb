"""The pieces keras.applications need, each tested alone: constant arithmetic ops,
folding Rescaling/Normalization at the input, fusing MobileNetV3's hard sigmoid,
folding ConvNeXt's layer scale, InceptionResNetV2's scaled residual, the LayerNorm
rule (Ali et al. 2022) and the model-level check."""

import importlib

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras import layers

import lrpgraph
from lrpgraph.engine import graph as G
from lrpgraph.engine.compile import run_forward
from lrpgraph.engine.ops import Linear, replace
from lrpgraph.engine.rewrite import fold_batchnorm, fold_input_affine, fuse_hard_sigmoid, mark_gates
from lrpgraph.rules import LayerNorm
from lrpgraph.engine.context import Context


def _run(g, x):
    return run_forward(g, [tf.constant(x)])[g.graph["outputs"][0]].numpy()


def _x(shape, seed=0, n=2, low=None, high=None):
    rng = np.random.default_rng(seed)
    if low is not None:
        return rng.uniform(low, high, (n,) + tuple(shape)).astype("float32")
    return rng.standard_normal((n,) + tuple(shape)).astype("float32")


# ---- constant arithmetic -------------------------------------------------------------

@pytest.mark.parametrize("fn,k,b", [
    (lambda t: t + 3.0, 1.0, 3.0), (lambda t: 3.0 + t, 1.0, 3.0), (lambda t: t - 2.0, 1.0, -2.0),
    (lambda t: 2.0 - t, -1.0, 2.0), (lambda t: t * 0.25, 0.25, None), (lambda t: t / 4.0, 0.25, None),
])
def test_constant_arithmetic_is_an_elementwise_linear_op(fn, k, b):
    a = keras.Input((3,))
    model = keras.Model(a, fn(a))
    g = G.to_graph(model)
    (n,) = [n for n in g.nodes if g.nodes[n]["op"].kind != "input"]
    op = g.nodes[n]["op"]
    assert isinstance(op, Linear) and op.subkind.startswith("const_")
    assert float(op.kernel()) == pytest.approx(k)
    assert (op.bias is None) if b is None else float(op.bias()) == pytest.approx(b)
    x = _x((3,))
    np.testing.assert_allclose(_run(g, x), model(x).numpy(), rtol=1e-6)


def test_constant_divided_by_tensor_stays_unknown():
    a = keras.Input((3,))
    g = G.to_graph(keras.Model(a, 1.0 / a))
    assert [g.nodes[n]["op"].kind for n in g.nodes if g.nodes[n]["op"].kind != "input"] == ["unknown"]


# ---- input Rescaling / Normalization folding -------------------------------------------

def preprocessing_model(padding_layer=True, conv_padding="valid", depthwise=False):
    keras.utils.set_random_seed(7)
    a = keras.Input((9, 9, 3))
    h = layers.Rescaling(1 / 255.0, offset=-0.25, name="rescale")(a)
    h = layers.Normalization(mean=[0.4, 0.5, 0.6], variance=[0.04, 0.09, 0.16], name="norm")(h)
    if padding_layer:
        h = layers.ZeroPadding2D(((0, 1), (1, 0)), name="pad")(h)
    if depthwise:
        h = layers.DepthwiseConv2D(3, strides=2, padding=conv_padding, depth_multiplier=2,
                                   bias_initializer="glorot_uniform", name="stem")(h)
    else:
        h = layers.Conv2D(5, 3, strides=2, padding=conv_padding, bias_initializer="glorot_uniform",
                          name="stem")(h)
    h = layers.Flatten()(h)
    return keras.Model(a, layers.Dense(4, name="logits")(h))


@pytest.mark.parametrize("kw", [{}, {"padding_layer": False, "conv_padding": "same"},
                                {"depthwise": True}])
def test_fold_input_affine_keeps_the_function_and_removes_the_affine_ops(kw):
    model = preprocessing_model(**kw)
    g0 = G.to_graph(model)
    g1 = fold_input_affine(g0)
    assert "rescale" not in g1 and "norm" not in g1
    assert g1.nodes["stem"]["folded"] == ["norm", "rescale"]
    x = _x((9, 9, 3), low=0, high=255)
    want = model(x).numpy()
    np.testing.assert_allclose(_run(g1, x), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert "rescale" in g0  # pure: the input graph is untouched
    # the first linear layer now reads the raw input: bounded rules see [0, 255]
    assert lrpgraph.engine.assign.first_layers(g1) == {"stem"}


def test_fold_input_affine_skips_a_branching_affine():
    a = keras.Input((4, 4, 3))
    h = layers.Rescaling(0.5, name="rescale")(a)
    y = layers.Conv2D(2, 1, name="c1")(h) + layers.Conv2D(2, 1, name="c2")(h)
    g = fold_input_affine(G.to_graph(keras.Model(a, y)))
    assert "rescale" in g


def test_bounded_rule_on_folded_stem_conserves_with_raw_range():
    model = preprocessing_model(padding_layer=False, conv_padding="same")
    x = _x((9, 9, 3), low=0, high=255)
    an = lrpgraph.Analyzer(model, "deep_taylor.bounded", low=0.0, high=255.0,
                           overrides={"logits": lrpgraph.rules.Z(bias=False)})
    assert type(an.rules["stem"]).__name__ == "ZBox"
    r = an.analyze(x, target=0)
    z = an.predict_logits(x)[:, 0]
    # z^B ignores the folded bias map and conserves; Z(bias=False) on the logits too
    np.testing.assert_allclose(r.reshape(len(x), -1).sum(1), np.maximum(z, 0), rtol=1e-4, atol=1e-6)
    assert np.all(np.isfinite(r)) and np.any(z > 0)


# ---- hard sigmoid -----------------------------------------------------------------------

def test_fuse_hard_sigmoid_then_gate_is_marked():
    a = keras.Input((4, 4, 6))
    gate = layers.GlobalAveragePooling2D(keepdims=True)(a)
    gate = layers.ReLU(6.0)(gate + 3.0) * (1.0 / 6.0)  # MobileNetV3's hard_sigmoid
    y = layers.Multiply(name="se")([a, gate])
    model = keras.Model(a, y)
    g = fuse_hard_sigmoid(G.to_graph(model))
    kinds = [(g.nodes[n]["op"].kind, g.nodes[n]["op"].subkind) for n in G.topo_order(g)]
    assert ("elementwise", "hard_sigmoid") in kinds
    assert not any(k == "linear" for k, _ in kinds) and not any(s == "relu6" for _, s in kinds)
    x = _x((4, 4, 6)) * 4
    np.testing.assert_allclose(_run(g, x), model(x).numpy(), rtol=1e-6, atol=1e-6)
    g = mark_gates(g)
    assert g.nodes["se"]["op"].gate_slot == 1


# ---- layer scale and the scaled residual ---------------------------------------------------

def test_layer_scale_folds_into_the_dense_before_it():
    from keras.src.applications.convnext import LayerScale

    keras.utils.set_random_seed(8)
    a = keras.Input((3, 3, 4))
    h = layers.Dense(5, bias_initializer="glorot_uniform", name="pw")(a)
    ls = LayerScale(0.5, 5, name="scale")
    h = ls(h)
    ls.gamma.assign(np.linspace(-1, 2, 5).astype("float32"))
    model = keras.Model(a, layers.Add()([h, layers.Dense(5, name="skip")(a)]))
    g0 = G.to_graph(model)
    assert g0.nodes["scale"]["op"].subkind == "layer_scale"
    g1 = fold_batchnorm(g0)
    assert "scale" not in g1 and g1.nodes["pw"]["folded"] == ["scale"]
    x = _x((3, 3, 4))
    np.testing.assert_allclose(_run(g1, x), model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_inception_resnet_scaled_residual_splits_relevance_by_contribution():
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    a, b = keras.Input((3,)), keras.Input((3,))
    model = keras.Model([a, b], CustomScaleLayer(0.2, name="mix")([a, b]))
    g = G.to_graph(model)
    op = g.nodes["mix"]["op"]
    assert (op.kind, op.subkind) == ("add", "scaled")
    x0 = np.array([[1.0, 2.0, -1.0]], "float32")
    x1 = np.array([[5.0, -5.0, 10.0]], "float32")
    y = x0 + 0.2 * x1
    R = np.array([[1.0, 2.0, 3.0]], "float32")
    rule = lrpgraph.rules.Z()
    r0, r1 = rule.backward(Context(op, [tf.constant(x0), tf.constant(x1)], tf.constant(y), name="mix"),
                           tf.constant(R))
    np.testing.assert_allclose(r0.numpy(), R * x0 / y, rtol=1e-6)
    np.testing.assert_allclose(r1.numpy(), R * 0.2 * x1 / y, rtol=1e-6)


# ---- LayerNorm rule ---------------------------------------------------------------------------

def _layernorm_node(shape, **kw):
    keras.utils.set_random_seed(9)
    a = keras.Input(shape)
    ln = layers.LayerNormalization(name="ln", **kw)
    model = keras.Model(a, ln(a))
    ln.gamma.assign(np.linspace(0.5, 1.5, shape[-1]).astype("float32"))
    ln.beta.assign(np.linspace(-0.2, 0.3, shape[-1]).astype("float32"))
    g = G.to_graph(model)
    return g.nodes["ln"]["op"], ln, model


def test_layernorm_rule_matches_hand_formula_and_conserves():
    op, ln, model = _layernorm_node((5,), epsilon=1e-3)
    assert op.kind == "layernorm"
    x = np.array([[1.0, -2.0, 0.5, 3.0, 0.25]], "float32")
    R = np.array([[0.3, -0.1, 0.2, 0.5, 0.1]], "float32")
    y = model(x).numpy()
    r = LayerNorm(epsilon=1e-9).backward(Context(op, [tf.constant(x)], tf.constant(y), name="ln", layer=ln),
                                         tf.constant(R))[0].numpy()
    # hand formula: z_j = gamma_j (x_j - mean) / sigma, R_i = x_i sum_j J_ji R_j / z_j
    gamma = ln.gamma.numpy()
    sigma = np.sqrt(x.var() + 1e-3)
    z = gamma * (x[0] - x.mean()) / sigma
    J = gamma[:, None] * (np.eye(5) - 1 / 5) / sigma  # J[j, i] = dz_j / dx_i
    want = x[0] * (J.T @ (R[0] / z))
    np.testing.assert_allclose(r[0], want, rtol=1e-4)
    assert r.sum() == pytest.approx(R.sum(), rel=1e-5)  # conservative (beta ignored)
    # bias=True divides by the full output: beta absorbs its share
    rb = LayerNorm(epsilon=1e-9, bias=True).backward(
        Context(op, [tf.constant(x)], tf.constant(y), name="ln", layer=ln), tf.constant(R))[0].numpy()
    assert rb.sum() == pytest.approx(float((R[0] * z / y[0]).sum()), rel=1e-4)


def test_layernorm_in_every_lrp_preset_and_conserving_in_a_model():
    keras.utils.set_random_seed(10)
    a = keras.Input((4, 4, 6))
    h = layers.Conv2D(8, 1, use_bias=False, name="c")(a)
    h = layers.LayerNormalization(center=False, name="ln")(h)
    h = layers.GlobalAveragePooling2D()(h)
    model = keras.Model(a, layers.Dense(3, use_bias=False, name="logits")(h))
    for name, preset in lrpgraph.rules.PRESETS.items():
        if name.startswith(("lrp", "deep_taylor", "epsilon")):
            assert ("kind:layernorm", ) == tuple(s for s, _ in preset.rules if s == "kind:layernorm"), name
    x = _x((4, 4, 6))
    an = lrpgraph.Analyzer(model, "lrp.epsilon")
    r = an.analyze(x, target=1)
    np.testing.assert_allclose(r.reshape(2, -1).sum(1), an.predict_logits(x)[:, 1], rtol=1e-4)


# ---- check() ----------------------------------------------------------------------------------------

def test_check_report_table_and_data():
    model = preprocessing_model()
    report = lrpgraph.check(model, presets=("lrp.epsilon", "deep_taylor.bounded"))
    assert report.ok and report.logits_rel_diff <= 1e-5 and not report.unsupported
    rows = {n.name: n for n in report.nodes}
    assert type(rows["stem"].rules["deep_taylor.bounded"]).__name__ == "ZBox"
    assert type(rows["logits"].rules["deep_taylor.bounded"]).__name__ == "ZPlus"
    text = str(report)
    assert "stem" in text and "ZBox" in text and "logits reproduced" in text


def test_check_reports_wrong_logits():
    model = preprocessing_model()
    report = lrpgraph.check(model, presets="lrp.epsilon", x=_x((9, 9, 3)))
    assert report.logits_ok
    # a pass that breaks the function must show up: drop the folded stem bias
    check_module = importlib.import_module("lrpgraph.evaluation.check")  # the module, not the function
    g = check_module.canonicalize(G.to_graph(model))
    g.nodes["stem"]["op"] = replace(g.nodes["stem"]["op"], bias=None)
    got = check_module._rewritten_logits(g, g.graph["outputs"][0], set(g.nodes), [_x((9, 9, 3))])
    want = check_module.reference_logits(model, 0, [_x((9, 9, 3))])
    assert np.max(np.abs(got - want)) / np.max(np.abs(want)) > 1e-2


def test_softmax_reference_logits_are_pre_activation():
    keras.utils.set_random_seed(11)
    a = keras.Input((4,))
    model = keras.Model(a, layers.Dense(3, activation="softmax", name="p")(a))
    x = _x((4,))
    z = importlib.import_module("lrpgraph.evaluation.check").reference_logits(model, 0, [x])
    np.testing.assert_allclose(z, x @ model.get_layer("p").kernel.numpy() + model.get_layer("p").bias.numpy(),
                               rtol=1e-5)
