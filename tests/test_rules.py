"""The rule library: hand-computed values, conservation and identities.

The expected relevances are computed here in float64 numpy, one formula per rule, as
written in shared/REFERENCE.md (x input, w weights, b bias, z_j = sum_i x_i w_ij + b_j,
R_j relevance at the layer output).
"""

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras import layers as L

import lrpgraph
from lrpgraph.engine import heads
from lrpgraph import rules as R
from lrpgraph.engine.ops import describe
from lrpgraph.engine.context import Context

# ---- the two-layer net: x (3) -> Dense W1,b1 -> ReLU -> Dense W2,b2 -> logits (2) -------

W1 = np.array([[1.0, -2, 0.5, 1], [2, 1, -1, 0.5], [-1, 1, 2, -1.5]])
B1 = np.array([0.5, -0.5, 1, 0.25])
W2 = np.array([[1.0, -1], [-0.5, 1], [1.5, 2], [-1, 0.5]])
B2 = np.array([0.25, -0.5])
X = np.array([[1, 2, -1], [2, -1, 1.5], [-0.5, 1, 2]])
T = np.array([1, 0, 1])  # sample 0's target logit is negative (-5.125)


def two_layer(make_dense_net, bias=True):
    return make_dense_net([W1, W2], [B1, B2] if bias else None, name="two_layer")


def forward(bias=True):
    z1 = X @ W1 + (B1 if bias else 0)
    h = np.maximum(z1, 0)
    z2 = h @ W2 + (B2 if bias else 0)
    R0 = np.zeros_like(z2)
    R0[np.arange(len(X)), T] = z2[np.arange(len(X)), T]
    return h, R0


pos = lambda a: np.maximum(a, 0)  # noqa: E731
neg = lambda a: np.minimum(a, 0)  # noqa: E731


def safe_div(a, b):
    return a / (b + (b == 0) * 1e-7)


def sign1(z):
    return np.where(z >= 0, 1.0, -1.0)


def ref_z(x, w, b, r, bias=True):
    z = x @ w + (b if bias else 0)
    return x * (safe_div(r, z) @ w.T)


def ref_epsilon(x, w, b, r, eps, bias=True):
    z = x @ w + (b if bias else 0)
    return x * ((r / (z + eps * sign1(z))) @ w.T)


def ref_alpha_beta(x, w, b, r, alpha, beta, bias=True, div=safe_div):
    xp, xn, wp, wn = pos(x), neg(x), pos(w), neg(w)
    bp, bn = pos(b), neg(b)
    b_pos = {True: b, "split": bp, False: 0}[bias]
    b_neg = {True: b, "split": bn, False: 0}[bias]
    s_pos = div(r, xp @ wp + xn @ wn + b_pos)
    s_neg = div(r, xp @ wn + xn @ wp + b_neg)
    r_pos = xp * (s_pos @ wp.T) + xn * (s_pos @ wn.T)
    r_neg = xp * (s_neg @ wn.T) + xn * (s_neg @ wp.T)
    return alpha * r_pos - beta * r_neg


def ref_zplus_fast(x, w, b, r):
    wp = pos(w)
    return x * (safe_div(r, x @ wp) @ wp.T)


def ref_gamma(x, w, b, r, gamma, eps=1e-6):
    def stab(z):
        return z + eps * sign1(z)

    up = lambda t: t + gamma * pos(t)  # noqa: E731
    down = lambda t: t + gamma * neg(t)  # noqa: E731
    xp, xn = pos(x), neg(x)
    out = x @ w + b
    s_pos = r * (out > 0) / stab(xp @ up(w) + up(b) + xn @ down(w))
    s_neg = r * (out < 0) / stab(xp @ down(w) + down(b) + xn @ up(w))
    return xp * (s_pos @ up(w).T) + xn * (s_pos @ down(w).T) + xp * (s_neg @ down(w).T) + xn * (s_neg @ up(w).T)


def ref_w_square(x, w, b, r):
    return safe_div(r, np.ones_like(x) @ w ** 2) @ (w ** 2).T


def ref_flat(x, w, b, r):
    return ref_w_square(x, np.ones_like(w), b, r)


