"""The metrics of issue 24 (faithfulness_more, robustness, complexity, mprt,
localisation_metrics, axiomatic): closed forms on a linear model with channel-last RGB
input, batched == per-sample, seeds reproduce, orderings on the shapes model."""

import numpy as np
import pytest

import keras

import lrpgraph
from lrpgraph import evaluation as E
from lrpgraph.evaluation import complexity as C
from lrpgraph.evaluation import faithfulness_more as F
from lrpgraph.evaluation import localisation_metrics as L
from lrpgraph.evaluation import mprt as MP
from lrpgraph.evaluation import robustness as RB
from lrpgraph.evaluation import axiomatic as AX

# float32 forward of sums over <= 48 terms of size ~1: relative error well below 1e-5
ATOL = 1e-5
SHAPE = (4, 4, 3)
F_ALL = 48
RNG = np.random.default_rng(7)
W0 = RNG.normal(size=SHAPE).round(2)
W0 = np.where(np.abs(W0) < 0.05, 0.1, W0)  # no zero weights: the relative stabilities divide by w x
W1 = RNG.normal(size=SHAPE).round(2)


def linear(bias=False, w=(W0, W1), name="lin_rgb"):
    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(name="flat"),
                              keras.layers.Dense(len(w), use_bias=bias, name="out")], name=name)
    weights = [np.stack([np.asarray(a, "float32").reshape(-1) for a in w], axis=1)]
    if bias:
        weights.append(np.array([0.5, -0.25], "float32"))
    model.set_weights(weights)
    return model


@pytest.fixture(scope="module")
def lin():
    return linear()


@pytest.fixture(scope="module")
def xs():
    return np.random.default_rng(1).uniform(0.5, 1.0, (3,) + SHAPE).astype("float32")


@pytest.fixture(scope="module")
def tiny_cnn():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.Flatten(),
        keras.layers.Dense(3, name="logits"),
    ], name="tiny_rgb")
    x = np.random.default_rng(0).uniform(0, 1, (3, 8, 8, 3)).astype("float32")
    return model, x


def _wx(x):
    return x.astype(np.float64) * W0  # LRP-0 / gradient x input of target 0


def _pearson(a, b):
    return np.corrcoef(a, b)[0, 1]


# --- faithfulness ------------------------------------------------------------------------
def test_faithfulness_estimate_closed_form(lin, xs):
    R = np.random.default_rng(2).normal(size=xs.shape)
    res = F.faithfulness_estimate(lin, xs, R, 0, steps=F_ALL, baseline=0.0)
    for i in range(len(xs)):  # one feature at a time: drop_j = w_j x_j
        want = _pearson(R[i].ravel(), _wx(xs[i]).ravel())
        np.testing.assert_allclose(res.score[i], want, atol=1e-6)
    # 6 groups of 8 features ranked by increasing relevance
    res = F.faithfulness_estimate(lin, xs, R, 0, steps=6, baseline=0.0)
    for i in range(len(xs)):
        order = np.argsort(R[i].ravel(), kind="stable")
        a = R[i].ravel()[order].reshape(6, 8).sum(1)
        d = _wx(xs[i]).ravel()[order].reshape(6, 8).sum(1)
        np.testing.assert_allclose(res.attributions[i], a, atol=1e-9)
        np.testing.assert_allclose(res.drops[i], d, atol=ATOL)
        np.testing.assert_allclose(res.score[i], _pearson(a, d), atol=1e-5)
    assert np.all(F.faithfulness_estimate(lin, xs, _wx(xs), 0, steps=F_ALL).score > 1 - 1e-6)


