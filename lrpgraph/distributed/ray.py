"""Explain a dataset on a Ray cluster with Ray Data: :func:`explain_dataset`.

::

    import lrpgraph.distributed.ray as lray
    att = lray.explain_dataset("model.keras", "lrp.epsilon", (x, labels), "maps.zarr",
                               batch_size=32, num_workers=4, num_gpus=1, address="auto")

The same job as :func:`lrpgraph.explain_dataset`, written into the same store
(byte for byte: the arrays, the job metadata and the layout), by a pool of Ray
actors instead of one process.  It is Ray Data batch inference over store blocks:

* the driver describes the job (it loads the model once to read the method's
  parameters, the weights fingerprint and the map shape), opens or creates the
  store, and asks it which blocks are missing (a resumed run schedules only those);
* ``ray.data.from_items`` makes one row per missing block index, and
  ``map_batches`` sends them to an actor pool (``ActorPoolStrategy(size=
  num_workers)``, ``num_gpus`` per actor);
* each actor (:class:`BlockWriter`) loads the model (a ``.keras`` file, or a
  zero-argument factory), builds its analyzer and a
  :class:`lrpgraph.datasets.BlockJob` once, opens the store with
  ``Store.open(path, "r+")``, and for every block index it receives reads the
  block's samples, computes its arrays (``BlockJob.compute_block``) and writes
  them itself (``Store.write_block``: chunks first, marker last).  It returns
  only the block index, its sample count and the seconds it took: the driver
  never holds the maps.

Where the data is read.  Numpy arrays travel once through Ray's object store
(the actors slice their blocks, zero-copy); an image folder is read by the actors
(each decodes its own blocks' files, so the folder must be visible on every node,
like the store); a ``tf.data.Dataset`` cannot be sent to other processes, so the
driver reads its missing blocks and sends them through the object store.

The store must be reachable by the driver and every actor under the same path:
a shared file system, or an fsspec URL (``s3://...``, ``gs://...``).  Distinct
blocks write distinct chunk files and markers, so actors never collide.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

__all__ = ["explain_dataset", "BlockWriter", "load_model", "import_ray"]


def import_ray():
    """The ``ray`` module with Ray Data, or an ImportError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ImportError("lrpgraph.distributed.ray needs Ray Data: pip install 'lrpgraph[ray]' "
                          "(or pip install 'ray[data]>=2.20')") from e
    return ray


def load_model(model):
    """The keras model of ``model``: a ``.keras`` file path (loaded with
    ``compile=False``, ``safe_mode=True``) or a zero-argument factory returning a
    keras model.  A model object is refused: it is not what the actors get."""
    import keras

    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise ValueError(f"model file not found: {path} (on this node; the file must be readable by the driver "
                             "and every Ray node, or pass a zero-argument factory that builds the model)")
        return keras.saving.load_model(path, compile=False)
    if isinstance(model, keras.Model):
        raise TypeError("the Ray runner takes the model as a .keras file path or a zero-argument factory, which "
                        "every actor loads itself, not a model object: model.save('model.keras') and pass the path")
    if callable(model):
        m = model()
        if not isinstance(m, keras.Model):
            raise TypeError(f"the model factory returned {type(m).__name__}; it must return a keras.Model")
        return m
    raise TypeError(f"model must be a .keras file path or a zero-argument factory returning a keras.Model, got "
                    f"{type(model).__name__}")


def _build_job(model, method, params, job_kwargs):
    """The :class:`lrpgraph.datasets.BlockJob` of one process: the model loaded,
    the analyzer built on it."""
    import lrpgraph
    from lrpgraph.datasets import BlockJob

    m = load_model(model)
    analyzer = lrpgraph.create_analyzer(method, m, **dict(params or {}))
    return BlockJob(analyzer, **job_kwargs)


