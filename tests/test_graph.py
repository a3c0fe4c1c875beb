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


# ---- the node schema (lrpgraph.engine.graph.NodeAttrs) -------------------------------------

def _schema_model():
    """One model on which every rewrite pass that adds a key fires: an input Rescaling
    (fold_input_affine: folded, folded_input), a Conv with a fused ReLU (split_activations:
    fused_in), a BatchNorm after a Conv (fold_batchnorm: folded), MobileNetV3's hard sigmoid
    (fuse_hard_sigmoid: fused_from), self-attention (split_attention: part_of), a nested model."""
    L = keras.layers
    inner_in = keras.Input((6, 6, 4))
    inner = keras.Model(inner_in, L.Conv2D(4, 1, name="inner_conv")(inner_in), name="inner")
    a = keras.Input((8, 8, 3))
    h = L.Rescaling(1 / 255.0, name="rescale")(a)
    h = L.Conv2D(4, 3, activation="relu", name="stem")(h)
    h = L.Conv2D(4, 1, name="c2")(h)
    h = L.BatchNormalization(name="bn")(h)
    h = inner(h)
    gate = L.GlobalAveragePooling2D(keepdims=True)(h)
    gate = L.ReLU(6.0)(gate + 3.0) * (1.0 / 6.0)
    h = L.Multiply(name="se")([h, gate])
    t = L.Reshape((36, 4))(h)
    t = L.MultiHeadAttention(2, 2, name="mha")(t, t)
    return keras.Model(a, L.Dense(3, name="logits")(L.Flatten()(t)))


def test_canonical_graph_nodes_carry_exactly_the_documented_attributes():
    g = canonicalize(G.to_graph(_schema_model()))
    required = G.NodeAttrs.__required_keys__
    seen = set()
    for n, d in g.nodes(data=True):
        assert required <= set(d), (n, sorted(required - set(d)))
        assert set(d) <= G.NODE_KEYS, (n, sorted(set(d) - G.NODE_KEYS))
        assert d["name"] == n and len(d["output_shapes"]) == d["n_outputs"] == len(d["output_dtypes"])
        seen |= set(d)
    # every pass-added key occurs on this model, so the check above covered it
    assert G.NodeAttrs.__optional_keys__ <= seen, sorted(G.NodeAttrs.__optional_keys__ - seen)


def _node_keys_in_source():
    """(module, key, raw) for every ``<graph>.nodes[n]["key"]`` / ``.get("key")`` in lrpgraph
    and rules/; ``raw`` is False where the subscript is inside lrpgraph/engine/."""
    import ast
    from pathlib import Path

    root = Path(__file__).parent.parent
    found = []
    for path in sorted([*root.joinpath("lrpgraph").rglob("*.py"), *root.joinpath("rules").rglob("*.py")]):
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            # X.nodes[n]["key"], X.nodes[n].get("key")
            inner = None
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                    and isinstance(node.slice.value, str):
                inner = node.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                    and node.args and isinstance(node.args[0], ast.Constant):
                inner = node.func.value
            if isinstance(inner, ast.Subscript) and isinstance(inner.value, ast.Attribute) \
                    and inner.value.attr == "nodes":
                key = node.slice.value if isinstance(node, ast.Subscript) else node.args[0].value
                found.append((rel, key))
    return found


def test_every_node_key_the_code_reads_is_documented_and_only_the_engine_reads_raw_keys():
    found = _node_keys_in_source()
    assert found, "the scan found no node reads: it is broken"
    assert not [(m, k) for m, k in found if k not in G.NODE_KEYS]
    # the families, the checks and everything above the engine use G.op, G.output_shape, ...
    assert not [(m, k) for m, k in found if not m.startswith("lrpgraph/engine/")]
