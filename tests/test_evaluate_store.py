"""lrpgraph.evaluate(store, model, data, metrics=...): the metrics of a dataset store's maps,
written back as per-sample columns, equal the in-memory metrics on the same maps; an
interrupted evaluation resumes with only the missing blocks; mismatched data or model is
a clear error; asking again is a no-op; the CLI end to end."""

import io

import numpy as np
import pytest

import lrpgraph
from lrpgraph import evaluation
from lrpgraph.assets import load_shapes_model
from lrpgraph.cli import main as cli_main
from lrpgraph.data.store import Store, StoreError, StoreMismatchError
from lrpgraph.evaluation.synthetic import single_object_dataset

METRICS = ["aopc", "deletion", "sparseness"]
NAMES = ["aopc_morf", "aopc_lerf", "deletion", "sparseness"]
# small settings keep the test fast; the random-drawing metrics have their own test below
PARAMS = {"aopc": {"patch": 16, "steps": 4, "baseline": 0.0}, "deletion": {"patch": 16, "steps": 4}}


@pytest.fixture(scope="module")
def shapes():
    model = load_shapes_model()
    x, y, _ = single_object_dataset(10, size=64, seed=5)
    return model, x, y


@pytest.fixture()
def store(shapes, tmp_path):
    model, x, y = shapes
    eps = lrpgraph.create_analyzer("lrp.epsilon", model)
    lrpgraph.explain_dataset(eps, (x, y), str(tmp_path / "maps.zarr"), batch_size=4, progress=False)  # 3 blocks
    return str(tmp_path / "maps.zarr")


def ev(path, shapes, **kw):
    model, x, y = shapes
    kw.setdefault("progress", False)
    return lrpgraph.evaluate(path, model, (x, y), metrics=kw.pop("metrics", METRICS), params=PARAMS, **kw)


def test_store_evaluation_equals_the_metrics_on_the_same_maps(shapes, store):
    model, x, y = shapes
    table = ev(store, shapes)
    att = lrpgraph.open_store(store)
    maps, targets = np.asarray(att.relevance[:]), np.asarray(att.targets[:])
    for m in NAMES:
        fn, _, attr = evaluation.METRICS[m]
        want = getattr(fn(model, x, maps, targets, **evaluation.table.metric_params(m, PARAMS)), attr)
        got = table.per_sample["lrp.epsilon"][m]
        # the same float32 maps scored block by block (4, 4, 2 images) vs in one batch, read back from a float32
        # column (rounding 6e-8 relative); the model's float32 logits of a perturbed image move in the last bits
        # with the batch composition (measured: 7e-8 of a scale of 3.4); 1e-6 of the scale bounds both
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(want).max()))
        np.testing.assert_array_equal(np.asarray(att[f"eval_{m}"][:]), got.astype(np.float32))
        assert f"eval_{m}" in att.metrics
        assert att.columns[f"eval_{m}"]["blocks"] == [0, 1, 2]
    assert table.metric_columns == NAMES
    np.testing.assert_allclose(table.columns["deletion"][0], table.per_sample["lrp.epsilon"]["deletion"].mean())
    # the in-memory evaluate() with the method the store was made with: the same maps, the same numbers
    mem = lrpgraph.evaluate(model, x, ["lrp.epsilon"], y, METRICS, params=PARAMS)
    for m in NAMES:
        a, b = mem.per_sample["lrp.epsilon"][m], table.per_sample["lrp.epsilon"][m]
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(a).max()))  # as above
    assert "aopc_morf (higher)" in table.to_markdown()


def test_random_drawing_metrics_do_not_depend_on_the_block_size(shapes, tmp_path):
    """The metrics that draw random numbers (the "uniform" baseline of AOPC, the subsets of
    faithfulness correlation, the noise of infidelity and monotonicity correlation) draw
    one field per draw from ``seed`` alone, shared by the samples (scaled to each
    sample's range): stores written in blocks of 3 and of 4 give the same columns, equal
    to the in-memory numbers."""
    model, x, y = shapes
    metrics = ["aopc_morf", "faithfulness", "infidelity", "monotonicity_correlation"]
    params = {"aopc": {"patch": 16, "steps": 4}, "faithfulness": {"n": 6, "patch": 16},
              "infidelity": {"n": 4}, "monotonicity_correlation": {"steps": 3, "n_samples": 2}}
    eps = lrpgraph.create_analyzer("lrp.epsilon", model)
    cols = []
    for bs in (3, 4):  # 4 blocks (3, 3, 3, 1) and 3 blocks (4, 4, 2)
        path = str(tmp_path / f"maps{bs}.zarr")
        lrpgraph.explain_dataset(eps, (x, y), path, batch_size=bs, progress=False)
        lrpgraph.evaluate(path, model, (x, y), metrics=metrics, params=params, progress=False)
        cols.append({m: np.asarray(lrpgraph.open_store(path)[f"eval_{m}"][:], np.float64) for m in metrics})
    mem = lrpgraph.evaluate(model, x, ["lrp.epsilon"], y, metrics, params=params).per_sample["lrp.epsilon"]
    for m in metrics:
        assert np.all(np.isfinite(cols[0][m])), m
        # float32 columns of numbers computed from the same float32 maps in different batch compositions: the
        # logits move in the last bits with the batch (7e-8 of their scale, see above); 1e-5 covers that through
        # the correlations (a different field per block would move them by O(0.1))
        np.testing.assert_allclose(cols[0][m], cols[1][m], rtol=1e-5, atol=1e-5, err_msg=m)
        np.testing.assert_allclose(cols[0][m], mem[m], rtol=1e-5, atol=1e-5, err_msg=m)