def test_monotonicity_curve_closed_form(lin, xs):
    R = np.random.default_rng(3).normal(size=xs.shape)
    res = F.monotonicity(lin, xs, R, 0, steps=F_ALL, baseline=0.0, score="logit")
    for i in range(len(xs)):
        order = np.argsort(R[i].ravel(), kind="stable")  # increasing relevance inserted first
        want = np.concatenate([[0], np.cumsum(_wx(xs[i]).ravel()[order])])
        np.testing.assert_allclose(res.curve[i], want, atol=ATOL)
    # the contribution map inserts the most negative first: non-decreasing exactly when all w x >= 0
    pos = linear(w=(np.abs(W0), W1), name="lin_pos")
    good = F.monotonicity(pos, xs, xs * np.abs(W0), 0, steps=12, score="logit")
    assert np.all(good.score == 1) and np.all(good.fraction == 1)
    bad = F.monotonicity(lin, xs, _wx(xs), 0, steps=F_ALL, score="logit")
    assert np.all(bad.score == 0)  # W0 has negative entries: the curve falls first


def test_monotonicity_correlation_closed_form(lin, xs):
    R = np.random.default_rng(4).normal(size=xs.shape)
    res = F.monotonicity_correlation(lin, xs, R, 0, steps=8, n_samples=5, score="logit", seed=11)
    u = np.random.default_rng(11).random((5,) + SHAPE)
    for i in range(len(xs)):
        lo, hi = float(xs[i].min()), float(xs[i].max())
        fields = (lo + (hi - lo) * u.astype("float32")).astype("float32")
        order = np.argsort(R[i].ravel(), kind="stable")
        groups = np.empty(F_ALL, int)
        groups[order] = np.arange(F_ALL) // 6
        f0 = (_wx(xs[i])).sum()
        v, a = np.zeros(8), np.zeros(8)
        for k in range(8):
            g = (groups == k).reshape(SHAPE)
            a[k] = R[i][g].sum()
            deltas = [(W0 * np.where(g, fs, xs[i]).astype(np.float64)).sum() - f0 for fs in fields]
            v[k] = np.mean(np.square(deltas)) / f0 ** 2
        np.testing.assert_allclose(res.variances[i], v, rtol=1e-4, atol=1e-9)
        from scipy.stats import spearmanr

        np.testing.assert_allclose(res.score[i], spearmanr(a, v).statistic, atol=1e-9)


def test_sensitivity_n_closed_form(lin, xs):
    # gradient x input of a linear model: the subset's attribution IS the drop, for every n (Ancona et al.)
    res = F.sensitivity_n(lin, xs, _wx(xs), 0, ns=[1, 5, 20], n_subsets=10, seed=3)
    np.testing.assert_allclose(res.attributions, res.drops, atol=ATOL)
    np.testing.assert_allclose(res.correlation, 1.0, atol=1e-5)
    keys = np.argsort(np.random.default_rng(3).random((30, F_ALL)), axis=1).argsort(axis=1)
    sub = keys < np.repeat([1, 5, 20], 10)[:, None]
    np.testing.assert_allclose(res.drops, _wx(xs).reshape(3, -1) @ sub.T, atol=ATOL)
    assert sub.sum(1).tolist() == [1] * 10 + [5] * 10 + [20] * 10  # channel x pixel features, not pixels
    with pytest.raises(ValueError, match="each n in ns"):
        F.sensitivity_n(lin, xs, _wx(xs), 0, ns=[F_ALL + 1])


def test_infidelity_closed_form(lin, xs):
    w = np.broadcast_to(W0, xs.shape)
    for opt in (True, False):  # the gradient of a linear model has infidelity 0
        np.testing.assert_allclose(F.infidelity(lin, xs, w, 0, n=20, optimal_scale=opt).score, 0, atol=1e-8)
    res3 = F.infidelity(lin, xs, 3 * w, 0, n=20, seed=5, optimal_scale=False)
    noise = np.random.default_rng(5).normal(0, 0.2, (20,) + SHAPE)
    a = np.array([[(W0 * nk).sum() for nk in noise]] * 3)
    np.testing.assert_allclose(res3.drops, a, atol=ATOL)
    np.testing.assert_allclose(res3.score, 4 * (a ** 2).mean(1), rtol=1e-4)  # (3a - a)^2
    np.testing.assert_allclose(F.infidelity(lin, xs, 3 * w, 0, n=20, seed=5).score, 0, atol=1e-8)  # beta = 1/3
    np.testing.assert_allclose(F.infidelity(lin, xs, 3 * w, 0, n=20, seed=5).beta, 1 / 3, atol=1e-6)