def ref_zbox(x, w, b, r, low, high):
    lo = np.broadcast_to(low, x.shape)
    hi = np.broadcast_to(high, x.shape)
    wp, wn = pos(w), neg(w)
    s = safe_div(r, x @ w - lo @ wp - hi @ wn)
    return x * (s @ w.T) - lo * (s @ wp.T) - hi * (s @ wn.T)


# rule name -> (rule for every linear layer, numpy reference for one layer)
CASES = {
    "z": (lambda: R.Z(), lambda x, w, b, r: ref_z(x, w, b, r)),
    "z_ib": (lambda: R.Z(bias=False), lambda x, w, b, r: ref_z(x, w, b, r, bias=False)),
    "epsilon_0.5": (lambda: R.Epsilon(0.5), lambda x, w, b, r: ref_epsilon(x, w, b, r, 0.5)),
    "epsilon_3_ib": (lambda: R.Epsilon(3.0, bias=False),
                     lambda x, w, b, r: ref_epsilon(x, w, b, r, 3.0, bias=False)),
    "zplus": (lambda: R.ZPlus(), lambda x, w, b, r: ref_alpha_beta(x, w, b, r, 1, 0, bias=False)),
    "zplus_fast": (lambda: R.ZPlusFast(), ref_zplus_fast),
    "alpha2beta1": (lambda: R.AlphaBeta(2, 1), lambda x, w, b, r: ref_alpha_beta(x, w, b, r, 2, 1)),
    "alpha2beta1_split": (lambda: R.AlphaBeta(2, 1, bias="split"),
                          lambda x, w, b, r: ref_alpha_beta(x, w, b, r, 2, 1, bias="split")),
    "alpha2beta1_ib": (lambda: R.AlphaBeta(2, 1, bias=False),
                       lambda x, w, b, r: ref_alpha_beta(x, w, b, r, 2, 1, bias=False)),
    "alpha1beta0": (lambda: R.AlphaBeta(1, 0), lambda x, w, b, r: ref_alpha_beta(x, w, b, r, 1, 0)),
    "alpha3beta2_split_zennit": (
        lambda: R.AlphaBeta(3, 2, bias="split", stabilizer=1e-6),
        lambda x, w, b, r: ref_alpha_beta(x, w, b, r, 3, 2, bias="split", div=lambda a, z: a / (z + 1e-6 * sign1(z)))),
    "gamma_0.25": (lambda: R.Gamma(0.25), lambda x, w, b, r: ref_gamma(x, w, b, r, 0.25)),
    "gamma_1": (lambda: R.Gamma(1.0), lambda x, w, b, r: ref_gamma(x, w, b, r, 1.0)),
    "w_square": (lambda: R.WSquare(), ref_w_square),
    "flat": (lambda: R.Flat(), ref_flat),
}


def expected_two_layer(ref, bias=True):
    """Top layer's rule on (h, W2, b2), ReLU passes relevance, bottom layer's on (x, W1, b1)."""
    h, R0 = forward(bias)
    b1, b2 = (B1, B2) if bias else (np.zeros(4), np.zeros(2))
    Rh = ref(h, W2, b2, R0)
    return ref(X, W1, b1, Rh)


@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_hand_computed_two_layer(make_dense_net, case):
    make_rule, ref = CASES[case]
    model = two_layer(make_dense_net)
    an = lrpgraph.Analyzer(model, "lrp.z", overrides={"kind:linear": make_rule()})
    got = an.analyze(X.astype("float32"), target=T)
    want = expected_two_layer(ref)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def test_hand_computed_lrp0_literal(make_dense_net):
    """One case written out: bias-free net, sample 0, target 0.
    h = relu(x W1) = relu([6, -1, -3.5, 3.5]) = [6, 0, 0, 3.5]; z2_0 = 6*1 + 3.5*(-1) = 2.5.
    R_h = h * w_:0 = [6, 0, 0, -3.5]; R_x_i = x_i * sum_j W1_ij R_h_j / z1_j
    = x_i * (W1_i0 * 6/6 + W1_i3 * (-3.5)/3.5) = x_i * (W1_i0 - W1_i3) = [1*0, 2*1.5, -1*0.5]."""
    model = two_layer(make_dense_net, bias=False)
    an = lrpgraph.Analyzer(model, "lrp.z")
    got = an.analyze(X[:1].astype("float32"), target=0)
    np.testing.assert_allclose(got, [[0.0, 3.0, -0.5]], atol=1e-6)
    assert got.sum() == pytest.approx(2.5, abs=1e-6)


