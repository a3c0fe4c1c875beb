"""Deep Taylor at average pooling: the gradient (a uniform split), as iNNvestigate does.

iNNvestigate's deep_taylor / deep_taylor.bounded (and so the SGLRP code's sglrp, clrp,
lrp) pass relevance through AveragePooling1D/2D/3D and GlobalAveragePooling1D/2D/3D like
the gradient: 1/n of each output's relevance to each of the n inputs of its window, not
in proportion to the activations.  The LRP presets keep the z-rule there.  The golden
check of this is in test_golden.py (avg_cnn); here the maps are rebuilt by hand and the
conservation the one-pass SGLRP shortcut relies on is checked for every pooling form.
"""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import keras
import lrpgraph
from lrpgraph.engine import heads as H
from lrpgraph import rules as R
from conftest import float32_noise

L = keras.layers


def avgpool_transpose(r, in_shape, pool, stride, padding):
    """Hand-made 2-D average pooling backward (NHWC): each output's r split evenly over
    the in-bounds inputs of its window (TensorFlow's 'same' padding excludes the pad)."""
    n, h, w, c = in_shape
    out = np.zeros(in_shape, np.float64)
    oh, ow = r.shape[1:3]
    if padding == "same":
        top = max((oh - 1) * stride + pool - h, 0) // 2
        left = max((ow - 1) * stride + pool - w, 0) // 2
    else:
        top = left = 0
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * stride - top, j * stride - left
            rs = slice(max(r0, 0), min(r0 + pool, h))
            cs = slice(max(c0, 0), min(c0 + pool, w))
            count = (rs.stop - rs.start) * (cs.stop - cs.start)
            out[:, rs, cs, :] += r[:, i:i + 1, j:j + 1, :] / count
    return out


def zplus_first_conv(x, kernel, r, padding):
    """z+ (bias ignored) at a conv whose input x is >= 0, by hand:
    R_i = x_i * sum_j w+_ij R_j / sum_i' x_i' w+_i'j."""
    wp = tf.constant(np.maximum(kernel, 0), tf.float64)
    x64 = tf.constant(x, tf.float64)
    z = tf.nn.conv2d(x64, wp, 1, padding.upper())
    s = tf.constant(r, tf.float64) / z
    c = tf.nn.conv2d_transpose(s, wp, x.shape, 1, padding.upper())
    return (x64 * c).numpy()


def _nonneg_input(shape, seed=0):
    return np.random.default_rng(seed).uniform(0.05, 1.0, shape).astype("float32")


def _set_random_weights(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])


@pytest.fixture(scope="module")
def concat_net():
    """conv (same, relu) -> [AveragePooling2D(2), AveragePooling2D(3, stride 2, same)]
    -> Concatenate -> Flatten -> Dense relu -> Dense logits; no biases."""
    inp = keras.Input((8, 8, 3))
    c1 = L.Conv2D(4, 3, padding="same", activation="relu", use_bias=False, name="conv1")(inp)
    a = L.AveragePooling2D(2, name="avg_a")(c1)
    b = L.AveragePooling2D(3, strides=2, padding="same", name="avg_b")(c1)
    cat = L.Concatenate(name="cat")([a, b])
    f = L.Flatten(name="flatten")(cat)
    h = L.Dense(12, activation="relu", use_bias=False, name="fc1")(f)
    out = L.Dense(5, use_bias=False, name="logits")(h)
    model = keras.Model(inp, out, name="avg_concat")
    _set_random_weights(model, 1)
    return model, _nonneg_input((4, 8, 8, 3), 2)


@pytest.fixture(scope="module")
def gap_net():
    """conv (valid, relu) -> GlobalAveragePooling2D -> Dense logits; no biases."""
    model = keras.Sequential([
        keras.Input((10, 10, 3)),
        L.Conv2D(5, 3, activation="relu", use_bias=False, name="conv1"),
        L.GlobalAveragePooling2D(name="gap"),
        L.Dense(4, use_bias=False, name="logits"),
    ], name="gap_net")
    _set_random_weights(model, 3)
    return model, _nonneg_input((4, 10, 10, 3), 4)


def _positive_targets(model, x):
    """The argmax (its logit is > 0 on these nets), so the Deep Taylor head is the logit."""
    z = model.predict(x, verbose=0)
    t = z.argmax(1)
    assert np.all(z[np.arange(len(x)), t] > 0)
    return t, z[np.arange(len(x)), t]