def test_irof_closed_form_with_given_segments(lin, xs):
    seg = np.zeros((3, 4, 4), int)
    seg[:, :2, 2:] = 1
    seg[:, 2:, :2] = 2
    seg[:, 2:, 2:] = 3
    R = np.random.default_rng(6).normal(size=xs.shape)
    res = F.irof(lin, xs, R, 0, segments=seg, baseline=0.0, score="logit")
    for i in range(3):
        contrib = np.array([_wx(xs[i])[seg[i] == s].sum() for s in range(4)])
        means = np.array([R[i][seg[i] == s].mean() for s in range(4)])
        order = np.argsort(-means, kind="stable")
        f = contrib.sum() - np.concatenate([[0], np.cumsum(contrib[order])])
        c = f / f[0]
        np.testing.assert_allclose(res.curve[i], c, atol=1e-5)
        np.testing.assert_allclose(res.score[i], 1 - ((c[1:] + c[:-1]) / 2).sum() / 4, atol=1e-5)


def test_irof_runs_slic_on_channel_last_rgb(tiny_cnn):
    model, _ = tiny_cnn
    x = np.zeros((3, 8, 8, 3), "float32")  # red left half, blue right half, a green square: 3 regions
    x[:, :, :4, 0] = 1
    x[:, :, 4:, 2] = 1
    x[:, 2:5, 2:5] = [0, 1, 0]
    res = F.irof(model, x, np.ones(x.shape[:3]), 0, n_segments=6)
    assert res.score.shape == (3,) and np.all(res.n_segments >= 2)
    assert np.all(np.isfinite(res.score))
    with pytest.raises(ValueError, match="at least 2 segments"):
        F.irof(model, x, np.ones(x.shape[:3]), 0, segments=np.zeros((3, 8, 8), int))


def test_noisy_linear_imputation_reproduces_a_plane():
    r, c = np.mgrid[0:8, 0:8]
    img = np.stack([0.3 * r + 0.1 * c + 1, -0.2 * r + 0.5 * c, 0.05 * r * 0 + 2.0], -1)
    mask = np.zeros((8, 8), bool)
    mask[2:6, 3:7] = True  # interior pixels: a plane is the weighted mean of its 8 neighbours
    out = F.noisy_linear_imputation(img, mask, np.zeros(img.shape))
    np.testing.assert_allclose(out, img, atol=1e-10)
    noise = np.random.default_rng(0).normal(0, 0.1, img.shape)
    out = F.noisy_linear_imputation(img, mask, noise)
    np.testing.assert_allclose(out - img, np.where(mask[..., None], noise, 0), atol=1e-10)
    with pytest.raises(ValueError, match="at least one kept pixel"):
        F.noisy_linear_imputation(img, np.ones((8, 8), bool), noise)


def _dense_imputation(img, mask):
    """The imputation system written out densely from its definition, one pixel at a time."""
    h, w, _ = img.shape
    unknown = list(zip(*np.nonzero(mask)))
    pos = {p: i for i, p in enumerate(unknown)}
    a, b = np.zeros((len(unknown),) * 2), np.zeros((len(unknown), img.shape[-1]))
    for i, (r, c) in enumerate(unknown):
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                q = (r + dr, c + dc)
                if (dr, dc) == (0, 0) or not (0 <= q[0] < h and 0 <= q[1] < w):
                    continue
                wt = 1 / 12 if dr and dc else 1 / 6
                a[i, i] += wt
                if q in pos:
                    a[i, pos[q]] -= wt
                else:
                    b[i] += wt * img[q]
    out = img.astype(np.float64).copy()
    out[mask] = np.linalg.solve(a, b)
    return out