def test_alpha_beta_bias_conventions_differ(make_dense_net):
    model = two_layer(make_dense_net)
    x = X.astype("float32")
    maps = [lrpgraph.Analyzer(model, "lrp.z", overrides={"kind:linear": R.AlphaBeta(2, 1, bias=b)}).analyze(x, T)
            for b in (True, "split", False)]
    assert np.abs(maps[0] - maps[1]).max() > 0.1
    assert np.abs(maps[0] - maps[2]).max() > 0.1
    assert np.abs(maps[1] - maps[2]).max() > 0.1


def test_zplus_keeps_negative_input_term_zplus_fast_does_not(make_dense_net):
    model = two_layer(make_dense_net, bias=False)
    x = X.astype("float32")
    zp = lrpgraph.Analyzer(model, "lrp.z_plus").analyze(x, T)
    fast = lrpgraph.Analyzer(model, "lrp.z_plus_fast").analyze(x, T)
    np.testing.assert_allclose(zp, expected_two_layer(CASES["zplus"][1], bias=False), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast, expected_two_layer(ref_zplus_fast, bias=False), rtol=1e-5, atol=1e-5)
    assert np.abs(zp - fast).max() > 0.1  # X has negative entries
    # on non-negative inputs both are the same rule
    xp = np.abs(x)
    np.testing.assert_allclose(lrpgraph.Analyzer(model, "lrp.z_plus").analyze(xp, T),
                               lrpgraph.Analyzer(model, "lrp.z_plus_fast").analyze(xp, T), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("per_channel", [False, True])
def test_zbox_hand_computed(make_dense_net, per_channel):
    low = np.array([-1.0, -2.0, -0.5]) if per_channel else -1.0
    high = np.array([1.5, 2.0, 3.0]) if per_channel else 2.0
    model = two_layer(make_dense_net)
    h, R0 = forward()
    Rh = ref_alpha_beta(h, W2, B2, R0, 1, 0, bias=False)  # z+ above the first layer
    want = ref_zbox(X, W1, B1, Rh, low, high)
    # through the deep_taylor.bounded preset (iNNvestigate's parameter names) on a positive-logit target
    t = np.array([0, 0, 1])
    R0p = np.zeros((3, 2))
    R0p[np.arange(3), t] = np.maximum((h @ W2 + B2)[np.arange(3), t], 0)
    want_dt = ref_zbox(X, W1, B1, ref_alpha_beta(h, W2, B2, R0p, 1, 0, bias=False), low, high)
    got_dt = lrpgraph.Analyzer(model, "deep_taylor.bounded", low=low, high=high).analyze(X.astype("float32"), t)
    np.testing.assert_allclose(got_dt, want_dt, rtol=1e-5, atol=1e-5 * np.abs(want_dt).max())
    # and through overrides, from the raw (signed) target logit
    an = lrpgraph.Analyzer(model, "lrp.z", overrides=[("first", R.ZBox(low, high)), ("kind:linear", R.ZPlus())])
    got = an.analyze(X.astype("float32"), T)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


# ---- single-layer checks with a hand-made Context --------------------------------------

def dense_ctx(w, b, x):
    layer = L.Dense(w.shape[1], use_bias=b is not None)
    layer.build((None, w.shape[0]))
    layer.set_weights([w.astype("float32")] + ([b.astype("float32")] if b is not None else []))
    op = describe(layer, None)
    x = tf.constant(x, tf.float32)
    return Context(op, [x], op([x])[0])


def test_epsilon_sign_of_zero_is_plus_one():
    w = np.array([[1.0, 2.0], [-1.0, 1.0]])
    x = np.array([[1.0, 1.0]])  # z = [0, 3]
    ctx = dense_ctx(w, None, x)
    eps = 0.5
    (got,) = R.Epsilon(eps).backward(ctx, tf.constant([[1.0, 0.0]]))
    # R / (0 + eps * (+1)) = 2 -> x_i * w_i0 * 2 = [2, -2]; sign(0) = 0 or -1 would give inf or [-2, 2]
    np.testing.assert_allclose(got.numpy(), [[2.0, -2.0]], rtol=1e-6)
    # LRP-0's safe divide only touches exact zeros: 1 / 1e-7
    (z0,) = R.Z().backward(ctx, tf.constant([[1.0, 0.0]]))
    np.testing.assert_allclose(z0.numpy(), [[1e7, -1e7]], rtol=1e-5)


def test_epsilon_absorbs_relevance():
    w = np.array([[1.0, 2.0], [3.0, -1.0]])
    x = np.array([[1.0, 2.0]])  # z = [7, 0] + b
    b = np.array([0.0, -1.0])  # z = [7, -1]
    ctx = dense_ctx(w, b, x)
    Rout = np.array([[7.0, -1.0]])
    for eps in (0.0, 1.0, 7.0):
        (got,) = R.Epsilon(eps).backward(ctx, tf.constant(Rout, tf.float32))
        want = ref_epsilon(x, w, b, Rout, eps)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-7)
    # eps = 1: z + eps sign z = [8, -2], so sum R_x = 7/8 * 7 + (-1)/(-2) * (-1 - b_1) = 6.125 + 0 = 6.125
    (got,) = R.Epsilon(1.0).backward(ctx, tf.constant(Rout, tf.float32))
    assert float(got.numpy().sum()) == pytest.approx(7 * 7 / 8 + 0.5 * 0.0, rel=1e-6)


