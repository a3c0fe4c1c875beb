"""Custom layers get real LRP rules (iNNvestigate issue #319: custom layers get all-zero
relevance): ``lrpgraph.register_layer`` describes a subclassed Keras layer as an op, and
every preset then treats it as it treats the built-in layer computing the same thing.
docs/rules.md ("Custom layers") holds the example these tests execute."""

import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras import layers as L

import lrpgraph
from lrpgraph.engine import graph as G
from lrpgraph.engine.ops import unregister_layer

DOC = Path(__file__).parent.parent / "docs" / "rules.md"


def _doc_example():
    block = re.search(r"## Custom layers.*?```python\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/rules.md lost its custom-layer example"
    return block.group(1)


@pytest.fixture(scope="module")
def MyDense():
    """The class docs/rules.md defines, registered by running the documented code."""
    ns = {"keras": keras, "tf": tf, "lrpgraph": lrpgraph}
    exec(_doc_example(), ns)  # noqa: S102  (the documented code, verbatim)
    yield ns["MyDense"]
    unregister_layer(ns["MyDense"])


def test_doc_example_is_short():
    assert len(_doc_example().strip().splitlines()) < 15


W1 = np.array([[1.0, -2, 0.5, 1], [2, 1, -1, 0.5], [-1, 1, 2, -1.5]], "float32")
B1 = np.array([0.5, -0.5, 1, 0.25], "float32")
W2 = np.array([[1.0, -1], [-0.5, 1], [1.5, 2], [-1, 0.5]], "float32")
B2 = np.array([0.25, -0.5], "float32")
X = np.array([[1, 2, -1], [2, -1, 1.5], [-0.5, 1, 2]], "float32")
T = np.array([0, 1, 1])


def _nets(MyDense):
    """The same two-layer ReLU net, once with MyDense and once with Dense."""
    a = keras.Input((3,))
    custom = keras.Model(a, MyDense(2, name="d1")(L.ReLU()(MyDense(4, name="d0")(a))))
    b = keras.Input((3,))
    dense = keras.Model(b, L.Dense(2, name="d1")(L.ReLU()(L.Dense(4, name="d0")(b))))
    for m in (custom, dense):
        m.get_layer("d0").set_weights([W1, B1])
        m.get_layer("d1").set_weights([W2, B2])
    return custom, dense


def test_registered_layer_is_a_linear_op_and_supported(MyDense):
    custom, _ = _nets(MyDense)
    g = G.to_graph(custom)
    op = g.nodes["d0"]["op"]
    assert isinstance(op, lrpgraph.ops.Linear) and op.kind == "linear"
    report = lrpgraph.check(custom, presets=("lrp.epsilon", "lrp.z_plus", "deep_taylor.bounded"))
    assert report.ok and not report.unsupported
    rows = {n.name: n for n in report.nodes}
    assert rows["d0"].kind == "linear" and rows["d0"].supported
    assert type(rows["d1"].rules["lrp.z_plus"]).__name__ == "ZPlus"
    assert report.logits_rel_diff < 1e-6


def test_lrp_z_is_gradient_times_input(MyDense):
    """On a ReLU net LRP-0 equals gradient x input (biases included: each z_j carries
    its bias in the denominator, and R_j = z_j * d logit / d z_j by induction)."""
    custom, _ = _nets(MyDense)
    got = lrpgraph.Analyzer(custom, "lrp.z").analyze(X, target=T)
    x = tf.constant(X)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logit = tf.gather(custom(x), T, axis=1, batch_dims=1)
    want = (tape.gradient(logit, x) * x).numpy()
    assert np.abs(want).max() > 0.1  # not all zero (iNNvestigate #319's symptom)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("preset", ["lrp.epsilon", "lrp.z_plus", "lrp.alpha_1_beta_0", "deep_taylor"])
def test_maps_equal_the_dense_model(MyDense, preset):
    custom, dense = _nets(MyDense)
    got = lrpgraph.create_analyzer(preset, custom).analyze(X, target=T)
    want = lrpgraph.create_analyzer(preset, dense).analyze(X, target=T)
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_weights_are_read_not_baked(MyDense):
    """A weight update after compiling changes the map as it changes the Dense model's."""
    custom, dense = _nets(MyDense)
    an_c, an_d = lrpgraph.Analyzer(custom, "lrp.epsilon"), lrpgraph.Analyzer(dense, "lrp.epsilon")
    before = an_c.analyze(X, target=T)
    for m in (custom, dense):
        m.get_layer("d0").set_weights([W1[:, ::-1].copy(), B1])
    after = an_c.analyze(X, target=T)
    assert np.abs(after - before).max() > 0.1
    np.testing.assert_allclose(after, an_d.analyze(X, target=T), rtol=1e-6, atol=1e-6)


def test_subclasses_use_the_registration_and_it_beats_builtins(MyDense):
    class MyDenseChild(MyDense):
        pass

    class ScaledDense(L.Dense):  # a built-in class's subclass, described differently
        pass

    a = keras.Input((3,))
    model = keras.Model(a, ScaledDense(2, name="s")(MyDenseChild(4, name="c")(a)))
    lrpgraph.register_layer(ScaledDense, lambda layer: lrpgraph.ops.Linear(
        forward=lambda x, k: 2.0 * tf.matmul(x, k), kernel=layer.kernel, subkind="scaled"))
    try:
        g = G.to_graph(model)
    finally:
        unregister_layer(ScaledDense)
    assert g.nodes["c"]["op"].kind == "linear"
    assert g.nodes["s"]["op"].subkind == "scaled"
    assert G.to_graph(model).nodes["s"]["op"].subkind == "dense"  # unregistered again


def test_unregistered_custom_layer_names_register_layer_as_the_fix():
    class Opaque(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    a = keras.Input((3,))
    model = keras.Model(a, L.Dense(2)(Opaque(name="opaque")(a)))
    with pytest.raises(lrpgraph.UnsupportedLayerError, match=r"lrpgraph\.register_layer\(Opaque"):
        lrpgraph.Analyzer(model, "lrp.epsilon")


def test_registering_a_non_layer_or_a_non_op_is_a_type_error():
    with pytest.raises(TypeError, match="keras.layers.Layer subclass"):
        lrpgraph.register_layer(int, lambda layer: None)
    with pytest.raises(TypeError, match="keras.layers.Layer subclass"):
        lrpgraph.register_layer(L.Dense(2), lambda layer: None)  # an instance, not the class

    class Bad(keras.layers.Layer):
        def call(self, x):
            return x

    lrpgraph.register_layer(Bad, lambda layer: "linear")
    try:
        a = keras.Input((3,))
        with pytest.raises(TypeError, match=r"registered for Bad returned str.*lrpgraph\.ops\.Linear"):
            G.to_graph(keras.Model(a, Bad()(a)))
    finally:
        unregister_layer(Bad)


def test_a_fixed_array_kernel_is_refused():
    with pytest.raises(TypeError, match="baked"):
        lrpgraph.ops.Linear(forward=lambda x, k: x @ k, kernel=np.ones((3, 2), "float32"))