def test_impute_copies_equals_the_dense_system_and_does_not_depend_on_batching_or_threads():
    rng = np.random.default_rng(3)
    imgs = rng.normal(size=(5, 7, 9, 3))
    masks = rng.random((5, 7, 9)) < np.array([0.1, 0.5, 0.9, 0.0, 0.97])[:, None, None]
    masks[4] = True
    masks[4, 6, 8] = False  # one kept pixel, in a corner
    noise = rng.normal(0, 0.1, imgs.shape)
    got = F.impute_copies(imgs, masks, noise, workers=1)
    for i in range(5):  # float64 solves of a system with condition number < 1e4: round-off ~1e-12
        want = _dense_imputation(imgs[i], masks[i]) + np.where(masks[i][..., None], noise[i], 0)
        np.testing.assert_allclose(got[i], want, atol=1e-10)
        np.testing.assert_array_equal(F.noisy_linear_imputation(imgs[i], masks[i], noise[i]), got[i])
    np.testing.assert_array_equal(F.impute_copies(imgs, masks, noise, workers=2), got)
    masks[2] = True
    with pytest.raises(ValueError, match=r"at least one kept pixel \(copies \[2\]"):
        F.impute_copies(imgs, masks, noise)


def test_road_on_rgb_linear_model(lin, xs):
    R = _wx(xs)
    res = F.road(lin, xs, R, 0, percentages=[0, 25, 50], noise=0.0)
    for i in range(3):
        order = np.argsort(-R[i].sum(-1).ravel(), kind="stable")
        for j, p in enumerate([0, 25, 50]):
            mask = np.zeros(16, bool)
            mask[order[:int(16 * p / 100)]] = True
            img = F.noisy_linear_imputation(xs[i], mask.reshape(4, 4), np.zeros(SHAPE)).astype("float32")
            z = np.array([(W0 * img).sum(), (W1 * img).sum()])
            np.testing.assert_allclose(res.probability[i, j], np.exp(z[0]) / np.exp(z).sum(), atol=1e-5)
            assert res.accuracy[i, j] == float(z[0] > z[1])
    np.testing.assert_allclose(res.score, res.accuracy.mean(1))
    # imputed one image per call (batch_size 2 < 3 percentages) = all at once; float32 logits: 1e-6
    noisy = [F.road(lin, xs, R, 0, percentages=[0, 25, 50], noise=2.0, batch_size=b) for b in (256, 2)]
    np.testing.assert_allclose(noisy[1].probability, noisy[0].probability, atol=1e-6)
    assert np.abs(noisy[0].probability - res.probability).max() > 1e-3  # the noise reached the copies


def test_sufficiency_closed_form(lin):
    x = np.ones((4,) + SHAPE, "float32") * np.array([1, -1, 1, 1], "float32")[:, None, None, None]
    pred = lrpgraph.prepare(lin).logits(x).argmax(-1)
    assert pred[0] != pred[1] and pred[0] == pred[2] == pred[3]
    maps = np.zeros((4,) + SHAPE)
    maps[1] += 0.01  # maps 0 and 1 are close (different predictions); 2 and 3 close (same)
    maps[2:] += 5.0
    res = F.sufficiency(lin, x, maps, 0, threshold=1.0, distance="euclidean")
    np.testing.assert_allclose(res.score, [0, 0, 1, 1])
    np.testing.assert_array_equal(res.neighbours, [1, 1, 1, 1])


# --- robustness --------------------------------------------------------------------------
def test_sensitivity_and_lipschitz_closed_form(lin, xs):
    R = _wx(xs)
    delta = np.random.default_rng(4).uniform(-0.2, 0.2, (6,) + SHAPE)
    dist = np.array([[np.linalg.norm(W0 * ((xs[i] + d.astype("float32")).astype(np.float64) - xs[i]))
                      for d in delta] for i in range(3)]) / np.linalg.norm(R.reshape(3, -1), axis=1)[:, None]
    mx = RB.max_sensitivity(lin, xs, R, 0, method="input_t_gradient", n=6, seed=4)
    av = RB.avg_sensitivity(lin, xs, None, 0, method="input_t_gradient", n=6, seed=4)
    np.testing.assert_allclose(mx.distances, dist, rtol=1e-5)
    np.testing.assert_allclose(mx.score, dist.max(1), rtol=1e-5)
    np.testing.assert_allclose(av.score, dist.mean(1), rtol=1e-5)
    # the gradient of a linear model does not move at all
    np.testing.assert_allclose(RB.max_sensitivity(lin, xs, None, 0, method="gradient", n=6).score, 0, atol=1e-7)
    e = np.random.default_rng(2).normal(0, 0.1, (6,) + SHAPE)
    ll = RB.local_lipschitz_estimate(lin, xs, R, 0, method="input_t_gradient", n=6, seed=2)
    want = [max(np.linalg.norm(W0 * ek) / np.linalg.norm(ek) for ek in e)] * 3
    np.testing.assert_allclose(ll.score, want, rtol=1e-4)  # float32 copies of x + e


