"""lrpgraph.evaluation: closed-form values on a linear model, invariances, the
randomisation checks, batched == per-sample, and bad input."""

import numpy as np
import pytest

import keras

import lrpgraph
from lrpgraph import evaluation as E

# --- a linear model on 4x4x1 images: logit_t = sum_i x_i w_it (no bias) ---------------
# target 0's weights: the four 2x2 regions (row-major) contribute 3, -1, 5, 0 at x = 1
W0 = np.array([[1.0, 2.0, -1.0, 0.5],
               [0.0, 0.0, -0.5, 0.0],
               [2.0, 1.0, 0.0, 0.0],
               [1.0, 1.0, 0.0, 0.0]])
W1 = np.arange(16, dtype=float).reshape(4, 4) / 10 - 0.7


def linear_model(w_cols, shape=(4, 4, 1), name="linear"):
    model = keras.Sequential([keras.Input(shape), keras.layers.Flatten(),
                              keras.layers.Dense(len(w_cols), use_bias=False, name="out")], name=name)
    model.set_weights([np.stack([np.asarray(w, "float32").reshape(-1) for w in w_cols], axis=1)])
    return model


@pytest.fixture(scope="module")
def lin():
    return linear_model([W0, W1])


@pytest.fixture(scope="module")
def tiny_cnn():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((8, 8, 2)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.Flatten(),
        keras.layers.Dense(8, activation="relu", name="fc"),
        keras.layers.Dense(3, name="logits"),
    ], name="tiny_cnn")
    x = np.random.default_rng(0).uniform(0, 1, (6, 8, 8, 2)).astype("float32")
    return model, x


def test_linear_model_morf_lerf_curves_and_aopc_by_hand(lin):
    x = np.ones((1, 4, 4, 1), "float32")
    R = lrpgraph.create_analyzer("lrp.z", lin).analyze(x, target=0)
    np.testing.assert_allclose(R[0, ..., 0], W0, atol=1e-6)  # LRP-0 of a linear model = x * w

    morf = E.region_perturbation(lin, x, R, 0, patch=2, baseline=0.0)
    # regions by relevance 5 (r2), 3 (r0), 0 (r3), -1 (r1); f_0 = 7
    np.testing.assert_allclose(morf.curve, [[7, 2, -1, -1, 0]], atol=1e-5)
    np.testing.assert_allclose(morf.aopc, [(0 + 5 + 8 + 8 + 7) / 5], atol=1e-5)  # 5.6
    lerf = E.region_perturbation(lin, x, R, 0, patch=2, baseline=0.0, order="lerf")
    np.testing.assert_allclose(lerf.curve, [[7, 8, 8, 5, 0]], atol=1e-5)
    np.testing.assert_allclose(lerf.aopc, [(0 - 1 - 1 + 2 + 7) / 5], atol=1e-5)  # 1.4
    assert lerf.aopc[0] <= morf.aopc[0]
    np.testing.assert_allclose(morf.fractions, [0, .25, .5, .75, 1])

    two = E.region_perturbation(lin, x, R, 0, patch=2, steps=2, baseline=0.0)  # K = 2: f_0..f_2
    np.testing.assert_allclose(two.curve, [[7, 2, -1]], atol=1e-5)
    np.testing.assert_allclose(two.aopc, [(0 + 5 + 8) / 3], atol=1e-5)

    # pixel flipping (patch 1) with a constant baseline c: f_k = f_0 - sum_{top k} (x_i - c) w_i
    c = 0.5
    pf = E.region_perturbation(lin, x, R, 0, patch=1, baseline=c)
    order = np.argsort(-W0.reshape(-1), kind="stable")
    want = 7 - np.concatenate([[0], np.cumsum((1 - c) * W0.reshape(-1)[order])])
    np.testing.assert_allclose(pf.curve[0], want, atol=1e-5)


