"""explain_dataset / open_store / lrpgraph.store: the store equals the in-memory maps,
resume computes only missing blocks (after an exception, Ctrl-C, a lost marker, kill -9),
float16 / reduce / several targets, metadata mismatches, bad input, MirroredStrategy,
the CLI and docs/datasets.md's worked example."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import lrpgraph
from lrpgraph import datasets, store as zstore
from lrpgraph.assets import load_shapes_model
from lrpgraph.evaluation.synthetic import single_object_dataset

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "datasets.md"


@pytest.fixture(scope="module")
def shapes():
    model = load_shapes_model()
    x, y, _ = single_object_dataset(21, size=64, seed=3)
    return model, x, y


@pytest.fixture(scope="module")
def eps(shapes):
    return lrpgraph.create_analyzer("lrp.epsilon", shapes[0])


def run(analyzer, data, path, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("batch_size", 8)
    return lrpgraph.explain_dataset(analyzer, data, str(path), **kw)


# --- the store equals the in-memory analysis --------------------------------------------

def test_store_equals_in_memory_explain(shapes, eps, tmp_path):
    model, x, y = shapes
    att = run(eps, (x, y), tmp_path / "s", metrics=("relevance_sum", "positive_share"), topk=3)
    ref = eps.explain(x, y)
    assert len(att) == 21 and att.complete and att.computed == [0, 1, 2]  # 8 + 8 + 5
    np.testing.assert_allclose(att.relevance[:], ref.maps, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(att.targets[:], y)
    np.testing.assert_array_equal(att.labels[:], y)
    np.testing.assert_array_equal(att.predicted[:], ref.logits.argmax(-1))
    order = np.argsort(-ref.logits, axis=1)[:, :3]
    np.testing.assert_array_equal(att.logits_topk.indices[:], order)
    np.testing.assert_allclose(att.logits_topk.values[:], np.take_along_axis(ref.logits, order, 1), rtol=1e-5)
    flat = ref.maps.reshape(21, -1)
    np.testing.assert_allclose(att.metrics["relevance_sum"][:], flat.sum(1), rtol=1e-4, atol=1e-6)
    share = np.maximum(flat, 0).sum(1) / np.abs(flat).sum(1)
    np.testing.assert_allclose(att.metrics["positive_share"][:], share, rtol=1e-5)
    assert att.ids[0] == "0" and att.ids[5:7] == ["5", "6"]
    assert att.valid[:].all()
    meta = lrpgraph.open_store(tmp_path / "s").meta
    assert meta["method"]["name"] == "lrp.epsilon" and meta["method"]["params"]["epsilon"] == 1e-7
    assert meta["model"] == model.name and len(meta["weights_sha256"]) == 64
    assert meta["versions"]["tensorflow"] == tf.__version__ and meta["n"] == 21 and meta["block_size"] == 8


def test_tf_data_batched_unbatched_with_ids(shapes, eps, tmp_path):
    model, x, y = shapes
    ref = eps.explain(x)
    ids = np.array([f"img_{i:03d}.png" for i in range(21)])
    ds = tf.data.Dataset.from_tensor_slices((x, y, ids))  # unbatched, cardinality known
    att = run(eps, ds, tmp_path / "a", target="predicted")
    np.testing.assert_allclose(att.relevance[:], ref.maps, rtol=1e-5, atol=1e-7)
    assert att.ids[20] == "img_020.png" and att.ids[:2] == ["img_000.png", "img_001.png"]
    # batched: the number of samples is unknown up front -> a clear error, then n=
    with pytest.raises(ValueError, match="n=NUMBER_OF_SAMPLES"):
        run(eps, tf.data.Dataset.from_tensor_slices((x, y)).batch(5), tmp_path / "b")
    assert not (tmp_path / "b").exists()
    att = run(eps, tf.data.Dataset.from_tensor_slices((x, y)).batch(5), tmp_path / "b", n=21)
    np.testing.assert_allclose(att.relevance[:], eps.explain(x, y).maps, rtol=1e-5, atol=1e-7)
    att = run(eps, tf.data.Dataset.from_tensor_slices(x).batch(4), tmp_path / "c", n="count", target=2)
    np.testing.assert_array_equal(att.targets[:], 2)
    np.testing.assert_array_equal(att.labels[:], -1)


def test_image_folder_with_class_subfolders(shapes, eps, tmp_path):
    from skimage import io

    from lrpgraph.io import load_image

    model, x, y = shapes
    folder = tmp_path / "imgs"
    names = []
    for i in range(7):
        d = folder / ("cat" if i % 2 else "dog")
        d.mkdir(parents=True, exist_ok=True)
        io.imsave(d / f"{i}.png", (x[i] * 255).astype(np.uint8), check_contrast=False)
        names.append(f"{d.name}/{i}.png")
    att = run(eps, str(folder), tmp_path / "s", batch_size=3, target="predicted")
    ids = sorted(names)  # class by class (cat, dog), sorted by path
    assert att.ids[:] == ids
    np.testing.assert_array_equal(att.labels[:], [0 if s.startswith("cat") else 1 for s in ids])
    xs = np.stack([load_image(folder / s, (64, 64)) for s in ids]) / 255.0  # a .keras model: [0, 1] pixels
    np.testing.assert_allclose(att.relevance[:], eps.explain(xs.astype("float32")).maps, rtol=1e-4, atol=1e-6)


# --- resume -------------------------------------------------------------------------------

class Crash(Exception):
    pass


def test_resume_after_a_crash_computes_only_missing_blocks(shapes, eps, tmp_path):
    model, x, y = shapes

    def crash_after_two(b, att):
        if len(att.computed) == 2:
            raise Crash

    with pytest.raises(Crash):
        run(eps, (x, y), tmp_path / "s", batch_size=4, on_block=crash_after_two)  # 6 blocks
    half = lrpgraph.open_store(tmp_path / "s")
    assert half.store.done_blocks() == [0, 1] and not half.complete
    np.testing.assert_array_equal(half.done, np.arange(21) < 8)
    with pytest.raises(ValueError, match="not written yet"):
        half.plot(10)
    att = run(eps, (x, y), tmp_path / "s", batch_size=4)
    assert att.computed == [2, 3, 4, 5] and att.complete
    np.testing.assert_allclose(att.relevance[:], eps.explain(x, y).maps, rtol=1e-5, atol=1e-7)
    assert run(eps, (x, y), tmp_path / "s", batch_size=4).computed == []


def test_a_block_without_marker_is_rewritten_whole(shapes, eps, tmp_path):
    model, x, y = shapes
    att = run(eps, (x, y), tmp_path / "s")
    st = zstore.Store.open(tmp_path / "s", "r+")
    # a kill inside write_block: new chunks of some arrays, the marker not yet written
    st["relevance"][8:16] = 123.0
    st["targets"][8:16] = 0
    st.discard_block(1)
    att = run(eps, (x, y), tmp_path / "s")
    assert att.computed == [1]
    np.testing.assert_allclose(att.relevance[:], eps.explain(x, y).maps, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(att.targets[:], y)


CTRL_C_SCRIPT = """
import json, os, signal, sys
import lrpgraph
from lrpgraph import store as zstore
from lrpgraph.assets import load_shapes_model
from lrpgraph.evaluation.synthetic import single_object_dataset

