"""The XAI-TRIS-style benchmark (lrpgraph.evaluation.xai_tris, `lrpgraph benchmark xai-tris`):
the ground truth is where the pattern was put, the classes follow the scenario definitions,
seeds reproduce, the ground-truth map scores best and a random map near chance, the CLI writes
the table.  Tiny sizes throughout."""

import numpy as np
import pytest

from lrpgraph.evaluation import xai_tris as X


def _shape_of(mask):
    """The 3x3-cell box of a tetromino mask (cell = 1 after the crop is downsampled)."""
    rows, cols = np.nonzero(mask)
    return mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def _rotations(name, cell):
    box = X.tetromino(name, 8 * cell, 0, (0, 0))[:3 * cell, :3 * cell]
    return [_shape_of(np.rot90(box, k)) for k in range(4)]


@pytest.mark.parametrize("scenario", X.SCENARIOS)
def test_ground_truth_is_where_the_pattern_was_put(scenario):
    # alpha = 1: the image is the pattern term alone, so the mask can be read off the pixels exactly
    d = X.make_dataset(scenario, 24, size=16, alpha=1.0, seed=3)
    x, m = d["x"][..., 0], d["masks"]
    assert m.shape == (24, 16, 16) and m.dtype == bool
    if scenario in ("lin", "rigid"):
        np.testing.assert_array_equal(x, m.astype(np.float32))        # x = a
    elif scenario == "mult":
        np.testing.assert_array_equal(x, 1 - m.astype(np.float32))    # x = (1 - a) * 1
    else:
        np.testing.assert_array_equal(x != 0, m)                      # x = s1 a_T + s2 a_L
    # every pattern is 4 cells of (16 // 8)^2 pixels, or two patterns for xor
    cells = 4 * (16 // 8) ** 2
    assert (m.reshape(24, -1).sum(1) == (2 * cells if scenario == "xor" else cells)).all()


@pytest.mark.parametrize("scenario", X.SCENARIOS)
def test_scenario_class_definitions(scenario):
    size, cell = 32, 4
    d = X.make_dataset(scenario, 40, size=size, seed=1)
    y, m = d["y"], d["masks"]
    assert sorted(np.bincount(y)) == [20, 20]  # balanced
    t_fixed, l_fixed = X._fixed(size)
    if scenario in ("lin", "mult"):
        for i in range(40):
            np.testing.assert_array_equal(m[i], t_fixed if y[i] == 0 else l_fixed)
    elif scenario == "rigid":
        for i in range(40):
            shape = _shape_of(m[i])
            assert any(shape.shape == r.shape and (shape == r).all() for r in _rotations("TL"[y[i]], cell))
            assert not any(shape.shape == r.shape and (shape == r).all() for r in _rotations("LT"[y[i]], cell))
        assert len({tuple(np.argwhere(m[i])[0]) for i in range(40)}) > 10  # the positions vary
    else:
        s = d["signs"]
        np.testing.assert_array_equal(y, (s[:, 0] != s[:, 1]).astype(int))  # y = XOR of the signs
        assert {tuple(v) for v in s} == {(1, 1), (1, -1), (-1, 1), (-1, -1)}
        # the signs are the signs of the patterns in the image (alpha = 1: no background)
        d1 = X.make_dataset("xor", 40, size=size, alpha=1.0, seed=1)
        np.testing.assert_array_equal(np.sign(d1["x"][:, t_fixed, 0][:, 0]), d1["signs"][:, 0])
        np.testing.assert_array_equal(np.sign(d1["x"][:, l_fixed, 0][:, 0]), d1["signs"][:, 1])


def test_seeds_reproduce_and_backgrounds():
    a = X.make_dataset("rigid", 16, size=16, background="corr", seed=7)
    b = X.make_dataset("rigid", 16, size=16, background="corr", seed=7)
    c = X.make_dataset("rigid", 16, size=16, background="corr", seed=8)
    for k in ("x", "y", "masks"):
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["x"], c["x"])
    # backgrounds: white is uncorrelated between neighbours, corr strongly correlated (sigma = S / 8 = 4 px:
    # the neighbour correlation of Gaussian-smoothed white noise is exp(-1 / (4 sigma^2)) = 0.98)
    for bg, lo, hi in (("white", -0.1, 0.1), ("corr", 0.9, 1.0)):
        eta = X._background(np.random.default_rng(0), 64, 32, bg)
        r = np.corrcoef(eta[:, :, :-1].ravel(), eta[:, :, 1:].ravel())[0, 1]
        assert lo < r < hi, (bg, r)
        np.testing.assert_allclose(eta.reshape(64, -1).std(1), 1.0, atol=0.15 if bg == "white" else 1e-9)