def test_continuity_closed_form(lin, xs):
    res = RB.continuity(lin, xs, None, 0, method="input_t_gradient", steps=2)
    for i in range(3):
        seq = [xs[i].astype(np.float64)] + [RB.translate(xs[i:i + 1], k, 2)[0].astype(np.float64) for k in (1, 2)]
        want = max(np.abs(W0 * (a - b)).sum() / np.linalg.norm(a - b)
                   for ia, a in enumerate(seq) for ib, b in enumerate(seq) if ia != ib)
        np.testing.assert_allclose(res.score[i], want, rtol=1e-5)
    t = RB.translate(xs[:1], 1, 2)[0]
    np.testing.assert_array_equal(t[:, 1:], xs[0][:, :-1])
    np.testing.assert_array_equal(t[:, 0], xs[0][:, 0])


def test_relative_stabilities_closed_form(lin, xs):
    # gradient x input of a linear model: (e_x - e_x') / e_x = (x - x') / x, so RIS = 1 exactly,
    # and RRS at the Flatten (L = x) too
    ris = RB.relative_input_stability(lin, xs, None, 0, method="input_t_gradient", n=8, seed=1)
    np.testing.assert_allclose(ris.score, 1.0, rtol=1e-4)
    rrs = RB.relative_representation_stability(lin, xs, None, 0, method="input_t_gradient", layer="flat", n=8,
                                               seed=1)
    np.testing.assert_allclose(rrs.score, 1.0, rtol=1e-4)
    ros = RB.relative_output_stability(lin, xs, None, 0, method="input_t_gradient", n=8, seed=1)
    noise = np.random.default_rng(1).normal(0, 0.05, (8,) + SHAPE)
    wmat = np.stack([W0.ravel(), W1.ravel()], 1)
    for i in range(3):
        xp = [(xs[i] + nk.astype("float32")).astype(np.float64) for nk in noise]
        keep = [(xk.ravel() @ wmat).argmax() == (xs[i].astype(np.float64).ravel() @ wmat).argmax() for xk in xp]
        vals = [np.linalg.norm((xk - xs[i]) / xs[i]) / np.linalg.norm((xk - xs[i]).ravel() @ wmat)
                for xk, k in zip(xp, keep) if k]
        np.testing.assert_allclose(ros.score[i], max(vals), rtol=1e-3)  # float32 logits of tiny differences


# --- complexity --------------------------------------------------------------------------
def test_complexity_closed_forms():
    maps = np.array([[0, 0, 1, 3], [1, 1, 1, 1], [0, 0, 0, 2], [0, -2, 0, 2]], float)
    np.testing.assert_allclose(C.sparseness(None, None, maps).score, [10 / 16, 0, 0.75, 0.5])
    np.testing.assert_allclose(C.complexity(None, None, maps).score,
                               [-(0.25 * np.log(0.25) + 0.75 * np.log(0.75)), np.log(4), 0, np.log(2)])
    np.testing.assert_array_equal(C.effective_complexity(None, None, maps).score, [2, 4, 1, 2])
    assert np.isnan(C.complexity(None, None, np.zeros((1, 4))).score[0])
    assert C.sparseness(None, None, np.zeros((1, 4))).score[0] == 0