def test_ties_go_to_the_lower_region_index(lin):
    x = np.ones((1, 4, 4, 1), "float32")
    flat = np.zeros((1, 4, 4, 1))
    flat[0, :2, :] = 1.0  # regions 0 and 1 tie (relevance 4 each); 2 and 3 tie at 0
    res = E.region_perturbation(lin, x, flat, 0, patch=2, baseline=0.0)
    # MoRF: r0 (3), r1 (-1), then r2 (5), r3 (0)
    np.testing.assert_allclose(res.curve, [[7, 4, 5, 0, 0]], atol=1e-5)
    res = E.region_perturbation(lin, x, flat, 0, patch=2, baseline=0.0, order="lerf")
    # LeRF: r2, r3 (relevance 0, lower index first), then r0, r1
    np.testing.assert_allclose(res.curve, [[7, 2, 2, -1, 0]], atol=1e-5)


def test_softmax_score_is_the_target_probability(lin):
    x = np.ones((1, 4, 4, 1), "float32")
    res = E.region_perturbation(lin, x, W0[None, ..., None], 0, patch=2, baseline=0.0, score="softmax")
    z = np.stack([[7, 2, -1, -1, 0], [(W1 * m).sum() for m in _masks_kept(W0)]], axis=1)
    p = np.exp(z[:, 0]) / np.exp(z).sum(axis=1)
    np.testing.assert_allclose(res.curve[0], p, atol=1e-6)


