"""lrpgraph.data: the job spec, sources as adapters, the one driver with its
reductions (per-class sums, a running top-k), typed store state, the SIGINT handler
put back, and MirroredStrategy running through Method.

The reductions are checked against numpy references on the same maps
(``Method.explain``), and a run stopped and resumed (after an exception, with a
lost reduction file, with a lost block marker) against a one-shot run."""

import ast
import dataclasses
import signal
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import lrpgraph
from lrpgraph.assets import load_shapes_model
from lrpgraph.data import (ArraySource, ClassSum, FolderSource, IncompleteStoreError, JobSpec, MirroredMethod,
                           StoreError, StoreExistsError, TFDataSource, TopK, make_source, store as zstore)
from lrpgraph.data.reductions import Block
from lrpgraph.evaluation.synthetic import single_object_dataset

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def shapes():
    model = load_shapes_model()
    x, y, _ = single_object_dataset(13, size=64, seed=5)
    return model, x, y


@pytest.fixture(scope="module")
def eps(shapes):
    return lrpgraph.create_analyzer("lrp.epsilon", shapes[0])


@pytest.fixture(scope="module")
def ref(shapes, eps):
    """The maps, logits and targets of one in-memory call: what every reduction reduces."""
    model, x, y = shapes
    return eps.explain(x, y)