# ---- Gamma on non-negative inputs: the short computation equals the general recipe -------

def conv_ctx(rng, bias=True):
    layer = L.Conv2D(5, 3, padding="same", use_bias=bias)
    layer.build((None, 7, 7, 4))
    layer.set_weights([rng.normal(size=(3, 3, 4, 5)).astype("float32")]
                      + ([rng.normal(size=5).astype("float32")] if bias else []))
    op = describe(layer, None)
    x = tf.constant(np.maximum(rng.normal(size=(2, 7, 7, 4)), 0).astype("float32"))  # >= 0, many exact zeros
    y = op([x])[0]
    return Context(op, [x], y, nonneg=[True]), tf.constant(rng.normal(size=y.shape).astype("float32"))


@pytest.mark.parametrize("gamma,stabilizer,bias", [(0.25, 1e-6, True), (1.0, None, True), (0.25, 1e-6, False),
                                                   (0.0, 1e-6, True)])
def test_gamma_nonneg_shortcut_equals_the_general_rule(rng, monkeypatch, gamma, stabilizer, bias):
    """On x >= 0 Gamma takes one extra forward and two transposed convs instead of the
    general BasicRule recipe; both must give the same relevance (bias included)."""
    ctx, rel = conv_ctx(rng, bias)
    rule = R.Gamma(gamma, stabilizer)
    (general,) = R.BasicRule.modified_gradient(rule, ctx, rel)
    # the short path does not go through BasicRule's general recipe at all
    monkeypatch.setattr(R.BasicRule, "modified_gradient", lambda *a: pytest.fail("took the general path"))
    (fast,) = rule.backward(ctx, rel)
    monkeypatch.undo()
    general, fast = general.numpy(), fast.numpy()
    assert np.abs(general).max() > 1e-2  # not a trivial all-zero map
    np.testing.assert_allclose(fast, general, rtol=0, atol=1e-6 * np.abs(general).max())
    # on inputs not known to be >= 0 the general recipe runs
    signed = Context(ctx.op, ctx.inputs, ctx.output, nonneg=[False])
    (again,) = rule.backward(signed, rel)
    np.testing.assert_allclose(again.numpy(), general, rtol=0, atol=1e-6 * np.abs(general).max())


@pytest.mark.parametrize("stabilizer,per_channel,nonneg", [(None, False, False), (1e-6, True, False),
                                                          (None, True, True)])
def test_zbox_shortcut_equals_the_general_rule(rng, monkeypatch, stabilizer, per_channel, nonneg):
    """ZBox computes its bound terms on one sample and needs two transposed convs, not three:
    equal to BasicRule's three-term recipe."""
    ctx, rel = conv_ctx(rng)
    if not nonneg:
        x = tf.constant(rng.uniform(-2, 2, size=ctx.x.shape).astype("float32"))
        ctx = Context(ctx.op, [x], ctx.op([x])[0])
    low, high = (np.array([-2.0, -1.0, 0.0, -0.5]), np.array([2.0, 1.5, 2.0, 0.5])) if per_channel else (-2.0, 2.0)
    rule = R.ZBox(low, high, stabilizer)
    (general,) = R.BasicRule.modified_gradient(rule, ctx, rel)
    monkeypatch.setattr(R.BasicRule, "modified_gradient", lambda *a: pytest.fail("took the general path"))
    (fast,) = rule.backward(ctx, rel)
    monkeypatch.undo()
    general, fast = general.numpy(), fast.numpy()
    assert np.abs(general).max() > 1e-2
    np.testing.assert_allclose(fast, general, rtol=0, atol=1e-6 * np.abs(general).max())


