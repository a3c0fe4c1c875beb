"""Memory budgets (lrpgraph.memory) and batch_size="auto"."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

import lrpgraph
from lrpgraph import memory
from conftest import float32_noise, float64_keras, max_error_per_sample
from memory_models import METHODS, residual_cnn

@pytest.mark.parametrize("text,value", [("8GB", 8e9), ("512 MB", 512e6), ("1.5GiB", 1.5 * 2**30), (1024, 1024.0),
                                        ("2kib", 2048.0)])
def test_parse_memory(text, value):
    assert memory.parse_memory(text) == value


@pytest.mark.parametrize("bad", ["8 parsecs", "-1GB", 0, "GB", True])
def test_parse_memory_errors(bad):
    with pytest.raises((ValueError, TypeError), match="memory budget"):
        memory.parse_memory(bad)


def test_fit_batch_size_and_the_error_naming_the_need():
    cost = memory.Cost(per_sample=10e6, fixed=100e6, device="CPU")
    assert memory.fit_batch_size(cost, "1GB") == 90
    assert memory.fit_batch_size(cost, "1GB", n=7) == 7
    assert memory.fit_batch_size(cost, 110e6) == 1
    with pytest.raises(memory.MemoryBudgetError, match=r"one sample needs about 110\.0 MB \(100\.0 MB fixed \+ "
                                                        r"10\.0 MB per sample.*budget is 50\.0 MB: raise max_memory"):
        memory.fit_batch_size(cost, "50MB")


@pytest.fixture()
def conv_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
                             keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])


def test_auto_batch_under_a_tight_budget_gives_the_maps_of_one_call(conv_model, rng):
    """A budget that holds a few samples splits the batch into several compiled calls;
    the maps equal one call's, and the per-shape cost is measured once."""
    x = rng.uniform(-1, 1, (13, 32, 32, 3)).astype("float32")
    an = lrpgraph.create_analyzer("lrp.z_plus", conv_model)
    whole = an.analyze(x)
    cost = memory.Cost(per_sample=1e6, fixed=1e6, device="CPU")
    an.costs[((32, 32, 3),)] = cost  # a known cost, so the split is known: 4 samples per call
    calls = []
    real = an.compute
    an.compute = lambda xs, t: calls.append(len(xs[0])) or real(xs, t)
    got = an.analyze(x, batch_size="auto", max_memory=cost.peak(4) + 1)
    assert calls == [4, 4, 4, 1]
    np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-7 * np.abs(whole).max())
    with pytest.raises(memory.MemoryBudgetError):
        an.analyze(x, batch_size="auto", max_memory=cost.peak(1) - 1)
    with pytest.raises(ValueError, match="max_memory is used with batch_size='auto'"):
        an.analyze(x, max_memory="1GB")


def test_measured_cost_is_cached_per_shape(conv_model, rng):
    x = rng.uniform(-1, 1, (3, 32, 32, 3)).astype("float32")
    an = lrpgraph.create_analyzer("gradient", conv_model)
    c1 = an.memory_cost(x)
    assert c1.per_sample > 0 and an.memory_cost(x[:1]) is c1


_LINEAR = """
import json, sys
import numpy as np
import keras
import tensorflow as tf
tf.config.threading.set_inter_op_parallelism_threads(1)  # one op order, so one peak per batch
from lrpgraph import memory
import lrpgraph
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
                          keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])
x = np.random.default_rng(0).uniform(-1, 1, (16,) + tuple(model.input_shape[1:])).astype("float32")
an = lrpgraph.create_analyzer("lrp.z_plus", model)
an.analyze(x[:1])
peaks, costs = {b: [] for b in (2, 4, 8, 16)}, []
for _ in range(3):  # three readings of each: a loaded machine's one odd reading does not decide
    for b in peaks:
        peaks[b].append(memory.peak_of(lambda b=b: an.analyze(x[:b]))[1])
    an.costs.clear()  # measure the cost again, not the cached one
    costs.append(an.memory_cost(x).per_sample)
print(json.dumps({"peaks": peaks, "costs": costs}))
"""


