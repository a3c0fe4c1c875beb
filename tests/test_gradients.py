"""Gradient family, integrated gradients, SmoothGrad/VarGrad, occlusion and post-processing."""

import numpy as np
import pytest

import keras

import lrpgraph
from lrpgraph import postprocess
from lrpgraph.methods import perturbation
from conftest import build_small_cnn, float32_noise, load_golden

GOLDEN_METHODS = ["gradient", "input_t_gradient", "guided_backprop", "deconvnet", "integrated_gradients"]
# iNNvestigate's float32 goldens against ours: two float32 runs through small_cnn's conv1, conv2,
# fc1 and logits (measured: at most 5.9e-7 of the max, 2.3e-7 for integrated gradients)
GOLDEN_BOUND = float32_noise(4, runs=2)


@pytest.fixture(scope="module")
def small_cnn():
    return build_small_cnn()


@pytest.fixture(scope="module")
def golden():
    out, meta, _ = load_golden()
    return out, meta


def _rel_err(a, b):
    return [np.abs(a[i] - b[i]).max() / max(np.abs(b[i]).max(), 1e-12) for i in range(len(b))]


@pytest.mark.parametrize("key", GOLDEN_METHODS)
def test_matches_innvestigate(small_cnn, golden, key):
    model, x, t = small_cnn
    out, meta = golden
    params = dict(meta["params"][key])
    name = params.pop("innvestigate_name")
    params.pop("neuron_selection_mode")
    r = lrpgraph.create_analyzer(name, model, neuron_selection_mode="index", **params).analyze(x, target=t)
    assert r.shape == out[key].shape
    assert max(_rel_err(r, out[key])) <= GOLDEN_BOUND


def test_gradient_postprocess_abs_square(small_cnn, golden):
    model, x, t = small_cnn
    g = golden[0]["gradient"]
    r_abs = lrpgraph.create_analyzer("gradient", model, postprocess="abs").analyze(x, t)
    r_sq = lrpgraph.create_analyzer("gradient", model, postprocess="square").analyze(x, t)
    assert max(_rel_err(r_abs, np.abs(g))) <= GOLDEN_BOUND
    assert max(_rel_err(r_sq, g ** 2)) <= 2 * GOLDEN_BOUND  # squaring doubles a relative error


def test_postprocess_steps():
    rng = np.random.RandomState(0)
    m = rng.randn(2, 3, 4, 5).astype("float32")
    m[1] = 7.0  # a constant map normalises to 0
    s = postprocess.apply(m, ["max", "normalize"])
    assert s.shape == (2, 3, 4, 1)
    assert s[0].min() == 0 and np.isclose(s[0].max(), 1) and np.all(s[1] == 0)
    mx = m[0].max(-1)
    np.testing.assert_allclose(s[0, ..., 0], (mx - mx.min()) / (mx.max() - mx.min()), rtol=1e-6)
    am = postprocess.reduce_channels(m, "absmax")[..., 0]
    idx = np.abs(m).argmax(-1)
    assert am[0, 2, 3] == m[0, 2, 3, idx[0, 2, 3]]
    np.testing.assert_allclose(postprocess.apply(m, "sum")[..., 0], m.sum(-1), rtol=1e-6)
    # (N, T, ...) maps are normalised per (n, t)
    mt = rng.rand(2, 3, 4, 4)
    nt = postprocess.normalize(mt, batch_dims=2)
    assert np.allclose(nt.min(axis=(2, 3)), 0) and np.allclose(nt.max(axis=(2, 3)), 1)
    with pytest.raises(ValueError, match="unknown postprocess step 'cube'"):
        lrpgraph.create_analyzer("gradient", keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]),
                                 postprocess="cube")