def test_epsilon_gamma_box_multi_target_equals_single_targets(small_cnn):
    """Several targets per sample tile the reverse pass: Gamma's short path tiles its
    denominators like BasicRule does."""
    model, x, _ = small_cnn
    an = lrpgraph.Analyzer(model, "epsilon_gamma_box")
    ts = np.array([[0, 3], [1, 2], [5, 5], [9, 4]])[:len(x)]
    multi = an.analyze(x[:len(ts)], target=ts)
    for k in range(ts.shape[1]):
        single = an.analyze(x[:len(ts)], target=ts[:, k])
        np.testing.assert_allclose(multi[:, k], single, rtol=1e-5, atol=1e-6 * np.abs(single).max())


# ---- bad parameters are errors when the rule is built ----------------------------------------

@pytest.mark.parametrize("make,msg", [
    (lambda: R.Epsilon(-1), r"Epsilon: epsilon must be a finite number >= 0 \(.*\), got epsilon=-1"),
    (lambda: R.Epsilon(float("nan")), r"Epsilon: epsilon must be a finite number >= 0.*got epsilon=nan"),
    (lambda: R.Epsilon("0.1"), r"Epsilon: epsilon must be a finite number >= 0.*got epsilon='0.1'"),
    (lambda: R.Gamma(-0.25), r"Gamma: gamma must be a finite number >= 0 \(.*\), got gamma=-0.25"),
    (lambda: R.Gamma(0.25, stabilizer=-1e-6), r"Gamma: stabilizer must be a finite number >= 0"),
    (lambda: R.Z(stabilizer=-1.0), r"Z: stabilizer must be a finite number >= 0.*got stabilizer=-1.0"),
    (lambda: R.ZPlus(stabilizer=-1.0), r"AlphaBeta: stabilizer must be"),
    (lambda: R.Flat(stabilizer=-1.0), r"Flat: stabilizer must be"),
    (lambda: R.WSquare(stabilizer=-1.0), r"WSquare: stabilizer must be"),
    (lambda: R.AlphaBeta(2, 2), r"AlphaBeta needs alpha, beta >= 0 and alpha - beta = 1, got alpha=2, beta=2"),
    (lambda: R.AlphaBeta(1.5, 1), r"alpha - beta = 1, got alpha=1.5, beta=1"),
    (lambda: R.AlphaBeta(0, -1), r"alpha, beta >= 0"),
    (lambda: R.ZBox(low=1, high=-1), r"ZBox: the input bounds need low <= high, both finite \(.*\), "
                                     r"got low=1, high=-1"),
    (lambda: R.ZBox(low=[0, 0, 2], high=[1, 1, 1]), r"low <= high.*got low=\[0, 0, 2\], high=\[1, 1, 1\]"),
    (lambda: R.ZBox(low=-np.inf, high=1), r"low <= high, both finite"),
    (lambda: R.ZBox(low=[0, 0], high=[1, 1, 1]), r"ZBox: low and high must broadcast.*\(2,\) and \(3,\)"),
])
def test_bad_rule_parameters_are_errors(make, msg):
    with pytest.raises(ValueError, match=msg):
        make()


@pytest.mark.parametrize("make", [lambda: R.Epsilon(0.0), lambda: R.Gamma(0.0), lambda: R.ZBox(0.5, 0.5),
                                  lambda: R.ZBox([0, -1, 0], 1.0), lambda: R.AlphaBeta(1, 0),
                                  lambda: R.Epsilon(np.float32(0.1))])
def test_boundary_rule_parameters_are_accepted(make):
    make()


