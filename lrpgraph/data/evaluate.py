"""Evaluate what is on disk: the metrics of a dataset store's maps, as columns of the store.

::

    att = lrpgraph.explain_dataset(analyzer, (x, y), "maps.zarr")            # explain once
    table = lrpgraph.evaluate("maps.zarr", model, (x, y), metrics=["aopc", "deletion"])
    table.per_sample["lrp.epsilon"]["aopc_morf"]     # (N,) the numbers, also in the store:
    lrpgraph.open_store("maps.zarr")["eval_aopc_morf"][:]

The store keeps the maps, the explained classes, the sample ids and the top
logits, not the inputs: the caller passes the data the maps were made from
again (the same kinds :func:`lrpgraph.explain_dataset` reads), and every block is
checked against the store before it is scored: the sample ids, the labels and
the model's logits of the inputs at the stored top-k classes (a different image,
a different order or different preprocessing changes them).  The model must be
the one the store was made with (its weights fingerprint).

The evaluation is one more per-block computation on the dataset runner's loop
(:func:`lrpgraph.data.driver.run_blocks`, the in-process executor reading the
source): :class:`StoreEvaluation` scores a block's stored maps with the metric
functions of :mod:`lrpgraph.evaluation` (each batched through the compiled
model), and each metric's numbers are written as the column ``eval_<metric>``
(``(N,)`` float32, NaN for samples stored as invalid) with its own marker per
block (:meth:`lrpgraph.data.store.Store.write_columns`).  An interrupted
evaluation resumes: rerunning the call scores only the blocks some requested
column lacks, and a metric written in full is never computed again (asking again
returns the stored numbers).  A column records its metric's parameters; asking
for the same metric with other parameters is refused unless ``overwrite=True``.

Metrics: those of :data:`lrpgraph.evaluation.PER_SAMPLE_METRICS`, which need only
the maps, the inputs and the model.  The metrics that explain again (robustness,
randomisation, input invariance: :data:`lrpgraph.evaluation.NEEDS_METHOD`) and
the localisation metrics (masks) are evaluated in memory with
:func:`lrpgraph.evaluation.evaluate`.  Metrics that draw random numbers (e.g.
``faithfulness``, ``infidelity``) draw them from their ``seed`` once per block,
so their per-sample numbers depend on the block size, not on the run.
"""

from __future__ import annotations

import inspect
import os
import sys

import keras
import numpy as np

from ..engine.prepared import prepare
from ..evaluation import table as _table
from .driver import run_blocks
from .executors import InProcess
from .job import BlockResult
from .reader import Attributions
from .sources import make_source
from .spec import JobSpec, weights_fingerprint
from .store import ArraySpec, Store, StoreError, StoreMismatchError, decode_ids

__all__ = ["evaluate", "evaluate_store", "StoreEvaluation", "COLUMN_PREFIX"]

COLUMN_PREFIX = "eval_"
# the stored top-k logits against the model's logits of the data passed again: both are float32 forward
# passes of the same weights (batch composition and kernels change the last bits, ~1e-6 relative); 1e-3 of
# the logits' scale stays far above that noise and far below what another image or preprocessing changes
LOGIT_RTOL = 1e-3


