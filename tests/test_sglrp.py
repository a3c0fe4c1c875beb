"""SGLRP, CLRP and the SGLRP code's wrappers: golden vectors, identities, one-call forms."""

import json
import os
import warnings

import numpy as np
import pytest

import keras
import lrpgraph
from lrpgraph.engine import heads as H
from conftest import build_small_cnn, float32_noise
from paper_keys import ignore_bias_of, is_paper_key, paper_analyzer

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture(scope="module", params=["", "_nb"], ids=["bias", "nobias"])
def case(request):
    tag = request.param
    m, x, t = build_small_cnn(tag)
    golden = np.load(os.path.join(DATA, f"small_cnn{tag}_out.npz"))
    return m, x, t, golden


# (file tag, weights tag): small_cnn{_nb}_out made with iNNvestigate 2.1.2's Deep Taylor
# (bias ignored), small_cnn_v1_out with 1.0.8.3's (bias in z+'s denominator), on the
# same weights and inputs as small_cnn_out.
GOLDEN_FILES = [("", ""), ("_nb", "_nb"), ("_v1", "")]


def _golden_cases():
    cases = []
    for tag, wtag in GOLDEN_FILES:
        meta = json.loads(open(os.path.join(DATA, f"small_cnn{tag}_out.meta.json")).read())
        keys = [k for k in np.load(os.path.join(DATA, f"small_cnn{tag}_out.npz")).files if is_paper_key(k)]
        cases += [pytest.param(tag, wtag, k, ignore_bias_of(meta, k), id=f"{tag or '_bias'}-{k}") for k in keys]
    return cases


def _check_golden(ours, ref, key):
    # float32 goldens (iNNvestigate, another machine): two float32 runs through conv1, conv2,
    # fc1 and logits; the SGLRP/CLRP maps subtract two such passes, both count (the .target
    # and .others parts are one).  Measured: at most 3.1e-6 of the max, oneDNN on or off.
    bound = float32_noise(4 if key.split(".")[-1] in ("target", "others") else 8, runs=2)
    for i in range(len(ref)):
        if not np.all(np.isfinite(ref[i])):
            # iNNvestigate's CLRP divides 0 by 0 for a target whose logit the output
            # ReLU gates (sample 3: z_t < 0); we return zeros instead (REFERENCE.md).
            assert key == "clrp" and np.all(ours[i] == 0)
            continue
        err = np.abs(ours[i] - ref[i]).max()
        assert err <= bound * np.abs(ref[i]).max() + 1e-12, (key, i, err, np.abs(ref[i]).max())