@pytest.mark.parametrize("method,params,msg", [
    ("lrp.epsilon", {"epsilon": -1}, r"epsilon must be a finite number >= 0.*got epsilon=-1"),
    ("epsilon_gamma_box", {"gamma": -0.5}, r"gamma must be a finite number >= 0.*got gamma=-0.5"),
    ("epsilon_gamma_box", {"epsilon": -1e-3}, r"got epsilon=-0.001"),
    ("epsilon_gamma_box", {"low": 2.0, "high": 1.0}, r"low <= high.*got low=2.0, high=1.0"),
    ("deep_taylor.bounded", {"low": 1.0, "high": 0.0}, r"low <= high.*got low=1.0, high=0.0"),
])
def test_bad_preset_parameters_fail_when_the_analyzer_is_built(small_cnn, method, params, msg):
    model, _, _ = small_cnn
    with pytest.raises(ValueError, match=msg):
        lrpgraph.create_analyzer(method, model, **params)


# ---- conservation ---------------------------------------------------------------------------

def bias_free_mlp(make_dense_net, rng):
    ws = [rng.normal(size=s) for s in [(6, 12), (12, 12), (12, 4)]]
    return make_dense_net(ws, None, name="nb_mlp"), rng.normal(size=(5, 6)).astype("float32")


def target_logits(model, x, t):
    return model(x).numpy()[np.arange(len(x)), t]


@pytest.mark.parametrize("method,kw", [("lrp.z", {}), ("lrp.epsilon", {"epsilon": 1e-9}),
                                       ("lrp.z_plus", {}), ("lrp.flat", {}), ("lrp.w_square", {})])
def test_conservation_bias_free_mlp(make_dense_net, rng, method, kw):
    model, x = bias_free_mlp(make_dense_net, rng)
    t = np.array([0, 1, 2, 3, 0])
    r = lrpgraph.Analyzer(model, method, **kw).analyze(x, t)
    np.testing.assert_allclose(r.sum(axis=1), target_logits(model, x, t), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["lrp.z_plus", "lrp.flat", "lrp.w_square"])
def test_conservation_with_biases(relu_mlp, method):
    """z+ ignores the biases and flat and w^2 ignore x and b: all three conserve with biases."""
    model, x = relu_mlp
    t = np.array([0, 1, 2, 3])
    r = lrpgraph.Analyzer(model, method).analyze(x, t)
    np.testing.assert_allclose(r.sum(axis=1), target_logits(model, x, t), rtol=1e-4, atol=1e-5)


def test_epsilon_with_biases_does_not_conserve(relu_mlp):
    """The check above can fail: with biases, LRP-0 loses the share the biases took."""
    model, x = relu_mlp
    t = np.array([0, 1, 2, 3])
    r = lrpgraph.Analyzer(model, "lrp.z").analyze(x, t)
    assert np.abs(r.sum(axis=1) - target_logits(model, x, t)).max() > 1e-2


@pytest.mark.parametrize("method", ["lrp.z", "lrp.epsilon", "lrp.flat", "lrp.w_square", "lrp.z_plus"])
def test_conservation_conv_net_no_bias(small_cnn_nb, method):
    model, x, t = small_cnn_nb
    r = lrpgraph.Analyzer(model, method).analyze(x, t)
    z = target_logits(model, x, t)
    np.testing.assert_allclose(r.reshape(len(x), -1).sum(axis=1), z, rtol=1e-4, atol=1e-4 * np.abs(z).max())


# ---- LRP-0 == gradient x input on ReLU nets -------------------------------------------------

def test_lrp0_equals_gradient_times_input_mlp(relu_mlp):
    model, x = relu_mlp
    t = np.array([4, 3, 2, 1])
    lrp = lrpgraph.Analyzer(model, "lrp.z").analyze(x, t)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        z = tf.gather(model(xt), t, batch_dims=1)
    gxi = (tape.gradient(z, xt) * xt).numpy()
    np.testing.assert_allclose(lrp, gxi, rtol=1e-4, atol=1e-5 * np.abs(gxi).max())


def test_lrp0_equals_gradient_times_input_conv_maxpool(small_cnn):
    model, x, t = small_cnn
    lrp = lrpgraph.Analyzer(model, "lrp.z").analyze(x, t)
    ixg = lrpgraph.Analyzer(model, "input_t_gradient").analyze(x, t)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        z = tf.gather(model(xt), t, batch_dims=1)
    ref = (tape.gradient(z, xt) * xt).numpy()
    for i in range(len(x)):
        scale = np.abs(ref[i]).max()
        assert np.abs(lrp[i] - ref[i]).max() <= 1e-4 * scale
        assert np.abs(ixg[i] - ref[i]).max() <= 1e-5 * scale


