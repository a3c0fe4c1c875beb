"""lrpgraph.engine.rewrite: every pass alone keeps the model's outputs (strip_softmax: the logits).

The bar is issue 2's: max |graph(x) - model(x)| <= 1e-5 * max |model(x)|.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras import layers as L

from lrpgraph.engine import graph as G
from lrpgraph.engine import rewrite as RW
from lrpgraph.engine.compile import run_forward
from conftest import skip_without_nchw_conv

TOL = 1e-5


def graph_outputs(g, xs):
    xs = [tf.constant(x) for x in (xs if isinstance(xs, list) else [xs])]
    values = run_forward(g, xs)
    return [values[o].numpy() for o in g.graph["outputs"]]


def rel_diff(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def assert_keeps(g, model, x, reference=None):
    ref = reference if reference is not None else model(x)
    ref = [r.numpy() if hasattr(r, "numpy") else r for r in (ref if isinstance(ref, (list, tuple)) else [ref])]
    ours = graph_outputs(g, x)
    assert len(ours) == len(ref)
    for o, r in zip(ours, ref):
        assert o.shape == r.shape
        assert rel_diff(o, r) <= TOL, rel_diff(o, r)


def kinds(g):
    return [g.nodes[n]["op"].kind for n in G.topo_order(g)]


def image(rng, shape=(2, 8, 8, 3)):
    return rng.normal(size=shape).astype("float32")


# ---- split_activations --------------------------------------------------------------

@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_split_activations(rng, act):
    model = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, activation=act, name="c"),
                              L.Flatten(), L.Dense(6, activation=act, name="d"), L.Dense(3, name="o")])
    g = G.to_graph(model)
    h = RW.split_activations(g)
    assert h.number_of_nodes() == g.number_of_nodes() + 2
    for n in ("c", "d"):
        assert h.nodes[n]["op"].activation is None
        (v, _, _), = G.consumers(h, n)
        assert h.nodes[v]["op"].kind == "elementwise" and h.nodes[v]["op"].subkind == act
        assert h.nodes[v]["fused_in"] == n
    assert g.nodes["c"]["op"].activation is not None  # the input graph is untouched
    assert_keeps(h, model, image(rng))


# ---- strip_softmax ----------------------------------------------------------------------

def _softmax_models():
    inp = keras.Input((5,))
    h = L.Dense(6, activation="relu", name="h")(inp)
    fused = keras.Model(inp, L.Dense(4, activation="softmax", name="logits")(h))
    z = L.Dense(4, name="logits")(h)
    layer = keras.Model(inp, L.Softmax(name="sm")(z))
    act = keras.Model(inp, L.Activation("softmax", name="sm")(z))
    return {"fused": fused, "layer": layer, "activation": act}


@pytest.mark.parametrize("variant", ["fused", "layer", "activation"])
def test_strip_softmax_ends_at_logits(rng, variant):
    model = _softmax_models()[variant]
    x = rng.normal(size=(3, 5)).astype("float32") * 3
    h_ = model.get_layer("h")(x)
    d = model.get_layer("logits")
    logits = h_ @ d.kernel + d.bias
    g = G.to_graph(model)
    if variant == "fused":
        g = RW.split_activations(g)  # also handled without it (tested below)
    s = RW.strip_softmax(g)
    assert "softmax" not in kinds(s)
    assert_keeps(s, model, x, reference=logits)
    # the softmax was really there
    assert rel_diff(graph_outputs(g, x)[0], logits.numpy()) > 0.1


def test_strip_softmax_fused_without_split(rng):
    model = _softmax_models()["fused"]
    x = rng.normal(size=(3, 5)).astype("float32")
    s = RW.strip_softmax(G.to_graph(model))
    assert s.nodes["logits"]["op"].activation is None
    d = model.get_layer("logits")
    assert_keeps(s, model, x, reference=model.get_layer("h")(x) @ d.kernel + d.bias)


def test_strip_softmax_keeps_inner_softmax(rng):
    inp = keras.Input((5,))
    a = L.Softmax(name="inner")(L.Dense(5, name="d")(inp))
    model = keras.Model(inp, L.Dense(3, name="o")(a))
    s = RW.strip_softmax(G.to_graph(model))
    assert "inner" in s
    assert_keeps(s, model, rng.normal(size=(2, 5)).astype("float32"))


# ---- remove_noise --------------------------------------------------------------------------

def test_remove_noise(rng):
    inp = keras.Input((8, 8, 3))
    h = L.Conv2D(4, 3, name="c")(inp)
    h = L.SpatialDropout2D(0.5)(h)
    h = L.GaussianNoise(1.0)(h)
    h = L.Flatten()(h)
    h = L.Dropout(0.5)(h)
    h = L.GaussianDropout(0.5)(h)
    h = L.ActivityRegularization(l1=0.1)(h)
    model = keras.Model(inp, L.Dense(3, name="o")(h))
    g = G.to_graph(model)
    assert kinds(g).count("noise") == 5
    r = RW.remove_noise(g)
    assert "noise" not in kinds(r)
    assert r.number_of_nodes() == g.number_of_nodes() - 5
    assert_keeps(r, model, image(rng))


# ---- fold_batchnorm -------------------------------------------------------------------------

def _set_bn(bn, rng):
    c = bn.get_weights()[0].shape[0]
    bn.set_weights([rng.uniform(0.5, 2.0, c), rng.normal(size=c), rng.normal(size=c),
                    rng.uniform(0.2, 3.0, c)])


@pytest.mark.parametrize("linear", ["conv2d", "dense", "depthwise", "conv2d_transpose"])
def test_fold_batchnorm(rng, linear):
    make = {
        "conv2d": lambda: L.Conv2D(4, 3, name="lin"),
        "dense": lambda: L.Dense(4, name="lin"),
        "depthwise": lambda: L.DepthwiseConv2D(3, depth_multiplier=2, name="lin"),
        "conv2d_transpose": lambda: L.Conv2DTranspose(4, 3, strides=2, name="lin"),
    }[linear]
    inp = keras.Input((6, 6, 3))
    h = make()(inp)
    h = L.BatchNormalization(name="bn", epsilon=1e-3)(h)
    model = keras.Model(inp, L.Dense(3, name="o")(L.Flatten()(h)))
    _set_bn(model.get_layer("bn"), rng)
    for w in model.get_layer("lin").weights:
        if "bias" in w.path:
            w.assign(rng.normal(size=w.shape))
    x = image(rng, (2, 6, 6, 3))
    g = G.to_graph(model)
    f = RW.fold_batchnorm(g)
    assert "bn" not in f and f.nodes["lin"]["folded"] == ["bn"]
    assert_keeps(f, model, x)
    # the BN is not the identity: dropping it would change the outputs
    unfolded = G.to_graph(model)
    G.bypass(unfolded, "bn")
    assert rel_diff(graph_outputs(unfolded, x)[0], model(x).numpy()) > 1e-2


@pytest.mark.parametrize("where", ["after_input", "after_activation"])
def test_batchnorm_elsewhere_stays_affine(rng, where):
    inp = keras.Input((5,))
    h = inp if where == "after_input" else L.Dense(5, activation="relu", name="d")(inp)
    h = L.BatchNormalization(name="bn")(h)
    model = keras.Model(inp, L.Dense(3, name="o")(h))
    _set_bn(model.get_layer("bn"), rng)
    f = RW.fold_batchnorm(G.to_graph(model))
    assert "bn" in f
    op = f.nodes["bn"]["op"]
    assert op.kind == "linear" and op.subkind == "batchnorm"
    assert_keeps(f, model, rng.normal(size=(3, 5)).astype("float32"))


# ---- inline_nested_models -------------------------------------------------------------------

def _nested_cases():
    cases = {}
    i = keras.Input((4,))
    fn = keras.Model(i, L.Dense(4, activation="relu", name="a")(i), name="fn")
    inp = keras.Input((4,))
    cases["functional"] = (keras.Model(inp, L.Dense(2, name="o")(fn(inp))), ["fn/a"])

    seq = keras.Sequential([keras.Input((4,)), L.Dense(4, activation="tanh", name="s")], name="seq")
    inp = keras.Input((4,))
    cases["sequential"] = (keras.Model(inp, L.Dense(2, name="o")(seq(inp))), ["seq/s"])

    i = keras.Input((4,))
    inner = keras.Model(i, L.Dense(4, name="deep")(i), name="inner")
    j = keras.Input((4,))
    mid = keras.Model(j, L.Dense(4, name="m")(inner(j)), name="mid")
    inp = keras.Input((4,))
    cases["two_levels"] = (keras.Model(inp, L.Dense(2, name="o")(mid(inp))), ["mid/inner/deep", "mid/m"])

    a, b = keras.Input((4,)), keras.Input((4,))
    two = keras.Model([a, b], L.Subtract(name="sub")([L.Dense(4, name="da")(a), b]), name="two")
    inp = keras.Input((4,))
    h = L.Dense(4, name="pre")(inp)
    cases["two_inputs"] = (keras.Model(inp, L.Dense(2, name="o")(two([h, inp]))), ["two/da", "two/sub"])
    return cases


@pytest.mark.parametrize("case", ["functional", "sequential", "two_levels", "two_inputs"])
def test_inline_nested_models(rng, case):
    model, expect = _nested_cases()[case]
    g = G.to_graph(model)
    assert "nested" in kinds(g)
    h = RW.inline_nested_models(g)
    assert "nested" not in kinds(h)
    assert set(expect) <= set(h.nodes)
    assert_keeps(h, model, rng.normal(size=(3, 4)).astype("float32"))


def test_inline_two_input_nested_model_wiring():
    model, _ = _nested_cases()["two_inputs"]
    h = RW.inline_nested_models(G.to_graph(model))
    inp = h.graph["inputs"][0]
    assert G.in_edges(h, "two/sub") == [("two/da", 0, 0), (inp, 0, 1)]
    assert G.producers(h, "two/da") == ["pre"]


# ---- split_chains (SeparableConv) -----------------------------------------------------------------

@pytest.mark.parametrize("rank", [1, 2])
def test_split_chains_splits_separable_conv(rng, rank):
    cls = L.SeparableConv1D if rank == 1 else L.SeparableConv2D
    shape = (9, 3) if rank == 1 else (7, 7, 3)
    model = keras.Sequential([keras.Input(shape), cls(5, 3, depth_multiplier=2, activation="relu",
                                                      use_bias=True, name="sep"),
                              L.Flatten(), L.Dense(3, name="o")])
    sep = model.get_layer("sep")
    sep.bias.assign(rng.normal(size=5))
    g = G.to_graph(model)
    s = RW.split_chains(g)
    assert g.nodes["sep"]["op"].kind == "chain" and "chain" not in kinds(s)
    assert s.nodes["sep"]["op"].subkind == "depthwise" and s.nodes["sep"]["op"].bias is None
    pw = s.nodes["sep/pointwise"]["op"]
    assert pw.kind == "linear" and pw.bias is not None and pw.activation[0] == "relu"
    assert G.producers(s, "sep/pointwise") == ["sep"]
    assert_keeps(s, model, rng.normal(size=(2,) + shape).astype("float32"))
    # and after the full pipeline (the activation split off the pointwise conv)
    assert_keeps(RW.canonicalize(g), model, rng.normal(size=(2,) + shape).astype("float32"))


# ---- linear ops and activations through the whole pipeline -----------------------------------

def _linear_models():
    m = {}
    m["dense_rank3"] = (keras.Sequential([keras.Input((5, 4)), L.Dense(6, name="lin"), L.Flatten(),
                                          L.Dense(3)]), (5, 4))
    m["conv1d_causal"] = (keras.Sequential([keras.Input((10, 3)), L.Conv1D(4, 3, padding="causal",
                                            dilation_rate=2, name="lin"), L.Flatten(), L.Dense(3)]), (10, 3))
    m["conv1d_same_strided"] = (keras.Sequential([keras.Input((10, 3)), L.Conv1D(4, 3, strides=2, padding="same",
                                                  name="lin"), L.Flatten(), L.Dense(3)]), (10, 3))
    m["conv3d"] = (keras.Sequential([keras.Input((5, 5, 5, 2)), L.Conv3D(3, 2, name="lin"), L.Flatten(),
                                     L.Dense(3)]), (5, 5, 5, 2))
    m["avgpool"] = (keras.Sequential([keras.Input((8, 8, 3)), L.AveragePooling2D(2, name="lin"), L.Flatten(),
                                      L.Dense(3)]), (8, 8, 3))
    m["gap"] = (keras.Sequential([keras.Input((8, 8, 3)), L.GlobalAveragePooling2D(name="lin"), L.Dense(3)]),
                (8, 8, 3))
    m["rescaling"] = (keras.Sequential([keras.Input((4, 4, 3)), L.Rescaling(1 / 127.5, offset=-1.0, name="lin"),
                                        L.Flatten(), L.Dense(3)]), (4, 4, 3))
    m["normalization"] = (keras.Sequential([keras.Input((4, 4, 3)),
                                            L.Normalization(mean=[0.5, -1.0, 2.0], variance=[4.0, 0.25, 1.0],
                                                            name="lin"),
                                            L.Flatten(), L.Dense(3)]), (4, 4, 3))
    m["depthwise_same"] = (keras.Sequential([keras.Input((6, 6, 3)), L.DepthwiseConv2D(3, padding="same",
                                             name="lin"), L.Flatten(), L.Dense(3)]), (6, 6, 3))
    m["conv2d_transpose"] = (keras.Sequential([keras.Input((4, 4, 3)), L.Conv2DTranspose(2, 3, strides=2,
                                               padding="same", name="lin"), L.Flatten(), L.Dense(3)]), (4, 4, 3))
    return m


LINEAR_KIND = {"avgpool": "pool_avg", "gap": "pool_avg"}


@pytest.mark.parametrize("case", sorted(_linear_models()))
def test_linear_ops_reproduce_logits(rng, case):
    model, shape = _linear_models()[case]
    for w in model.weights:
        if "bias" in w.path:
            w.assign(rng.normal(size=w.shape))
    g = RW.canonicalize(G.to_graph(model))
    assert g.nodes["lin"]["op"].kind == LINEAR_KIND.get(case, "linear")
    x = rng.normal(size=(2,) + shape).astype("float32") * 2
    assert_keeps(g, model, x)


def test_conv2d_channels_first(rng):
    # 5 filters on a 4x4 output: Keras 3.15's TF `ops.add` guesses NHWC for its bias_add
    # when the last axis happens to equal the channel count, so model(x) itself is wrong then.
    model = keras.Sequential([keras.Input((3, 6, 6)), L.Conv2D(5, 3, data_format="channels_first", name="lin"),
                              L.Flatten(), L.Dense(3)])
    model.get_layer("lin").bias.assign(rng.normal(size=5))
    x = rng.normal(size=(2, 3, 6, 6)).astype("float32")
    skip_without_nchw_conv()
    ref = model(x)
    g = RW.canonicalize(G.to_graph(model))
    assert g.nodes["lin"]["op"].channel_axis == 1
    assert_keeps(g, model, x, reference=ref)


ACTIVATIONS = ["relu6", "leaky_relu", "elu", "gelu", "swish", "silu", "sigmoid", "tanh", "softplus",
               "hard_sigmoid", "hard_swish", "hard_silu", "relu"]


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("how", ["fused", "layer"])
def test_elementwise_activations_reproduce_logits(rng, act, how):
    inp = keras.Input((6,))
    if how == "fused":
        h = L.Dense(8, activation=act, name="d")(inp)
    else:
        h = L.Activation(act, name="act")(L.Dense(8, name="d")(inp))
    model = keras.Model(inp, L.Dense(3, name="o")(h))
    g = RW.canonicalize(G.to_graph(model))
    (v, _, _), = G.consumers(g, "d")
    assert g.nodes[v]["op"].kind == "elementwise"
    x = rng.normal(size=(4, 6)).astype("float32") * 3
    assert_keeps(g, model, x)


@pytest.mark.parametrize("layer", [L.ReLU(max_value=6.0), L.ReLU(negative_slope=0.1), L.LeakyReLU(0.2), L.ELU(),
                                   L.PReLU()])
def test_activation_layers_reproduce_logits(rng, layer):
    inp = keras.Input((6,))
    model = keras.Model(inp, L.Dense(3, name="o")(layer(L.Dense(8, name="d")(inp))))
    g = RW.canonicalize(G.to_graph(model))
    (v, _, _), = G.consumers(g, "d")
    assert g.nodes[v]["op"].kind == "elementwise"
    assert_keeps(g, model, rng.normal(size=(4, 6)).astype("float32") * 3)


def test_relu6_layer_is_relu6():
    inp = keras.Input((6,))
    model = keras.Model(inp, L.ReLU(max_value=6.0, name="r")(inp))
    assert G.to_graph(model).nodes["r"]["op"].subkind == "relu6"