@pytest.mark.parametrize("tag,wtag,key,ignore_bias", _golden_cases())
def test_golden(tag, wtag, key, ignore_bias):
    """Every SGLRP-family key of the three golden files, with the Deep Taylor rule it was
    made with; the paper's names (sglrp, clrp) default to the 1.0.8.3 rule."""
    m, x, t = build_small_cnn(wtag)
    ref = np.load(os.path.join(DATA, f"small_cnn{tag}_out.npz"))[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ours = paper_analyzer(key, m, ignore_bias).analyze(x, target=t)
        _check_golden(ours, ref, key)
        if tag == "_v1" and "." not in key:  # the default of the paper's names is 1.0.8.3's rule
            np.testing.assert_array_equal(lrpgraph.create_analyzer(key, m).analyze(x, target=t), ours)


@pytest.mark.parametrize("key", ["sglrp", "clrp.target", "sglrp.nogate.others"])
def test_bias_rule_matters_on_the_golden_net(key):
    """The two Deep Taylor rules differ on the biased small_cnn by far more than the
    golden tolerance, so the tests above tell them apart."""
    m, x, t = build_small_cnn("")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        v1 = paper_analyzer(key, m, False).analyze(x, target=t)
        v2 = paper_analyzer(key, m, True).analyze(x, target=t)
    err = [np.abs(a - b).max() / np.abs(b).max() for a, b in zip(v1, v2) if np.abs(b).max() > 0]
    assert max(err) > 1e-2, err


def test_scaled_maps_sum_to_zero(case):
    m, x, t, _ = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in ("sglrp", "clrp"):
            r = lrpgraph.create_analyzer(name, m).analyze(x, target=t)
            target_mass = lrpgraph.Analyzer(m, "deep_taylor.bounded", head=H.sglrp_target()).analyze(
                x, target=t)
            sums = r.reshape(len(x), -1).sum(1)
            scale = np.abs(r).reshape(len(x), -1).sum(1) + 1e-30
            assert np.all(np.abs(sums) <= 1e-5 * scale), (name, sums)
            assert np.abs(target_mass).sum() > 0


def test_gated_target_warns_and_is_zero(case):
    m, x, t, _ = case
    logits = m.predict(x, verbose=0)
    gated = logits[np.arange(len(x)), t] <= 0
    assert gated.any(), "the golden inputs include a sample with a negative target logit"
    with pytest.warns(RuntimeWarning, match="target logit is <= 0"):
        r = lrpgraph.create_analyzer("clrp", m).analyze(x, target=t)
    assert np.all(np.isfinite(r))
    assert np.all(r[gated] == 0)


@pytest.mark.parametrize("ignore_bias", [False, True])
@pytest.mark.parametrize("name", ["sglrp", "clrp"])
def test_one_pass_equals_two_passes(case, name, ignore_bias):
    """Unscaled subtraction: one pass seeded with target - dual == A(target) - A(dual)
    (both Deep Taylor rules are linear in R, the bias one too: it only divides by z+ + b)."""
    m, x, t, _ = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        one = lrpgraph.create_analyzer(name, m, scaling=False, ignore_bias=ignore_bias).analyze(x, target=t)
    tgt = H.sglrp_target() if name == "sglrp" else H.clrp_target()
    dual = H.sglrp_dual() if name == "sglrp" else H.clrp_dual()
    a_t = lrpgraph.Analyzer(m, "deep_taylor.bounded", head=tgt, ignore_bias=ignore_bias).analyze(x, target=t)
    a_d = lrpgraph.Analyzer(m, "deep_taylor.bounded", head=dual, ignore_bias=ignore_bias).analyze(x, target=t)
    scale = np.abs(a_t - a_d).max() + 1e-30
    assert np.abs(one - (a_t - a_d)).max() <= 1e-5 * scale
    program = lrpgraph.create_analyzer(name, m, scaling=False).program
    assert program.one_pass and not program.guarded  # linear rules: exact, no run-time guard


def two_calls(m, x, t, name, **kw):
    """A(target) - m A(dual) from two separate analyzers, m = sum A(target) / sum A(dual);
    also returns A(dual)."""
    tgt = H.sglrp_target() if name == "sglrp" else H.clrp_target()
    dual = H.sglrp_dual() if name == "sglrp" else H.clrp_dual()
    a_t = lrpgraph.Analyzer(m, "deep_taylor.bounded", head=tgt, **kw).analyze(x, target=t)
    a_d = lrpgraph.Analyzer(m, "deep_taylor.bounded", head=dual, **kw).analyze(x, target=t)
    s_t = a_t.reshape(len(x), -1).sum(1)
    s_d = a_d.reshape(len(x), -1).sum(1)
    mult = np.divide(s_t, s_d, out=np.zeros_like(s_t), where=s_d != 0)
    return a_t - a_d * mult.reshape((-1,) + (1,) * (a_t.ndim - 1)), a_d


@pytest.mark.parametrize("ignore_bias", [False, True])
@pytest.mark.parametrize("name", ["sglrp", "clrp"])
def test_scaled_one_call_equals_two_calls(case, name, ignore_bias):
    m, x, t, _ = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        one = lrpgraph.create_analyzer(name, m, ignore_bias=ignore_bias).analyze(x, target=t)
    two, _ = two_calls(m, x, t, name, ignore_bias=ignore_bias)
    assert np.abs(one - two).max() <= 1e-5 * (np.abs(two).max() + 1e-30)


@pytest.mark.parametrize("name", ["sglrp", "clrp"])
def test_bias_rule_takes_the_two_seed_pass(name):
    """iNNvestigate 1.0.8.3's z+ (the default of the paper's names) puts the bias in the
    denominator, so the bias takes a share and sum A(s) != sum s: scaled SGLRP/CLRP must
    not use the one-pass shortcut m = sum target / sum dual.  On the biased golden net the
    shortcut's result would differ from two separate calls; the analyzer's equals them."""
    m, x, t = build_small_cnn("")
    an = lrpgraph.create_analyzer(name, m)
    assert not an.program.one_pass
    assert lrpgraph.create_analyzer(name, m, ignore_bias=True).program.one_pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ours = an.analyze(x, target=t)
        two, a_d = two_calls(m, x, t, name, ignore_bias=False)
    assert np.abs(ours - two).max() <= 1e-5 * np.abs(two).max()
    # what the one-pass shortcut would give, A(target) - m' A(dual) with m' from the
    # seeds' sums (exact only where the rules conserve), is off by far more than that
    parts = H.sglrp_parts if name == "sglrp" else H.clrp_parts
    seed_t, seed_d = (np.asarray(p).sum(1) for p in parts(an.last_logits, t.astype(np.int32)))
    m_seed = np.divide(seed_t, seed_d, out=np.zeros_like(seed_t), where=seed_d != 0)
    tgt = H.sglrp_target() if name == "sglrp" else H.clrp_target()
    a_t = lrpgraph.Analyzer(m, "deep_taylor.bounded", head=tgt, ignore_bias=False).analyze(x, target=t)
    shortcut = a_t - a_d * m_seed.reshape(-1, 1, 1, 1)
    assert np.abs(shortcut - two).max() > 1e-3 * np.abs(two).max()


@pytest.mark.parametrize("name", ["sglrp", "clrp"])
def test_scaled_is_one_pass_only_where_every_rule_conserves(case, name):
    """Bounded Deep Taylor with the bias ignored conserves on this net (z^B, z+ without
    bias, ReLU, max pooling, flatten), so the scaled result takes m from the seeds and runs
    ONE reverse pass.  An epsilon rule with bias on fc1 absorbs relevance: that analyzer
    keeps the two-seed pass, and its result still equals two separate calls with the same
    override."""
    m, x, t, _ = case
    assert lrpgraph.create_analyzer(name, m, ignore_bias=True).program.one_pass
    eps = {"overrides": {"fc1": lrpgraph.rules.Epsilon(0.1)}, "ignore_bias": True}
    an = lrpgraph.create_analyzer(name, m, **eps)
    assert not an.program.one_pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        one = an.analyze(x, target=t)
    two, _ = two_calls(m, x, t, name, **eps)
    assert np.abs(one - two).max() <= 1e-5 * np.abs(two).max()


@pytest.mark.parametrize("name", ["sglrp", "clrp"])
def test_zero_denominator_falls_back_to_two_passes(name):
    """Unit 0 of d2 has only negative weights and a large bias: its ReLU is open but its
    z+ denominator is 0, so the relevance it receives is lost and sum A(dual) differs from
    the dual seed's sum.  The compiled guard sees the zero and runs the two-seed pass: the
    result equals two separate calls and sums to zero."""
    rng = np.random.default_rng(3)
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="relu", name="d1"),
                          keras.layers.Dense(4, activation="relu", name="d2"), keras.layers.Dense(3, name="logits")])
    w2 = rng.normal(0, 1, (5, 4))
    w2[:, 0] = -np.abs(w2[:, 0])
    m.set_weights([rng.normal(0, 1, (6, 5)), np.full(5, 0.5), w2, np.array([50.0, 0, 0, 0]),
                   np.abs(rng.normal(0, 1, (4, 3))), np.zeros(3)])
    x = rng.uniform(-1, 1, (4, 6)).astype("float32")
    t = np.array([0, 1, 2, 0])
    an = lrpgraph.create_analyzer(name, m, ignore_bias=True)
    assert an.program.one_pass  # conservative rules, so only the runtime guard can catch it
    one = an.analyze(x, target=t)
    two, a_d = two_calls(m, x, t, name, ignore_bias=True)
    assert np.abs(one - two).max() <= 1e-5 * np.abs(two).max()
    assert np.abs(one.sum(1)).max() <= 1e-5 * np.abs(one).sum(1).max()
    parts = H.sglrp_parts if name == "sglrp" else H.clrp_parts
    seed_d = np.asarray(parts(an.last_logits, t)[1]).sum(1)
    assert np.all(np.abs(a_d.sum(1) - seed_d) > 0.1 * np.abs(seed_d))  # the shortcut alone would be wrong


