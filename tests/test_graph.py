"""lrpgraph.engine.graph: Keras 3 model -> node-per-call networkx MultiDiGraph."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras.src.ops import nn as knn
from keras.src.ops import numpy as knp

import lrpgraph
from lrpgraph.engine import graph as G
from lrpgraph.engine.compile import run_forward
from lrpgraph.engine.rewrite import canonicalize


def forward(g, xs):
    """The graph's outputs on numpy inputs, as numpy arrays."""
    xs = [tf.constant(x) for x in (xs if isinstance(xs, list) else [xs])]
    values = run_forward(g, xs)
    return [values[o].numpy() for o in g.graph["outputs"]]


def test_shared_layer_called_twice_is_two_nodes(rng):
    inp = keras.Input((4,))
    shared = keras.layers.Dense(4, name="shared")
    h1 = shared(inp)
    h2 = shared(h1)
    model = keras.Model(inp, keras.layers.Dense(2, name="head")(h2))
    g = G.to_graph(model)
    assert {"shared", "shared#1"} <= set(g.nodes)
    # named in call order: the first call reads the input, the second the first's output
    assert G.producers(g, "shared") == [g.graph["inputs"][0]]
    assert G.producers(g, "shared#1") == ["shared"]
    assert G.producers(g, "head") == ["shared#1"]
    assert g.nodes["shared"]["layer"] is g.nodes["shared#1"]["layer"]
    x = rng.normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(forward(g, x)[0], model(x).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("how", ["ops", "layer"])
def test_x_plus_x_is_two_parallel_edges(rng, how):
    inp = keras.Input((5,))
    h = keras.layers.Dense(5, name="d")(inp)
    y = keras.ops.add(h, h) if how == "ops" else keras.layers.Add(name="add_layer")([h, h])
    model = keras.Model(inp, y)
    g = G.to_graph(model)
    (n,) = [n for n in g.nodes if g.nodes[n]["op"].kind == "add"]
    assert isinstance(g.nodes[n]["layer"], knp.Add if how == "ops" else keras.layers.Add)
    assert G.in_edges(g, n) == [("d", 0, 0), ("d", 0, 1)]
    assert g.number_of_edges("d", n) == 2
    x = rng.normal(size=(2, 5)).astype("float32")
    out = forward(g, x)[0]
    np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-6)
    np.testing.assert_allclose(out, 2 * model.get_layer("d")(x).numpy(), rtol=1e-6)


def test_multiple_inputs_and_outputs(rng):
    a = keras.Input((3,), name="a")
    b = keras.Input((4,), name="b")
    h = keras.layers.Concatenate(name="cat")([keras.layers.Dense(2, name="da")(a), b])
    o1 = keras.layers.Dense(3, name="o1")(h)
    o2 = keras.layers.Dense(2, name="o2")(b)
    model = keras.Model([a, b], [o1, o2])
    g = G.to_graph(model)
    assert g.graph["inputs"] == ["a", "b"]
    assert g.graph["outputs"] == [("o1", 0), ("o2", 0)]
    assert g.graph["output_names"] == ["o1", "o2"]
    assert G.in_edges(g, "cat") == [("da", 0, 0), ("b", 0, 1)]
    xa = rng.normal(size=(2, 3)).astype("float32")
    xb = rng.normal(size=(2, 4)).astype("float32")
    ours = forward(g, [xa, xb])
    ref = model([xa, xb])
    for o, r in zip(ours, ref):
        np.testing.assert_allclose(o, r.numpy(), rtol=1e-5, atol=1e-6)


def test_nested_models_are_nested_nodes_before_inlining():
    inner_seq = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="s1")], name="seq")
    i = keras.Input((4,))
    inner_fn = keras.Model(i, keras.layers.Dense(4, name="f1")(i), name="fn")
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2, name="top")(inner_seq(inner_fn(inp))))
    g = G.to_graph(model)
    assert g.nodes["seq"]["op"].kind == "nested"
    assert g.nodes["fn"]["op"].kind == "nested"
    assert "s1" not in g and "f1" not in g
    h = canonicalize(g)
    assert {"seq/s1", "fn/f1"} <= set(h.nodes)
    assert not any(h.nodes[n]["op"].kind == "nested" for n in h.nodes)


def test_keras_ops_are_nodes_with_their_kinds(rng):
    inp = keras.Input((6,))
    h = keras.layers.Dense(6, name="d")(inp)
    a = keras.ops.add(h, keras.ops.relu(h))
    m = keras.ops.multiply(a, h)
    c = keras.ops.concatenate([m, m[:, 1:]], axis=-1)
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(c))
    g = G.to_graph(model)
    by_class = {type(g.nodes[n]["layer"]): g.nodes[n]["op"] for n in g.nodes}
    assert by_class[knp.Add].kind == "add"
    assert by_class[knp.Multiply].kind == "multiply"
    assert by_class[knp.Concatenate].kind == "concat"
    assert by_class[knp.GetItem].kind == "reshape"
    assert by_class[knn.Relu].kind == "elementwise" and by_class[knn.Relu].subkind == "relu"
    # ops.numpy.Add and layers.Add share a class name but both are found by class
    assert "Add" == knp.Add.__name__ == keras.layers.Add.__name__
    assert keras.layers.Add not in by_class
    x = rng.normal(size=(3, 6)).astype("float32")
    np.testing.assert_allclose(forward(g, x)[0], model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_subclassed_model_is_a_type_error_saying_how_to_wrap():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(3)

        def call(self, x):
            return self.d(x)

    model = Sub()
    model(np.zeros((1, 4), "float32"))
    with pytest.raises(TypeError, match=r"no functional graph.*subclassed.*Wrap it in a functional model"):
        G.to_graph(model)
    with pytest.raises(TypeError, match="Wrap it in a functional model"):
        lrpgraph.Analyzer(model, "lrp.z")
    with pytest.raises(TypeError, match="expected a keras.Model"):
        G.to_graph(keras.layers.Dense(3))


class Doubler(keras.layers.Layer):
    def call(self, x):
        return 2.0 * x


@pytest.mark.parametrize("kind", ["custom", "lambda"])
def test_unknown_layer_error_and_overrides_fix(rng, kind):
    inp = keras.Input((4,))
    layer = Doubler(name="mine") if kind == "custom" else keras.layers.Lambda(lambda t: 2.0 * t, name="mine")
    model = keras.Model(inp, keras.layers.Dense(2, use_bias=False, name="out")(layer(inp)))
    cls = type(layer).__name__
    with pytest.raises(lrpgraph.UnsupportedLayerError,
                       match=rf"layer 'mine' of class {cls} is not supported.*overrides=\{{'mine'"):
        lrpgraph.Analyzer(model, "lrp.z")
    # a preset's catch-all kind selector does not accept an unknown op
    with pytest.raises(lrpgraph.UnsupportedLayerError):
        lrpgraph.Analyzer(model, "gradient")
    an = lrpgraph.Analyzer(model, "lrp.z", overrides={"mine": lrpgraph.rules.Gradient()})
    x = rng.normal(size=(3, 4)).astype("float32")
    w = model.get_layer("out").get_weights()[0]
    R = an.analyze(x, target=1)
    # LRP-0 on the bias-free Dense gives h_i w_i1 with h = 2x; the gradient of 2x doubles it
    np.testing.assert_allclose(R, 2 * (2 * x) * w[:, 1], rtol=1e-5, atol=1e-6)