def test_interrupted_evaluation_resumes_only_the_missing_blocks(shapes, store):
    def crash(b, att):
        if b == 1:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        ev(store, shapes, on_block=crash)
    att = lrpgraph.open_store(store)
    assert att.columns["eval_deletion"]["blocks"] == [0, 1]
    assert np.isnan(np.asarray(att["eval_deletion"][8:])).all()
    assert ev(store, shapes).params["computed"] == [2]
    # a simulated kill: a block whose marker is gone is scored again, nothing else
    Store.open(store, "r+").discard_column_block("eval_sparseness", 0)
    t = ev(store, shapes)
    assert t.params["computed"] == [0]
    full = ev(store, shapes)
    assert full.params["computed"] == []  # asking again: a no-op, the stored numbers
    for m in NAMES:
        np.testing.assert_array_equal(full.per_sample["lrp.epsilon"][m], t.per_sample["lrp.epsilon"][m])
    # a new metric later: only its column is computed, every block
    more = ev(store, shapes, metrics=["complexity"])
    assert more.params["computed"] == [0, 1, 2] and more.metric_columns == ["complexity"]
    assert set(lrpgraph.open_store(store).columns) == {f"eval_{m}" for m in NAMES + ["complexity"]}
    # the explain job still matches and resumes its store: the columns leave its arrays and markers alone
    model, x, y = shapes
    eps = lrpgraph.create_analyzer("lrp.epsilon", model)
    assert lrpgraph.explain_dataset(eps, (x, y), store, batch_size=4, progress=False).computed == []
    assert ev(store, shapes).params["computed"] == []


def test_other_parameters_need_overwrite(shapes, store):
    model, x, y = shapes
    ev(store, shapes, metrics=["deletion"])
    with pytest.raises(StoreMismatchError, match="overwrite=True"):
        lrpgraph.evaluate(store, model, (x, y), metrics=["deletion"], progress=False)  # default patch
    t = lrpgraph.evaluate(store, model, (x, y), metrics=["deletion"], progress=False, overwrite=True)
    assert t.params["computed"] == [0, 1, 2]
    assert lrpgraph.open_store(store).columns["eval_deletion"]["params"] == {}  # the defaults now


def test_mismatched_data_or_model_is_a_clear_error(shapes, store, tmp_path):
    model, x, y = shapes
    with pytest.raises(StoreMismatchError, match="logits of the data"):
        lrpgraph.evaluate(store, model, (x[::-1].copy(), y), metrics=["sparseness"], progress=False)
    with pytest.raises(StoreMismatchError, match="label"):
        lrpgraph.evaluate(store, model, (x, (y + 1) % 3), metrics=["sparseness"], progress=False)
    with pytest.raises(StoreMismatchError, match="9 samples"):
        lrpgraph.evaluate(store, model, (x[:9], y[:9]), metrics=["sparseness"], progress=False)
    other = load_shapes_model()
    other.set_weights([w * 1.01 for w in other.get_weights()])
    with pytest.raises(StoreMismatchError, match="weights"):
        lrpgraph.evaluate(store, other, (x, y), metrics=["sparseness"], progress=False)
    with pytest.raises(ValueError, match="explains again"):
        lrpgraph.evaluate(store, model, (x, y), metrics=["max_sensitivity"], progress=False)
    with pytest.raises(StoreError, match="no store"):
        lrpgraph.evaluate(str(tmp_path / "nothing"), model, (x, y), progress=False)
    # the failed calls scored nothing and left nothing half written
    assert all(v["blocks"] == [] for v in lrpgraph.open_store(store).columns.values())
    # an incomplete store: finish the explanation first
    Store.open(store, "r+").discard_block(1)
    with pytest.raises(StoreError, match="not complete"):
        ev(store, shapes)


def test_cli_evaluate_store(shapes, store, tmp_path):
    model, x, y = shapes
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = io.StringIO()
    args = ["evaluate", "--store", store, "--data", str(tmp_path / "d.npz"), "--metrics", "aopc,sparseness",
            "--metric-param", "aopc.patch=16", "--metric-param", "aopc.steps=4", "--metric-param", "aopc.baseline=0.0", "--out", str(tmp_path / "o")]
    assert cli_main(args, out=out) == 0
    text = out.getvalue()
    assert "aopc_morf" in text and "sparseness" in text
    att = lrpgraph.open_store(store)
    t = ev(store, shapes, metrics=["aopc"])  # the same columns: read back, not computed
    assert t.params["computed"] == []
    np.testing.assert_array_equal(np.asarray(att["eval_aopc_morf"][:]), t.per_sample["lrp.epsilon"]["aopc_morf"]
                                  .astype(np.float32))
    assert (tmp_path / "o" / "evaluation_per_sample.csv").exists()
    # rerunning the command: nothing computed, the same table
    out2 = io.StringIO()
    assert cli_main(args, out=out2) == 0
    assert "(0 blocks scored)" in out2.getvalue()


def test_docs_example_runs(tmp_path, monkeypatch, capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "evaluation.md").read_text()
    block = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "# store evaluation" in b]
    assert block, "docs/evaluation.md lost its store evaluation example"
    monkeypatch.chdir(tmp_path)
    ns = {}
    exec(compile(block[0], "docs/evaluation.md", "exec"), ns)  # noqa: S102 - our own docs
    assert capsys.readouterr().out.strip() == "['aopc_morf', 'aopc_lerf', 'sparseness']"
    np.testing.assert_array_equal(ns["per_sample"],
                                  ns["table"].per_sample["lrp.epsilon"]["aopc_morf"].astype(np.float32))
    assert ns["table"].params["computed"] == [0, 1, 2]