# ---- structural rules: Add, Multiply ---------------------------------------------------------

def residual_model(rng):
    inp = keras.Input((5,))
    h = L.ReLU(name="hr")(L.Dense(6, use_bias=False, name="h")(inp))
    a = L.Dense(6, use_bias=False, name="a")(h)
    y = L.Add(name="add")([h, a])
    out = L.Dense(3, use_bias=False, name="out")(L.ReLU(name="yr")(y))
    model = keras.Model(inp, out)
    for w in model.weights:
        w.assign(rng.normal(size=w.shape))
    return model


def test_add_conserves_across_residual_block(rng):
    model = residual_model(rng)
    x = rng.normal(size=(4, 5)).astype("float32")
    t = np.array([0, 1, 2, 0])
    x_t = tf.constant(x)
    hr = model.get_layer("hr")(model.get_layer("h")(x_t)).numpy()
    a = model.get_layer("a")(hr).numpy()
    w_out = model.get_layer("out").get_weights()[0]
    # stop at both Add inputs: R_h = h * R_y / y with R_y = relu(y) * w_:t (LRP-0 at the top)
    y = hr + a
    Ry = np.maximum(y, 0) * w_out[:, t].T
    Rh, Ra = lrpgraph.Analyzer(model, "lrp.z", stop_at=["hr", "a"]).analyze(x, t)
    np.testing.assert_allclose(Rh, hr * safe_div(Ry, y), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(Ra, a * safe_div(Ry, y), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(Rh + Ra, Ry, rtol=1e-5, atol=1e-5)
    # and down to the input: no copy into both branches (iNNvestigate's deep_taylor does that)
    z = target_logits(model, x, t)
    for method, start in [("lrp.z", z), ("deep_taylor", np.maximum(z, 0))]:
        r = lrpgraph.Analyzer(model, method).analyze(x, t)
        np.testing.assert_allclose(r.sum(axis=1), start, rtol=1e-4, atol=1e-5)


def test_gate_gives_all_relevance_to_value(rng):
    inp = keras.Input((5,))
    v = L.Dense(4, use_bias=False, name="v")(inp)
    g = L.Dense(4, activation="sigmoid", name="g")(inp)
    y = L.Multiply(name="mul")([v, g])
    model = keras.Model(inp, L.Dense(3, use_bias=False, name="out")(y))
    for w in model.weights:
        w.assign(rng.normal(size=w.shape))
    x = rng.normal(size=(3, 5)).astype("float32")
    t = np.array([2, 0, 1])
    y_val = (model.get_layer("v")(x) * model.get_layer("g")(x)).numpy()
    Ry = y_val * model.get_layer("out").get_weights()[0][:, t].T
    Rv, Rg = lrpgraph.Analyzer(model, "lrp.z", stop_at=["v", "g"]).analyze(x, t)
    np.testing.assert_allclose(Rv, Ry, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(Rg, 0.0)
    # everything reaching the input went through the value branch: conserved
    r = lrpgraph.Analyzer(model, "lrp.z").analyze(x, t)
    np.testing.assert_allclose(r.sum(axis=1), target_logits(model, x, t), rtol=1e-4, atol=1e-5)


# ---- linearity in the head -----------------------------------------------------------------------

@pytest.mark.parametrize("method", ["lrp.epsilon", "lrp.alpha_2_beta_1", "lrp.z_plus", "lrp.w_square",
                                    "lrp.sequential_preset_b_flat", "epsilon_gamma_box", "deep_taylor.bounded"])
def test_relevance_is_linear_in_the_head(small_cnn, method):
    model, x, t = small_cnn
    base = lrpgraph.Analyzer(model, method)
    start = heads.get_head(base.preset.head)
    doubled = lrpgraph.Analyzer(model, method, head=lambda logits, tg: 2.0 * start(logits, tg))
    r1 = base.analyze(x, t)
    r2 = doubled.analyze(x, t)
    assert np.abs(r1).max() > 0
    np.testing.assert_allclose(r2, 2.0 * r1, rtol=1e-5, atol=1e-6 * np.abs(r1).max())