def run(analyzer, data, path, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("batch_size", 4)  # 13 samples: blocks of 4, 4, 4, 1
    return lrpgraph.explain_dataset(analyzer, data, str(path), **kw)


def reductions():
    return (ClassSum(), TopK(3), TopK(2, score="relevance_sum"))


def topk_reference(scores, k):
    """(C, k) values and sample indices of the k largest scores per column, ties to the
    lower index (numpy's stable sort of -score)."""
    order = np.argsort(-scores, axis=0, kind="stable")[:k].T
    return np.take_along_axis(scores.T, order, 1), order


# --- the job spec -------------------------------------------------------------------------

def test_job_spec_is_frozen_validated_and_normalised():
    spec = JobSpec(target=[1, 4], statistics="relevance_sum", reductions=ClassSum(), batch_size=np.int64(8))
    assert spec.target == (1, 4) and spec.multi and spec.statistics == ("relevance_sum",)
    assert spec.batch_size == 8 and type(spec.batch_size) is int and len(spec.reductions) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.batch_size = 4
    assert dataclasses.replace(spec, batch_size=2).batch_size == 2
    for kw, match in [(dict(reduce="mean"), "reduce must be"), (dict(dtype="int8"), "dtype must be"),
                      (dict(statistics=["aopc_typo"]), "unknown metric"), (dict(topk=0), "topk must be"),
                      (dict(batch_size=0), "batch_size must be"), (dict(target=[]), "names no class"),
                      (dict(max_memory="lots"), "memory budget"),
                      (dict(reductions=(ClassSum(), ClassSum())), "share a name")]:
        with pytest.raises(ValueError, match=match):
            JobSpec(**kw)
    with pytest.raises(TypeError, match="Reduction objects"):
        JobSpec(reductions=["class_sum"])
    with pytest.raises(ValueError, match="unknown TopK score"):
        TopK(3, score="nope")


def test_identity_keeps_the_stored_keys(shapes, eps, tmp_path):
    """Stores written before lrpgraph.data resume: the identity has the same keys; a
    job with reductions adds one key."""
    model, x, y = shapes
    att = run(eps, (x, y), tmp_path / "a")
    assert set(att.store.job) == {"method", "model", "weights_sha256", "output", "target", "reduce", "dtype",
                                  "topk", "metrics"}
    att = run(eps, (x, y), tmp_path / "b", reductions=[ClassSum()])
    assert att.store.job["reductions"] == [{"kind": "class_sum", "name": "class_sum"}]
    with pytest.raises(zstore.StoreMismatchError, match="reductions"):
        run(eps, (x, y), tmp_path / "b", reductions=[ClassSum(), TopK(2)])


# --- sources --------------------------------------------------------------------------------

def test_make_source_picks_one_adapter_per_kind(shapes, eps, tmp_path):
    model, x, y = shapes
    p = eps.prepared
    assert type(make_source((x, y), p)) is ArraySource and make_source((x, y), p).has_labels
    assert type(make_source(tf.data.Dataset.from_tensor_slices(x), p)) is TFDataSource
    (tmp_path / "f").mkdir()
    from skimage import io

    io.imsave(tmp_path / "f" / "0.png", (x[0] * 255).astype(np.uint8), check_contrast=False)
    src = make_source(str(tmp_path / "f"), p)
    assert type(src) is FolderSource and src.n == 1 and src.portable
    assert not make_source(tf.data.Dataset.from_tensor_slices(x), p).portable
    # a portable source made again from what travels to another process reads the same blocks
    a = make_source((x, y), p)
    b = make_source(a.portable_data(), p)
    (_, xa, la, ia, _), = a.blocks(4, [2])
    (_, xb, lb, ib, _), = b.blocks(4, [2])
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(la, lb)
    assert ia == ib == ["8", "9", "10", "11"]


# --- reductions -------------------------------------------------------------------------------

def test_reductions_equal_numpy_references(shapes, eps, tmp_path):
    model, x, y = shapes
    att = run(eps, (x, y), tmp_path / "s", reductions=reductions(), metrics=["relevance_sum"])
    red = att.reductions
    assert att.reduction_blocks("class_sum") == [0, 1, 2, 3]
    # the stored float32 maps are the ones the reduction saw (a one-call explain differs by float32 noise)
    maps = np.asarray(att.relevance[:], np.float64)
    k = model.output_shape[-1]
    want = np.stack([maps[y == c].sum(0) if (y == c).any() else np.zeros(maps.shape[1:]) for c in range(k)])
    # float64 sums of float32 maps, grouped per block here and in one call there: float64 rounding
    np.testing.assert_allclose(red["class_sum"]["sum"], want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    np.testing.assert_array_equal(red["class_sum"]["count"], np.bincount(y, minlength=k))
    mean = ClassSum.mean(red["class_sum"])
    present = np.bincount(y, minlength=k) > 0
    np.testing.assert_allclose(mean[present], want[present] / np.bincount(y, minlength=k)[present][:, None, None, None],
                               rtol=1e-12)
    assert np.isnan(mean[~present]).all()
    # the running top-k per channel of the channel relevance, from the stored maps
    channel = maps.sum(axis=(1, 2)).astype(np.float32)  # (N, 3), in the precision TopK compares
    values, indices = topk_reference(channel, 3)
    np.testing.assert_array_equal(red["topk_channel_relevance"]["indices"], indices)
    np.testing.assert_allclose(red["topk_channel_relevance"]["values"], values, rtol=1e-6)
    # by a stored map statistic: the 2 samples with the largest relevance sum
    values, indices = topk_reference(att.metrics["relevance_sum"][:][:, None], 2)
    np.testing.assert_array_equal(red["topk_relevance_sum"]["indices"], indices)
    np.testing.assert_array_equal(red["topk_relevance_sum"]["values"], values)


def test_merges_are_associative_and_commutative(shapes, eps, ref):
    """Partials of the four blocks merged in every grouping and order: top-k exactly
    equal, class sums up to float64 rounding."""
    model, x, y = shapes
    k = model.output_shape[-1]
    blocks = [Block(s, ref.maps[s:s + 4], x[s:s + 4], ref.logits[s:s + 4], ref.targets[s:s + 4], y[s:s + 4],
                    np.ones(len(y[s:s + 4]), bool)) for s in range(0, 13, 4)]
    for r in reductions():
        if isinstance(r, TopK) and r.score == "relevance_sum":
            continue  # needs the statistic's inputs only: covered by the store test
        p = [r.partial(b) for b in blocks]
        left = r.merge(r.merge(r.merge(p[0], p[1]), p[2]), p[3])
        for other in (r.merge(p[0], r.merge(p[1], r.merge(p[2], p[3]))), r.merge(r.merge(p[3], p[1]),
                                                                               r.merge(p[2], p[0]))):
            for key in left:
                if isinstance(r, TopK) or key == "count":
                    np.testing.assert_array_equal(left[key], other[key])
                else:
                    np.testing.assert_allclose(left[key], other[key], rtol=1e-12, atol=1e-15)
    # a block with fewer samples than k pads with -inf / -1; an invalid sample never enters
    b = Block(0, ref.maps[:2], x[:2], ref.logits[:2], ref.targets[:2], y[:2], np.array([True, False]))
    top = TopK(3).partial(b)
    assert (top["indices"][:, 0] == 0).all() and (top["indices"][:, 1:] == -1).all()
    assert np.isneginf(top["values"][:, 1:]).all()
    assert ClassSum().partial(b)["count"].sum() == 1 and k == 6


class Crash(Exception):
    pass


def crash_after(n):
    def on_block(b, att):
        if len(att.computed) == n:
            raise Crash
    return on_block


def assert_same_reductions(a, b):
    ra, rb = a.reductions, b.reductions
    assert set(ra) == set(rb) and a.reduction_blocks("class_sum") == list(range(a.store.n_blocks))
    for name in ra:
        for key in ra[name]:
            # the same blocks merged in the same order: bit for bit
            np.testing.assert_array_equal(ra[name][key], rb[name][key], err_msg=f"{name}.{key}")


def test_resumed_reductions_equal_a_one_shot_run(shapes, eps, tmp_path):
    model, x, y = shapes
    one = run(eps, (x, y), tmp_path / "one", reductions=reductions(), metrics=["relevance_sum"])
    path = tmp_path / "resumed"
    with pytest.raises(Crash):
        run(eps, (x, y), path, reductions=reductions(), metrics=["relevance_sum"], on_block=crash_after(2))
    half = lrpgraph.open_store(path)
    assert half.store.done_blocks() == [0, 1] and half.reduction_blocks("class_sum") == [0, 1]
    assert half.reductions["class_sum"]["count"].sum() == 8
    att = run(eps, (x, y), path, reductions=reductions(), metrics=["relevance_sum"])
    assert att.computed == [2, 3]
    assert_same_reductions(att, one)
    for name in one.store.arrays:
        assert att.store[name][:].tobytes() == one.store[name][:].tobytes(), name


def test_a_lost_reduction_or_marker_is_merged_exactly_once(shapes, eps, tmp_path):
    """Blocks written but not in the reduction (its file lost): computed again, merged,
    not rewritten.  A block in the reduction whose marker is lost: rewritten, not
    merged twice."""
    model, x, y = shapes
    one = run(eps, (x, y), tmp_path / "one", reductions=[ClassSum()])
    path = tmp_path / "s"
    run(eps, (x, y), path, reductions=[ClassSum()])
    st = zstore.Store.open(path, "r+")
    st.discard_reduction("class_sum")
    before = {name: st[name][:].copy() for name in st.arrays}
    writes = []
    real = zstore.Store.write_block
    zstore.Store.write_block = lambda self, i, arrays: writes.append(i) or real(self, i, arrays)
    try:
        att = run(eps, (x, y), path, reductions=[ClassSum()])
        assert att.computed == [0, 1, 2, 3] and writes == []
        assert_same_reductions(att, one)
        for name in before:
            np.testing.assert_array_equal(att.store[name][:], before[name])
        st.discard_block(2)
        att = run(eps, (x, y), path, reductions=[ClassSum()])
        assert att.computed == [2] and writes == [2]
        assert_same_reductions(att, one)
    finally:
        zstore.Store.write_block = real


# --- typed store state ------------------------------------------------------------------------

def test_store_state_is_typed(shapes, eps, tmp_path):
    import zarr

    model, x, y = shapes
    zarr.open_group(str(tmp_path / "t"), mode="w")  # an interrupted creation
    with pytest.raises(IncompleteStoreError):
        zstore.Store.open(tmp_path / "t")
    assert zstore.Store.find(tmp_path / "t") is None  # no block marked: recreated by the next job
    assert issubclass(IncompleteStoreError, StoreError) and issubclass(StoreExistsError, StoreError)
    run(eps, (x[:4], y[:4]), tmp_path / "s")
    with pytest.raises(StoreExistsError, match="resume=True"):
        run(eps, (x[:4], y[:4]), tmp_path / "s", resume=False)
    # no code of the runner recognises a state by an error's text
    for path in (ROOT / "lrpgraph" / "data").glob("*.py"):
        tree = ast.parse(path.read_text())
        caught = {h.name for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) and h.name}
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(isinstance(op, ast.In) for op in node.ops):
                right = node.comparators[0]
                text_of_error = (isinstance(right, ast.Call) and getattr(right.func, "id", "") == "str"
                                 and right.args and getattr(right.args[0], "id", None) in caught)
                assert not text_of_error, f"{path.name}:{node.lineno} matches an error's text"


# --- Ctrl-C puts back the handler it found ----------------------------------------------------

def test_ctrl_c_restores_a_custom_handler(shapes, eps, tmp_path, capsys):
    model, x, y = shapes
    seen = []

    def mine(signum, frame):
        seen.append(signum)

    old = signal.signal(signal.SIGINT, mine)
    try:
        def press(b, att):
            if b == 0:
                signal.raise_signal(signal.SIGINT)

        with pytest.raises(KeyboardInterrupt):
            run(eps, (x, y), tmp_path / "s", on_block=press)
        assert signal.getsignal(signal.SIGINT) is mine and seen == []
        assert "Run the same call" in capsys.readouterr().err
    finally:
        signal.signal(signal.SIGINT, old)


# --- MirroredStrategy runs through Method ------------------------------------------------------

def test_mirrored_method_is_the_methods_own_path(shapes, tmp_path):
    """One replica on the CPU (the two-replica numbers: tests/test_datasets.py): the
    strategy's method is a Method, so the method's post-processing applies to it."""
    model, x, y = shapes
    a = lrpgraph.create_analyzer("lrp.epsilon", model, postprocess="abs")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    mm = MirroredMethod(a, strategy)
    assert isinstance(mm, lrpgraph.Method) and mm.prepared is a.prepared
    ex = mm.explain(x[:5], y[:5])
    want = a.explain(x[:5], y[:5])
    assert (ex.maps >= 0).all()
    np.testing.assert_allclose(ex.maps, want.maps, rtol=1e-5, atol=1e-7)  # float32: one compiled call vs another
    np.testing.assert_array_equal(ex.targets, want.targets)
    att = run(a, (x, y), tmp_path / "m", strategy=strategy, reductions=[ClassSum()])
    np.testing.assert_allclose(att.relevance[:], a.explain(x, y).maps, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="one target per sample"):
        mm.explain(x[:2], np.tile([1, 2], (2, 1)))
    with pytest.raises(ValueError, match="max_memory"):
        run(a, (x, y), tmp_path / "n", strategy=strategy, max_memory="1GB")


# --- layering ----------------------------------------------------------------------------------

def test_the_data_package_imports_neither_the_package_root_nor_argparse():
    """No module of lrpgraph.data (nor the old paths) imports ``lrpgraph`` itself (the
    version comes from lrpgraph._version: no import cycle) or argparse (the CLI's)."""
    paths = list((ROOT / "lrpgraph" / "data").glob("*.py"))
    paths += [ROOT / "lrpgraph" / p for p in ("datasets.py", "store.py", "distributed/ray.py")]
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
                assert "lrpgraph" not in names and "argparse" not in names, (path.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                root = node.module == "lrpgraph" or (node.level and node.module is None
                                                      and node.level == len(path.relative_to(ROOT).parts) - 1)
                assert not root and node.module != "argparse", (path.name, node.lineno, node.module)
    from lrpgraph import _version
    from lrpgraph.data import spec

    assert spec.software_versions()["lrpgraph"] == _version.__version__ == lrpgraph.__version__
