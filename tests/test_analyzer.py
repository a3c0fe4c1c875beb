"""lrpgraph.Analyzer: input validation, targets, neuron selection, tracing, multi-IO, chunking."""

import numpy as np
import pytest

import keras
from keras import layers as L

import lrpgraph
from lrpgraph.rules.presets import PRESETS


@pytest.fixture(scope="module")
def cnn_an(small_cnn):
    model, x, t = small_cnn
    return lrpgraph.Analyzer(model, "lrp.epsilon"), x, t


# ---- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("bad,exc,msg", [
    (lambda x: x[0], ValueError, r"rank 3 .*expects rank 4.*x\[None\]"),
    (lambda x: x[:, :16], ValueError, r"shape \(4, 16, 32, 3\).*\(batch,\) \+ \(32, 32, 3\).*axis 1"),
    (lambda x: x.astype("int32"), TypeError, r"dtype int32.*floating-point"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x).astype("float32"), ValueError,
     "contains NaN"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.inf, x).astype("float32"), ValueError,
     "contains Inf"),
    (lambda x: x[:0], ValueError, "empty batch"),
    (lambda x: [x, x], ValueError, r"has 1 input\(s\); got 2 array\(s\)"),
])
def test_bad_inputs(cnn_an, bad, exc, msg):
    an, x, _ = cnn_an
    with pytest.raises(exc, match=msg):
        an.analyze(bad(x), target=0)


@pytest.mark.parametrize("target,exc,msg", [
    (10, ValueError, r"target 10 is out of range.*10 classes \(0\.\.9\)"),
    (-1, ValueError, r"target -1 is out of range"),
    (np.array([0, 1, 12, 3]), ValueError, "target 12 is out of range"),
    (1.5, TypeError, "target must be integer class indices.*float"),
    (np.array([0, 1]), ValueError, r"one int per sample \(shape \(4,\)\)"),
])
def test_bad_targets(cnn_an, target, exc, msg):
    an, x, _ = cnn_an
    with pytest.raises(exc, match=msg):
        an.analyze(x, target=target)


def test_integral_float_target_is_accepted(cnn_an):
    an, x, _ = cnn_an
    np.testing.assert_array_equal(an.analyze(x, target=3.0), an.analyze(x, target=3))


def test_bad_construction(small_cnn):
    model = small_cnn[0]
    with pytest.raises(ValueError, match=r"unknown method 'lrp.nope'; known: .*lrp\.epsilon"):
        lrpgraph.create_analyzer("lrp.nope", model)
    with pytest.raises(ValueError, match="unknown method 'lrp.nope'"):
        lrpgraph.Analyzer(model, "lrp.nope")
    with pytest.raises(TypeError, match=r"'lrp.epsilon' got unknown parameter\(s\) \['epsilonn'\]; it accepts: \['bias_factor', 'epsilon'\]"):
        lrpgraph.create_analyzer("lrp.epsilon", model, epsilonn=0.1)
    with pytest.raises(TypeError, match="unknown parameter.*accepts: none"):
        lrpgraph.create_analyzer("lrp.z", model, epsilon=0.1)
    with pytest.raises(ValueError, match=r"neuron_selection_mode must be one of .*'bogus'"):
        lrpgraph.Analyzer(model, "lrp.z", neuron_selection_mode="bogus")


def test_index_mode_needs_a_target(small_cnn):
    model, x, t = small_cnn
    an = lrpgraph.Analyzer(model, "lrp.z", neuron_selection_mode="index")
    with pytest.raises(ValueError, match="neuron_selection_mode='index' needs a target"):
        an.analyze(x)
    assert an.analyze(x, target=t).shape == x.shape


# ---- targets and neuron selection --------------------------------------------------------------

def test_target_none_is_argmax(relu_mlp):
    model, x = relu_mlp
    an = lrpgraph.Analyzer(model, "lrp.epsilon")
    pred = model(x).numpy().argmax(-1)
    assert len(set(pred)) > 1  # per-sample argmax is exercised
    np.testing.assert_array_equal(an.analyze(x), an.analyze(x, target=pred))
    # iNNvestigate's alias
    np.testing.assert_array_equal(an.analyze(x, neuron_selection=pred), an.analyze(x, target=pred))