def test_concat_net_matches_hand_reference(concat_net):
    model, x = concat_net
    t, zt = _positive_targets(model, x)
    # relevance at the Concatenate's output (z+ at the Dense layers: golden-checked rules)
    r_cat = lrpgraph.Analyzer(model, "deep_taylor", stop_at="cat").analyze(x, target=t).astype(np.float64)
    c1_shape = (len(x), 8, 8, 4)
    r_c1 = (avgpool_transpose(r_cat[..., :4], c1_shape, 2, 2, "valid")
            + avgpool_transpose(r_cat[..., 4:], c1_shape, 3, 2, "same"))
    want = zplus_first_conv(x, model.get_layer("conv1").get_weights()[0], r_c1, "same")
    got = lrpgraph.Analyzer(model, "deep_taylor").analyze(x, target=t)
    # against the float64 hand reference: float32 rounding through conv1, the pools, fc1 and
    # logits (r_cat is float32 too, but from another compiled pass); measured 9.5e-8 of the
    # max, oneDNN on or off (the bound: 7.6e-6)
    np.testing.assert_allclose(got, want, rtol=0, atol=float32_noise(4) * np.abs(want).max())
    # conservation: every rule on the path conserves and nothing is biased
    np.testing.assert_allclose(got.reshape(len(x), -1).sum(1), zt, rtol=1e-5)
    # the z-rule at the pools (the LRP presets' choice) gives another map
    z_rule = lrpgraph.Analyzer(model, "deep_taylor", overrides={"kind:pool_avg": R.Z()}).analyze(x, target=t)
    assert np.abs(z_rule - want).max() > 1e-2 * np.abs(want).max()


def test_gap_net_matches_hand_reference(gap_net):
    model, x = gap_net
    t, zt = _positive_targets(model, x)
    r_gap = lrpgraph.Analyzer(model, "deep_taylor", stop_at="gap").analyze(x, target=t).astype(np.float64)
    r_c1 = np.broadcast_to(r_gap[:, None, None, :] / 64.0, (len(x), 8, 8, 5))  # 8x8 map: 1/64 each
    want = zplus_first_conv(x, model.get_layer("conv1").get_weights()[0], r_c1, "valid")
    for name in ("deep_taylor", "lrp"):  # the SGLRP code's lrp: same rules here (no bias, no first-layer box)
        an = (lrpgraph.Analyzer(model, name) if name == "deep_taylor"
              else lrpgraph.create_analyzer(name, model, overrides={"first": R.ZPlus()}))
        got = an.analyze(x, target=t)
        # float64 hand reference: float32 rounding through conv1, the pooling and logits;
        # measured 1.5e-7 of the max, oneDNN on or off (the bound: 5.7e-6)
        np.testing.assert_allclose(got, want, rtol=0, atol=float32_noise(3) * np.abs(want).max())
        np.testing.assert_allclose(got.reshape(len(x), -1).sum(1), zt, rtol=1e-5)
    z_rule = lrpgraph.Analyzer(model, "lrp.z_plus").analyze(x, target=t)  # z+ everywhere, Z at the pool
    assert np.abs(z_rule - want).max() > 1e-2 * np.abs(want).max()


@pytest.mark.parametrize("preset", ["deep_taylor", "deep_taylor.bounded"])
def test_deep_taylor_family_gets_gradient_lrp_presets_keep_z(concat_net, preset):
    model, _ = concat_net
    rules = lrpgraph.Analyzer(model, preset).rules
    assert type(rules["avg_a"]) is R.Gradient and type(rules["avg_b"]) is R.Gradient
    for name in ("sglrp", "clrp", "lrp"):
        assert type(lrpgraph.create_analyzer(name, model).rules["avg_a"]) is R.Gradient
    for lrp in ("lrp.z", "lrp.epsilon", "lrp.z_plus", "lrp.alpha_1_beta_0", "lrp.sequential_preset_a"):
        assert type(lrpgraph.Analyzer(model, lrp).rules["avg_a"]) is R.Z, lrp


