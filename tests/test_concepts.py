"""Concept relevance (lrpgraph.concepts): conditional maps, channel relevance, the
attribution graph and reference samples over a dataset, against identities that
fail when a mask, a seed or a merge is wrong."""

import numpy as np
import pytest

import lrpgraph
import lrpgraph.concepts
from lrpgraph.concepts import (ConceptExplainer, attribution_graph, channel_relevance, conditional,
                               normalise_conditions, reference_samples, rf_box)

# float32 noise bound for a sum of C conditional maps against one map: each of the C
# passes rounds at ~1.2e-7 relative per op over a handful of layers; 64 terms summed
# and a safety factor of 4 give 64 * 1.2e-7 * 4 ~ 3e-5 of the map's largest value.
PARTITION_RTOL = 3e-5

METHODS = ["epsilon_plus_flat", "lrp.epsilon", "lrp.alpha_2_beta_1", "gradient", "input_t_gradient"]


@pytest.fixture(scope="module")
def cnn():
    from conftest import build_small_cnn
    return build_small_cnn("_nb")  # zero biases: conservative presets reach the logit


@pytest.mark.parametrize("method", METHODS)
def test_all_channels_and_a_partition_give_the_unconditioned_map(cnn, method):
    model, x, targets = cnn
    ex = ConceptExplainer(model, method)
    base = ex.analyzer.analyze(x, targets)
    scale = np.abs(base).max()
    everything = ex.conditional(x, targets, {"conv2": [list(range(16))]})
    assert everything.shape == (4, 1) + x.shape[1:]
    np.testing.assert_allclose(everything[:, 0], base, rtol=0, atol=PARTITION_RTOL * scale)
    parts = ex.conditional(x, targets, {"conv2": list(range(16))})  # 16 seeds, one per channel
    assert parts.shape == (4, 16) + x.shape[1:]
    np.testing.assert_allclose(parts.sum(axis=1), base, rtol=0, atol=PARTITION_RTOL * scale)
    # a coarser partition (two halves) and the per-channel one agree too
    halves = ex.conditional(x, targets, [{"conv2": list(range(8))}, {"conv2": list(range(8, 16))}])
    np.testing.assert_allclose(halves.sum(axis=1), base, rtol=0, atol=PARTITION_RTOL * scale)
    # one channel conditioned alone is not the whole map (the mask does something)
    assert np.abs(parts[:, 0] - base).max() > 1e-3 * scale


def test_conditional_maps_are_masked_per_seed(cnn):
    """Each seed's map equals a separate one-seed call with that channel (the seeds do not mix)."""
    model, x, targets = cnn
    ex = ConceptExplainer(model, "epsilon_plus_flat")
    many = ex.conditional(x, targets, {"conv2": [3, 7, 11]})
    for i, c in enumerate([3, 7, 11]):
        one = ex.conditional(x, targets, {"conv2": [c]})[:, 0]
        np.testing.assert_allclose(many[:, i], one, rtol=1e-5, atol=1e-6 * np.abs(one).max())


def test_intersection_of_layers(cnn):
    """{conv2: c, conv1: all} is {conv2: c}; conv1's channels partition it again."""
    model, x, targets = cnn
    ex = ConceptExplainer(model, "epsilon_plus_flat")
    only = ex.conditional(x, targets, {"conv2": [5]})[:, 0]
    both = ex.conditional(x, targets, {"conv2": [5], "conv1": list(range(8))})
    assert both.shape[1] == 8
    np.testing.assert_allclose(both.sum(1), only, rtol=0, atol=PARTITION_RTOL * np.abs(only).max())