@pytest.mark.parametrize("name,preset", [("sglrp_seq_a", "lrp.sequential_preset_a_flat"),
                                         ("sglrp_seq_b", "lrp.sequential_preset_b_flat")])
def test_sglrp_seq_identity(case, name, preset):
    """SGLRPSeqA/B = the sequential preset run from the signed softmax-gradient head."""
    m, x, t, _ = case
    ours = lrpgraph.create_analyzer(name, m).analyze(x, target=t)
    ref = lrpgraph.Analyzer(m, preset, head=H.signed_softmax_gradient).analyze(x, target=t)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-7 * np.abs(ref).max())
    # and the head itself is d softmax_t / dz
    z = m.predict(x, verbose=0).astype(np.float64)
    y = np.exp(z - z.max(1, keepdims=True))
    y /= y.sum(1, keepdims=True)
    r0 = H.signed_softmax_gradient(z.astype(np.float32), t.astype(np.int32)).numpy()
    y_t = y[np.arange(len(t)), t]
    expected = -y * y_t[:, None]
    expected[np.arange(len(t)), t] = y_t * (1 - y_t) + 1e-8
    np.testing.assert_allclose(r0, expected, rtol=1e-4, atol=1e-7)


def test_original_wrappers(case):
    m, x, t, _ = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lrp = lrpgraph.create_analyzer("lrp", m).analyze(x, target=t)
        lrp_ib = lrpgraph.create_analyzer("lrp", m, ignore_bias=True).analyze(x, target=t)
    # the original code's LRP: iNNvestigate 1.0.8.3's Deep Taylor (bias kept) by default
    np.testing.assert_array_equal(lrp, lrpgraph.create_analyzer("deep_taylor.bounded", m, ignore_bias=False)
                                  .analyze(x, target=t))
    np.testing.assert_array_equal(lrp_ib, lrpgraph.create_analyzer("deep_taylor.bounded", m).analyze(x, target=t))
    for name, preset in [("lrp_a", "lrp.sequential_preset_a_flat"), ("lrp_b", "lrp.sequential_preset_b_flat"),
                         ("lrp_e", "lrp.epsilon")]:
        np.testing.assert_array_equal(lrpgraph.create_analyzer(name, m).analyze(x, target=t),
                                      lrpgraph.create_analyzer(preset, m).analyze(x, target=t))
    relu = lrpgraph.create_analyzer("lrp_e", m, relu=True).analyze(x, target=t)
    assert relu.min() >= 0 and relu.max() > 0


