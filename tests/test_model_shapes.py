"""Real-world model shapes beyond a chain of layers: two inputs, two outputs, a nested
model, a shared layer, Keras ops used directly, and a Lambda layer.

The numbers asserted: on bias-free ReLU networks LRP-0 (``lrp.z``) equals gradient x
input exactly and conserves the target logit; ``gradient`` equals tf.GradientTape's;
``lrpgraph.check`` reproduces the logits.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras import layers

import lrpgraph
from lrpgraph.rules import Gradient


def _x(shape, seed=0, n=3):
    return np.random.default_rng(seed).standard_normal((n,) + tuple(shape)).astype("float32")


def _tape_grad(model, xs, target, index=0):
    xs = [tf.constant(a) for a in xs]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        y = model(xs if len(xs) > 1 else xs[0])
        y = y[index] if isinstance(y, (list, tuple)) else y
        z = tf.reduce_sum(y[:, target])
    return [g.numpy() for g in tape.gradient(z, xs)]


def _logits(analyzer, x):
    return analyzer.predict_logits(x)


# ---- two inputs -------------------------------------------------------------------

def two_input_model():
    keras.utils.set_random_seed(1)
    a = keras.Input((8, 8, 2), name="image")
    b = keras.Input((5,), name="meta")
    h = layers.Conv2D(4, 3, activation="relu", use_bias=False, name="conv")(a)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    m = layers.Dense(4, activation="relu", use_bias=False, name="meta_fc")(b)
    h = layers.Concatenate(name="cat")([h, m])
    out = layers.Dense(3, use_bias=False, name="logits")(h)
    return keras.Model([a, b], out, name="two_inputs")


def test_two_inputs_lrp0_is_gradient_times_input_and_conserves():
    model = two_input_model()
    xs = [_x((8, 8, 2)), _x((5,), seed=1)]
    an = lrpgraph.Analyzer(model, "lrp.z")
    maps = an.analyze(xs, target=2)
    assert isinstance(maps, list) and [m.shape for m in maps] == [a.shape for a in xs]
    grads = _tape_grad(model, xs, 2)
    for m, g, a in zip(maps, grads, xs):
        np.testing.assert_allclose(m, g * a, rtol=1e-4, atol=1e-6)
    total = maps[0].reshape(3, -1).sum(1) + maps[1].sum(1)
    np.testing.assert_allclose(total, _logits(an, xs)[:, 2], rtol=1e-4, atol=1e-6)
    assert lrpgraph.check(model).logits_rel_diff <= 1e-5


# ---- two outputs ------------------------------------------------------------------

def two_output_model():
    keras.utils.set_random_seed(2)
    a = keras.Input((6,), name="x")
    h = layers.Dense(8, activation="relu", use_bias=False, name="trunk")(a)
    y1 = layers.Dense(3, use_bias=False, name="species")(h)
    y2 = layers.Dense(2, activation="softmax", use_bias=False, name="age")(h)
    return keras.Model(a, {"species": y1, "age": y2}, name="two_outputs")


@pytest.mark.parametrize("output,index,classes", [("species", 0, 3), ("age", 1, 2)])
def test_two_outputs_explain_either_by_name(output, index, classes):
    model = two_output_model()
    x = _x((6,))
    an = lrpgraph.Analyzer(model, "lrp.z", output=output)
    assert an.num_classes == classes
    r = an.analyze(x, target=1)
    layer = model.get_layer(output)
    h = model.get_layer("trunk")(x)
    logits = (h @ layer.kernel).numpy()  # softmax stripped: the pre-activation
    np.testing.assert_allclose(r.sum(1), logits[:, 1], rtol=1e-4, atol=1e-6)
    report = lrpgraph.check(model, output=output)
    assert report.logits_rel_diff <= 1e-5 and report.output == output


def test_two_outputs_unknown_name_lists_the_outputs():
    with pytest.raises(ValueError, match="species"):
        lrpgraph.Analyzer(two_output_model(), "lrp.z", output="height")


# ---- nested model -------------------------------------------------------------------

def test_nested_model_equals_its_flat_twin():
    keras.utils.set_random_seed(3)
    inner = keras.Sequential([keras.Input((6, 6, 3)), layers.Conv2D(4, 3, activation="relu", name="c1"),
                              layers.Flatten(name="flat")], name="backbone")
    a = keras.Input((6, 6, 3))
    out = layers.Dense(5, name="head")(inner(a))
    nested = keras.Model(a, out, name="nested")
    b = keras.Input((6, 6, 3))
    flat = keras.Model(b, nested.get_layer("head")(inner.get_layer("flat")(inner.get_layer("c1")(b))))
    x = _x((6, 6, 3))
    for method in ("lrp.epsilon", "lrp.z_plus", "gradient"):
        r1 = lrpgraph.create_analyzer(method, nested).analyze(x, target=4)
        r2 = lrpgraph.create_analyzer(method, flat).analyze(x, target=4)
        np.testing.assert_allclose(r1, r2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(lrpgraph.create_analyzer("gradient", nested).analyze(x, target=4),
                               _tape_grad(nested, [x], 4)[0], rtol=1e-4, atol=1e-6)
    report = lrpgraph.check(nested)
    assert any(n.name.startswith("backbone/") for n in report.nodes)
    assert report.logits_rel_diff <= 1e-5


# ---- shared layer --------------------------------------------------------------------

def test_shared_layer_used_twice():
    keras.utils.set_random_seed(4)
    a = keras.Input((4,))
    b = keras.Input((4,))
    shared = layers.Dense(6, activation="relu", use_bias=False, name="shared")
    h = layers.Add(name="join")([shared(a), shared(b)])
    out = layers.Dense(3, use_bias=False, name="logits")(h)
    model = keras.Model([a, b], out)
    xs = [_x((4,)), _x((4,), seed=5)]
    an = lrpgraph.Analyzer(model, "lrp.z")
    names = set(an.graph.nodes)
    assert {"shared", "shared#1"} <= names  # one node per call
    maps = an.analyze(xs, target=0)
    grads = _tape_grad(model, xs, 0)
    for m, g, x in zip(maps, grads, xs):
        np.testing.assert_allclose(m, g * x, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(maps[0].sum(1) + maps[1].sum(1), _logits(an, xs)[:, 0], rtol=1e-4, atol=1e-6)


# ---- Keras ops in a functional model ---------------------------------------------------

def ops_model():
    keras.utils.set_random_seed(5)
    a = keras.Input((10,))
    h = layers.Dense(12, use_bias=False, name="fc1")(a)
    g = layers.Dense(12, use_bias=False, name="fc2")(a)
    h = keras.ops.relu(h) + keras.ops.relu(g)          # keras ops: relu, x + y
    h = h[:, 2:10] * 0.5                                # slicing, a constant scale
    out = layers.Dense(4, use_bias=False, name="logits")(h)
    return keras.Model(a, out, name="ops")


def test_keras_ops_in_functional_model():
    model = ops_model()
    x = _x((10,))
    report = lrpgraph.check(model)
    assert not report.unsupported and report.logits_rel_diff <= 1e-5
    kinds = {n.kind for n in report.nodes}
    assert {"elementwise/relu", "add/add", "linear/const_multiply"} <= kinds
    assert any(k.startswith("reshape/") for k in kinds)  # the slice
    an = lrpgraph.Analyzer(model, "lrp.z")
    r = an.analyze(x, target=3)
    np.testing.assert_allclose(r, _tape_grad(model, [x], 3)[0] * x, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r.sum(1), _logits(an, x)[:, 3], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(lrpgraph.create_analyzer("gradient", model).analyze(x, target=3),
                               _tape_grad(model, [x], 3)[0], rtol=1e-4, atol=1e-6)


# ---- Lambda layer -------------------------------------------------------------------------

def lambda_model():
    keras.utils.set_random_seed(6)
    a = keras.Input((5,))
    h = layers.Dense(6, use_bias=False, name="fc")(a)
    h = layers.Lambda(lambda t: t * keras.ops.sigmoid(t), name="my_swish")(h)
    out = layers.Dense(3, use_bias=False, name="logits")(h)
    return keras.Model(a, out)


def test_lambda_layer_is_a_clear_error_naming_it():
    model = lambda_model()
    with pytest.raises(lrpgraph.UnsupportedLayerError, match="my_swish.*Lambda.*overrides"):
        lrpgraph.Analyzer(model, "lrp.epsilon")
    report = lrpgraph.check(model)
    assert [u["node"] for u in report.unsupported] == ["my_swish"]
    assert "Lambda" in report.unsupported[0]["reason"] and "overrides" in report.unsupported[0]["fix"]
    assert not report.ok and "UNSUPPORTED" in str(report)
    assert report.logits_rel_diff <= 1e-5  # the graph itself still runs


def test_lambda_layer_with_a_user_rule():
    model = lambda_model()
    x = _x((5,))
    an = lrpgraph.Analyzer(model, "gradient", overrides={"my_swish": Gradient()})
    np.testing.assert_allclose(an.analyze(x, target=1), _tape_grad(model, [x], 1)[0], rtol=1e-4, atol=1e-6)
    report = lrpgraph.check(model, presets="lrp.epsilon", overrides={"my_swish": Gradient()})
    assert report.ok and report.nodes[1].rules["lrp.epsilon"].__class__ is Gradient