class BlockWriter:
    """One actor of the pool: builds the analyzer once, then writes the blocks it
    is given straight into the store.

    ``data`` is ``("source", ref, source_kwargs)`` (``ref`` an ObjectRef of numpy
    arrays or an image folder's path, read here with
    :func:`lrpgraph.datasets.make_source`) or ``("blocks", ref, None)`` (``ref``
    of ``{block: (x, labels, ids)}``, blocks the driver read from a
    tf.data.Dataset).
    Ray Data calls it with batches ``{"block": (k,) ints}``; it returns
    ``{"block", "samples", "seconds", "error", "error_type"}`` per block: a
    ValueError or TypeError (bad data, a store of another job) is returned as
    its message and class name, and the driver raises it (Ray would pass on only
    its text); any other exception propagates through Ray."""

    def __init__(self, *, model, method, params, job_kwargs, store, batch_size, data):
        self.error = None
        try:
            self._setup(model, method, params, job_kwargs, store, batch_size, data)
        except (ValueError, TypeError) as e:  # reported per block: Ray would keep only the message's text
            self.error = e

    def _setup(self, model, method, params, job_kwargs, store, batch_size, data):
        import ray

        from lrpgraph.store import Store

        self.job = _build_job(model, method, params, job_kwargs)
        self.store = Store.open(store, mode="r+")
        self.job.set_map_shape(self.store.arrays["relevance"].shape)
        # a model that differs from the driver's (a factory with random weights, another file at
        # the same path on this node) would write other maps: refuse it, naming the difference
        self.store.check_compatible(job=self.job.job)
        self.batch_size = int(batch_size)
        self.id_width = int(self.store.arrays["ids"].shape[0])
        self.kind, payload = data[0], ray.get(data[1])
        if self.kind == "source":
            from lrpgraph.datasets import make_source

            self.source = make_source(payload, self.job.prepared, **data[2])
        else:
            self.blocks = payload

    def _read(self, b):
        if self.kind == "source":
            _, x, labels, ids, ok = next(iter(self.source.blocks(self.batch_size, [b])))
            return x, labels, ids, ok
        x, labels, ids = self.blocks[b]
        return x, labels, ids, None

    def _write(self, b):
        from lrpgraph.store import encode_ids

        s, _ = self.store.block_range(b)
        x, labels, ids, ok = self._read(b)
        if ok is not None and not np.all(ok) and not self.job.skip_invalid:
            bad = int(np.nonzero(~np.asarray(ok))[0][0])
            raise ValueError(f"sample {s + bad} ({ids[bad]}): {self.source.error(s + bad)}; pass "
                             "skip_invalid=True to record unreadable files as invalid and go on")
        arrs = self.job.compute_block(x, labels, s, ok)
        arrs["ids"] = encode_ids(ids, self.id_width)
        self.store.write_block(b, arrs)
        return len(x)

    def __call__(self, batch):
        blocks = [int(b) for b in np.asarray(batch["block"]).reshape(-1)]
        rows = {"block": [], "samples": [], "seconds": [], "error": [], "error_type": []}
        for b in blocks:
            t0 = time.perf_counter()
            err, n = self.error, 0
            if err is None:
                try:
                    n = self._write(b)
                except (ValueError, TypeError) as e:  # bad data, a store mismatch: the driver raises it
                    err = e
            rows["block"].append(b)
            rows["samples"].append(n)
            rows["seconds"].append(time.perf_counter() - t0)
            rows["error"].append("" if err is None else str(err))
            rows["error_type"].append("" if err is None else type(err).__name__)
        return {"block": np.asarray(rows["block"], np.int64), "samples": np.asarray(rows["samples"], np.int64),
                "seconds": np.asarray(rows["seconds"], np.float64), "error": np.asarray(rows["error"], object),
                "error_type": np.asarray(rows["error_type"], object)}


def _actor_error(row):
    """The exception an actor reported in its row: the same class (ValueError,
    TypeError, StoreError, StoreMismatchError) and message."""
    from lrpgraph import store as _store

    cls = {"ValueError": ValueError, "TypeError": TypeError, "StoreError": _store.StoreError,
           "StoreMismatchError": _store.StoreMismatchError}.get(str(row["error_type"]), ValueError)
    return cls(f"{row['error']} (block {int(row['block'])}, in a Ray actor)")