def test_per_sample_targets_are_per_sample(cnn_an):
    an, x, _ = cnn_an
    both = an.analyze(x, target=np.array([1, 2, 1, 2]))
    one, two = an.analyze(x[:1], target=1)[0], an.analyze(x[1:2], target=2)[0]
    # equal up to float rounding (kernels differ with the batch size)
    np.testing.assert_allclose(both[0], one, rtol=1e-5, atol=1e-6 * np.abs(one).max())
    np.testing.assert_allclose(both[1], two, rtol=1e-5, atol=1e-6 * np.abs(two).max())
    assert np.abs(one - an.analyze(x[:1], target=2)[0]).max() > 1e-3 * np.abs(one).max()


@pytest.mark.parametrize("method", ["lrp.epsilon", "gradient"])
def test_neuron_selection_all_is_the_sum_over_classes(small_cnn, method):
    model, x, _ = small_cnn
    every = lrpgraph.Analyzer(model, method, neuron_selection_mode="all").analyze(x)
    one = lrpgraph.Analyzer(model, method)
    total = sum(one.analyze(x, target=k) for k in range(10))
    np.testing.assert_allclose(every, total, rtol=1e-4, atol=1e-5 * np.abs(total).max())


# ---- trace counting ---------------------------------------------------------------------------

def test_new_batch_size_or_target_never_retraces(small_cnn):
    model, x, _ = small_cnn
    an = lrpgraph.Analyzer(model, "lrp.alpha_2_beta_1")
    assert an.traces == 0
    xs = np.concatenate([x, x[:1]])
    for n, target in [(1, 0), (3, 7), (5, np.array([0, 1, 2, 3, 4])), (3, None), (1, 9), (5, 2)]:
        r = an.analyze(xs[:n], target=target)
        assert r.shape == (n, 32, 32, 3)
    assert an.traces == 1


# ---- multi-output and multi-input models -----------------------------------------------------