class StoreEvaluation:
    """The per-block computation of a store's evaluation (the counterpart of
    :class:`lrpgraph.data.job.BlockJob`, run by the same executor): ``run_block``
    reads the block's stored maps and targets, checks the block's data against the
    store, and returns the block's ``eval_<metric>`` columns.

    ``store``: the :class:`Store` (open for writing); ``prepared``: the model;
    ``metrics``: metric name -> keyword arguments; ``todo``: block -> the metric
    names that block still lacks; ``batch_size``: perturbed images per compiled
    step of the metrics."""

    def __init__(self, store, prepared, metrics, todo, batch_size=256):
        self.store = store
        self.prepared = prepared
        self.metrics = metrics
        self.todo = todo
        self.batch_size = batch_size
        self.spec = JobSpec(batch_size=store.block_size)  # the blocks the executor reads: the store's

    def check_block(self, b, x, labels, ids):
        """Errors naming the first difference between the block's data and the store's."""
        st = self.store
        s, e = st.block_range(b)
        if len(x) != e - s:
            raise ValueError(f"block {b}: the data gives {len(x)} samples, the store has {e - s}")
        have = decode_ids(st["ids"][s:e])
        if list(ids) != have:
            k = next(i for i, (a, c) in enumerate(zip(ids, have)) if a != c)
            raise StoreMismatchError(f"sample {s + k}: the data's id is {ids[k]!r}, the store's {have[k]!r}: pass the "
                                     f"data the store was made from, in the same order")
        stored = np.asarray(st["labels"][s:e])
        if labels is not None and np.any(stored >= 0):
            diff = np.nonzero((stored >= 0) & (np.asarray(labels) != stored))[0]
            if len(diff):
                k = int(diff[0])
                raise StoreMismatchError(f"sample {s + k} ({have[k]}): label {int(labels[k])} in the data, "
                                         f"{int(stored[k])} in the store: pass the data the store was made from")

    def check_logits(self, b, x, valid):
        """The model's logits of the block's inputs must be the stored top-k logits."""
        st = self.store
        s, e = st.block_range(b)
        logits = np.asarray(self.prepared.logits(x[valid], batch_size=self.batch_size), np.float64)
        idx = np.asarray(st["logits_topk_indices"][s:e])[valid]
        want = np.asarray(st["logits_topk_values"][s:e], np.float64)[valid]
        got = np.take_along_axis(logits, idx.astype(np.int64), axis=1)
        scale = np.maximum(np.abs(want).max(axis=1, keepdims=True), 1.0)
        bad = np.nonzero((np.abs(got - want) > LOGIT_RTOL * scale).any(axis=1))[0]
        if len(bad):
            k = int(np.nonzero(valid)[0][bad[0]])
            raise StoreMismatchError(
                f"sample {s + k}: the model's logits of the data passed now ({np.round(got[bad[0]], 4).tolist()}) "
                f"differ from the store's ({np.round(want[bad[0]], 4).tolist()}): the inputs are not the ones the "
                "maps were made from (other images, order or preprocessing). Pass the same data, read the same way")

    def run_block(self, x, labels, ids, start, valid, id_width=None, source_error=None):
        """:class:`BlockResult` of one block: the columns ``eval_<metric>`` of the
        metrics the block lacks (NaN for the samples stored as invalid)."""
        st = self.store
        b = start // st.block_size
        x = np.asarray(x)
        self.check_block(b, x, labels, ids)
        s, e = st.block_range(b)
        ok = np.asarray(st["valid"][s:e], bool)
        if valid is not None:
            unread = ok & ~np.asarray(valid, bool)
            if unread.any():
                k = int(np.nonzero(unread)[0][0])
                raise ValueError(f"sample {s + k} ({ids[k]}) could not be read now, but was explained: "
                                 + (source_error(s + k) if source_error is not None else "unreadable"))
        out = {}
        names = self.todo.get(b, ())
        if ok.any() and names:
            self.check_logits(b, x, ok)
            maps = np.asarray(st["relevance"][s:e], np.float32)[ok]
            targets = np.asarray(st["targets"][s:e], np.int64)[ok]
            for m in names:
                col = np.full(e - s, np.nan, np.float32)
                col[ok] = _score(m, self.prepared, x[ok], maps, targets, self.metrics[m], self.batch_size)
                out[COLUMN_PREFIX + m] = col
        else:
            out = {COLUMN_PREFIX + m: np.full(e - s, np.nan, np.float32) for m in names}
        return BlockResult(out, {})


