"""lrpgraph.distributed.ray: the Ray runner writes the store the single-process
runner writes (every array equal, the same job metadata and layout), a run an actor
error stopped half-way is finished by a rerun that computes only the missing blocks,
a store of another job is refused before any actor starts, and the CLI's --ray option.

One local Ray (``ray.init(num_cpus=2)``) for the module; each job starts a pool of
two actors (each imports TensorFlow and loads the shapes model: ~10 s)."""

import shutil
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray tests need Ray: pip install 'lrpgraph[ray]'")

import lrpgraph  # noqa: E402
import lrpgraph.distributed.ray as lray  # noqa: E402
from lrpgraph.data import store as zstore  # noqa: E402
from lrpgraph.assets import SHAPES_MODEL  # noqa: E402
from lrpgraph.assets import load_shapes_model  # noqa: E402
from lrpgraph.evaluation.synthetic import single_object_dataset  # noqa: E402

pytestmark = pytest.mark.slow

METRICS = ("relevance_sum", "positive_share")



@pytest.fixture(scope="module")
def shapes():
    x, y, _ = single_object_dataset(21, size=64, seed=3)
    return x, y


@pytest.fixture(scope="module")
def reference(shapes, tmp_path_factory):
    """The single-process store of the job every Ray run here repeats."""
    x, y = shapes
    analyzer = lrpgraph.create_analyzer("lrp.epsilon", load_shapes_model())
    path = tmp_path_factory.mktemp("ref") / "single.zarr"
    return lrpgraph.explain_dataset(analyzer, (x, y), str(path), batch_size=8, metrics=METRICS, topk=3,
                                    progress=False)


def assert_same_store(att, ref):
    a, r = att.store, ref.store
    assert (a.n, a.block_size, a.n_blocks) == (r.n, r.block_size, r.n_blocks) == (21, 8, 3)
    assert a.complete
    assert {k: v.to_json() for k, v in a.arrays.items()} == {k: v.to_json() for k, v in r.arrays.items()}
    assert a.job == r.job and a.versions == r.versions
    for name in r.arrays:
        got, want = a[name][:], r[name][:]
        assert got.dtype == want.dtype, name
        assert got.tobytes() == want.tobytes(), f"array {name!r} differs from the single-process store"


def test_ray_store_equals_single_process(local_ray, shapes, reference, tmp_path):
    x, y = shapes
    att = lray.explain_dataset(str(SHAPES_MODEL), "lrp.epsilon", (x, y), str(tmp_path / "ray.zarr"), batch_size=8,
                               num_workers=2, metrics=METRICS, topk=3, progress=False)
    assert att.computed == [0, 1, 2]
    assert_same_store(att, reference)
    # the maps are the method's, not zeros: conservation-style check against the stored metric
    np.testing.assert_allclose(att.metrics["relevance_sum"][:], att.relevance[:].reshape(21, -1).sum(1),
                               rtol=1e-4, atol=1e-6)
    assert np.abs(att.relevance[:]).sum() > 0 and list(att.labels[:]) == list(y)
    # a second call finds every block written and starts no actor
    again = lray.explain_dataset(str(SHAPES_MODEL), "lrp.epsilon", (x, y), str(tmp_path / "ray.zarr"),
                                 batch_size=8, metrics=METRICS, topk=3, progress=False)
    assert again.computed == []


def test_ray_resumes_a_run_that_failed_half_way(local_ray, shapes, reference, tmp_path):
    """An actor fails on block 1 (a NaN input): the run stops with that error, the
    blocks written stay; the rerun (clean data, a model factory this time)
    computes exactly the missing blocks and the store equals the single-process one."""
    x, y = shapes
    bad = x.copy()
    bad[13, 5, 5, 0] = np.nan  # sample 13: block 1
    path = str(tmp_path / "resumed.zarr")
    with pytest.raises(ValueError, match="sample 13 contains NaN"):
        lray.explain_dataset(str(SHAPES_MODEL), "lrp.epsilon", (bad, y), path, batch_size=8, num_workers=2,
                             metrics=METRICS, topk=3, progress=False)
    st = zstore.Store.open(path)
    missing = st.missing_blocks()
    assert 1 in missing and not st.complete
    att = lray.explain_dataset(load_shapes_model, "lrp.epsilon", (x, y), path, batch_size=8, num_workers=2,
                               metrics=METRICS, topk=3, progress=False)
    assert att.computed == missing
    assert_same_store(att, reference)


def test_ray_finishes_a_store_with_lost_blocks(local_ray, shapes, reference, tmp_path):
    """A store a killed run left with blocks 0 and 2 absent (no marker, stale chunks):
    the Ray rerun writes exactly those two."""
    x, y = shapes
    path = tmp_path / "killed.zarr"
    shutil.copytree(reference.store.path, path)
    st = zstore.Store.open(str(path), "r+")
    for b in (0, 2):
        st.discard_block(b)
    st["relevance"][0:8] = 7.0  # garbage left in a chunk whose marker is gone
    att = lray.explain_dataset(str(SHAPES_MODEL), "lrp.epsilon", (x, y), str(path), batch_size=8, num_workers=2,
                               metrics=METRICS, topk=3, progress=False)
    assert att.computed == [0, 2]
    assert_same_store(att, reference)