def test_multi_output_model_by_output_name(rng):
    inp = keras.Input((6,))
    h = L.Dense(8, activation="relu", name="h")(inp)
    a = L.Dense(3, name="head_a")(h)
    b = L.Dense(4, name="head_b")(h)
    model = keras.Model(inp, [a, b])
    x = rng.normal(size=(3, 6)).astype("float32")
    an_b = lrpgraph.Analyzer(model, "lrp.z", output="head_b")
    assert an_b.num_classes == 4
    r = an_b.analyze(x, target=3)
    # LRP-0 == gradient x input of head_b's logit 3
    ref = lrpgraph.Analyzer(keras.Model(inp, b), "input_t_gradient").analyze(x, target=3)
    np.testing.assert_allclose(r, ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(lrpgraph.Analyzer(model, "lrp.z", output=1).analyze(x, target=3), r)
    with pytest.raises(ValueError, match=r"unknown output 'nope'; the model's outputs are \['head_a', 'head_b'\]"):
        lrpgraph.Analyzer(model, "lrp.z", output="nope")
    with pytest.raises(ValueError, match="target 3 is out of range"):
        lrpgraph.Analyzer(model, "lrp.z", output="head_a").analyze(x, target=3)


def test_multi_input_model_returns_a_list(rng):
    a, b = keras.Input((3,), name="a"), keras.Input((4,), name="b")
    h = L.Concatenate()([L.Dense(5, use_bias=False, name="da")(a), b])
    model = keras.Model([a, b], L.Dense(2, use_bias=False, name="o")(L.ReLU()(h)))
    xa = rng.normal(size=(3, 3)).astype("float32")
    xb = rng.normal(size=(3, 4)).astype("float32")
    an = lrpgraph.Analyzer(model, "lrp.z")
    ra, rb = an.analyze([xa, xb], target=1)
    assert ra.shape == xa.shape and rb.shape == xb.shape
    # bias-free: the two inputs' relevances together conserve the target logit
    z = model([xa, xb]).numpy()[:, 1]
    np.testing.assert_allclose(ra.sum(1) + rb.sum(1), z, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"has 2 input\(s\); got 1"):
        an.analyze(xa, target=1)
    with pytest.raises(ValueError, match="same batch size"):
        an.analyze([xa, xb[:2]], target=1)


# ---- methods() and chunking ----------------------------------------------------------------------

def test_methods_lists_every_preset_with_a_doc():
    m = lrpgraph.methods()
    for name in PRESETS:
        assert name in m and isinstance(m[name], str) and len(m[name]) > 10
    for name in ["lrp.z", "lrp.epsilon", "lrp.z_plus", "lrp.alpha_1_beta_0", "lrp.alpha_2_beta_1", "lrp.flat",
                 "lrp.w_square", "deep_taylor", "deep_taylor.bounded", "lrp.sequential_preset_a_flat",
                 "gradient", "input_t_gradient", "guided_backprop", "deconvnet", "epsilon_plus",
                 "epsilon_gamma_box", "epsilon_alpha2_beta1_flat"]:
        assert name in m


def test_batch_size_chunking_is_identical(small_cnn):
    model, x, t = small_cnn
    an = lrpgraph.Analyzer(model, "lrp.sequential_preset_a")
    whole = an.analyze(x, target=t)
    for bs in (1, 3):
        # identical up to float rounding (kernels differ with the batch size)
        np.testing.assert_allclose(an.analyze(x, target=t, batch_size=bs), whole, rtol=1e-5,
                                   atol=1e-6 * np.abs(whole).max())
    assert an.traces == 1


def test_weights_are_read_from_the_model_not_baked_in(small_cnn):
    """Changing the model's weights after building changes the analysis, without retracing."""
    model, x, t = small_cnn
    a = lrpgraph.create_analyzer("lrp.epsilon", model)
    before = a.analyze(x, target=t)
    old = model.get_weights()
    try:
        model.set_weights([w * 1.5 if w.ndim > 1 else w for w in old])
        after = a.analyze(x, target=t)
        fresh = lrpgraph.create_analyzer("lrp.epsilon", model).analyze(x, target=t)
    finally:
        model.set_weights(old)
    assert a.traces == 1
    assert np.abs(after - before).max() > 1e-3 * np.abs(before).max()
    np.testing.assert_allclose(after, fresh, rtol=0, atol=1e-6 * np.abs(fresh).max())


def test_jit_compile_matches(small_cnn):
    model, x, t = small_cnn
    ref = lrpgraph.create_analyzer("lrp.alpha_2_beta_1", model).analyze(x, target=t)
    xla = lrpgraph.Analyzer(model, "lrp.alpha_2_beta_1", jit_compile=True).analyze(x, target=t)
    np.testing.assert_allclose(xla, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_float64_model_is_analysed_in_float64(rng):
    """A float64 model stays float64 end to end: BatchNorm statistics folded into the
    conv are not rounded through float32 (that left a 1e-8 relative error), so the
    rewritten graph reproduces the logits to float64 round-off and LRP-0 equals
    gradient x input to 1e-12."""
    import tensorflow as tf

    f64 = {"dtype": "float64"}
    inp = keras.Input((8, 8, 3), dtype="float64")
    h = keras.layers.Conv2D(6, 3, name="conv", **f64)(inp)
    bn = keras.layers.BatchNormalization(name="bn", **f64)
    h = keras.layers.ReLU(**f64)(bn(h))
    h = keras.layers.Flatten(**f64)(h)
    out = keras.layers.Dense(4, activation="softmax", name="logits", **f64)(h)
    model = keras.Model(inp, out)
    bn.set_weights([rng.uniform(0.5, 2, 6), rng.normal(0, 0.3, 6), rng.normal(0, 0.3, 6), rng.uniform(0.2, 3, 6)])
    x = rng.uniform(-1, 1, (3, 8, 8, 3))

    report = lrpgraph.check(model, x=x)
    assert report.logits_rel_diff <= 1e-13, report.logits_rel_diff
    r = lrpgraph.create_analyzer("lrp.z", model).analyze(x, target=[0, 1, 2])
    assert r.dtype == np.float64
    logits_model = keras.Model(inp, model.get_layer("logits").output)
    model.get_layer("logits").activation = keras.activations.linear
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        z = tf.reduce_sum(logits_model(xt) * tf.one_hot([0, 1, 2], 4, dtype=tf.float64))
    gxi = (tape.gradient(z, xt) * xt).numpy()
    assert np.abs(r - gxi).max() <= 1e-12 * np.abs(gxi).max()


def test_float64_rescaling_reproduces_keras_own_rounding():
    """Keras's Rescaling casts its Python-float scale through float32 even in a float64
    layer (1/255 becomes 1/255 * (1 + 5.9e-8)).  The rewritten graph must compute what
    the model computes: with the exact float64 scale the logits differed by 6e-8."""
    f64 = {"dtype": "float64"}
    inp = keras.Input((6, 6, 3), dtype="float64")
    h = keras.layers.Rescaling(1 / 255.0, **f64)(inp)
    h = keras.layers.Conv2D(4, 3, padding="same", **f64)(h)
    h = keras.layers.Flatten(**f64)(h)
    model = keras.Model(inp, keras.layers.Dense(3, **f64)(h))
    x = np.random.default_rng(1).uniform(0, 255, (2, 6, 6, 3))
    report = lrpgraph.check(model, x=x)
    assert report.logits_rel_diff <= 1e-13, report.logits_rel_diff


def _assert_conserves(r, z):
    """sum R = z per sample, to float32 round-off of the total |R| (a logit near zero
    is a sum of cancelling terms; a relative tolerance on it alone would be too tight)."""
    sums = r.reshape(len(r), -1).sum(1)
    scale = np.abs(r).reshape(len(r), -1).sum(1)
    assert np.all(np.abs(sums - z) <= 1e-5 * scale), (sums, z)


def test_float64_input_into_float32_layers_is_cast_like_keras(rng):
    """A float64 Input feeding float32 layers: Keras casts at each layer's call; the
    graph gets explicit cast nodes (the folded Rescaling's conv used to receive the
    float64 tensor and fail in Conv2D).  Relevance comes back in the input's dtype and
    LRP-0 still conserves the logit."""
    from lrpgraph.engine import graph as G
    from lrpgraph.engine.rewrite import canonicalize

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3), dtype="float64")
    h = keras.layers.Rescaling(1 / 255.0)(inp)
    h = keras.layers.Conv2D(4, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(3)(h))
    x = rng.uniform(0, 255, (2, 8, 8, 3))
    g = canonicalize(G.to_graph(model))
    casts = [n for n in g if g.nodes[n]["op"].subkind == "cast"]
    assert len(casts) == 1 and g.nodes[casts[0]]["output_dtypes"] == ["float32"]
    assert lrpgraph.check(model, x=x).logits_rel_diff <= 1e-6
    a = lrpgraph.create_analyzer("lrp.z", model)
    r = a.analyze(x)
    assert r.dtype == np.float64
    _assert_conserves(r, a.predict_logits(x).max(1))


