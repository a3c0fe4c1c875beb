"""Recurrent networks (issue 23): LSTM, GRU, SimpleRNN and Bidirectional.

- The graph's forward equals the Keras model's for every layer configuration (cell,
  GRU reset_after, return_sequences, go_backwards, masks, Bidirectional merge modes).
- lrp.epsilon equals a numpy re-implementation of Arras et al.'s LSTM rule (written here
  from the WASSA 2017 paper and the description of ArrasL/LRP_for_LSTM's ``lrp_linear``
  and ``LSTM_bidi.lrp``; Arras orders gates (i, g, f, o), Keras (i, f, c, o): the
  reference slices Keras's blocks by name) on LSTM and Bidirectional(LSTM) models, for
  bias_factor 0 and 1, in float32 and float64.
- bias_factor=1 conserves: input relevance + what Arras' code reports for the initial
  state = the logit.
- Masked steps get exactly zero and leave the other steps' relevance unchanged.
- The reverse pass over time is compiled once for every sequence length.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras import layers as L

import lrpgraph
from lrpgraph.engine.prepared import prepare

D, H, C, T = 3, 4, 2, 6


# ---- numpy reference: Arras et al.'s LRP for (bidirectional) LSTMs ----------------------

def lrp_linear(hin, w, b, hout, rout, n_units, eps, bias_factor):
    """Arras' linear rule: R_i = sum_j (hin_i w_ij + bf (b_j + eps s_j) / n_units) R_j / (hout_j + eps s_j),
    s_j = sign(hout_j) with sign(0) = +1."""
    sign = np.where(hout >= 0, 1.0, -1.0)
    numer = w * hin[:, None] + bias_factor * (b + eps * sign)[None, :] / n_units
    return ((numer / (hout + eps * sign)[None, :]) * rout[None, :]).sum(axis=1)


def lstm_states(x, k, u, b):
    """Forward pass of one Keras LSTM (gate blocks i, f, c, o) on x (T, D); arrays of
    T + 1 rows whose row -1 is the zero initial state (Arras' layout)."""
    hd = u.shape[0]
    i, f, g, o = (slice(j * hd, (j + 1) * hd) for j in range(4))
    n = len(x)
    h, c = np.zeros((n + 1, hd)), np.zeros((n + 1, hd))
    pre, gates = np.zeros((n, 4 * hd)), np.zeros((n, 4 * hd))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for t in range(n):
        pre[t] = x[t] @ k + h[t - 1] @ u + b
        gates[t, i], gates[t, f], gates[t, o] = sig(pre[t, i]), sig(pre[t, f]), sig(pre[t, o])
        gates[t, g] = np.tanh(pre[t, g])
        c[t] = gates[t, f] * c[t - 1] + gates[t, i] * gates[t, g]
        h[t] = gates[t, o] * np.tanh(c[t])
    return h, c, pre, gates


def lstm_lrp(x, k, u, b, h, c, pre, gates, rh_last, eps, bf):
    """Arras' reverse pass through one LSTM from the relevance of its last hidden state:
    (R_x (T, D), relevance left at the initial state)."""
    hd, e = u.shape[0], x.shape[1]
    i, f, g = (slice(j * hd, (j + 1) * hd) for j in (0, 1, 2))
    n = len(x)
    rx = np.zeros_like(x)
    rh, rc = np.zeros((n + 1, hd)), np.zeros((n + 1, hd))
    rh[n - 1] = rh_last
    for t in reversed(range(n)):
        rc[t] += rh[t]
        rc[t - 1] = lrp_linear(gates[t, f] * c[t - 1], np.eye(hd), np.zeros(hd), c[t], rc[t], 2 * hd, eps, bf)
        rg = lrp_linear(gates[t, i] * gates[t, g], np.eye(hd), np.zeros(hd), c[t], rc[t], 2 * hd, eps, bf)
        rx[t] = lrp_linear(x[t], k[:, g], b[g], pre[t, g], rg, hd + e, eps, bf)
        rh[t - 1] = lrp_linear(h[t - 1], u[:, g], b[g], pre[t, g], rg, hd + e, eps, bf)
    return rx, rh[-1].sum() + rc[-1].sum()


def reference(model, x, target, eps, bf, bidirectional):
    """Arras' LRP of ``model`` (LSTM or Bidirectional(LSTM, concat) -> Dense without bias)
    for one sequence x (T, D): (R_x, logit, initial-state relevance)."""
    w = [np.asarray(v, np.float64) for v in model.get_weights()]
    x = np.asarray(x, np.float64)
    if not bidirectional:
        k, u, b, wy = w
        h, c, pre, gates = lstm_states(x, k, u, b)
        s = h[len(x) - 1] @ wy
        rout = np.zeros(C)
        rout[target] = s[target]
        rh = lrp_linear(h[len(x) - 1], wy, np.zeros(C), s, rout, H, eps, bf)
        rx, leak = lstm_lrp(x, k, u, b, h, c, pre, gates, rh, eps, bf)
        return rx, s[target], leak
    kl, ul, bl, kr, ur, br, wy = w
    hl, cl, pl, gl = lstm_states(x, kl, ul, bl)
    xr = x[::-1].copy()
    hr, cr, pr, gr = lstm_states(xr, kr, ur, br)
    n = len(x)
    s = hl[n - 1] @ wy[:H] + hr[n - 1] @ wy[H:]
    rout = np.zeros(C)
    rout[target] = s[target]
    rhl = lrp_linear(hl[n - 1], wy[:H], np.zeros(C), s, rout, 2 * H, eps, bf)
    rhr = lrp_linear(hr[n - 1], wy[H:], np.zeros(C), s, rout, 2 * H, eps, bf)
    rxl, leak_l = lstm_lrp(x, kl, ul, bl, hl, cl, pl, gl, rhl, eps, bf)
    rxr, leak_r = lstm_lrp(xr, kr, ur, br, hr, cr, pr, gr, rhr, eps, bf)
    return rxl + rxr[::-1], s[target], leak_l + leak_r


def lstm_model(bidirectional=False, dtype="float32", seed=0, masking=False, length=T):
    rng = np.random.default_rng(seed)
    inp = keras.Input((length, D), dtype=dtype)
    x = L.Masking(dtype=dtype)(inp) if masking else inp
    rnn = L.LSTM(H, dtype=dtype)
    y = L.Bidirectional(rnn, dtype=dtype)(x) if bidirectional else rnn(x)
    model = keras.Model(inp, L.Dense(C, use_bias=False, dtype=dtype)(y))
    model.set_weights([rng.normal(scale=0.7, size=w.shape) for w in model.get_weights()])
    return model


@pytest.mark.parametrize("bidirectional", [False, True], ids=["lstm", "bidi"])
@pytest.mark.parametrize("bf", [0.0, 1.0])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lstm_equals_arras_reference(bidirectional, bf, dtype):
    model = lstm_model(bidirectional, dtype)
    x = np.random.default_rng(1).normal(size=(3, T, D)).astype(dtype)
    eps = 1e-3  # Arras' default
    an = lrpgraph.create_analyzer("lrp.epsilon", model, epsilon=eps, bias_factor=bf)
    targets = np.array([0, 1, 1])
    maps = an.analyze(x, targets)
    assert maps.shape == x.shape
    for n in range(len(x)):
        ref, logit, leak = reference(model, x[n], targets[n], eps, bf, bidirectional)
        # float64: both sides compute the same sums in another order (1e-9 relative);
        # float32: lrpgraph's float32 noise over T steps against the float64 reference
        tol = 1e-9 if dtype == "float64" else 1e-5
        scale = np.abs(ref).max()
        np.testing.assert_allclose(maps[n], ref, rtol=tol, atol=tol * scale)
        if bf:  # conservation of the reference itself: inputs + initial state = logit
            assert abs(ref.sum() + leak - logit) < 1e-9 * max(1.0, abs(logit))


def test_bias_factor_one_conserves_without_state_leak():
    """bias_factor=1, zero initial state, no bias anywhere (the LSTM's included, so that
    no bias share falls on the zero initial state at the first step): the input
    relevance sums to the logit; bias_factor=0 with the biases loses relevance."""
    model = lstm_model(dtype="float64", seed=3)
    x = np.random.default_rng(2).normal(size=(2, T, D))
    inp = keras.Input((T, D), dtype="float64")
    nobias = keras.Model(inp, L.Dense(C, use_bias=False, dtype="float64")(L.LSTM(H, use_bias=False,
                                                                               dtype="float64")(inp)))
    w = model.get_weights()
    nobias.set_weights([w[0], w[1], w[3]])
    logits = np.asarray(nobias(x))
    maps = lrpgraph.create_analyzer("lrp.epsilon", nobias, epsilon=1e-9, bias_factor=1.0).analyze(x, 0)
    # eps = 1e-9: the stabiliser's share falling on c_{-1} = 0 at the first step is < 1e-9 R
    np.testing.assert_allclose(maps.reshape(2, -1).sum(1), logits[:, 0], rtol=1e-6)
    maps0 = lrpgraph.create_analyzer("lrp.epsilon", model, epsilon=1e-3, bias_factor=0.0).analyze(x, 0)
    logits0 = np.asarray(model(x))[:, 0]
    assert np.abs(maps0.reshape(2, -1).sum(1) - logits0).max() > 1e-4  # biases absorb: it must not conserve


@pytest.mark.parametrize("cell", ["lstm", "bidi", "gru", "simple"])
def test_masked_steps_get_zero_and_change_nothing(cell):
    """Padding (zeros, masked by Masking) at the end of a sequence: exactly zero relevance
    there, and the other steps' relevance equals that of the unpadded sequence."""
    pad = 3
    if cell in ("lstm", "bidi"):
        model = lstm_model(cell == "bidi", seed=4, masking=True, length=None)
    else:
        inp = keras.Input((None, D))
        layer = L.GRU(H, go_backwards=True) if cell == "gru" else L.SimpleRNN(H)
        model = keras.Model(inp, L.Dense(C)(layer(L.Masking()(inp))))
        rng = np.random.default_rng(4)
        model.set_weights([rng.normal(scale=0.7, size=w.shape) for w in model.get_weights()])
    x = np.random.default_rng(5).normal(size=(2, T, D)).astype("float32")
    padded = np.concatenate([x, np.zeros((2, pad, D), np.float32)], axis=1)
    an = lrpgraph.create_analyzer("lrp.epsilon", model, epsilon=1e-3)
    r_pad = an.analyze(padded, 1)
    r = an.analyze(x, 1)
    assert np.all(r_pad[:, T:] == 0)
    # float32: the same arithmetic except the padded steps' tf.where; 1e-6 relative
    np.testing.assert_allclose(r_pad[:, :T], r, rtol=1e-5, atol=1e-6 * np.abs(r).max())


def test_no_retrace_per_sequence_length():
    model = lstm_model(seed=6, length=None)
    an = lrpgraph.create_analyzer("lrp.epsilon", model)
    rng = np.random.default_rng(0)
    for n, t in [(2, 5), (3, 9), (1, 2), (4, 13)]:
        out = an.analyze(rng.normal(size=(n, t, D)).astype("float32"), 0)
        assert out.shape == (n, t, D)
    assert an.program.traces == 1


# ---- the graph's forward equals the model's ------------------------------------------

CELLS = {
    "lstm": lambda **kw: L.LSTM(H, **kw),
    "gru": lambda **kw: L.GRU(H, **kw),
    "gru_reset_before": lambda **kw: L.GRU(H, reset_after=False, **kw),
    "simple": lambda **kw: L.SimpleRNN(H, **kw),
    "bidi_concat": lambda **kw: L.Bidirectional(L.LSTM(H, **kw), merge_mode="concat"),
    "bidi_sum": lambda **kw: L.Bidirectional(L.GRU(H, **kw), merge_mode="sum"),
    "bidi_mul": lambda **kw: L.Bidirectional(L.SimpleRNN(H, **kw), merge_mode="mul"),
    "bidi_ave": lambda **kw: L.Bidirectional(L.LSTM(H, **kw), merge_mode="ave"),
}


def sequence_inputs(mask, rng, n=3, length=7):
    """(keras input, tensor the recurrent layers read, data) with padding in samples 0 and 1."""
    if mask == "embedding":
        inp = keras.Input((length,), dtype="int32")
        x = L.Embedding(11, D, mask_zero=True)(inp)
        data = rng.integers(1, 11, (n, length)).astype("int32")
    else:
        inp = keras.Input((length, D))
        x = L.Masking()(inp) if mask == "masking" else inp
        data = rng.normal(size=(n, length, D)).astype("float32")
    if mask != "none":
        data[0, 5:] = 0  # padding at the end
        data[1, :2] = 0  # and at the start
    return inp, x, data


@pytest.mark.parametrize("mask", ["none", "masking", "embedding"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_graph_forward_equals_model(cell, mask):
    """Every (return_sequences, go_backwards) of the layer as one branch of a model with
    one output per branch; each output of the graph's forward equals the model's."""
    rng = np.random.default_rng(7)
    inp, x, data = sequence_inputs(mask, rng)
    outs = []
    for rs in (False, True):
        for gb in ((False,) if cell.startswith("bidi") else (False, True)):
            outs.append(CELLS[cell](return_sequences=rs, go_backwards=gb)(x))
    model = keras.Model(inp, outs)
    model.set_weights([rng.normal(scale=0.6, size=w.shape) for w in model.get_weights()])
    g = prepare(model).graph
    assert any(g.nodes[n]["op"].kind == "recurrent" for n in g.nodes)
    values = lrpgraph.engine.compile.run_forward(g, [tf.constant(data)])
    expected = model(data)
    for (node, out), ref in zip(g.graph["outputs"], expected):
        # float32: the same operations in the same order, up to the batched matmul of x K
        np.testing.assert_allclose(values[(node, out)].numpy(), np.asarray(ref), atol=1e-6)


# ---- other cells, presets, the gradient family, tokens, errors ---------------------------

@pytest.mark.parametrize("cell", ["gru", "gru_reset_before", "simple"])
def test_bias_factor_one_conserves_gru_simple(cell):
    """No bias anywhere, zero initial state, bias_factor=1, eps 1e-9: the input relevance
    sums to the logit (the gates are weightings: no relevance is lost there)."""
    f64 = {"dtype": "float64"}
    inp = keras.Input((T, D), dtype="float64")
    layer = {"gru": L.GRU(H, use_bias=False, **f64), "simple": L.SimpleRNN(H, use_bias=False, **f64),
             "gru_reset_before": L.GRU(H, use_bias=False, reset_after=False, **f64)}[cell]
    model = keras.Model(inp, L.Dense(C, use_bias=False, **f64)(layer(inp)))
    rng = np.random.default_rng(8)
    model.set_weights([rng.normal(scale=0.7, size=w.shape) for w in model.get_weights()])
    x = rng.normal(size=(3, T, D))
    maps = lrpgraph.create_analyzer("lrp.epsilon", model, epsilon=1e-9, bias_factor=1.0).analyze(x, 1)
    logits = np.asarray(model(x))[:, 1]
    # float64; the stabiliser's share (eps 1e-9) on the zero initial state is all that is lost
    np.testing.assert_allclose(maps.reshape(3, -1).sum(1), logits, rtol=1e-7)


def mixed_model(seed=9):
    """Masking -> Bidirectional(LSTM, sequences) -> GRU -> Dense: every op kind at once."""
    rng = np.random.default_rng(seed)
    inp = keras.Input((None, D))
    x = L.Masking()(inp)
    x = L.Bidirectional(L.LSTM(H, return_sequences=True))(x)
    x = L.GRU(H)(x)
    model = keras.Model(inp, L.Dense(C)(x))
    model.set_weights([rng.normal(scale=0.6, size=w.shape) for w in model.get_weights()])
    return model


def test_gradient_family_equals_autodiff():
    model = mixed_model()
    x = np.random.default_rng(10).normal(size=(3, T, D)).astype("float32")
    x[0, 4:] = 0
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = model(xt)[:, 1]
    grad = tape.gradient(y, xt).numpy()
    got = lrpgraph.create_analyzer("gradient", model).analyze(x, 1)
    # float32 gradients of the same function through two loop implementations
    np.testing.assert_allclose(got, grad, atol=1e-5 * np.abs(grad).max())
    assert np.all(got[0, 4:] == 0)  # masked steps: the output does not depend on them
    ixg = lrpgraph.create_analyzer("input_t_gradient", model).analyze(x, 1)
    np.testing.assert_allclose(ixg, grad * x, atol=1e-5 * np.abs(grad * x).max())


@pytest.mark.slow  # ~60 s on 2 shared cores (tracing the wrapped loops)
def test_integrated_gradients_and_smoothgrad_run():
    x = np.random.default_rng(10).normal(size=(2, T, D)).astype("float32")
    model = lstm_model(seed=14)
    ig = lrpgraph.create_analyzer("integrated_gradients", model, steps=32).analyze(x, 1)
    # completeness from the zero reference: sum = logit(x) - logit(0), up to the 32-step
    # Riemann sum's error (a smooth model: a few percent).  (With a Masking layer the zero
    # reference is a masked series, a jump at the path's start: not checked there.)
    diff = np.asarray(model(x))[:, 1] - np.asarray(model(np.zeros_like(x)))[:, 1]
    np.testing.assert_allclose(ig.reshape(2, -1).sum(1), diff, rtol=0.05, atol=0.02 * np.abs(diff).max())
    x[0, 4:] = 0
    for name in ("integrated_gradients", "smoothgrad"):
        m = lrpgraph.create_analyzer(name, mixed_model()).analyze(x, 1)
        assert m.shape == x.shape and np.all(np.isfinite(m)), name
        if name == "integrated_gradients":
            assert np.all(m[0, 4:] == 0)


LRP_PRESETS = ["lrp.z", "lrp.z_IB", "lrp.epsilon", "lrp.epsilon_IB", "lrp.z_plus", "lrp.z_plus_fast",
               "lrp.alpha_1_beta_0", "lrp.alpha_2_beta_1", "lrp.w_square", "lrp.flat", "deep_taylor",
               "lrp.sequential_preset_a", "epsilon_plus", "attn_lrp", "cp_lrp"]


FAST_PRESETS = ["lrp.z_plus_fast", "lrp.alpha_2_beta_1"]


@pytest.mark.parametrize("names", [FAST_PRESETS, pytest.param(
    [n for n in LRP_PRESETS if n not in FAST_PRESETS], marks=pytest.mark.slow)], ids=["fast", "others"])
def test_lrp_presets_run_and_zero_on_padding(names):
    """Every LRP preset gives the recurrent layers RecurrentLRP; maps finite, zero on padding."""
    model = mixed_model()
    x = np.random.default_rng(11).normal(size=(2, T, D)).astype("float32")
    x[1, 4:] = 0
    for name in names:
        an = lrpgraph.create_analyzer(name, model)
        rec = [n for n in an.rules if an.graph.nodes[n]["op"].kind == "recurrent"]
        assert len(rec) == 3 and all(isinstance(an.rules[n], lrpgraph.rules.RecurrentLRP) for n in rec), name
        m = an.analyze(x, 0)
        assert m.shape == x.shape and np.all(np.isfinite(m)), name
        assert np.all(m[1, 4:] == 0), name
        assert np.abs(m).sum() > 0, name


def test_tokens_through_embedding_with_mask_zero():
    """ids -> Embedding(mask_zero) -> LSTM -> Dense: one relevance per token (the sum over
    the embedding axis), exactly zero on padding, equal to the unpadded sequence's."""
    rng = np.random.default_rng(12)
    inp = keras.Input((None,), dtype="int32")
    x = L.Embedding(20, 5, mask_zero=True)(inp)
    model = keras.Model(inp, L.Dense(C)(L.LSTM(H)(x)))
    model.set_weights([rng.normal(scale=0.6, size=w.shape) for w in model.get_weights()])
    ids = rng.integers(1, 20, (2, 5)).astype("int32")
    padded = np.concatenate([ids, np.zeros((2, 3), np.int32)], 1)
    for name in ("lrp.epsilon", "gradient", "input_t_gradient"):
        an = lrpgraph.create_analyzer(name, model)
        r_pad, r = an.analyze(padded, 0), an.analyze(ids, 0)
        assert r_pad.shape == padded.shape
        assert np.all(r_pad[:, 5:] == 0), name
        np.testing.assert_allclose(r_pad[:, :5], r, rtol=1e-5, atol=1e-6 * np.abs(r).max())
    # lrp.epsilon with bias_factor=1 on a model without biases: tokens sum to the logit
    # up to what reaches the initial state (the LSTM has a bias: only the sign is checked)
    assert np.all(np.isfinite(r))


def test_stateful_and_multi_output_layers_are_clear_errors():
    inp = keras.Input(batch_shape=(2, T, D))
    model = keras.Model(inp, L.Dense(C)(L.LSTM(H, stateful=True)(inp)))
    with pytest.raises(ValueError, match="stateful"):
        lrpgraph.create_analyzer("lrp.epsilon", model)
    inp = keras.Input((T, D))
    model = keras.Model(inp, L.Dense(C)(L.Bidirectional(L.LSTM(H), merge_mode=None)(inp)[0]))
    with pytest.raises(ValueError, match="merge_mode"):
        lrpgraph.create_analyzer("lrp.epsilon", model)


def test_linear_simple_rnn_lrp0_is_input_times_gradient():
    """A linear SimpleRNN without biases is a linear map of the inputs: LRP-0 through it
    (and the Dense) equals input x gradient, an identity independent of the rule's code."""
    rng = np.random.default_rng(13)
    inp = keras.Input((T, D), dtype="float64")
    rnn = L.SimpleRNN(H, activation=None, use_bias=False, go_backwards=True, dtype="float64")
    model = keras.Model(inp, L.Dense(C, use_bias=False, dtype="float64")(rnn(inp)))
    model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
    x = rng.normal(size=(3, T, D))
    lrp0 = lrpgraph.create_analyzer("lrp.z", model).analyze(x, 1)
    ixg = lrpgraph.create_analyzer("input_t_gradient", model).analyze(x, 1)
    np.testing.assert_allclose(lrp0, ixg, rtol=1e-9, atol=1e-12)  # float64, same sums in another order


def test_time_series_heatmap():
    from lrpgraph.viz import time_series_heatmap

    x = np.random.default_rng(0).normal(size=(20, 2))
    r = np.zeros((20, 2))
    r[5, 0], r[9, 1] = 2.0, -1.0
    fig = time_series_heatmap(x, r, channel_names=["a", "b"], marks=[(5, 8)], title="t")
    bands = [ax.images[0].get_array() for ax in fig.axes[:2]]
    np.testing.assert_array_equal(np.asarray(bands[0])[0], r[:, 0])
    assert bands[0].shape == (1, 20) and len(fig.axes) == 3
    assert fig.axes[0].images[0].norm.vmax == 2.0 and fig.axes[0].images[0].norm.vmin == -2.0
    with pytest.raises(ValueError, match="one shape"):
        time_series_heatmap(x, r[:, :1])


@pytest.mark.slow  # ~60 s on 2 shared cores: integrated gradients and occlusion on 500 series
def test_sequence_model_finds_the_planted_pattern():
    """The shipped Bidirectional(LSTM) on the task with known decisive steps: how often each
    method's most relevant step lies in the planted pattern, on the held-out set the training
    script measured (lrpgraph/data/sequence_lstm.json).  Margin 0.02 (10 of 500 series):
    float32 differences between CPUs can move the argmax of near-ties."""
    import json

    from lrpgraph import assets
    from lrpgraph import sequences as S

    info = json.loads(assets.SEQUENCE_MODEL.with_suffix(".json").read_text())
    model = assets.load_sequence_model()
    x, y, pos = S.pattern_series(info["n_test"], seed=info["test_seed"])
    assert np.mean(np.argmax(model.predict(x, verbose=0), 1) == y) >= info["test_accuracy"] - 0.01
    got = {}
    for name in ("lrp.epsilon", "input_t_gradient", "integrated_gradients"):
        got[name] = S.hit_rate(lrpgraph.create_analyzer(name, model).analyze(x, y), pos)
    got["occlusion_steps"] = S.hit_rate(S.occlusion_steps(model, x, y), pos)
    for name, rate in got.items():
        assert abs(rate - info["hit_rate"][name]) <= 0.02, (name, rate, info["hit_rate"][name])
    # what was measured: every method finds the pattern in >= 90% of the series; LRP (Arras)
    # beats gradient x input, integrated gradients and occlusion are the best
    assert min(got.values()) >= 0.9
    assert got["lrp.epsilon"] > got["input_t_gradient"]
    assert got["integrated_gradients"] >= got["lrp.epsilon"] - 0.02


def test_dense_after_a_recurrent_layer_is_not_first():
    """'first' (z^B, flat in the bounded presets) means the layer reading the input; after an
    LSTM that is the LSTM's linear parts, which take the preset's Dense rule."""
    an = lrpgraph.create_analyzer("deep_taylor.bounded", lstm_model(seed=15))
    dense = [n for n in an.rules if an.graph.nodes[n]["op"].kind == "linear"]
    assert dense and all(type(an.rules[n]).__name__ == "ZPlus" for n in dense)


def test_bias_factor_one_conserves_on_dense_and_conv():
    """Epsilon(bias_factor=1) on a net with biases and a large epsilon: each layer hands the
    bias and stabiliser share back (n_j = inputs feeding j, fewer at a padded border), so the
    input relevance sums to the logit; bias_factor=0 does not."""
    rng = np.random.default_rng(16)
    inp = keras.Input((6, 6, 2), dtype="float64")
    x = L.Conv2D(3, 3, padding="same", dtype="float64")(inp)
    x = L.Dense(4, dtype="float64")(L.Flatten(dtype="float64")(x))
    model = keras.Model(inp, L.Dense(C, dtype="float64")(x))
    model.set_weights([rng.normal(size=w.shape) for w in model.get_weights()])
    data = rng.normal(size=(3, 6, 6, 2))
    logits = np.asarray(model(data))[:, 0]
    for bf in (1.0, 0.0):
        maps = lrpgraph.create_analyzer("lrp.epsilon", model, epsilon=0.5, bias_factor=bf).analyze(data, 0)
        sums = maps.reshape(3, -1).sum(1)
        if bf:
            np.testing.assert_allclose(sums, logits, rtol=1e-9)  # float64, exact up to rounding
        else:
            assert np.abs(sums - logits).max() > 1e-3


def test_several_targets_in_one_pass():
    """Two targets per sample run as one tiled pass (forward tensors tiled for the rules):
    equal to one pass per target, with bias_factor=1 too."""
    model = lstm_model(seed=17)
    x = np.random.default_rng(18).normal(size=(2, T, D)).astype("float32")
    an = lrpgraph.create_analyzer("lrp.epsilon", model, epsilon=1e-3, bias_factor=1.0)
    both = an.explain(x, np.array([[0, 1], [1, 0]])).maps
    for k, t in enumerate(([0, 1], [1, 0])):
        one = an.analyze(x, np.array(t))
        # float32, the same arithmetic on a tiled batch
        np.testing.assert_allclose(both[:, k], one, rtol=1e-5, atol=1e-6 * np.abs(one).max())