def explain_dataset(model, method, data, store, *, params=None, target="label", batch_size=32, num_workers=2,
                    num_gpus=0, num_cpus=1, address=None, resume=True, overwrite=False, progress=True, reduce=None,
                    dtype="float32", metrics=(), topk=5, skip_invalid=False, n=None, preprocess="auto",
                    image_size=None, id_width=256):
    """Explain every sample of ``data`` into the store at ``store`` on a Ray cluster.

    Parameters
    ----------
    model : str or callable
        A ``.keras`` file (readable on the driver and on every node), or a
        zero-argument factory returning the keras model (pickled to the actors;
        it must give the same weights every time: load them, do not initialize
        at random; an actor whose weights differ from the driver's stops with a
        :class:`lrpgraph.store.StoreMismatchError`).
    method : str
        A method name (``lrpgraph.methods()``); ``params`` its parameters, as for
        ``lrpgraph.create_analyzer(method, model, **params)``.
    data, store, target, batch_size, resume, overwrite, progress, reduce, dtype, metrics, topk, skip_invalid, n, \
preprocess, image_size, id_width
        As for :func:`lrpgraph.explain_dataset` (a target callable must be
        picklable).
    num_workers : int
        Actors in the pool (each builds its analyzer once).
    num_gpus, num_cpus : float
        Resources per actor, passed to Ray (``num_gpus=1``: one GPU each).
    address : str, optional
        The Ray cluster (``"auto"``, ``"ray://host:10001"``...); ``"local"``
        starts a new Ray on this machine; None does what ``ray.init()`` does
        (joins the cluster in ``RAY_ADDRESS``, else starts a local one).  A Ray this call starts is shut down at
        the end; one already initialized (``ray.init(...)`` before the call) is
        used as it is.

    Returns
    -------
    lrpgraph.Attributions
        The handle on the store; ``.computed`` lists the blocks this call computed,
        ``.timings`` maps each to the seconds its actor spent on it (read,
        compute, write).

    A failed run (an actor's error, a lost node, Ctrl-C) keeps every block
    already written; rerunning the same call computes only the missing ones.
    """
    from lrpgraph.datasets import Attributions, software_versions, make_source
    from lrpgraph.methods.base import check_batch_size
    from lrpgraph.store import Store, StoreError, decode_ids

    ray = import_ray()
    batch_size = check_batch_size(batch_size)
    if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) or num_workers < 1:
        raise ValueError(f"num_workers must be a positive int, got {num_workers!r}")
    job_kwargs = dict(target=target, reduce=reduce, dtype=dtype, metrics=tuple(metrics) if not isinstance(
        metrics, str) else (metrics,), topk=topk, skip_invalid=skip_invalid)
    if isinstance(model, (str, os.PathLike)):
        model = os.path.abspath(os.fspath(model))  # the actors' working directory is not the driver's
    job = _build_job(model, method, params, job_kwargs)
    import tensorflow as tf

    is_tf = isinstance(data, tf.data.Dataset)
    if isinstance(data, (str, os.PathLike)):
        data = os.path.abspath(os.fspath(data))
    source_kwargs = dict(preprocess=preprocess, image_size=image_size)
    source = make_source(data, job.prepared, n=n, id_width=id_width, **source_kwargs)
    job.check_source(source)
    job.start_fingerprint()
    st = Store.find(store)
    if st is not None and not overwrite:
        if not resume:
            raise StoreError(f"{st.path} already holds a store; pass resume=True to finish it or overwrite=True to "
                             "replace it")
        job.set_map_shape(st.arrays["relevance"].shape)
        st.check_compatible(n=source.n, block_size=batch_size, arrays=job.arrays(source.id_width), job=job.job)
    else:
        arrays = job.arrays(source.id_width, source.sample_shape)  # explains one zero input for the map shape
        st = Store.create(store, n=source.n, block_size=batch_size, arrays=arrays, job=job.job,
                          versions=software_versions(), overwrite=overwrite)
    missing = st.missing_blocks()
    if not missing:
        if progress:
            print(f"{st.path}: all {st.n_blocks} blocks already written", flush=True)
        att = Attributions(st)
        att.computed, att.timings = [], {}
        return att

    if is_tf:  # a tf.data pipeline stays in this process: send its missing blocks through the object store
        def check_done(b, ids):
            s, e = st.block_range(b)
            have = decode_ids(st["ids"][s:e])
            if have != list(ids):
                raise ValueError(f"block {b} of the data differs from the store's (sample ids {have[:3]}... in the "
                                 f"store, {list(ids)[:3]}... now): the dataset's order changed (shuffled?). Resuming "
                                 "needs the same order; pass overwrite=True to start again")

        payload = {b: (x, labels, ids) for b, x, labels, ids, _ in source.blocks(batch_size, missing, check_done)}
        kind, extra = "blocks", None
    else:
        payload, kind, extra = data, "source", dict(source_kwargs, n=n, id_width=id_width)
    del job, source  # the driver's model is not needed any more

    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
        started = True
    ctx = ray.data.DataContext.get_current()
    bars = ctx.enable_progress_bars
    ctx.enable_progress_bars = bool(progress and bars)  # Ray Data's own bars, restored at the end
    total = sum(st.block_range(b)[1] - st.block_range(b)[0] for b in missing)
    bar = None
    if progress:
        import keras

        done_before = st.n_blocks - len(missing)
        if done_before:
            print(f"resuming {st.path}: {done_before} of {st.n_blocks} blocks already written", flush=True)
        bar = keras.utils.Progbar(total, unit_name="sample")
    computed, timings, count = [], {}, 0
    try:
        # the data goes into the object store once; every actor reads it from there (numpy: zero-copy)
        spec = (kind, ray.put(payload), extra)
        del payload
        # one Ray block per store block, so that the pool's actors share them out
        ds = ray.data.from_items([{"block": int(b)} for b in missing], override_num_blocks=len(missing))
        out = ds.map_batches(
            BlockWriter, batch_size=1, batch_format="numpy",
            fn_constructor_kwargs=dict(model=model, method=method, params=dict(params or {}),
                                       job_kwargs=job_kwargs, store=st.path, batch_size=batch_size, data=spec),
            compute=ray.data.ActorPoolStrategy(size=min(int(num_workers), len(missing))), num_gpus=num_gpus or None,
            num_cpus=num_cpus)
        for row in out.iter_rows():
            if row["error"]:
                raise _actor_error(row)
            computed.append(int(row["block"]))
            timings[int(row["block"])] = float(row["seconds"])
            count += int(row["samples"])
            if bar is not None:
                bar.update(count)
    except (Exception, KeyboardInterrupt):
        left = len(st.missing_blocks())
        print(f"\nlrpgraph: the Ray job stopped; {st.n_blocks - left} of {st.n_blocks} blocks are in {st.path}. Run "
              f"the same call (or command) again to compute the other {left}; blocks already written are kept.",
              file=sys.stderr, flush=True)
        raise
    finally:
        ctx.enable_progress_bars = bars
        if started:
            ray.shutdown()
    att = Attributions(Store.open(st.path, mode="r"))
    att.computed = sorted(computed)
    att.timings = timings
    return att