def _linear_model(d_in=(6, 6, 2), k=3, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input(d_in)
    out = keras.layers.Dense(k, name="lin")(keras.layers.Flatten()(inp))
    return keras.Model(inp, out)


def test_ig_on_linear_model_is_exact():
    model = _linear_model()
    w = model.get_layer("lin").kernel.numpy()
    x = np.random.RandomState(1).randn(3, 6, 6, 2).astype("float32")
    ref = np.random.RandomState(2).randn(6, 6, 2).astype("float32")  # one sample's shape
    for rule in ("left", "trapezoid"):
        r = lrpgraph.create_analyzer("integrated_gradients", model, steps=3, reference_inputs=ref,
                                     rule=rule).analyze(x, target=[0, 1, 2])
        expect = (x - ref) * w[:, [0, 1, 2]].T.reshape(3, 6, 6, 2)
        np.testing.assert_allclose(r, expect, rtol=1e-5, atol=1e-6)


def test_ig_completeness_converges(small_cnn):
    model, x, t = small_cnn
    diff = (model(x).numpy() - model(np.zeros_like(x)).numpy())[np.arange(len(t)), t]
    errs = []
    for steps in (4, 16, 64):
        r = lrpgraph.create_analyzer("integrated_gradients", model, steps=steps, rule="trapezoid").analyze(x, t)
        errs.append(np.abs(r.sum(axis=(1, 2, 3)) - diff).max() / np.abs(diff).max())
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.02


def test_ig_chunking_targets_and_retracing(small_cnn, golden):
    model, x, t = small_cnn
    ig = lrpgraph.create_analyzer("integrated_gradients", model, steps=16, batch_size=5)
    r = ig.analyze(x, target=t)
    assert max(_rel_err(r, golden[0]["integrated_gradients"])) <= GOLDEN_BOUND
    ig.analyze(x[:3], target=t[:3])  # new batch size: no retrace
    assert ig.inner.traces == 1
    # None = the class predicted at x (not at the path points)
    pred = model(x).numpy().argmax(-1)
    np.testing.assert_allclose(ig.analyze(x), ig.analyze(x, target=pred), rtol=1e-6, atol=1e-9)
    # (N, T) targets: one map per (sample, target)
    both = ig.analyze(x, target=np.stack([t, pred], axis=1))
    assert both.shape == (4, 2, 32, 32, 3)
    np.testing.assert_allclose(both[:, 0], r, rtol=1e-6, atol=1e-9)


def test_ig_wraps_lrp(small_cnn):
    model, x, t = small_cnn
    steps = 4
    r = lrpgraph.create_analyzer("integrated_gradients", model, method="lrp.epsilon", steps=steps,
                                 epsilon=0.1).analyze(x, t)
    a = lrpgraph.Analyzer(model, "lrp.epsilon", epsilon=0.1)
    expect = np.mean([a.analyze(x * (k / steps), t) for k in range(steps)], axis=0)  # reference 0, not multiplied
    assert max(_rel_err(r, expect)) <= 1e-5


def test_smoothgrad_reproducible_and_converges(small_cnn):
    model, x, t = small_cnn
    sg = lrpgraph.create_analyzer("smoothgrad", model, n=8, noise_scale=0.2, seed=7, batch_size=6)
    r1, r2 = sg.analyze(x, t), sg.analyze(x, t)
    np.testing.assert_array_equal(r1, r2)
    r3 = lrpgraph.create_analyzer("smoothgrad", model, n=8, noise_scale=0.2, seed=8).analyze(x, t)
    assert np.abs(r1 - r3).max() > 1e-3 * np.abs(r1).max()
    g = lrpgraph.create_analyzer("gradient", model).analyze(x, t)
    errs = [max(_rel_err(lrpgraph.create_analyzer("smoothgrad", model, n=4, noise_scale=s).analyze(x, t), g))
            for s in (0.3, 1e-7)]
    assert errs[0] > 0.1 and errs[1] < 1e-4
    vg = lrpgraph.create_analyzer("vargrad", model, n=4, noise_scale=1e-7).analyze(x, t)
    assert np.all(vg >= 0) and np.abs(vg).max() < 1e-6 * np.abs(g).max() ** 2


def test_smoothgrad_noise_scale_is_honoured():
    """input_t_gradient of a linear model: the map is (x + mean noise) * w, so the
    noise's standard deviation can be read back from the maps."""
    model = _linear_model(d_in=(16, 16, 2), k=1)
    w = model.get_layer("lin").kernel.numpy()[:, 0].reshape(16, 16, 2)
    x = np.random.RandomState(3).uniform(-1, 1, (2, 16, 16, 2)).astype("float32")
    n = 16
    for relative, scale, sigma in ((True, 0.1, 0.1 * (x.max((1, 2, 3)) - x.min((1, 2, 3)))),
                                   (False, 0.5, np.full(2, 0.5))):
        r = lrpgraph.create_analyzer("smoothgrad", model, method="input_t_gradient", n=n, noise_scale=scale,
                                     relative=relative, seed=1).analyze(x, target=0)
        noise = r / w - x  # mean of n draws per pixel
        std = noise.reshape(2, -1).std(axis=1) * np.sqrt(n)
        np.testing.assert_allclose(std, sigma, rtol=0.1)
    vg = lrpgraph.create_analyzer("vargrad", model, n=4, noise_scale=0.3).analyze(x, target=0)
    assert np.abs(vg).max() < 1e-10  # the gradient of a linear model does not vary


def test_occlusion_on_linear_model():
    model = _linear_model(d_in=(8, 8, 2), k=2)
    w = model.get_layer("lin").kernel.numpy()[:, 1].reshape(8, 8, 2)
    x = np.random.RandomState(4).randn(3, 8, 8, 2).astype("float32")
    occ = lrpgraph.create_analyzer("occlusion", model, window=(4, 2), batch_size=7)
    r = occ.analyze(x, target=1)
    contrib = (x * w).sum(-1)  # baseline 0: the drop is the window's sum of w.x
    expect = contrib.reshape(3, 2, 4, 4, 2).sum(axis=(2, 4))  # non-overlapping windows
    expect = np.repeat(np.repeat(expect, 4, axis=1), 2, axis=2)[..., None]
    np.testing.assert_allclose(r, expect, rtol=1e-4, atol=1e-5)
    # overlapping windows: mean of the covering windows' drops; baseline shifts the drop
    r2 = lrpgraph.create_analyzer("occlusion", model, window=8, stride=1, baseline=1.0).analyze(x, target=1)
    np.testing.assert_allclose(r2[:, 3, 5, 0], ((x - 1) * w).sum((1, 2, 3)), rtol=1e-4)


def test_bad_input(small_cnn):
    model, x, t = small_cnn
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        lrpgraph.create_analyzer("integrated_gradients", model, steps=0)
    with pytest.raises(ValueError, match=r"reference_inputs has shape \(5, 5\)"):
        lrpgraph.create_analyzer("integrated_gradients", model, reference_inputs=np.zeros((5, 5)))
    ig = lrpgraph.create_analyzer("integrated_gradients", model, reference_inputs=np.zeros((4, 32, 32, 3)))
    with pytest.raises(ValueError, match="does not broadcast"):
        ig.analyze(x[:2], t[:2])
    with pytest.raises(ValueError, match="method must be a preset name"):
        lrpgraph.create_analyzer("smoothgrad", model, method="gradcam")
    with pytest.raises(ValueError, match="rule must be"):
        lrpgraph.create_analyzer("integrated_gradients", model, rule="simpson")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        lrpgraph.create_analyzer("smoothgrad", model, batch_size=0)
    with pytest.raises(TypeError, match="unknown parameter"):
        lrpgraph.create_analyzer("integrated_gradients", model, epsilon=0.1)  # gradient takes no epsilon
    with pytest.raises(ValueError, match="out of range"):
        lrpgraph.create_analyzer("smoothgrad", model).analyze(x, target=10)
    with pytest.raises(ValueError, match="window"):
        lrpgraph.create_analyzer("occlusion", model, window=0)


def test_registered():
    names = lrpgraph.methods()
    for name in ("integrated_gradients", "smoothgrad", "vargrad", "occlusion"):
        assert name in names
    assert isinstance(lrpgraph.create_analyzer("vargrad", _linear_model()), perturbation.VarGrad)


def test_bench_families_smoke(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "bench_families.py"
    spec = importlib.util.spec_from_file_location("bench_families", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    _, rows = bench.run(["--small", "--repeats", "1", "--steps", "4", "--batch", "2"])
    names = [r[0] for r in rows]
    assert names[1:] == ["gradient", "integrated_gradients (steps=4)", "gradcam (resize=True)",
                         "gradcam (resize=False)"]
    assert all(t > 0 for _, t, _ in rows)
    table = capsys.readouterr().out
    assert "| integrated_gradients (steps=4) |" in table and "<= 34.0x" in table