model = load_shapes_model()
x, y, _ = single_object_dataset(21, size=64, seed=3)
eps = lrpgraph.create_analyzer("lrp.epsilon", model)

def press_ctrl_c(b, att):
    if b == 1:
        os.kill(os.getpid(), signal.SIGINT)  # arrives while block 1 is being finished

def mine(signum, frame):
    raise RuntimeError("the test's own handler was called")

out = {}
for name, handler in [("default", signal.default_int_handler), ("SIG_DFL", signal.SIG_DFL),
                      ("own", mine), ("SIG_IGN", signal.SIG_IGN)]:
    signal.signal(signal.SIGINT, handler)
    path = os.path.join(sys.argv[1], name)
    try:
        lrpgraph.explain_dataset(eps, (x, y), path, batch_size=4, progress=False, on_block=press_ctrl_c)
        stopped = False
    except KeyboardInterrupt:
        stopped = True
    out[name] = {"stopped": stopped, "done": zstore.Store.open(path).done_blocks(),
                 "restored": signal.getsignal(signal.SIGINT) is handler}
signal.signal(signal.SIGINT, signal.default_int_handler)
out["resumed"] = lrpgraph.explain_dataset(eps, (x, y), os.path.join(sys.argv[1], "default"), batch_size=4,
                                          progress=False).computed