def test_one_cast_serves_every_reader_of_a_tensor(rng):
    """Two float32 convs reading one float64 input share one cast node; LRP-0 through
    the residual Add conserves the logit."""
    from lrpgraph.engine import graph as G
    from lrpgraph.engine.rewrite import canonicalize

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3), dtype="float64")
    a = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    b = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([a, b]))
    model = keras.Model(inp, keras.layers.Dense(3)(h))
    g = canonicalize(G.to_graph(model))
    casts = [n for n in g if g.nodes[n]["op"].subkind == "cast"]
    assert len(casts) == 1 and len(G.consumers(g, casts[0])) == 2
    x = rng.uniform(-1, 1, (2, 8, 8, 3))
    an = lrpgraph.create_analyzer("lrp.z", model)
    r = an.analyze(x)
    _assert_conserves(r, an.predict_logits(x).max(1))


# ---- stop_at= and the CAM layer lookup mean the same tensor --------------------------------

def test_stop_at_a_fused_activation_layer_is_its_activation_output(rng):
    """Conv2D(..., activation="relu", name="c2") is split into c2 (linear) and c2/relu:
    stop_at="c2" gives the gradient with respect to the Keras layer's output (after the
    ReLU), the node gradcam(layer="c2") uses, not the pre-activation's."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 2))
    h = L.Conv2D(4, 3, activation="relu", name="c1")(inp)
    h = L.Conv2D(3, 3, activation="relu", name="c2")(h)
    out = L.Dense(3, name="out")(L.Flatten()(h))
    model = keras.Model(inp, out)
    x = rng.uniform(-1, 1, (3, 8, 8, 2)).astype("float32")
    t = np.array([0, 2, 1])
    an = lrpgraph.Analyzer(model, "gradient", stop_at="c2")
    cam = lrpgraph.create_analyzer("gradcam", model, layer="c2")
    assert an.stop_at == ["c2/relu"] and cam.nodes == ["c2/relu"]
    got = an.analyze(x, target=t)
    feat = keras.Model(inp, [model.get_layer("c2").output, out])
    with tf.GradientTape() as tape:
        a, z = feat(x)
        zt = tf.gather(z, t, batch_dims=1)
    want = tape.gradient(zt, a).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # the pre-activation's gradient is masked by relu'(z) = 0 where the ReLU is off: it differs
    a = a.numpy()
    assert (a == 0).any() and np.abs(want[a == 0]).max() > 1e-3
    # a node id still names that node alone
    assert lrpgraph.Analyzer(model, "gradient", stop_at="c2/relu").stop_at == ["c2/relu"]


def test_stop_at_a_folded_batchnorm_is_the_conv_that_holds_it(rng):
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 2))
    h = L.Conv2D(3, 3, name="conv")(inp)
    h = L.BatchNormalization(name="bn")(h)
    h = L.ReLU(name="act")(h)
    model = keras.Model(inp, L.Dense(2, name="out")(L.Flatten()(h)))
    model.get_layer("bn").set_weights([rng.uniform(0.5, 2, 3), rng.uniform(-1, 1, 3),
                                       rng.uniform(-1, 1, 3), rng.uniform(0.5, 2, 3)])
    """The BatchNorm folded into the Conv before it: the Conv node's output is the BN's."""
    import tensorflow as tf

    an = lrpgraph.Analyzer(model, "gradient", stop_at="bn")
    assert an.stop_at == ["conv"] and "bn" not in an.graph
    assert lrpgraph.create_analyzer("gradcam", model, layer="bn").nodes == ["conv"]
    x = rng.uniform(-1, 1, (2, 6, 6, 2)).astype("float32")
    feat = keras.Model(inp, [model.get_layer("bn").output, model.outputs[0]])
    with tf.GradientTape() as tape:
        a, z = feat(x)
        zt = z[:, 1]
    np.testing.assert_allclose(an.analyze(x, target=1), tape.gradient(zt, a).numpy(), rtol=1e-5, atol=1e-6)


def test_stop_at_an_input_rescaling_folded_into_the_next_layer_is_an_error():
    """A Rescaling at the input is folded into the Conv after it: its output no longer
    exists, so its name must not silently mean the Conv's output."""
    inp = keras.Input((6, 6, 2))
    h = L.Rescaling(1 / 255.0, offset=-0.5, name="rescale")(inp)
    h = L.Conv2D(3, 3, activation="relu", name="stem")(h)
    model = keras.Model(inp, L.Dense(2, name="out")(L.Flatten()(h)))
    an = lrpgraph.Analyzer(model, "gradient")
    assert "rescale" not in an.graph and "rescale" in an.graph.nodes["stem"]["folded"]
    with pytest.raises(ValueError, match="no layer named 'rescale' in the model; layers: "):
        lrpgraph.Analyzer(model, "gradient", stop_at="rescale")
    with pytest.raises(ValueError, match="no layer named 'rescale' in the model; layers with a spatial"):
        lrpgraph.create_analyzer("gradcam", model, layer="rescale")