def test_peak_grows_linearly_with_the_measured_slope():
    """With TensorFlow's CPU allocator statistics (a fresh process with
    TF_CPU_ALLOCATOR_USE_BFC=true, as ``bench_memory.py --allocator``), the peak of
    lrp.z_plus on a two-conv CNN (64x64x32 activations) grows linearly in the batch, and the slope
    ``memory_cost`` measures (the one batch_size="auto" uses) is that slope within 20%.
    Ops run one at a time (inter-op parallelism 1): with several at once the peak
    depends on the order the executor picks and varies by +-20% between runs."""
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true", TF_CPP_MIN_LOG_LEVEL="3")
    code = _LINEAR
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(res.stdout.strip().splitlines()[-1])
    print("peaks", data["peaks"], "per-sample costs", data["costs"])
    b = np.array([2, 4, 8, 16], float)
    # each batch's smallest of three readings: the steady state (as memory.analysis_cost
    # reads it), and the median of three measured costs: one noisy sample on a loaded
    # machine (1.58e6 against 2.43e6 bytes per sample, once) fails neither; the bounds are unchanged
    p = np.array([min(data["peaks"][str(int(k))]) for k in b])
    slope, icpt = np.polyfit(b, p, 1)
    assert slope > 0
    assert np.abs(np.polyval([slope, icpt], b) - p).max() <= 0.1 * p.max()  # linear
    assert abs(np.median(data["costs"]) - slope) <= 0.2 * slope, (data["costs"], slope)


_RATIO = """
import json, sys
import numpy as np
import keras
import tensorflow as tf
tf.config.threading.set_inter_op_parallelism_threads(1)  # one op order, so one peak per batch
from lrpgraph import memory
import lrpgraph
keras.utils.set_random_seed(0)
L = keras.layers
which, batches = sys.argv[1], [int(b) for b in sys.argv[2].split(",")]
if which == "small":
    inp = keras.Input((64, 64, 3))  # a small VGG/ResNet: channels double as the image halves
    h = L.Conv2D(16, 3, activation="relu", padding="same")(inp)
    h = L.MaxPooling2D()(L.Conv2D(16, 3, activation="relu", padding="same")(h))
    h = L.Conv2D(32, 3, activation="relu", padding="same")(h)
    r = L.Conv2D(32, 3, padding="same")(L.Conv2D(32, 3, activation="relu", padding="same")(h))
    h = L.Activation("relu")(L.Add()([h, r]))  # a residual join: the Add rule's denominator
    h = L.MaxPooling2D()(h)
    h = L.MaxPooling2D()(L.Conv2D(64, 3, activation="relu", padding="same")(h))
    model = keras.Model(inp, L.Dense(5)(L.Dense(32, activation="relu")(L.Flatten()(h))))
else:
    model = getattr(keras.applications, which)(weights=None, classifier_activation=None)
n = max(batches)
x = np.random.default_rng(0).uniform(-1, 1, (n,) + tuple(model.input_shape[1:])).astype("float32")
t = np.zeros(n, np.int32)

@tf.function(autograph=False)
def grad(x, t):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(tf.gather(model(x, training=False), t, batch_dims=1))
    return tape.gradient(y, x)

runs = {"gradient_tape": lambda b: grad(tf.constant(x[:b]), tf.constant(t[:b])).numpy()}
for name, params in [("lrp.epsilon", {}), ("lrp.z_plus", {}), ("deep_taylor.bounded", {}),
                     ("lrp.alpha_2_beta_1", {}), ("epsilon_gamma_box", {}), ("sglrp", {}),
                     ("sglrp", {"ignore_bias": True})]:
    an = lrpgraph.create_analyzer(name, model, **params)
    runs[name + ("/one_pass" if params else "")] = lambda b, an=an: an.analyze(x[:b], t[:b])
out = {}
for name, run in runs.items():
    run(1)
    # each batch's smallest of three readings (as memory.analysis_cost reads it): one
    # reading taken while the allocator still holds another op's block moves the slope
    peaks = [min(memory.peak_of(lambda b=b: run(b))[1] for _ in range(3)) for b in batches]
    out[name] = float(np.polyfit(batches, peaks, 1)[0])
print(json.dumps(out))
"""


def _per_sample_ratios(model, batches):
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true", TF_CPP_MIN_LOG_LEVEL="3")
    res = subprocess.run([sys.executable, "-c", _RATIO, model, ",".join(map(str, batches))], capture_output=True,
                         text=True, env=env, timeout=3000)
    assert res.returncode == 0, res.stderr[-2000:]
    slopes = json.loads(res.stdout.strip().splitlines()[-1])
    base = slopes.pop("gradient_tape")
    ratios = {k: v / base for k, v in slopes.items()}
    print(model, "per sample / gradient:", ratios)
    return ratios