print(json.dumps(out))
"""


@pytest.mark.slow  # a child process of its own: about 25 s
def test_ctrl_c_finishes_the_block_in_flight_and_restores_the_handler_found(tmp_path):
    """In a child of its own, each SIGINT disposition set there: pytest's own (SIG_IGN when
    it runs under nohup, as a background job or on some CI runners) does not matter.
    Ctrl-C during block 1 finishes it and stops, and the handler found is put back, be it
    Python's default, SIG_DFL or the caller's own; an ignored SIGINT stays ignored (the
    run goes on to the end).  Rerunning computes only the missing blocks."""
    proc = subprocess.run([sys.executable, "-c", CTRL_C_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("default", "SIG_DFL", "own"):
        assert out[name] == {"stopped": True, "done": [0, 1], "restored": True}, (name, out[name])
    assert out["SIG_IGN"] == {"stopped": False, "done": [0, 1, 2, 3, 4, 5], "restored": True}
    assert out["resumed"] == [2, 3, 4, 5]
    assert proc.stderr.count("Run the same call") == 3


KILL_SCRIPT = """
import os, signal, sys
import numpy as np
import lrpgraph
from lrpgraph import store as zstore
from lrpgraph.assets import load_shapes_model
from lrpgraph.evaluation.synthetic import single_object_dataset

model = load_shapes_model()
x, y, _ = single_object_dataset(21, size=64, seed=3)
write = zstore.Store.write_block
calls = []