POOLS = {
    "avg2d_valid": (lambda: L.AveragePooling2D(2), (7, 7, 3)),
    "avg2d_same": (lambda: L.AveragePooling2D(2, padding="same"), (7, 7, 3)),
    "avg2d_3s1_same": (lambda: L.AveragePooling2D(3, strides=1, padding="same"), (6, 6, 2)),
    "avg2d_3s2_same": (lambda: L.AveragePooling2D(3, strides=2, padding="same"), (7, 8, 2)),
    "avg2d_3s2_valid": (lambda: L.AveragePooling2D(3, strides=2), (8, 8, 2)),
    "avg2d_same_channels_first": (lambda: L.AveragePooling2D(3, strides=2, padding="same",
                                                             data_format="channels_first"), (2, 7, 7)),
    "avg1d_same": (lambda: L.AveragePooling1D(3, strides=2, padding="same"), (9, 2)),
    "avg3d_same": (lambda: L.AveragePooling3D(2, padding="same"), (5, 5, 5, 2)),
    "gap1d": (lambda: L.GlobalAveragePooling1D(), (5, 2)),
    "gap2d": (lambda: L.GlobalAveragePooling2D(), (5, 5, 2)),
    "gap3d": (lambda: L.GlobalAveragePooling3D(), (3, 3, 3, 2)),
}


@pytest.mark.parametrize("kind", sorted(POOLS))
def test_gradient_conserves_at_every_average_pooling(kind):
    """Gradient declares itself conservative on pool_avg; it is, for valid and same
    padding, overlapping strides, 1D/3D and global pooling: the Deep Taylor map sums to
    the logit, and scaled SGLRP takes the one-pass shortcut and still equals the exact
    two-seed result."""
    make, shape = POOLS[kind]
    pool = make()
    model = keras.Sequential([keras.Input(shape), pool, L.Flatten(), L.Dense(4, use_bias=False, name="logits")])
    _set_random_weights(model, 5)
    x = _nonneg_input((3,) + shape, 6)
    an = lrpgraph.Analyzer(model, "deep_taylor")
    assert type(an.rules[pool.name]) is R.Gradient
    assert an.rules[pool.name].conservative(an.graph.nodes[pool.name]["op"])
    logits = model.predict(x, verbose=0)
    t = logits.argmax(1)
    got = an.analyze(x, target=t).reshape(len(x), -1).sum(1)
    np.testing.assert_allclose(got, np.maximum(logits[np.arange(len(x)), t], 0), rtol=1e-5, atol=1e-7)
    # the plain gradient of the pool sums to the sum of its output relevance, for any R
    r = tf.constant(np.random.default_rng(7).normal(size=(3,) + tuple(pool.output.shape[1:])), tf.float32)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = pool(xt)
    g = tape.gradient(y, xt, output_gradients=r)
    np.testing.assert_allclose(float(tf.reduce_sum(g)), float(tf.reduce_sum(r)), rtol=1e-5)
    # scaled SGLRP on the raw logits (no output ReLU, so every sample has a dual)
    box = {"low": 0.0, "high": 1.0}
    sg = lrpgraph.create_analyzer("sglrp", model, ignore_bias=True, output_relu=False, **box)
    assert sg.program.one_pass
    one = sg.analyze(x, target=t)
    a_t = lrpgraph.Analyzer(model, "deep_taylor.bounded", head=H.sglrp_target(False), **box).analyze(x, t)
    a_d = lrpgraph.Analyzer(model, "deep_taylor.bounded", head=H.sglrp_dual(False), **box).analyze(x, t)
    m = a_t.reshape(3, -1).sum(1) / a_d.reshape(3, -1).sum(1)
    two = a_t - a_d * m.reshape((-1,) + (1,) * len(shape))
    np.testing.assert_allclose(one, two, rtol=0, atol=1e-5 * np.abs(two).max())


def test_sglrp_one_pass_on_the_concat_net(concat_net):
    """With ignore_bias=True every rule on the concat net conserves (z^B, z+, ReLU,
    Gradient at both pools and the Concatenate): scaled SGLRP/CLRP run one pass."""
    model, x = concat_net
    for name in ("sglrp", "clrp"):
        an = lrpgraph.create_analyzer(name, model, ignore_bias=True, low=0.0, high=1.0)
        assert an.program.one_pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r = an.analyze(x)
        sums = r.reshape(len(x), -1).sum(1)
        assert np.all(np.abs(sums) <= 1e-5 * np.abs(r).reshape(len(x), -1).sum(1))
        # the layers have no bias variable here, so the 1.0.8.3 rule is the same rule
        assert lrpgraph.create_analyzer(name, model, low=0.0, high=1.0).program.one_pass