# --- randomisation -----------------------------------------------------------------------
def test_random_logit_and_mprt_on_linear_model(lin, xs):
    rl = MP.random_logit(lin, xs, None, 0, method="gradient", other=[1, 1, 1])
    want = E.similarities(np.broadcast_to(W0, xs.shape), np.broadcast_to(W1, xs.shape))["ssim"]
    np.testing.assert_allclose(rl.score, want, atol=1e-6)
    drawn = MP.random_logit(lin, xs, None, 0, method="gradient", seed=0)
    np.testing.assert_array_equal(drawn.other, [1, 1, 1])  # two classes: the other one
    copy, names = MP.randomised_copy(lin, seed=0)
    assert names == ["out"]
    wr = copy.get_weights()[0][:, 0].reshape(SHAPE)
    sm = MP.smooth_mprt(lin, xs, None, 0, method="gradient", n=3)  # the gradient ignores the noise
    np.testing.assert_allclose(sm.score, E.similarities(np.broadcast_to(W0, xs.shape),
                                                        np.broadcast_to(wr, xs.shape))["spearman_abs"], atol=1e-6)
    em = MP.efficient_mprt(lin, xs, None, 0, method="gradient", n_bins=10)
    h0 = MP.discrete_entropy(np.broadcast_to(W0, xs.shape), 10)
    h1 = MP.discrete_entropy(np.broadcast_to(wr, xs.shape), 10)
    np.testing.assert_allclose(em.score, (h1 - h0) / h0, atol=1e-9)
    hist = np.histogram(np.abs(W0), bins=10, range=(0, np.abs(W0).max()))[0]
    p = hist[hist > 0] / 48
    np.testing.assert_allclose(h0, -(p * np.log(p)).sum())
    np.testing.assert_allclose(lin.get_weights()[0][:, 0], W0.ravel())  # the model is untouched


# --- localisation ------------------------------------------------------------------------
def test_localisation_closed_forms():
    maps = np.array([[[4, 3], [2, 1]], [[1, 2], [3, 4]], [[1, 1], [1, 1]]], float)
    masks = np.array([[[1, 1], [0, 0]]] * 3, bool)
    np.testing.assert_allclose(L.relevance_rank_accuracy(maps, masks), [1, 0, 1])  # ties: lower index first
    np.testing.assert_allclose(L.top_k_intersection(maps, masks, k=1), [1, 0, 1])
    np.testing.assert_allclose(L.top_k_intersection(maps, masks, k=3), [2 / 3, 1 / 3, 2 / 3])
    np.testing.assert_allclose(L.roc_auc(maps, masks), [1, 0, 0.5])
    m2 = np.array([[[1, 0], [1, 0]]], bool)  # positives 4 and 2, negatives 3 and 1: 3 of 4 pairs ordered
    np.testing.assert_allclose(L.roc_auc(maps[:1], m2), [0.75])
    with pytest.raises(ValueError, match="empty"):
        L.roc_auc(maps[:1], np.zeros((1, 2, 2), bool))


def test_shapes_model_ground_truth_beats_random_and_constant_is_not_sparse():
    from lrpgraph.evaluation import synthetic
    from lrpgraph.assets import load_shapes_model

    model = load_shapes_model()
    x, y, masks = synthetic.single_object_dataset(12, seed=4)
    gt = masks[..., None].astype(float) * np.ones(3)
    rnd = np.random.default_rng(0).uniform(0, 1, x.shape)
    for name in E.GROUPS["localisation"]:
        fn = E.METRICS[name][0]
        a = fn(model, x, gt, y, masks=masks).score.mean()
        b = fn(model, x, rnd, y, masks=masks).score.mean()
        assert a > b, (name, a, b)
    np.testing.assert_array_equal(C.sparseness(model, x, np.full(x.shape, 0.3), y).score, 0)
    assert np.all(C.sparseness(model, x, gt, y).score > C.sparseness(model, x, rnd, y).score)