def _score(name, prepared, x, maps, targets, kw, batch_size):
    fn, _, attr = _table.METRICS[name]
    kw = dict(kw)
    if "batch_size" in inspect.signature(fn).parameters:
        kw.setdefault("batch_size", batch_size)
    return np.asarray(getattr(fn(prepared, x, maps, targets, **kw), attr), np.float64)


def _open(store):
    if isinstance(store, Attributions):
        store = store.store.path
    elif isinstance(store, Store):
        store = store.path
    st = Store.open(store, mode="r+")
    return st


def _check_metrics(metrics):
    names = _table.expand_metrics(metrics)
    bad = [m for m in names if m not in _table.PER_SAMPLE_METRICS]
    if bad:
        why = []
        for m in bad:
            if m in _table.NEEDS_MASKS:
                why.append(f"{m} (needs ground-truth masks)")
            else:
                why.append(f"{m} (explains again: another input, class or model)")
        raise ValueError(f"a store's maps are scored by the metrics that need only the maps; not {', '.join(why)}. "
                         "Evaluate those in memory: lrpgraph.evaluation.evaluate(model, x, methods, metrics=...)")
    return names


def evaluate_store(store, model, data, metrics=("aopc",), *, params=None, batch_size=256, overwrite=False,
                   progress=True, on_block=None, preprocess="auto", image_size=None, n=None, label=None):
    """Score the maps of the dataset store ``store`` with ``metrics``, block by
    block, into the store's columns ``eval_<metric>``; an
    :class:`lrpgraph.evaluation.EvaluationTable` of one row.

    Parameters
    ----------
    store : str, Attributions or Store
        A complete store of :func:`lrpgraph.explain_dataset` (one target per sample).
    model : keras.Model or Prepared
        The model the maps were made with (checked: its weights fingerprint).
    data
        The data the maps were made from, as :func:`lrpgraph.explain_dataset` took it
        (arrays, ``(x, labels)``, a ``tf.data`` dataset in the same order, an image
        folder with ``preprocess`` / ``image_size``); checked block by block
        against the store (ids, labels, the model's top logits).
    metrics
        Names of :data:`lrpgraph.evaluation.PER_SAMPLE_METRICS` (``"aopc"`` =
        ``aopc_morf``, ``aopc_lerf``; ``"@complexity"``...).
    params : dict
        Metric (or alias) -> parameter overrides, as :func:`lrpgraph.evaluation.evaluate`'s.
    batch_size : int
        Perturbed images per compiled step.
    overwrite : bool
        Compute the requested columns again (e.g. with other parameters).
    on_block : callable
        ``on_block(block, attributions)`` after each block's columns are written.
    label : str
        The table's row label (default: the store's method name).

    Returns
    -------
    EvaluationTable
        ``per_sample[label][metric]`` (N,) float64 (NaN for invalid samples),
        ``columns`` the means and standard deviations, ``targets`` the stored
        classes, ``params`` with ``"computed"`` (the blocks this call scored) and
        ``"store"``.  The numbers stay in the store: ``open_store(path)["eval_<metric>"]``.

    Rerunning after Ctrl-C, a crash or a kill scores only the blocks a column
    lacks.  The metrics of :func:`lrpgraph.evaluation.evaluate` on the same maps,
    inputs and targets give the same numbers (per sample; metrics drawing random
    numbers draw them per block).
    """
    names = _check_metrics(metrics)
    params = _table.check_metric_params(params)
    st = _open(store)
    if not st.complete:
        raise StoreError(f"{st.path} is not complete ({len(st.done_blocks())} of {st.n_blocks} blocks written): "
                         "finish the explain job first (run it again to resume)")
    if len(st.arrays["targets"].shape):
        raise ValueError(f"{st.path} holds {st.arrays['targets'].shape[0]} maps per sample; the metrics score one "
                         "target per sample")
    prepared = prepare(model)
    job = st.job
    if job.get("model") is not None and job["model"] != prepared.model.name:
        raise StoreMismatchError(f"{st.path} was made with model {job['model']!r}; this is {prepared.model.name!r}")
    if job.get("weights_sha256") and job["weights_sha256"] != weights_fingerprint(prepared.model):
        raise StoreMismatchError(f"{st.path} was made with other weights of {job.get('model')!r} (its weights "
                                 "fingerprint differs): pass the model the maps were made with")
    source = make_source(data, prepared, n=n, preprocess=preprocess, image_size=image_size,
                         id_width=st.arrays["ids"].shape[0])
    if source.n != st.n:
        raise StoreMismatchError(f"the data has {source.n} samples, the store {st.n}: pass the data the store was "
                                 "made from")
    kws = {m: _table.metric_params(m, params) for m in names}
    cols = {COLUMN_PREFIX + m: (ArraySpec((), "float32", float("nan")), {"metric": m, "params": kws[m]})
            for m in names}
    if overwrite:
        for c in cols:
            st.drop_column(c)
    st.add_columns(cols)
    todo = {}
    for m in names:
        done = set(st.column_done_blocks(COLUMN_PREFIX + m))
        for b in range(st.n_blocks):
            if b not in done:
                todo.setdefault(b, []).append(m)
    blocks = sorted(todo)
    att = Attributions(st)
    computed = []
    if blocks:
        bs = st.block_size
        bar = None
        if progress:
            have = st.n_blocks - len(blocks)
            print(f"evaluating {st.path}: {', '.join(names)}" + (f"; {have} of {st.n_blocks} blocks already scored"
                                                                   if have else ""), flush=True)
            bar = keras.utils.Progbar(sum(min((b + 1) * bs, st.n) - b * bs for b in blocks), unit_name="sample")
        ev = StoreEvaluation(st, prepared, kws, todo, batch_size)

        def check_done(b, ids):  # blocks a tf.data source reads past
            ev.check_block(b, np.zeros((len(ids), 0)), None, ids)

        def write(r):
            st.write_columns(r.block, r.arrays)
            return att

        def stopped(interrupted):
            left = sum(st.n_blocks - len(st.column_done_blocks(COLUMN_PREFIX + m)) for m in names)
            print(f"\nlrpgraph: evaluation stopped; {left} (block, metric) scores are missing in {st.path}. Run the "
                  "same call (or command) again to compute only those.", file=sys.stderr, flush=True)

        runs = InProcess().run(ev, source, blocks, store=st, check_done=check_done)
        computed, _ = run_blocks(runs, write, stopped, bar=bar, on_block=on_block)
    elif progress:
        print(f"{st.path}: {', '.join(names)} already scored for all {st.n_blocks} blocks", flush=True)
    label = label or job.get("method", {}).get("name", "maps")
    per_sample = {label: {m: np.asarray(st[COLUMN_PREFIX + m][:], np.float64) for m in names}}
    return _table.EvaluationTable(_table.summary_columns([label], per_sample), per_sample,
                                  targets=np.asarray(st["targets"][:]),
                                  params=dict(metrics=names, params=params, n=st.n, store=st.path,
                                              computed=computed))


def _is_store(obj):
    if isinstance(obj, (Attributions, Store)):
        return True
    if isinstance(obj, (str, os.PathLike)):
        p = str(obj)
        return not p.endswith((".keras", ".h5"))  # a model is a Keras model; a path names a store
    return False


def evaluate(model, *args, **kwargs):
    """``lrpgraph.evaluate``: the metrics of maps in memory or on disk.

    * ``evaluate(model, x, methods, target, metrics, ...)``: explain ``x`` with each
      method and score the maps (:func:`lrpgraph.evaluation.evaluate`);
    * ``evaluate(store, model, data, metrics=..., ...)``: score the maps of a
      dataset store, written back as its ``eval_<metric>`` columns, resumable
      (:func:`evaluate_store`).

    Both return an :class:`lrpgraph.evaluation.EvaluationTable`."""
    if _is_store(model):
        return evaluate_store(model, *args, **kwargs)
    return _table.evaluate(model, *args, **kwargs)