def write_then_die(self, i, arrays):
    calls.append(i)
    if len(calls) == 3:  # the third block: half its arrays written, then kill -9
        names = sorted(arrays)
        s, e = self.block_range(i)
        for name in names[: len(names) // 2]:
            self.group[name][s:e] = np.asarray(arrays[name]) + 7
        os.kill(os.getpid(), signal.SIGKILL)
    write(self, i, arrays)

zstore.Store.write_block = write_then_die
lrpgraph.explain_dataset(lrpgraph.create_analyzer("lrp.epsilon", model), (x, y), sys.argv[1], batch_size=4,
                         progress=False)
"""


def test_resume_after_kill_9_inside_a_block_write(shapes, eps, tmp_path):
    model, x, y = shapes
    path = tmp_path / "s"
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(path)], capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert zstore.Store.open(path).done_blocks() == [0, 1]
    att = run(eps, (x, y), path, batch_size=4)
    assert att.computed == [2, 3, 4, 5]
    np.testing.assert_allclose(att.relevance[:], eps.explain(x, y).maps, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(att.targets[:], y)


# --- what is stored -----------------------------------------------------------------------

def test_float16_and_reduce_sum(shapes, eps, tmp_path):
    model, x, y = shapes
    ref = eps.explain(x, y).maps
    att = run(eps, (x, y), tmp_path / "a", dtype="float16", reduce="sum", metrics=["relevance_sum"])
    assert att.relevance.shape == (21, 64, 64) and att.relevance.dtype == np.float16
    np.testing.assert_allclose(att.relevance[:].astype(np.float32), ref.sum(-1), rtol=2e-3,
                               atol=2e-3 * np.abs(ref.sum(-1)).max())
    # metrics are taken on the float32 maps before reduce and the cast
    np.testing.assert_allclose(att.metrics["relevance_sum"][:], ref.reshape(21, -1).sum(1), rtol=1e-4, atol=1e-6)
    att = run(eps, (x, y), tmp_path / "b", dtype="float16")
    assert att.relevance.shape == (21, 64, 64, 3)
    # equal to the float16 cast up to one float16 step (blocks of 8 vs one batch of 21 round differently)
    np.testing.assert_allclose(att.relevance[:], ref.astype(np.float16), rtol=2 ** -10, atol=1e-7)


def test_several_targets_per_sample(shapes, eps, tmp_path):
    model, x, y = shapes
    att = run(eps, x, tmp_path / "s", target=[1, 4], metrics=["relevance_sum"])
    ref = eps.explain(x, np.tile([1, 4], (21, 1)))
    assert att.relevance.shape == (21, 2, 64, 64, 3)
    np.testing.assert_allclose(att.relevance[:], ref.maps, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(att.targets[:], np.tile([1, 4], (21, 1)))
    assert att.metrics["relevance_sum"].shape == (21, 2)
    per_sample = np.arange(21) % 6
    att = run(eps, x, tmp_path / "t", target=per_sample)
    np.testing.assert_array_equal(att.targets[:], per_sample)


def test_other_methods_and_callable_target(shapes, tmp_path):
    model, x, y = shapes
    cam = lrpgraph.create_analyzer("gradcam", model)
    att = run(cam, x[:6], tmp_path / "s", target=lambda xb, labels: np.full(len(xb), 2), batch_size=4)
    np.testing.assert_allclose(att.relevance[:], cam.analyze(x[:6], 2), rtol=1e-5, atol=1e-6)


def test_a_store_of_another_job_is_an_error_unless_overwrite(shapes, eps, tmp_path):
    import keras

    model, x, y = shapes
    path = tmp_path / "s"
    run(eps, (x, y), path)
    with pytest.raises(zstore.StoreMismatchError, match="method"):
        run(lrpgraph.create_analyzer("lrp.z", model), (x, y), path)
    with pytest.raises(zstore.StoreMismatchError, match="epsilon"):
        run(lrpgraph.create_analyzer("lrp.epsilon", model, epsilon=0.1), (x, y), path)
    with pytest.raises(zstore.StoreMismatchError, match="block"):
        run(eps, (x, y), path, batch_size=4)
    other = keras.models.clone_model(model)  # same architecture and name, other weights
    with pytest.raises(zstore.StoreMismatchError, match="weights_sha256"):
        run(lrpgraph.create_analyzer("lrp.epsilon", other), (x, y), path)
    with pytest.raises(zstore.StoreError, match="resume=True"):
        run(eps, (x, y), path, resume=False)
    att = run(lrpgraph.create_analyzer("lrp.z", model), (x, y), path, overwrite=True)
    assert att.meta["method"]["name"] == "lrp.z" and att.computed == [0, 1, 2]
    # the same weights in another model object: the same fingerprint
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    assert datasets.weights_fingerprint(twin) == datasets.weights_fingerprint(model)


# --- bad input ----------------------------------------------------------------------------

def test_bad_elements_name_their_index(shapes, eps, tmp_path):
    model, x, y = shapes
    elements = list(x[:6])
    elements[3] = x[3, :60]
    with pytest.raises(ValueError, match="element 3 has shape"):
        run(eps, elements, tmp_path / "a")
    with pytest.raises(TypeError, match="dtype uint8"):
        run(eps, (x * 255).astype(np.uint8), tmp_path / "b")

    def gen():
        for i in range(6):
            yield (x[i] if i != 4 else x[i, :, :50]), y[i]

    ds = tf.data.Dataset.from_generator(gen, output_signature=(tf.TensorSpec((None, None, 3), tf.float32),
                                                               tf.TensorSpec((), tf.int64)))
    with pytest.raises(ValueError, match=r"element 4 of the dataset has shape \(64, 50, 3\)"):
        run(eps, ds, tmp_path / "c", n=6, batch_size=2)
    assert zstore.Store.open(tmp_path / "c").done_blocks() == [0, 1]  # the blocks before it are kept
    with pytest.raises(ValueError, match="model takes"):
        run(eps, tf.data.Dataset.from_tensor_slices(x[:, :32]), tmp_path / "d")
    for p in "abd":
        assert not (tmp_path / p).exists()


def test_non_finite_inputs(shapes, eps, tmp_path):
    model, x, y = shapes
    bad = x.copy()
    bad[13, 5, 5, 0] = np.nan
    bad[2, 0, 0, 1] = np.inf
    with pytest.raises(ValueError, match="sample 2 contains Inf"):
        run(eps, (bad, y), tmp_path / "a")
    att = run(eps, (bad, y), tmp_path / "b", skip_invalid=True, metrics=["relevance_sum"])
    ok = np.ones(21, bool)
    ok[[2, 13]] = False
    np.testing.assert_array_equal(att.valid[:], ok)
    assert (att.relevance[[2, 13]] == 0).all() and (att.targets[[2, 13]] == -1).all()
    assert np.isnan(att.metrics["relevance_sum"][[2, 13]]).all()
    np.testing.assert_allclose(att.relevance[ok], eps.explain(x[ok], y[ok]).maps, rtol=1e-5, atol=1e-7)


def test_unreadable_image_file(shapes, eps, tmp_path):
    from skimage import io

    model, x, y = shapes
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        io.imsave(folder / f"{i}.png", (x[i] * 255).astype(np.uint8), check_contrast=False)
    (folder / "1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"sample 1 \(1.png\)"):
        run(eps, str(folder), tmp_path / "a", target="predicted")
    att = run(eps, str(folder), tmp_path / "b", target="predicted", skip_invalid=True)
    np.testing.assert_array_equal(att.valid[:], [True, False, True])


def test_empty_data_file_path_unwritable_and_missing_labels(shapes, eps, tmp_path):
    model, x, y = shapes
    with pytest.raises(ValueError, match="empty"):
        run(eps, x[:0], tmp_path / "a")
    with pytest.raises(ValueError, match="empty"):
        run(eps, tf.data.Dataset.from_tensor_slices(x[:0]), tmp_path / "a", target=1)
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(ValueError, match="empty"):
        run(eps, str(tmp_path / "empty_folder"), tmp_path / "a")
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(zstore.StoreError, match="is a file"):
        run(eps, (x, y), tmp_path / "file")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(zstore.StoreError, match="not a dataset store"):
        run(eps, (x, y), tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(zstore.StoreError, match="cannot write the store"):
        run(eps, (x, y), "/proc/lrpgraph_store")
    with pytest.raises(ValueError, match="no labels"):
        run(eps, x, tmp_path / "a")
    with pytest.raises(ValueError, match="unknown metric"):
        run(eps, (x, y), tmp_path / "a", metrics=["aopc_typo"])
    assert not (tmp_path / "a").exists()


def test_fsspec_url_store_and_resume(shapes, eps):
    pytest.importorskip("fsspec")
    model, x, y = shapes
    url = f"memory://lrpgraph_test_{os.getpid()}.zarr"
    att = run(eps, (x[:10], y[:10]), url, batch_size=4, on_block=lambda b, a: b == 1 and a.store.discard_block(0))
    assert att.store.done_blocks() == [1, 2]
    att = run(eps, (x[:10], y[:10]), url, batch_size=4)
    assert att.computed == [0]
    np.testing.assert_allclose(lrpgraph.open_store(url).relevance[:], eps.explain(x[:10], y[:10]).maps,
                               rtol=1e-5, atol=1e-7)


def test_dataset_length_must_match_n(shapes, eps, tmp_path):
    model, x, y = shapes

    def gen(k):
        def g():
            for i in range(k):
                yield x[i], y[i]
        return g

    sig = (tf.TensorSpec((64, 64, 3), tf.float32), tf.TensorSpec((), tf.int64))
    with pytest.raises(ValueError, match="ended after 7 samples; the store was sized for n=9"):
        run(eps, tf.data.Dataset.from_generator(gen(7), output_signature=sig), tmp_path / "a", n=9, batch_size=4)
    with pytest.raises(ValueError, match="more than the n=9 samples"):
        run(eps, tf.data.Dataset.from_generator(gen(11), output_signature=sig), tmp_path / "b", n=9, batch_size=4)
    with pytest.raises(ValueError, match="n=5 but the dataset holds 21"):
        run(eps, tf.data.Dataset.from_tensor_slices((x, y)), tmp_path / "c", n=5)


def test_store_module_alone(tmp_path):
    arrays = {"r": zstore.ArraySpec((2,), "float32"), "ids": zstore.ArraySpec((4,), "uint8")}
    st = zstore.Store.create(tmp_path / "s", n=5, block_size=2, arrays=arrays, job={"k": 1})
    assert st.missing_blocks() == [0, 1, 2] and st.block_range(2) == (4, 5)
    with pytest.raises(ValueError, match="shape"):
        st.write_block(2, {"r": np.zeros((2, 2)), "ids": zstore.encode_ids(["a", "b"], 4)})
    with pytest.raises(ValueError, match="missing"):
        st.write_block(0, {"r": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="at most 4 bytes"):
        zstore.encode_ids(["abcde"], 4)
    st.write_block(2, {"r": np.ones((1, 2)), "ids": zstore.encode_ids(["é"], 4)})
    again = zstore.Store.open_or_create(tmp_path / "s", n=5, block_size=2, arrays=arrays, job={"k": 1})
    assert again.done_blocks() == [2] and zstore.decode_ids(again["ids"][4]) == "é"
    with pytest.raises(zstore.StoreMismatchError, match="k: store 1, now 2"):
        zstore.Store.open_or_create(tmp_path / "s", n=5, block_size=2, arrays=arrays, job={"k": 2})
    # an interrupted creation (no layout attribute, no block) is recreated
    import zarr

    zarr.open_group(str(tmp_path / "t"), mode="w")
    with pytest.raises(zstore.StoreError, match="incomplete"):
        zstore.Store.open(tmp_path / "t")
    st = zstore.Store.open_or_create(tmp_path / "t", n=3, block_size=2, arrays=arrays)
    assert st.missing_blocks() == [0, 1]


# --- all devices of one machine ------------------------------------------------------------

STRATEGY_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import lrpgraph
from lrpgraph.assets import load_shapes_model
from lrpgraph.evaluation.synthetic import single_object_dataset

model = load_shapes_model()
x, y, _ = single_object_dataset(11, size=64, seed=3)
devices = [d.name for d in tf.config.list_logical_devices("CPU")]
strategy = tf.distribute.MirroredStrategy(devices)
assert strategy.num_replicas_in_sync == 2, devices
for name in ("lrp.epsilon", "sglrp"):
    a = lrpgraph.create_analyzer(name, model)
    # blocks of 5, 5 and 1 samples: the last leaves one replica an empty shard
    att = lrpgraph.explain_dataset(a, (x, y), sys.argv[1] + "/" + name, batch_size=5, strategy=strategy,
                                   progress=False)
    single = lrpgraph.explain_dataset(a, (x, y), sys.argv[1] + "/single_" + name, batch_size=5, progress=False)
    ref = a.explain(x, y)
    err = float(np.abs(att.relevance[:] - single.relevance[:]).max())
    scale = float(np.abs(ref.maps).max())
    assert err <= 1e-5 * scale, (name, err, scale)
    assert (att.targets[:] == y).all() and (att.predicted[:] == single.predicted[:]).all()
    print(name, "max abs diff", err, "of", scale)
try:
    lrpgraph.explain_dataset(lrpgraph.create_analyzer("gradcam", model), (x, y), sys.argv[1] + "/cam",
                             strategy=strategy, progress=False)
except ValueError as e:
    assert "rule engine" in str(e)
    print("gradcam refused")
"""


def test_mirrored_strategy_on_two_logical_cpus_equals_single_device(tmp_path):
    proc = subprocess.run([sys.executable, "-c", STRATEGY_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "lrp.epsilon max abs diff" in proc.stdout and "sglrp max abs diff" in proc.stdout
    assert "gradcam refused" in proc.stdout


# --- command line ---------------------------------------------------------------------------

def test_cli_explain_dataset_resume_and_show(shapes, tmp_path, capsys):
    from skimage import io

    from lrpgraph.cli import main

    model, x, y = shapes
    folder = tmp_path / "imgs"
    for i in range(5):
        (folder / f"class{y[i]}").mkdir(parents=True, exist_ok=True)
        io.imsave(folder / f"class{y[i]}" / f"{i}.png", (x[i] * 255).astype(np.uint8), check_contrast=False)
    out = tmp_path / "store"
    args = ["explain-dataset", str(folder), "--model", "shapes", "--method", "lrp.epsilon", "--out", str(out),
            "--batch-size", "2", "--target", "predicted", "--reduce", "sum", "--float16",
            "--metrics", "relevance_sum"]
    assert main(args) == 0
    assert "5 samples, 3 block(s) computed now" in capsys.readouterr().out
    att = lrpgraph.open_store(out)
    assert att.relevance.shape == (5, 64, 64) and att.relevance.dtype == np.float16
    assert main(args) == 0
    assert "0 block(s) computed now" in capsys.readouterr().out
    assert main(args[:4] + ["--method", "lrp.z"] + args[6:]) == 1
    assert "different job" in capsys.readouterr().err
    png = tmp_path / "m.png"
    assert main(["show", str(out), "--index", "4", "--out", str(png)]) == 0
    assert png.stat().st_size > 1000 and "sample 4" in capsys.readouterr().out
    assert main(["show", str(out), "--index", "9", "--out", str(png)]) == 1
    assert "out of range" in capsys.readouterr().err
    assert main(["explain-dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "s2")]) == 1
    assert "source not found" in capsys.readouterr().err


# --- docs/datasets.md ------------------------------------------------------------------------

def test_docs_worked_example_runs(tmp_path, monkeypatch, capsys):
    text = DOC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    example = [b for b in blocks if "# worked example" in b]
    assert example, "docs/datasets.md lost its worked example"
    monkeypatch.chdir(tmp_path)
    ns = {}
    exec(compile(textwrap.dedent(example[0]), str(DOC), "exec"), ns)  # noqa: S102 - our own docs
    att = ns["att"]
    assert att.complete and len(att) == 48
    # the doc shows exactly what the code prints
    printed = capsys.readouterr().out
    shown = re.search(r"which prints\n\n```\n(.*?)```", text, re.S)
    assert shown and printed.strip() == shown.group(1).strip()
    assert (tmp_path / "sample0.png").stat().st_size > 1000
    ref = ns["analyzer"].explain(ns["x"], ns["y"]).maps
    np.testing.assert_allclose(att.relevance[:], ref, rtol=1e-5, atol=1e-7)


# --- a memory budget and the evaluation's metrics in the store ------------------------------

def test_max_memory_splits_blocks_and_evaluation_metrics_are_stored(shapes, tmp_path):
    """max_memory: each block of 8 is analysed in chunks the measured cost allows (here a
    cost set by hand: 3 samples per call), the stored maps are those of one call, and the
    evaluation's per-sample AOPC is stored equal to lrpgraph.evaluation's own."""
    from lrpgraph import evaluation, memory

    model, x, y = shapes
    an = lrpgraph.create_analyzer("lrp.epsilon", model)
    cost = memory.Cost(per_sample=1e6, fixed=0.0, device="CPU")
    an.costs[(tuple(x.shape[1:]),)] = cost
    calls = []
    real = an.compute
    an.compute = lambda xs, t: calls.append(len(xs[0])) or real(xs, t)
    att = run(an, (x[:11], y[:11]), tmp_path / "m", max_memory=3.5e6, metrics=("aopc_morf",))
    assert calls == [3, 3, 2, 3]  # blocks of 8 and 3 samples, split 3+3+2 and 3
    ref = lrpgraph.create_analyzer("lrp.epsilon", model).explain(x[:11], y[:11])
    np.testing.assert_allclose(att.relevance[:], ref.maps, rtol=1e-5, atol=1e-7)
    want = evaluation.PER_SAMPLE_METRICS["aopc_morf"](model, x[:11], ref.maps, y[:11])
    np.testing.assert_allclose(att.metrics["aopc_morf"][:], want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="memory budget"):
        run(an, (x, y), tmp_path / "bad", max_memory="lots")