def _masks_kept(w):
    """x after 0..4 MoRF steps (x = 1, zero baseline) for the map w."""
    order = np.argsort(-w.reshape(2, 2, 2, 2).sum(axis=(1, 3)).reshape(-1), kind="stable")
    out, keep = [], np.ones((2, 2))
    out.append(np.kron(keep, np.ones((2, 2))))
    for r in order:
        keep[r // 2, r % 2] = 0
        out.append(np.kron(keep, np.ones((2, 2))))
    return out


def test_aopc_invariant_to_positive_scaling(tiny_cnn):
    model, x = tiny_cnn
    R = lrpgraph.create_analyzer("gradient", model).analyze(x, target=1)
    a = E.region_perturbation(model, x, R, 1, patch=2, steps=10)
    for s in (1e-3, 2.5, 1e4):
        b = E.region_perturbation(model, x, R * s, 1, patch=2, steps=10)
        np.testing.assert_array_equal(a.aopc, b.aopc)
    neg = E.region_perturbation(model, x, -R, 1, patch=2, steps=10)
    assert not np.allclose(a.aopc, neg.aopc)  # the ranking really depends on the map


def test_random_maps_match_a_random_ranking_and_true_contribution_beats_them():
    # 8x8 linear model, zero baseline, every pixel flipped: a uniformly random ranking has
    # E[f_k] = f_0 (1 - k/R), hence E[AOPC] = f_0 / 2 exactly
    rng = np.random.default_rng(1)
    w = rng.normal(size=(8, 8))
    model = linear_model([w, -w], shape=(8, 8, 1), name="linear8")
    x = rng.uniform(0, 1, (64, 8, 8, 1)).astype("float32")
    f0 = (x[..., 0] * w).sum(axis=(1, 2))
    rand = E.region_perturbation(model, x, rng.normal(size=x.shape), 0, patch=1, baseline=0.0)
    expected = f0.mean() / 2
    spread = np.abs(x[..., 0] * w).sum(axis=(1, 2)).mean() / np.sqrt(64)  # generous: ~ 1 / sqrt(N)
    assert abs(rand.aopc.mean() - expected) < spread
    true = E.region_perturbation(model, x, x * w[None, ..., None], 0, patch=1, baseline=0.0)
    assert true.aopc.mean() > rand.aopc.mean() + 2 * spread
    # the true ranking is optimal: its AOPC is at least that of every sample's random one
    assert np.all(true.aopc >= rand.aopc - 1e-5)


def _reference_curve(model, x, R, t, patch, counts, fill, start=None, order="morf"):
    """Quantus-style loop: one model(x) call per sample per step, numpy masks."""
    h, w = x.shape[1:3]
    gw = w // patch
    out = np.zeros((len(x), len(counts)))
    for i in range(len(x)):
        s = R[i].reshape(h // patch, patch, gw, patch, -1).sum(axis=(1, 3, 4)).reshape(-1)
        perm = np.argsort(-s if order == "morf" else s, kind="stable")
        for k, c in enumerate(counts):
            img = (x[i] if start is None else start[i]).copy()
            for r in perm[:c]:
                a, b = (r // gw) * patch, (r % gw) * patch
                img[a:a + patch, b:b + patch] = fill[i, a:a + patch, b:b + patch]
            out[i, k] = np.asarray(lrpgraph.prepare(model).forward([img[None]]))[0, t[i]]
    return out


@pytest.mark.parametrize("baseline", ["uniform", "mean", "blur", 0.25])
def test_batched_equals_per_sample_and_a_python_loop(tiny_cnn, baseline):
    model, x = tiny_cnn
    t = np.array([0, 1, 2, 0, 1, 2])
    R = np.random.default_rng(5).normal(size=x.shape)
    kw = dict(patch=2, steps=7, baseline=baseline, sigma=1.0)
    full = E.region_perturbation(model, x, R, t, batch_size=5, **kw)  # 6 x 8 copies in chunks of 5
    for i in range(len(x)):
        one = E.region_perturbation(model, x[i:i + 1], R[i:i + 1], t[i], batch_size=64, **kw)
        np.testing.assert_allclose(one.curve[0], full.curve[i], atol=1e-6, rtol=0)
        np.testing.assert_allclose(one.aopc[0], full.aopc[i], atol=1e-6, rtol=0)
    fill = E.baseline_images(x, baseline, seed=0, sigma=1.0)
    ref = _reference_curve(model, x, R, t, 2, range(8), fill)
    np.testing.assert_allclose(full.curve, ref, atol=1e-5)


def test_deletion_insertion_batched_equals_per_sample_and_loop(tiny_cnn):
    model, x = tiny_cnn
    R = lrpgraph.create_analyzer("gradient", model).analyze(x, target=2)
    d = E.deletion(model, x, R, 2, patch=2, batch_size=7)
    ins = E.insertion(model, x, R, 2, patch=2, sigma=1.0, batch_size=7)
    assert d.curve.shape == (6, 17) and ins.curve.shape == (6, 17)  # 16 regions: every one
    for i in (0, 5):
        np.testing.assert_allclose(E.deletion(model, x[i:i + 1], R[i:i + 1], 2, patch=2).curve[0], d.curve[i],
                                   atol=1e-6)
        np.testing.assert_allclose(E.insertion(model, x[i:i + 1], R[i:i + 1], 2, patch=2, sigma=1.0).curve[0],
                                   ins.curve[i], atol=1e-6)
    softmax = lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)  # noqa: E731
    logit_ref = _reference_curve(model, x, R, np.full(6, 2), 2, range(17), np.zeros_like(x))
    p_last = softmax(lrpgraph.prepare(model).logits(np.zeros_like(x)))[:, 2]
    np.testing.assert_allclose(d.curve[:, -1], p_last, atol=1e-6)  # everything deleted: the black image
    p0 = softmax(lrpgraph.prepare(model).logits(x))[:, 2]
    np.testing.assert_allclose(d.curve[:, 0], p0, atol=1e-6)
    np.testing.assert_allclose(ins.curve[:, -1], p0, atol=1e-6)  # everything inserted: the image
    assert logit_ref.shape == (6, 17)
    # trapezoid AUC over the fraction axis
    np.testing.assert_allclose(d.auc, np.trapezoid(d.curve, d.fractions, axis=1), atol=1e-12)
    # fewer steps: round(k R / K) regions
    d4 = E.deletion(model, x, R, 2, patch=2, steps=4)
    np.testing.assert_allclose(d4.curve, d.curve[:, [0, 4, 8, 12, 16]], atol=1e-6)


def test_faithfulness_correlation_linear_model_is_one(lin):
    # linear model, zero baseline: f(x) - f(x_S=0) = sum_{i in S} x_i w_i exactly, so x * w correlates 1
    rng = np.random.default_rng(2)
    x = rng.uniform(0.5, 1, (3, 4, 4, 1)).astype("float32")
    R = x * W0[None, ..., None]
    fc = E.faithfulness_correlation(lin, x, R, 0, n=20, subset_size=3, baseline=0.0)
    np.testing.assert_allclose(fc.correlation, 1.0, atol=1e-6)
    np.testing.assert_allclose(fc.drops, fc.attributions, atol=1e-5)
    assert fc.subsets.shape == (20, 16) and (fc.subsets.sum(1) == 3).all()
    # the negated map: -1; batched == per sample
    neg = E.faithfulness_correlation(lin, x, -R, 0, n=20, subset_size=3, baseline=0.0, batch_size=7)
    np.testing.assert_allclose(neg.correlation, -1.0, atol=1e-6)
    one = E.faithfulness_correlation(lin, x[1:2], R[1:2], 0, n=20, subset_size=3, baseline=0.0)
    np.testing.assert_allclose(one.drops[0], fc.drops[1], atol=1e-6)


def test_model_randomisation_similarity_falls_and_model_untouched(tiny_cnn):
    model, x = tiny_cnn
    weights = [w.copy() for w in model.get_weights()]
    logits = lrpgraph.prepare(model).logits(x)
    R = lrpgraph.create_analyzer("gradient", model).analyze(x, target=0)
    res = E.model_randomisation(model, x, R, 0, method="gradient", seed=1)
    assert res.layers == ["logits", "fc", "conv2", "conv1"]
    for k in E.SIMILARITIES:
        assert res.similarity[k].shape == (6, 4)
    last = res.last
    assert np.nanmean(last["spearman_abs"]) < 0.6
    assert np.nanmean(last["ssim_abs"]) < 0.6
    # the original model: same weights, same logits, same maps
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(lrpgraph.prepare(model).logits(x), logits)
    np.testing.assert_array_equal(lrpgraph.create_analyzer("gradient", model).analyze(x, target=0), R)
    # seeded: the same result twice
    again = E.model_randomisation(model, x, R, 0, method="gradient", seed=1)
    np.testing.assert_array_equal(again.similarity["spearman_abs"], res.similarity["spearman_abs"])


def test_similarities_identity_and_data_randomisation(tiny_cnn):
    model, x = tiny_cnn
    R = lrpgraph.create_analyzer("gradient", model).analyze(x, target=0)
    same = E.similarities(R, R)
    for k in E.SIMILARITIES:
        np.testing.assert_allclose(same[k], 1.0, atol=1e-9)
    np.testing.assert_allclose(E.similarities(R, -R)["spearman"], -1.0, atol=1e-9)
    np.testing.assert_allclose(E.similarities(R, -R)["spearman_abs"], 1.0, atol=1e-9)
    # data randomisation against the same model: similarity 1
    res = E.data_randomisation(model, x, R, 0, random_model=model, method="gradient")
    np.testing.assert_allclose(res.last["spearman_abs"], 1.0, atol=1e-6)


def test_bad_input_errors(lin, tiny_cnn):
    x = np.ones((2, 4, 4, 1), "float32")
    R = np.ones((2, 4, 4, 1))
    with pytest.raises(ValueError, match="relevance has shape"):
        E.region_perturbation(lin, x, np.ones((2, 4, 5, 1)), 0, patch=2)
    with pytest.raises(ValueError, match="relevance has shape"):
        E.region_perturbation(lin, x, np.ones((3, 4, 4, 1)), 0, patch=2)
    with pytest.raises(ValueError, match="does not divide"):
        E.region_perturbation(lin, x, R, 0, patch=3)
    with pytest.raises(ValueError, match="exceeds the image"):
        E.region_perturbation(lin, x, R, 0, patch=8)
    with pytest.raises(ValueError, match="larger than the number of regions"):
        E.region_perturbation(lin, x, R, 0, patch=2, steps=5)
    with pytest.raises(ValueError, match="larger than the number of regions"):
        E.deletion(lin, x, R, 0, patch=2, steps=5)
    with pytest.raises(ValueError, match="n .* >= 2"):
        E.faithfulness_correlation(lin, x, R, 0, n=1)
    with pytest.raises(ValueError, match="subset_size"):
        E.faithfulness_correlation(lin, x, R, 0, subset_size=17)
    with pytest.raises(ValueError, match="order must be"):
        E.region_perturbation(lin, x, R, 0, patch=2, order="random")
    with pytest.raises(ValueError, match="unknown baseline"):
        E.region_perturbation(lin, x, R, 0, patch=2, baseline="zeros")
    with pytest.raises(ValueError, match="score must be"):
        E.region_perturbation(lin, x, R, 0, patch=2, score="prob")
    with pytest.raises(ValueError, match="one image input"):
        E.region_perturbation(linear_model([np.ones(4)], shape=(4,), name="vec"), np.ones((1, 4), "float32"),
                              np.ones((1, 4)), 0)
    with pytest.raises(ValueError, match="unknown layer"):
        E.model_randomisation(tiny_cnn[0], tiny_cnn[1], None, 0, method="gradient", layers=["nope"])
    with pytest.raises(ValueError, match="unknown metric"):
        lrpgraph.evaluate(lin, x, ["gradient"], 0, ["aopc", "nope"])


def test_evaluate_table_and_per_sample_metrics(lin):
    x = np.random.default_rng(3).uniform(0.5, 1, (4, 4, 4, 1)).astype("float32")
    tab = lrpgraph.evaluate(lin, x, {"LRP-0": "lrp.z", "gradient": "gradient"}, 0,
                            ["aopc", "deletion", "faithfulness"],
                            params={"aopc": {"patch": 2, "baseline": 0.0}, "deletion": {"patch": 2},
                                    "faithfulness": {"n": 10, "subset_size": 2}})
    assert list(tab.columns["method"]) == ["LRP-0", "gradient"]
    assert tab.metric_columns == ["aopc_morf", "aopc_lerf", "deletion", "faithfulness"]
    want = E.region_perturbation(lin, x, x * W0[None, ..., None], 0, patch=2, baseline=0.0).aopc
    np.testing.assert_allclose(tab.per_sample["LRP-0"]["aopc_morf"], want, atol=1e-5)
    np.testing.assert_allclose(tab.columns["aopc_morf"][0], want.mean(), atol=1e-5)
    md = tab.to_markdown()
    assert md.splitlines()[0].startswith("| method | aopc_morf (higher) | aopc_lerf (lower)")
    assert f"{want.mean():.3f}" in md.splitlines()[2]
    csv = tab.to_csv().splitlines()
    assert csv[0].split(",")[:3] == ["method", "aopc_morf", "aopc_morf_std"] and len(csv) == 3
    assert len(tab.per_sample_csv().splitlines()) == 1 + 2 * 4
    # the runner's table: same numbers with the defaults overridden alike
    fn = E.PER_SAMPLE_METRICS["aopc_morf"]
    np.testing.assert_allclose(fn(lrpgraph.prepare(lin), x, x * W0[None, ..., None], np.zeros(4, int), patch=2,
                                  baseline=0.0), want, atol=1e-6)
    assert {"aopc_morf", "aopc_lerf", "deletion", "insertion", "faithfulness"} <= set(E.PER_SAMPLE_METRICS)
    assert not set(E.PER_SAMPLE_METRICS) & (E.NEEDS_METHOD | E.NEEDS_MASKS)  # the runner has only the maps


def test_plots_write_pngs(tmp_path, lin):
    from lrpgraph.evaluation import plots

    x = np.random.default_rng(3).uniform(0.5, 1, (3, 4, 4, 1)).astype("float32")
    tab = lrpgraph.evaluate(lin, x, ["lrp.z", "gradient"], 0, ["aopc", "deletion", "randomisation"],
                            params={"aopc": {"patch": 2}, "deletion": {"patch": 2}})
    paths = plots.save_figures(tab, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == ["aopc.png", "curves_aopc_lerf.png", "curves_aopc_morf.png", "curves_deletion.png",
                     "randomisation.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_evaluate_writes_table_and_figures(tmp_path, tiny_cnn, capsys):
    from lrpgraph.cli import main

    model, x = tiny_cnn
    model.save(tmp_path / "tiny.keras")
    np.savez(tmp_path / "data.npz", x=x, y=np.array([0, 1, 2, 0, 1, 2]))
    out = tmp_path / "out"
    rc = main(["evaluate", "--model", str(tmp_path / "tiny.keras"), "--data", str(tmp_path / "data.npz"),
               "--methods", "gradient,lrp.z", "--metrics", "aopc,faithfulness", "--metric-param", "aopc.patch=2",
               "--metric-param", "faithfulness.n=8", "--out", str(out)])
    assert rc == 0
    md = (out / "evaluation.md").read_text()
    assert "| gradient |" in md and "| lrp.z |" in md and "aopc_morf (higher)" in md
    csv = (out / "evaluation.csv").read_text().splitlines()
    assert csv[0].startswith("method,aopc_morf,aopc_morf_std,aopc_lerf") and len(csv) == 3
    # the CSV holds the same numbers as the API
    R = lrpgraph.create_analyzer("gradient", model).analyze(x, target=[0, 1, 2, 0, 1, 2])
    want = E.region_perturbation(model, x, R, [0, 1, 2, 0, 1, 2], patch=2).aopc.mean()
    assert abs(float(csv[1].split(",")[1]) - want) < 1e-6
    assert sorted(p.name for p in out.glob("*.png")) == ["aopc.png", "curves_aopc_lerf.png", "curves_aopc_morf.png"]
    capsys.readouterr()
    rc = main(["evaluate", "--model", str(tmp_path / "tiny.keras"), "--data", str(tmp_path / "data.npz"),
               "--metrics", "aopc,bogus", "--out", str(out)])
    assert rc == 1 and "unknown metric 'bogus'" in capsys.readouterr().err


DOC = __import__("pathlib").Path(__file__).parent.parent / "docs" / "evaluation.md"


def test_docs_example_runs_and_its_command_parses():
    import re

    from lrpgraph.cli import build_parser

    text = DOC.read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block, "docs/evaluation.md lost its example"
    ns = {}
    exec(compile(block.group(1), str(DOC), "exec"), ns)
    morf, lerf, table = ns["morf"], ns["lerf"], ns["table"]
    assert morf.curve.shape == (8, 50) and lerf.aopc.shape == (8,)
    assert morf.aopc.mean() > lerf.aopc.mean()
    assert list(table.columns["method"]) == ["lrp.epsilon", "gradient"]
    np.testing.assert_allclose(table.per_sample["lrp.epsilon"]["aopc_morf"], morf.aopc, atol=1e-6)
    cmd = re.search(r"```bash\n(lrpgraph evaluate .*?)```", text, re.S)
    assert cmd, "docs/evaluation.md lost the command that made its table"
    args = build_parser().parse_args(cmd.group(1).replace("\\\n", " ").split()[1:])
    assert args.fn.__name__ == "cmd_evaluate"
    assert args.metrics == "all" and "aopc.patch=4" in args.metric_param and args.benchmark == "shapes"