def test_channel_relevance_sums_to_the_logit_for_a_conservative_preset(cnn):
    model, x, targets = cnn
    logits = lrpgraph.prepare(model).logits(x)[np.arange(4), targets]
    # lrp.z on a bias-free ReLU net conserves at every layer (max pooling passes it on)
    cr = channel_relevance(model, x, targets, ["conv1", "conv2", "fc1"], method="lrp.z")
    for layer, r in cr.items():
        # float32: relative noise of the sums ~1e-6; denominators at exact zero would lose relevance
        np.testing.assert_allclose(r.sum(1), logits, rtol=1e-4, err_msg=layer)
    share = channel_relevance(model, x, targets, ["conv2"], method="lrp.z", normalise=True)["conv2"]
    np.testing.assert_allclose(np.abs(share).sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(share, cr["conv2"] / np.abs(cr["conv2"]).sum(1, keepdims=True), rtol=1e-5)


def test_channel_relevance_equals_the_conditional_map_total(cnn):
    """R^l_c is the total of the conditional map for {l: c} (a conservative preset below l too)."""
    model, x, targets = cnn
    ex = ConceptExplainer(model, "lrp.z")
    r = ex.channel_relevance(x, targets, ["conv2"])["conv2"]
    maps = ex.conditional(x, targets, {"conv2": list(range(16))})
    np.testing.assert_allclose(maps.sum(axis=(2, 3, 4)), r, rtol=1e-3, atol=1e-5 * np.abs(r).max())


def test_attribution_graph_splits_a_concept(cnn):
    model, x, targets = cnn
    ex = ConceptExplainer(model, "lrp.z")
    g = attribution_graph(ex, x[:1], int(targets[0]), "conv2", 4, ["conv1"], top=8)
    root = ("conv2", 4)
    # every conv1 channel kept (top=8 of 8): the split sums to the concept's relevance
    total = sum(g.edges[root, v]["relevance"] for v in g.successors(root))
    np.testing.assert_allclose(total, g.nodes[root]["relevance"], rtol=1e-4)
    g2 = attribution_graph(ex, x[:1], int(targets[0]), "fc1", 0, ["conv2", "conv1"], top=2)
    assert g2.number_of_edges() == 2 + 4


def test_bad_conditions_say_why(cnn):
    model, x, targets = cnn
    ex = ConceptExplainer(model, "epsilon_plus_flat")
    with pytest.raises(ValueError, match="out of range"):
        ex.conditional(x, targets, {"conv2": [16]})
    with pytest.raises(ValueError, match="no layer named"):
        ex.conditional(x, targets, {"nope": [1]})
    with pytest.raises(TypeError, match="dict"):
        normalise_conditions("conv2", ex.n_channels)
    with pytest.raises(ValueError, match="rule presets"):
        conditional(model, x, targets, {"conv2": [1]}, method="sglrp")


def test_rf_box():
    h = np.zeros((8, 8))
    h[2, 3], h[5, 6] = 1.0, -0.5
    np.testing.assert_array_equal(rf_box(h, 0.1), [2, 3, 6, 7])
    np.testing.assert_array_equal(rf_box(np.zeros((4, 5))), [0, 0, 4, 5])


def _dataset(cnn, n=12, star=5, scale=10.0):
    model, x, _ = cnn
    r = np.random.default_rng(0)
    data = r.random((n,) + x.shape[1:]).astype("float32")
    data[star] *= scale  # bias-free ReLU net: activations and LRP-z relevances scale by `scale`
    return model, data, r.integers(0, 10, n)


@pytest.mark.parametrize("mode", ["activation", "relevance"])
def test_a_sample_made_to_maximise_channels_ranks_first(cnn, tmp_path, mode):
    model, data, labels = _dataset(cnn)
    rs = reference_samples(model, (data, labels), "conv2", k=3, mode=mode, method="lrp.z", target=0,
                           store=str(tmp_path / "c.zarr"), batch_size=4)
    ex = ConceptExplainer(model, "lrp.z")
    cr = ex.channel_relevance(data, 0, ["conv2"])["conv2"]
    score = ex.last_activations["conv2"] if mode == "activation" else cr
    # the channels where the scaled sample's score beats every other sample's
    others = np.delete(score, 5, axis=0).max(0)
    won = score[5] > others
    assert won.sum() >= 4  # the construction makes it win for most channels
    assert (rs.indices[won, 0] == 5).all()
    np.testing.assert_allclose(rs.values[:, 0], score.max(0), rtol=1e-5)
    assert rs.boxes.shape == (16, 3, 4)
    assert (rs.boxes[..., 2] > rs.boxes[..., 0]).all() and (rs.boxes[..., 3] > rs.boxes[..., 1]).all()
    # class statistics: every sample is explained for class 0
    assert rs.class_count[0] == 12 and rs.class_count[1:].sum() == 0
    share = cr / np.abs(cr).sum(1, keepdims=True)
    np.testing.assert_allclose(rs.class_relevance[0], share.mean(0), rtol=1e-4, atol=1e-6)


class _Crash(Exception):
    pass


def test_resumed_equals_one_process(cnn, tmp_path):
    model, data, labels = _dataset(cnn)
    one = reference_samples(model, (data, labels), "conv2", k=3, method="lrp.z", store=str(tmp_path / "one"),
                            batch_size=4, rf=False)

    def crash(b, att):
        if b == 1:
            raise _Crash()

    path = str(tmp_path / "resumed")
    with pytest.raises(_Crash):
        reference_samples(model, (data, labels), "conv2", k=3, method="lrp.z", store=path, batch_size=4,
                          on_block=crash, rf=False)
    again = reference_samples(model, (data, labels), "conv2", k=3, method="lrp.z", store=path, batch_size=4,
                              rf=False)
    assert again.store.computed and 0 not in again.store.computed
    np.testing.assert_array_equal(again.indices, one.indices)
    np.testing.assert_array_equal(again.values, one.values)
    np.testing.assert_array_equal(again.class_count, one.class_count)
    np.testing.assert_allclose(again.class_relevance, one.class_relevance, rtol=1e-12)


def _residual_model():
    import keras
    r = np.random.default_rng(3)
    inp = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", use_bias=False, name="conv_a")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", activation="relu", use_bias=False, name="conv_b")(a)
    s = keras.layers.Add(name="add")([a, b])
    out = keras.layers.Dense(3, use_bias=False, name="logits")(keras.layers.Flatten()(s))
    model = keras.Model(inp, out)
    model.set_weights([r.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model, r.random((2, 8, 8, 3)).astype("float32")


@pytest.mark.parametrize("method", ["lrp.epsilon", "gradient"])
def test_exclude_parallel_drops_exactly_the_shortcut(method):
    """On a residual block around conv_b: through conv_b (shortcut excluded) + around it
    (conv_b masked to no channel, shortcut kept) = the unconditioned map; without
    exclusion, all of conv_b's channels give the unconditioned map."""
    model, x = _residual_model()
    ex = ConceptExplainer(model, method)
    base = ex.analyzer.analyze(x, 1)
    tol = PARTITION_RTOL * np.abs(base).max()
    kept = ex.conditional(x, 1, {"conv_b": [list(range(4))]}, exclude_parallel=False)[:, 0]
    np.testing.assert_allclose(kept, base, rtol=0, atol=tol)
    through = ex.conditional(x, 1, {"conv_b": [list(range(4))]})[:, 0]
    around = ex.conditional(x, 1, [{"conv_b": []}], exclude_parallel=False)[:, 0]
    assert np.abs(around).max() > 1e-2 * np.abs(base).max()  # the shortcut carries relevance
    np.testing.assert_allclose(through + around, base, rtol=0, atol=tol)
    parts = ex.conditional(x, 1, {"conv_b": [0, 1, 2, 3]})
    np.testing.assert_allclose(parts.sum(1), through, rtol=0, atol=tol)


def test_mirrored_strategy_gives_the_same_top_k(cnn, tmp_path):
    import tensorflow as tf

    model, data, labels = _dataset(cnn)
    one = reference_samples(model, (data, labels), "conv2", k=3, method="lrp.z", store=str(tmp_path / "one"),
                            batch_size=4, rf=False)
    mir = reference_samples(model, (data, labels), "conv2", k=3, method="lrp.z", store=str(tmp_path / "mir"),
                            batch_size=4, rf=False, strategy=tf.distribute.MirroredStrategy(["/cpu:0"]))
    np.testing.assert_array_equal(mir.indices, one.indices)
    # the same pass on one replica: float32 noise of another compiled function only
    np.testing.assert_allclose(mir.values, one.values, rtol=1e-5)
    np.testing.assert_allclose(mir.class_relevance, one.class_relevance, rtol=1e-5, atol=1e-7)


def _actor_factory(weights):
    """A model factory for Ray actors: conftest's small CNN with ``weights``.  The inner
    function is local, so Ray pickles it by value (the actors cannot import conftest)."""
    def factory():
        import keras
        m = keras.Sequential([
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(2, name="pool1"),
            keras.layers.Conv2D(16, 3, activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(2, name="pool2"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(32, activation="relu", name="fc1"),
            keras.layers.Dense(10, name="logits"),
        ], name="small_cnn_nb")
        m.set_weights(weights)
        return m
    return factory


@pytest.mark.slow
def test_ray_gives_the_same_top_k(cnn, tmp_path, local_ray):
    from lrpgraph.data import RayExecutor

    model, data, labels = _dataset(cnn)
    one = reference_samples(model, (data, labels), "conv2", k=3, method="lrp.z", store=str(tmp_path / "one"),
                            batch_size=4, rf=False)
    ex = RayExecutor(_actor_factory(model.get_weights()), "concepts", {"layer": "conv2", "base": "lrp.z"},
                     num_workers=2)
    far = reference_samples(model, (data, labels), "conv2", k=3, method="lrp.z", store=str(tmp_path / "ray"),
                            batch_size=4, rf=False, executor=ex)
    np.testing.assert_array_equal(far.indices, one.indices)
    np.testing.assert_allclose(far.values, one.values, rtol=1e-5)
    np.testing.assert_allclose(far.class_relevance, one.class_relevance, rtol=1e-5, atol=1e-7)


def _same_per_layer(many, one, layers):
    """Every layer's top-k (both modes) and class statistics of ``many`` equal ``one``'s."""
    from lrpgraph.concepts import from_store

    for layer in layers:
        for mode in ("relevance", "activation"):
            a, b = from_store(many[layer].store, mode, layer), from_store(one[layer].store, mode, layer)
            np.testing.assert_array_equal(a.channels, b.channels)
            np.testing.assert_array_equal(a.indices, b.indices)
            # the same pass on other replicas / in other processes: float32 noise of another compiled function
            np.testing.assert_allclose(a.values, b.values, rtol=1e-5)
        np.testing.assert_array_equal(many[layer].class_count, one[layer].class_count)
        np.testing.assert_allclose(many[layer].class_relevance, one[layer].class_relevance, rtol=1e-5, atol=1e-7)


MULTI_LAYER_MIRRORED_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[2])
from conftest import build_small_cnn
from test_concepts import _dataset, _same_per_layer
from lrpgraph.concepts import ALL_CONV, reference_samples

cnn = build_small_cnn("_nb")
model, data, labels = _dataset(cnn)
devices = [d.name for d in tf.config.list_logical_devices("CPU")]
strategy = tf.distribute.MirroredStrategy(devices)
assert strategy.num_replicas_in_sync == 2, devices
# blocks of 5, 5 and 2 samples: each split over the two replicas
kw = dict(k=3, method="lrp.z", target="label", batch_size=5, rf=False)
one = reference_samples(model, (data, labels), ALL_CONV, store=sys.argv[1] + "/one", **kw)
mir = reference_samples(model, (data, labels), ALL_CONV, store=sys.argv[1] + "/mir", strategy=strategy, **kw)
assert list(one) == list(mir) == ["conv1", "conv2"], (list(one), list(mir))
_same_per_layer(mir, one, ["conv1", "conv2"])
print("mirrored multi-layer ok", int(one["conv2"].class_count.sum()))
"""


@pytest.mark.slow  # a fresh TensorFlow process: 20-30 s on the shared 2 cores
def test_mirrored_strategy_mines_every_conv_layer_as_one_process(tmp_path):
    """ALL_CONV on a MirroredStrategy over two logical CPUs (each block split over two
    replicas; logical devices must be set before TensorFlow starts, hence a fresh process):
    every layer's relevance and activation top-k and class statistics equal one process's."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.run([sys.executable, "-c", MULTI_LAYER_MIRRORED_SCRIPT, str(tmp_path),
                           str(Path(__file__).resolve().parent)], capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mirrored multi-layer ok 12" in proc.stdout


@pytest.mark.slow
def test_ray_mines_every_conv_layer_as_one_process(cnn, tmp_path, local_ray):
    """ALL_CONV on two Ray actors: each layer's top-k (both modes) and class statistics
    equal one process's (the merges are associative and commutative, whichever actor
    finishes first)."""
    from lrpgraph.concepts import ALL_CONV
    from lrpgraph.data import RayExecutor

    model, data, labels = _dataset(cnn)
    kw = dict(k=3, method="lrp.z", target="label", batch_size=4, rf=False)
    one = reference_samples(model, (data, labels), ALL_CONV, store=str(tmp_path / "one"), **kw)
    ex = RayExecutor(_actor_factory(model.get_weights()), "concepts", {"layer": ALL_CONV, "base": "lrp.z"},
                     num_workers=2)
    far = reference_samples(model, (data, labels), ALL_CONV, store=str(tmp_path / "ray"), executor=ex, **kw)
    assert list(far) == list(one) == ["conv1", "conv2"]
    _same_per_layer(far, one, ["conv1", "conv2"])


def test_cli_concepts_and_atlas(tmp_path):
    from lrpgraph.evaluation import synthetic
    from lrpgraph.cli import main

    x, y = synthetic.single_object_dataset(12, seed=2)[:2]
    data = tmp_path / "d.npz"
    np.savez(data, x=x.astype("float32"), y=y)
    store = str(tmp_path / "c.zarr")
    lines = []

    class Out:
        def write(self, s):
            lines.append(s)

        def flush(self):
            pass

    assert main(["concepts", str(data), "--model", "shapes", "--layer", "block3_conv2", "--out", store,
                 "--k", "2", "--batch-size", "6"], out=Out()) == 0
    refs = lrpgraph.concepts.from_store(store)
    assert refs.indices.shape == (64, 2) and refs.class_count.sum() == 12
    png = tmp_path / "atlas.png"
    assert main(["atlas", store, "--channels", "3,17", "--out", str(png)], out=Out()) == 0
    assert png.stat().st_size > 1000
    assert main(["atlas", store, "--channels", "99", "--out", str(png)], out=Out()) == 1  # not a channel
    # two layers in one pass: the atlas asks which one
    both = str(tmp_path / "both.zarr")
    assert main(["concepts", str(data), "--model", "shapes", "--layer", "block3_conv1,block3_conv2", "--out", both,
                 "--k", "2", "--batch-size", "6"], out=Out()) == 0
    two = lrpgraph.concepts.from_store(both)
    np.testing.assert_array_equal(two["block3_conv2"].indices, refs.indices)
    assert main(["atlas", both, "--channels", "3", "--out", str(png)], out=Out()) == 1  # which layer?
    assert main(["atlas", both, "--layer", "block3_conv1", "--channels", "3,17", "--out", str(png)], out=Out()) == 0


def test_zennit_crp_traps_are_not_copied(cnn):
    """The relevance recorded at a conditioned layer is the true one (not twice it), and
    maps keep NHWC: nothing is summed over the height."""
    import keras

    model, x, targets = cnn
    ex = ConceptExplainer(model, "lrp.z")
    plain = ex.channel_relevance(x, targets, ["conv2"])["conv2"]
    cond = ex.channel_relevance(x, targets, ["conv2"], conditions={"conv2": [2, 9]})["conv2"]  # (N, 2, 16)
    for s, c in enumerate([2, 9]):
        np.testing.assert_allclose(cond[:, s, c], plain[:, c], rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(np.delete(cond[:, s], c, axis=1), 0.0)
    # a non-square input: the map keeps (H, W, C) = (6, 10, 3)
    r = np.random.default_rng(4)
    inp = keras.Input((6, 10, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="c")(inp)
    out = keras.layers.Dense(2, name="o")(keras.layers.GlobalAveragePooling2D()(h))
    m = keras.Model(inp, out)
    maps = conditional(m, r.random((2, 6, 10, 3)).astype("float32"), 0, {"c": [0, 1, 2, 3]}, method="lrp.epsilon")
    assert maps.shape == (2, 4, 6, 10, 3)


def test_one_pass_over_several_layers_equals_per_layer_runs(cnn, tmp_path):
    """layer=[...] (and ALL_CONV) record every layer in one pass per block: each layer's
    top-k, class statistics and boxes equal a run of that layer alone."""
    from lrpgraph.concepts import ALL_CONV, ConceptStatistics, from_store

    model, data, labels = _dataset(cnn)
    both = reference_samples(model, (data, labels), ["conv1", "conv2"], k=3, method="lrp.z", target="label",
                             store=str(tmp_path / "both"), batch_size=5)
    assert list(both) == ["conv1", "conv2"]
    assert both["conv2"].store.relevance[:].shape == (12, 3, 8 + 16)
    for layer in ("conv1", "conv2"):
        one = reference_samples(model, (data, labels), layer, k=3, method="lrp.z", target="label",
                                store=str(tmp_path / layer), batch_size=5)
        many = both[layer]
        np.testing.assert_array_equal(many.channels, one.channels)
        np.testing.assert_array_equal(many.indices, one.indices)
        # the same reverse pass, other recorded nodes: float32 noise of another compiled function
        np.testing.assert_allclose(many.values, one.values, rtol=1e-5)
        np.testing.assert_allclose(many.class_relevance, one.class_relevance, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(many.class_count, one.class_count)
        np.testing.assert_array_equal(many.boxes, one.boxes)
        cols = slice(many.offset, many.offset + len(many.channels))
        np.testing.assert_allclose(many.store.relevance[:][:, :, cols], one.store.relevance[:], rtol=1e-5,
                                   atol=1e-6 * np.abs(one.store.relevance[:]).max())
        np.testing.assert_array_equal(from_store(str(tmp_path / "both"), layer=layer).indices, many.indices)
    stats = ConceptStatistics(model, layer=ALL_CONV, base="lrp.z")
    assert stats.layers == ["conv1", "conv2"] and stats.offsets == {"conv1": 0, "conv2": 8}
    sub = reference_samples(model, (data, labels), ALL_CONV, channels={"conv2": [4, 1]}, k=3, method="lrp.z",
                            store=str(tmp_path / "sub"), batch_size=5, rf=False)
    np.testing.assert_array_equal(sub["conv2"].indices, both["conv2"].indices[[4, 1]])
    np.testing.assert_array_equal(sub["conv1"].indices, both["conv1"].indices)
    with pytest.raises(ValueError, match="not mined"):
        ConceptStatistics(model, layer=["conv1"], channels={"conv2": [1]})
    with pytest.raises(ValueError, match=r"\{layer: \[channels\]\}"):
        ConceptStatistics(model, layer=["conv1", "conv2"], channels=[1])


@pytest.fixture(scope="module")
def mobilenet():
    """keras.applications MobileNetV2 (alpha 0.35, 32 x 32, 10 classes): BatchNorm folded
    into every conv, depthwise convs, ReLU6 and residual joins.  The BN statistics are
    drawn (so folding scales the kernels) with zero shift and mean, and the classifier
    is bias-free and linear: the network has no bias, so lrp.z conserves to the logit."""
    import keras

    # the kernels from a fixed seed: drawn from the global state, they depended on the tests
    # run before, and one draw left the attribution graph's channel 5 at 1e-5 of the
    # layer's largest relevance, where its split is float32 noise
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=10,
                                           classifier_activation=None)
    r = np.random.default_rng(0)
    for lay in model.layers:
        if isinstance(lay, keras.layers.BatchNormalization):
            g = lay.get_weights()[0]
            lay.set_weights([r.uniform(0.5, 1.5, g.shape).astype("float32"), np.zeros_like(g), np.zeros_like(g),
                             r.uniform(0.5, 2.0, g.shape).astype("float32")])
    w, b = model.get_layer("predictions").get_weights()
    model.get_layer("predictions").set_weights([w, np.zeros_like(b)])
    return model, r.random((2, 32, 32, 3)).astype("float32")


@pytest.mark.slow
def test_keras_applications_mobilenet(mobilenet, tmp_path):
    """On a keras.applications model: all channels give the unconditioned map, a
    partition sums to it (on a chain layer; through + around a residual-bypassed one),
    channel relevance conserves the logit through folded BN, the attribution graph
    splits a concept exactly, and one pass mines every conv layer."""
    from lrpgraph.concepts import ALL_CONV, conv_layers

    model, x = mobilenet
    b1, b2 = "block_1_project", "block_2_project"  # 8 channels each, BN folded
    for method in ("lrp.z", "gradient"):
        ex = ConceptExplainer(model, method)
        base = ex.analyzer.analyze(x, 1)
        assert np.abs(base).max() > 1e-12  # a map, not underflow
        tol = PARTITION_RTOL * np.abs(base).max()
        # one call (one trace): b1 lies on the chain, no shortcut around it; block_2_add's
        # shortcut bypasses b2 (the exclude_parallel path)
        seeds = [{b1: list(range(8))}] + [{b1: c} for c in range(8)] + [{b2: c} for c in range(8)]
        m = ex.conditional(x, 1, seeds)
        np.testing.assert_allclose(m[:, 0], base, rtol=0, atol=tol)
        np.testing.assert_allclose(m[:, 1:9].sum(1), base, rtol=0, atol=tol)
        through = m[:, 9:].sum(1)
        kept, around = ex.conditional(x, 1, [{b2: list(range(8))}, {b2: []}], exclude_parallel=False).transpose(
            1, 0, 2, 3, 4)
        np.testing.assert_allclose(kept, base, rtol=0, atol=tol)
        assert np.abs(around).max() > 1e-2 * np.abs(base).max()  # the shortcut carries relevance
        np.testing.assert_allclose(through + around, base, rtol=0, atol=tol)

    ex = ConceptExplainer(model, "lrp.z")
    logit = lrpgraph.prepare(model).logits(x)[:, 1]
    cr = ex.channel_relevance(x, 1, ["block_1_project", "block_2_add", "block_16_project", "out_relu"])
    for layer, r in cr.items():
        # float32 sums over <= 1280 channels and ~50 layers, relative ~1e-5; lrp.z's 1e-9 epsilon is below it
        np.testing.assert_allclose(r.sum(1), logit, rtol=1e-3, err_msg=layer)
    g = attribution_graph(ex, x[:1], 1, "block_16_project", 5, ["block_15_add"], top=56)
    root = ("block_16_project", 5)
    total = sum(g.edges[root, v]["relevance"] for v in g.successors(root))
    np.testing.assert_allclose(total, g.nodes[root]["relevance"], rtol=1e-3)

    layers = conv_layers(ex)
    assert layers[0] == "Conv1" and layers[-1] == "Conv_1" and len(layers) == 52
    refs = reference_samples(model, (x, np.array([1, 1])), ALL_CONV, k=1, method="lrp.z", target="label",
                             store=str(tmp_path / "all"), batch_size=2, rf=False)
    assert list(refs) == layers
    for layer in ("block_1_project", "block_16_project"):  # the same pass recording 52 layers, not 4
        np.testing.assert_allclose(refs[layer].values[:, 0], cr[layer].max(0), rtol=1e-4,
                                   atol=1e-6 * np.abs(cr[layer]).max())