def test_ray_image_folder_and_tf_data(local_ray, shapes, tmp_path):
    """The other two inputs: an image folder (each actor decodes its own blocks'
    files) and a tf.data.Dataset with string ids (read by the driver, sent through
    the object store); both stores equal the single-process ones."""
    import tensorflow as tf
    from skimage import io

    x, y = shapes
    folder = tmp_path / "imgs"
    for i in range(7):
        d = folder / ("cat" if i % 2 else "dog")
        d.mkdir(parents=True, exist_ok=True)
        io.imsave(d / f"{i}.png", (x[i] * 255).astype(np.uint8), check_contrast=False)
    ids = np.array([f"img_{i:03d}.png" for i in range(21)])
    analyzer = lrpgraph.create_analyzer("lrp.epsilon", load_shapes_model())
    for name, data, kw in [("folder", str(folder), dict(batch_size=3)),
                           ("tfdata", tf.data.Dataset.from_tensor_slices((x, y, ids)), dict(batch_size=8))]:
        ref = lrpgraph.explain_dataset(analyzer, data, str(tmp_path / f"{name}_single"), target="predicted",
                                       progress=False, **kw)
        att = lray.explain_dataset(str(SHAPES_MODEL), "lrp.epsilon", data, str(tmp_path / f"{name}_ray"),
                                   target="predicted", num_workers=2, progress=False, **kw)
        assert att.complete and att.computed == list(range(ref.store.n_blocks))
        assert att.ids[:] == ref.ids[:] and att.store.job == ref.store.job
        for arr in ref.store.arrays:
            assert att.store[arr][:].tobytes() == ref.store[arr][:].tobytes(), (name, arr)
    assert att.ids[20] == "img_020.png"


def test_ray_refuses_a_store_of_another_job(local_ray, shapes, reference, tmp_path):
    x, y = shapes
    path = tmp_path / "other.zarr"
    shutil.copytree(reference.store.path, path)
    with pytest.raises(zstore.StoreMismatchError, match="method"):
        lray.explain_dataset(str(SHAPES_MODEL), "gradient", (x, y), str(path), batch_size=8, metrics=METRICS,
                             topk=3, progress=False)
    with pytest.raises(zstore.StoreMismatchError, match="block"):
        lray.explain_dataset(str(SHAPES_MODEL), "lrp.epsilon", (x, y), str(path), batch_size=4, metrics=METRICS,
                             topk=3, progress=False)
    assert zstore.Store.open(str(path)).job == reference.store.job  # untouched


def test_ray_refuses_a_factory_giving_other_weights(local_ray, shapes, tmp_path):
    """A factory that initializes the model at random gives each actor other weights
    than the driver's: the actors refuse to write, naming the weights fingerprint."""
    import keras

    x, y = shapes
    path = str(tmp_path / "random.zarr")
    with pytest.raises(zstore.StoreMismatchError, match="weights_sha256"):
        lray.explain_dataset(lambda: keras.models.clone_model(load_shapes_model()), "lrp.epsilon", (x, y), path,
                             batch_size=8, num_workers=1, progress=False)
    assert zstore.Store.open(path).done_blocks() == []


def test_ray_bad_arguments_are_clear(shapes, tmp_path):
    x, y = shapes
    with pytest.raises(ValueError, match="model file not found"):
        lray.explain_dataset(str(tmp_path / "nope.keras"), "lrp.epsilon", (x, y), str(tmp_path / "s"))
    with pytest.raises(TypeError, match="zero-argument factory"):
        lray.explain_dataset(42, "lrp.epsilon", (x, y), str(tmp_path / "s"))
    with pytest.raises(TypeError, match="model.save"):
        lray.explain_dataset(load_shapes_model(), "lrp.epsilon", (x, y), str(tmp_path / "s"))
    with pytest.raises(ValueError, match="num_workers"):
        lray.explain_dataset(str(SHAPES_MODEL), "lrp.epsilon", (x, y), str(tmp_path / "s"), num_workers=0)
    assert not (tmp_path / "s").exists()


def test_cli_explain_dataset_ray(local_ray, shapes, reference, tmp_path, capsys):
    from lrpgraph.cli import main

    x, y = shapes
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = tmp_path / "cli.zarr"
    rc = main(["explain-dataset", str(tmp_path / "d.npz"), "--model", "shapes", "--out", str(out), "--batch-size",
               "8", "--metrics", ",".join(METRICS), "--ray", "local", "--workers", "2"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "on Ray (local, 2 workers)" in text and "3 block(s) computed now" in text
    att = lrpgraph.open_store(str(out))
    # the CLI keeps the default topk (5): same maps and classes as the reference
    assert att.complete and att.relevance[:].tobytes() == reference.relevance[:].tobytes()
    assert list(att.targets[:]) == list(reference.targets[:])


def test_cli_ray_workers_needs_ray(tmp_path, shapes, capsys):
    from lrpgraph.cli import main

    x, y = shapes
    np.savez(tmp_path / "d.npz", x=x, y=y)
    rc = main(["explain-dataset", str(tmp_path / "d.npz"), "--out", str(tmp_path / "s"), "--workers", "3"])
    assert rc != 0
    assert "--workers" in capsys.readouterr().err


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