def test_many_targets_in_one_call(case):
    m, x, _, _ = case
    targets = np.array([[1, 3], [3, 6], [0, 9], [5, 6]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a = lrpgraph.create_analyzer("sglrp", m, output_relu=False)
        both = a.analyze(x, target=targets)
        assert both.shape == (4, 2) + x.shape[1:]
        for j in range(2):
            single = a.analyze(x, target=targets[:, j])
            np.testing.assert_allclose(both[:, j], single, rtol=0, atol=1e-5 * np.abs(single).max())


def test_bad_models_and_targets():
    inp = keras.Input((4,))
    one_class = keras.Model(inp, keras.layers.Dense(1)(inp))
    with pytest.raises(ValueError, match="at least two classes"):
        lrpgraph.create_analyzer("sglrp", one_class)
    seq = keras.Input((5, 4))
    not_vector = keras.Model(seq, keras.layers.Dense(3)(seq))
    with pytest.raises(ValueError, match="score vector"):
        lrpgraph.create_analyzer("clrp", not_vector)
    m, x, t = build_small_cnn("")
    with pytest.raises(ValueError, match="out of range"):
        lrpgraph.create_analyzer("sglrp", m).analyze(x, target=10)


def test_ignore_bias_must_be_a_bool():
    m, _, _ = build_small_cnn("")
    with pytest.raises(TypeError, match="'ignore_bias' must be True or False"):
        lrpgraph.create_analyzer("sglrp", m, ignore_bias="yes")
    with pytest.raises(TypeError, match="'ignore_bias' must be True or False"):
        lrpgraph.Analyzer(m, "deep_taylor", ignore_bias=None)
    rules = lrpgraph.create_analyzer("lrp", m, ignore_bias=np.bool_(True)).rules
    assert rules["fc1"].bias is False and rules["conv2"].bias is False
    rules = lrpgraph.create_analyzer("lrp", m).rules
    assert rules["fc1"].bias is True and type(rules["conv1"]).__name__ == "ZBox"