def test_per_sample_memory_against_the_gradient_on_a_small_cnn():
    """Per-sample peak memory (slope over batches 8, 16, 32; TensorFlow's allocator in a
    fresh process, ops one at a time) against a compiled tf.GradientTape gradient, on a
    small residual CNN.  Measured 2026-11-30: epsilon 1.5x, z+ 1.3x, bounded Deep
    Taylor 1.6x, epsilon_gamma_box 1.9x, one-pass SGLRP 1.5x (before issue 15's changes:
    1.9x, 1.5x, 1.7x, -, 2.1x); alpha-beta and the two-seed SGLRP pass 2.1x (2.1x, 2.4-3.4x before).  On a
    model this small the first layer's four alpha-beta terms and the two-seed pass's
    relevance at twice the batch weigh more than on VGG16 and ResNet50, where
    test_per_sample_memory_within_twice_the_gradient_on_applications asserts 2x."""
    r = _per_sample_ratios("small", (8, 16, 32))
    for name in ("lrp.epsilon", "lrp.z_plus", "deep_taylor.bounded", "epsilon_gamma_box", "sglrp/one_pass"):
        assert r[name] <= 2.0, (name, r)
    assert r["lrp.alpha_2_beta_1"] <= 2.4 and r["sglrp"] <= 2.4, r
    # two seeds, not two copies of everything: a pass that copied every tensor per seed costs
    # 2x the one-pass form per sample; measured 1.46x with oneDNN on and 1.35-1.61x with it
    # off (the 1.61 with another suite running beside it: the old 1.6 bound failed there), so
    # the bound sits between the measurements and the 2x of a copy
    assert r["sglrp"] <= 1.8 * r["sglrp/one_pass"], r


@pytest.mark.apps
@pytest.mark.parametrize("model", ["VGG16", "ResNet50"])
def test_per_sample_memory_within_twice_the_gradient_on_applications(model):
    """Issue 15's bound: on VGG16 and ResNet50 (weights=None, 224x224) every LRP preset
    family's per-sample peak memory (slope over batches 2, 8, 16) is at most twice the
    compiled gradient's (benchmarks/bench_memory.py --allocator gives the table)."""
    r = _per_sample_ratios(model, (2, 8, 16))
    assert all(v <= 2.0 for v in r.values()), r


@pytest.mark.parametrize("key", sorted(METHODS))
def test_recomputation_changes_no_map(key):
    """The memory work (recomputed ReLU outputs, rules behind the reverse pass's control
    dependency, per-seed broadcasting instead of tiling, kernels made where they are used,
    the one-pass fallback's second forward) changes no map: the maps the reverse pass gave
    before it (commit 9e95145, float32, tests/data/remat_reference.npz, weights stored with
    them) and today's float32 maps are each within float32 noise of today's float64 run of
    the same computation.  The stored maps against the float64 run do not depend on the
    machine the test runs on; the float32 maps against it are one machine's rounding."""
    ref = np.load(Path(__file__).parent / "data" / "remat_reference.npz")
    name, params = METHODS[key]
    t = ref["t"]
    t = np.stack([t, (t + 1) % 5], 1) if key.endswith("multi") else t

    def maps(dtype):
        model = residual_cnn()
        model.set_weights([ref[f"w{i}"] for i in range(len(model.get_weights()))])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return lrpgraph.create_analyzer(name, model, **params).analyze(ref["x"].astype(dtype), t)

    ours = maps("float32")
    with float64_keras():
        exact = maps("float64")
    assert exact.dtype == np.float64 and ours.shape == exact.shape == ref[key].shape
    assert np.abs(ref[key]).max() > 0
    # residual_cnn: 5 convolutions, the Add, the average pooling and 2 Dense layers = depth 9;
    # SGLRP/CLRP subtract two passes: both count.  Measured: at most 2.0e-6 of each sample's
    # max for the stored maps and 1.8e-6 for today's, oneDNN on or off (the bound: 1.7e-5, 3.4e-5).
    bound = float32_noise(18 if key.split(".")[0] in ("sglrp", "clrp") else 9)
    assert max(max_error_per_sample(ref[key], exact)) <= bound, max_error_per_sample(ref[key], exact)
    assert max(max_error_per_sample(ours, exact)) <= bound, max_error_per_sample(ours, exact)