# --- axiomatic ---------------------------------------------------------------------------
def test_completeness_gap(lin, xs):
    res = AX.completeness(lin, xs, _wx(xs), 0)
    np.testing.assert_allclose(res.gap, 0, atol=ATOL)
    assert res.complete.all()
    res2 = AX.completeness(lin, xs, 2 * _wx(xs), 0)
    np.testing.assert_allclose(res2.gap, _wx(xs).sum(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(res2.score, 1, rtol=1e-5)
    assert not res2.complete.any()
    # a bias: f(0) = b, the map must sum to f(x) - f(0)
    biased = linear(bias=True, name="lin_bias")
    np.testing.assert_allclose(AX.completeness(biased, xs, _wx(xs), 0).gap, 0, atol=ATOL)


def test_input_invariance(xs):
    biased = linear(bias=True, name="lin_bias2")
    g = AX.shifted_model(biased, -1.0)
    np.testing.assert_allclose(g.predict(xs - 1, verbose=0), biased.predict(xs, verbose=0), atol=1e-5)
    grad = AX.input_invariance(biased, xs, np.broadcast_to(W0, xs.shape), 0, method="gradient")
    assert grad.invariant.all()
    np.testing.assert_allclose(grad.score, 0, atol=1e-7)
    ixg = AX.input_invariance(biased, xs, _wx(xs), 0, method="input_t_gradient")
    assert not ixg.invariant.any()
    want = np.abs(W0).sum() / np.abs(_wx(xs)).reshape(3, -1).sum(1)  # |w (x - 1) - w x| = |w|
    np.testing.assert_allclose(ixg.score, want, rtol=1e-5)
    # "same" padding: the shift is undone by an input Rescaling instead; the function is the same
    keras.utils.set_random_seed(5)
    conv = keras.Sequential([keras.Input(SHAPE), keras.layers.Conv2D(2, 3, padding="same"), keras.layers.Flatten(),
                             keras.layers.Dense(2)])
    g = AX.shifted_model(conv, [0.5, -1.0, 2.0])
    np.testing.assert_allclose(g.predict(xs + np.array([0.5, -1, 2], "float32"), verbose=0),
                               conv.predict(xs, verbose=0), atol=1e-5)
    res = AX.input_invariance(conv, xs, lrpgraph.create_analyzer("gradient", conv).analyze(xs, target=0), 0,
                              method="gradient", shift=[0.5, -1.0, 2.0])
    assert res.invariant.all()


def test_non_sensitivity(xs):
    w0 = W0.copy()
    w0[0] = 0.0  # the first row's 12 features do not reach the logit
    model = linear(w=(w0, W1), name="lin_zero")
    # eps = 1e-9: the 12 cut features' variance is exactly 0, the others' (w u)^2-sized
    good = AX.non_sensitivity(model, xs, xs * w0, 0, score="logit", eps=1e-9)
    np.testing.assert_array_equal(good.score, 0)
    ones = AX.non_sensitivity(model, xs, np.ones(xs.shape), 0, score="logit", eps=1e-9)
    np.testing.assert_array_equal(ones.score, 12)  # zero effect, non-zero relevance
    grouped = AX.non_sensitivity(model, xs, xs * w0, 0, features_in_step=4, score="logit", eps=1e-9)
    np.testing.assert_array_equal(grouped.score, 0)  # ranked by |R|: the 12 zeros form whole groups


# --- batched == per-sample, seeds ------------------------------------------------------------
BATCHED = [
    (F.road, dict(percentages=[10, 60])), (F.irof, dict(segments=np.arange(64).reshape(1, 8, 8) // 20)),
    (F.infidelity, dict(n=6)),
    (F.monotonicity, dict(steps=10)), (F.monotonicity_correlation, dict(steps=6, n_samples=3)),
    (F.faithfulness_estimate, dict(steps=12)), (F.sensitivity_n, dict(ns=[3, 30], n_subsets=5)),
    (RB.max_sensitivity, dict(method="gradient", n=4)), (RB.local_lipschitz_estimate, dict(method="gradient", n=4)),
    (RB.continuity, dict(method="gradient", steps=2)), (RB.relative_input_stability, dict(method="gradient", n=4)),
    (RB.relative_output_stability, dict(method="gradient", n=4)),
    (RB.relative_representation_stability, dict(method="gradient", n=4)),
    (C.sparseness, {}), (C.complexity, {}), (AX.completeness, {}), (AX.non_sensitivity, dict(features_in_step=24)),
    (MP.smooth_mprt, dict(method="gradient", n=2)), (MP.efficient_mprt, dict(method="gradient")),
]


@pytest.fixture(scope="module")
def cnn_maps(tiny_cnn):
    model, x = tiny_cnn
    targets = np.array([0, 1, 2])
    R = np.asarray(lrpgraph.create_analyzer("input_t_gradient", model).analyze(x, target=targets), np.float64)
    return model, x, R, targets


@pytest.mark.parametrize("fn,kw1", BATCHED, ids=[f.__name__ for f, _ in BATCHED])
def test_batched_equals_per_sample_and_reproducible(cnn_maps, fn, kw1):
    model, x, R, targets = cnn_maps
    kw = dict(kw1, segments=kw1["segments"].repeat(3, 0)) if "segments" in kw1 else kw1
    whole = fn(model, x, R, targets, **kw).score
    ones = np.concatenate([fn(model, x[i:i + 1], R[i:i + 1], targets[i:i + 1], **kw1).score for i in range(3)])
    # float32 forward of the same copies in other chunk sizes: 1e-6 of scores of order 1; ROS divides by
    # |h(x) - h(x')|, a difference of float32 logits of nearby inputs: relative error ~1e-7 |h| / |dh| ~ 1e-5
    rtol = 1e-4 if fn is RB.relative_output_stability else 1e-6
    np.testing.assert_allclose(whole, ones, atol=1e-6, rtol=rtol)
    np.testing.assert_array_equal(whole, fn(model, x, R, targets, **kw).score)


@pytest.mark.parametrize("fn,kw", [(F.infidelity, dict(n=6)), (F.sensitivity_n, dict(ns=[3, 30], n_subsets=5)),
                                   (RB.max_sensitivity, dict(method="gradient", n=4))])
def test_seeds_change_the_draws(cnn_maps, fn, kw):
    model, x, R, targets = cnn_maps
    a = fn(model, x, R, targets, seed=1, **kw).score
    assert not np.allclose(a, fn(model, x, R, targets, seed=2, **kw).score)


def test_registered_in_evaluate_table(lin, xs):
    masks = np.zeros(xs.shape[:3], bool)
    masks[:, :2] = True
    tab = lrpgraph.evaluate(lin, xs, ["input_t_gradient", "gradient"], 0,
                            ["faithfulness_estimate", "sparseness", "max_sensitivity", "pointing_game",
                             "completeness"],
                            params={"faithfulness_estimate": {"steps": F_ALL}, "max_sensitivity": {"n": 3}},
                            masks=masks)
    assert tab.metric_columns == ["faithfulness_estimate", "sparseness", "max_sensitivity", "pointing_game",
                                  "completeness"]
    np.testing.assert_allclose(tab.per_sample["input_t_gradient"]["faithfulness_estimate"], 1, atol=1e-6)
    np.testing.assert_allclose(tab.per_sample["gradient"]["max_sensitivity"], 0, atol=1e-7)
    np.testing.assert_allclose(tab.per_sample["input_t_gradient"]["completeness"], 0, atol=1e-5)
    assert "max_sensitivity (lower)" in tab.to_markdown()
    with pytest.raises(ValueError, match="need the ground-truth masks"):
        lrpgraph.evaluate(lin, xs, ["gradient"], 0, ["@localisation"])
    assert "road" in E.PER_SAMPLE_METRICS and "max_sensitivity" not in E.PER_SAMPLE_METRICS
    assert set(E.expand_metrics("all")) == set(E.METRICS) - set(E.GROUPS["localisation"])
    np.testing.assert_allclose(E.PER_SAMPLE_METRICS["sparseness"](lrpgraph.prepare(lin), xs, _wx(xs), np.zeros(3, int)),
                               C.sparseness(lin, xs, _wx(xs), 0).score)