def test_training_and_init_reproduce_from_the_seed():
    d = X.make_dataset("lin", 64, size=16, seed=0)
    w1 = X.build_model("cnn", 16, seed=5).get_weights()
    w2 = X.build_model("cnn", 16, seed=5).get_weights()
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    m1, m2 = (X.train("mlp", d, epochs=1, seed=2) for _ in range(2))
    # same seed, same data order: equal up to float32 summation-order noise of threaded reductions
    np.testing.assert_allclose(m1.predict(d["x"], verbose=0), m2.predict(d["x"], verbose=0), atol=1e-4)


def test_ground_truth_map_scores_best_and_random_near_chance():
    d = X.make_dataset("lin", 64, size=32, seed=0)
    masks = d["masks"]
    truth = X.score(masks[..., None].astype(np.float64), masks)
    for k in ("mass", "rank", "pointing", "auc"):
        np.testing.assert_array_equal(truth[k], 1.0)  # exact: every map is 1 on the mask, 0 off it
    rand = X.score(np.random.default_rng(1).uniform(size=masks.shape + (1,)), masks)
    share = masks.mean()  # 64 of 1024 pixels
    # chance levels: mass ~ share, rank ~ share, AUC ~ 0.5.  Per-sample sd of the AUC of uniform scores is
    # sqrt((P + Q + 1) / (12 P Q)) = 0.037 (P = 64, Q = 960), of the mean of 64 samples 0.005: 0.02 is 4 sd
    assert abs(rand["auc"].mean() - 0.5) < 0.02
    assert abs(rand["mass"].mean() - share) < 0.01
    assert abs(rand["rank"].mean() - share) < 0.03
    for k in ("mass", "rank", "pointing", "auc"):
        assert truth[k].mean() > rand[k].mean()


def test_bootstrap_ci():
    m, lo, hi = X.bootstrap_ci(np.full(20, 0.3))
    assert m == lo == hi == pytest.approx(0.3)
    v = np.random.default_rng(0).normal(size=200)
    m, lo, hi = X.bootstrap_ci(v, seed=1)
    assert lo < m < hi
    # the interval of a mean: about +-1.96 sd / sqrt(n)
    assert (hi - lo) == pytest.approx(2 * 1.96 * v.std() / np.sqrt(200), rel=0.2)
    assert X.bootstrap_ci(v, seed=1) == (m, lo, hi)


def test_bad_input_names_the_cause():
    with pytest.raises(ValueError, match="unknown scenario 'sum'.*lin"):
        X.make_dataset("sum", 4)
    with pytest.raises(ValueError, match="background"):
        X.make_dataset("lin", 4, background="pink")
    with pytest.raises(ValueError, match="outside"):
        X.tetromino("T", 16, 0, (14, 0))
    with pytest.raises(ValueError, match="alpha"):
        X.make_dataset("lin", 4, alpha=0)


def test_cli_quick_run_writes_the_table(tmp_path):
    from lrpgraph.cli import main

    out = tmp_path / "bench"
    rc = main(["benchmark", "xai-tris", "--scenarios", "xor", "--models", "cnn", "--methods",
               "LRP-eps,Grad-CAM,random,sobel", "--n-train", "64", "--n-test", "6", "--size", "16", "--epochs", "1",
               "--n-boot", "20", "--out", str(out)], out=open(tmp_path / "log.txt", "w"))
    assert rc == 0
    md = (out / "xai_tris.md").read_text()
    assert "lrpgraph benchmark xai-tris --scenarios xor" in md
    for label in ("LRP-eps", "Grad-CAM", "random", "sobel"):
        assert f"| {label} |" in md
    csv = (out / "xai_tris.csv").read_text().splitlines()
    assert len(csv) == 1 + 4 and csv[0].startswith("scenario,background,model,accuracy,method,mass,")
    assert (out / "xai_tris_cnn.png").stat().st_size > 1000
    assert "## Ranking by relevance mass" in md and "## Ranking by AOPC MoRF" in md and "## Mean rank per metric" in md
    # the CSV reads back to the same table, and the ranking puts the best mean first
    t = X.BenchmarkTable.from_csv(out / "xai_tris.csv")
    assert t.to_csv() == (out / "xai_tris.csv").read_text()
    best = max(t.rows, key=lambda r: r["mass"][0])["method"]
    assert t.ranking_markdown("mass").splitlines()[2].startswith(f"| {best} | 1.0 |")
    assert main(["benchmark", "xai-tris", "--methods", "nope", "--out", str(out)]) == 2
