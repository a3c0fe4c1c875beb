"""Executors: who computes the blocks the driver (:func:`lrpgraph.data.driver.drive`)
hands out.  Each runs the same per-block computation,
:meth:`lrpgraph.data.job.BlockJob.run_block`, through :class:`lrpgraph.Method`:

* :class:`InProcess`: this process, one device; yields each block's arrays for
  the driver to write;
* :class:`Mirrored`: this process, all devices of a ``tf.distribute`` strategy:
  the job's method is wrapped in a :class:`MirroredMethod`, a Method whose
  ``compute`` splits each batch over the replicas inside one compiled call;
  everything after ``compute`` (target resolution, ``finalize``,
  post-processing) is :meth:`lrpgraph.Method.explain`'s own;
* :class:`RayExecutor`: a pool of Ray actors (:class:`BlockWriter`), each
  building the method once and writing its blocks into the store itself.  The
  pool survives a worker dying mid-job: every actor is created with
  ``max_restarts`` (Ray starts a dead actor again, which builds its method again)
  and ``max_task_retries`` (the block it held is handed to the restarted actor);
  a retried block whose marker the dead actor already wrote is not written again.

An executor has ``writes_blocks`` (True: its workers write into the store, which
must exist before the first block) and ``run(job, source, blocks, *, store,
write, check_done)``, an iterator of :class:`Done` in any order.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from ..methods.base import Method
from ..methods.registry import create_analyzer
from .job import BlockJob
from .sources import make_source
from .store import Store

__all__ = ["Done", "InProcess", "Mirrored", "MirroredMethod", "RayExecutor", "BlockWriter", "load_model",
           "import_ray", "build_job"]


@dataclass
class Done:
    """A finished block: ``block``, ``samples``, the ``seconds`` it took, its
    ``arrays`` (None when the worker wrote them into the store itself) and its
    reduction ``partials``."""

    block: int
    samples: int
    seconds: float
    arrays: dict | None = None
    partials: dict = field(default_factory=dict)


class InProcess:
    """The blocks computed in this process, one after the other, while the source
    reads ahead (its prefetching)."""

    writes_blocks = False

    def run(self, job, source, blocks, *, store=None, write=(), check_done=None):
        bs = job.spec.batch_size
        for b, x, labels, ids, ok in source.blocks(bs, blocks, check_done):
            t0 = time.perf_counter()
            r = job.run_block(x, labels, ids, b * bs, ok, source.id_width, source.error)
            yield Done(b, len(x), time.perf_counter() - t0, r.arrays, r.partials)


class Mirrored(InProcess):
    """In process, each block split over the replicas of ``strategy`` (e.g.
    ``tf.distribute.MirroredStrategy()``).  :meth:`job` binds the method."""

    def __init__(self, strategy):
        self.strategy = strategy

    def job(self, method, spec):
        """The :class:`BlockJob` of ``method`` whose blocks run on the replicas."""
        if spec.max_memory is not None:
            raise ValueError("max_memory splits each block on one device; with a strategy, size the blocks with "
                             "batch_size instead")
        return BlockJob(method, spec, runner=MirroredMethod(method, self.strategy))


class MirroredMethod(Method):
    """``method`` with its ``compute`` split over the replicas of a
    ``tf.distribute`` strategy: each batch is sharded in order (a replica left
    without a sample gets a repeat of the last, dropped after), every replica
    runs the method's traced analysis (:meth:`lrpgraph.Analyzer.traced`) inside
    one ``tf.function`` (``strategy.run``), and the per-replica maps and logits
    are concatenated in replica order.  It is a :class:`lrpgraph.Method` over the
    same prepared model, so :meth:`~lrpgraph.Method.explain` (targets, the
    method's ``finalize``, post-processing) is the method's own path.  Rule-engine
    methods only (the LRP presets, gradient, SGLRP/CLRP); one target per sample."""

    def __init__(self, method, strategy):
        if not hasattr(method, "traced"):
            raise ValueError(f"strategy= runs methods built on the rule engine (the LRP presets, gradient, "
                             f"SGLRP/CLRP); {method.name!r} ({type(method).__name__}) runs its own compiled loop: "
                             "run it without strategy")
        if method.neuron_selection_mode == "all":
            raise ValueError("strategy= explains one target per sample; neuron_selection_mode='all' is not "
                             "supported with it")
        super().__init__(method.prepared, neuron_selection_mode=method.neuron_selection_mode,
                         postprocess=method.postprocess)
        self.inner = method
        self.name = method.name
        self.strategy = strategy
        self.replicas = int(strategy.num_replicas_in_sync)

        def replica_fn(xs, t):
            maps, logits, _ = method.traced(xs, t)
            return maps, logits

        def step(dxs, dt):
            maps, logits = strategy.run(replica_fn, args=(dxs, dt))
            local = strategy.experimental_local_results
            return [tf.concat(local(m), axis=0) for m in maps], tf.concat(local(logits), axis=0)

        self._step = tf.function(step, reduce_retracing=True, autograph=False)

    def compute(self, xs, targets):
        n = len(targets)
        if n < self.replicas:  # every replica gets at least one sample (repeats of the last, dropped after)
            pad = np.minimum(np.arange(self.replicas), n - 1)
            xs, targets = [a[pad] for a in xs], targets[pad]
        parts = np.array_split(np.arange(len(targets)), self.replicas)

        def shard(a):
            return self.strategy.experimental_distribute_values_from_function(
                lambda ctx: tf.constant(a[parts[ctx.replica_id_in_sync_group]]))

        maps, logits = self._step([shard(a) for a in xs], shard(targets))
        return [m.numpy()[:n] for m in maps], logits.numpy()[:n]

    def compute_multi(self, xs, targets):
        raise ValueError("strategy= explains one target per sample; pass one target per sample")

    def finalize(self, maps, logits, targets):
        return self.inner.finalize(maps, logits, targets)

    @property
    def single_output(self):
        return self.inner.single_output


# ---------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------


def import_ray():
    """The ``ray`` module, or an ImportError saying how to install it."""
    try:
        import ray  # an optional dependency (the lrpgraph[ray] extra), imported only by Ray runs
    except ImportError as e:
        raise ImportError("lrpgraph.distributed.ray needs Ray: pip install 'lrpgraph[ray]' "
                          "(or pip install 'ray>=2.20')") from e
    return ray


def load_model(model):
    """The keras model of ``model``: a ``.keras`` file path (loaded with
    ``compile=False``, ``safe_mode=True``) or a zero-argument factory returning a
    keras model.  A model object is refused: it is not what the actors get."""
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


def build_job(model, method, params, spec):
    """The :class:`BlockJob` of one process: the model loaded (:func:`load_model`),
    the method ``create_analyzer(method, model, **params)`` built on it."""
    return BlockJob(create_analyzer(method, load_model(model), **dict(params or {})), spec)


class BlockWriter:
    """One actor of the Ray pool: builds its method once, then computes and writes
    the blocks it is given straight into the store (opened ``"r+"``).

    ``data``: ``[ref]``, a one-item list holding the ObjectRef of the data of a
    portable source (numpy arrays, an image folder's path, read here with
    :func:`make_source`; in a list, so that Ray leaves it to this actor to fetch,
    also after a restart, while the driver holds it), or None when the driver
    sends each block's samples (a ``tf.data`` pipeline).  :meth:`write` returns
    ``{"block", "samples", "seconds", "partials", "error"}``: a ValueError or
    TypeError (bad data, a store of another job) comes back as the exception
    object for the driver to raise (any other exception propagates through Ray)."""

    def __init__(self, *, model, method, params, spec, store, data):
        self.error = None
        try:
            self.job = build_job(model, method, params, spec)
            self.store = Store.open(store, mode="r+")
            self.job.set_map_shape(self.store.arrays["relevance"].shape)
            # a model that differs from the driver's (a factory with random weights, another file at
            # the same path on this node) would write other maps: refuse it, naming the difference
            self.store.check_compatible(job=self.job.identity)
            self.id_width = int(self.store.arrays["ids"].shape[0])
            self.source = None
            if data is not None:
                ray = import_ray()
                self.source = make_source(ray.get(data[0]), self.job.prepared, **spec.source_options())
        except (ValueError, TypeError) as e:  # reported per block
            self.error = e

    def pid(self):
        """The actor's process id."""
        return os.getpid()

    def write(self, b, block=None, write=True):
        """Compute block ``b`` (``block``: its ``(x, labels, ids)`` when the driver
        reads the data) and write it unless ``write`` is False or it is already
        marked written (a retry after this actor's predecessor died)."""
        t0 = time.perf_counter()
        out = {"block": int(b), "samples": 0, "seconds": 0.0, "partials": {}, "error": self.error}
        if self.error is not None:
            return out
        try:
            s, _ = self.store.block_range(b)
            if block is None:
                _, x, labels, ids, ok = next(iter(self.source.blocks(self.job.spec.batch_size, [b])))
                error = self.source.error
            else:
                (x, labels, ids), ok, error = block, None, None
            r = self.job.run_block(x, labels, ids, s, ok, self.id_width, error)
            if write and not self.store.is_done(b):
                self.store.write_block(b, r.arrays)
            out.update(samples=len(x), partials=r.partials)
        except (ValueError, TypeError) as e:  # bad data, a store mismatch: the driver raises it
            out["error"] = e
        out["seconds"] = time.perf_counter() - t0
        return out


class RayExecutor:
    """A pool of ``num_workers`` Ray actors (:class:`BlockWriter`), each with
    ``num_cpus`` / ``num_gpus``, on the Ray at ``address`` (None: what
    ``ray.init()`` does; "local": a new local Ray; a Ray already initialized is
    used as it is, one this executor started is shut down at the end).

    Each actor holds one block at a time; the next missing block goes to the
    first actor that finishes.  Fault tolerance: ``max_restarts`` restarts of each
    actor and ``max_task_retries`` retries of the block it held (Ray's actor
    options); a worker killed mid-block is started again, builds its method again
    and computes that block; when the retries run out, the job stops with Ray's
    error and a rerun finishes it."""

    writes_blocks = True

    def __init__(self, model, method, params=None, *, num_workers=2, num_gpus=0, num_cpus=1, address=None,
                 max_restarts=3, max_task_retries=3):
        if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) or num_workers < 1:
            raise ValueError(f"num_workers must be a positive int, got {num_workers!r}")
        for name, v in (("max_restarts", max_restarts), ("max_task_retries", max_task_retries)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < -1:
                raise ValueError(f"{name} must be an int >= 0 (-1: without limit), got {v!r}")
        if isinstance(model, (str, os.PathLike)):
            model = os.path.abspath(os.fspath(model))  # the actors' working directory is not the driver's
        self.model, self.method, self.params = model, method, dict(params or {})
        self.num_workers, self.num_gpus, self.num_cpus, self.address = int(num_workers), num_gpus, num_cpus, address
        self.max_restarts, self.max_task_retries = int(max_restarts), int(max_task_retries)
        self.actors = []

    def run(self, job, source, blocks, *, store, write=(), check_done=None):
        ray = import_ray()
        started = False
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=True)
            started = True
        try:
            # the data goes into the object store once; every actor reads it from there (numpy: zero-copy)
            data = ray.put(source.portable_data()) if source.portable else None
            options = dict(num_cpus=self.num_cpus, max_restarts=self.max_restarts,
                           max_task_retries=self.max_task_retries)
            if self.num_gpus:
                options["num_gpus"] = self.num_gpus
            writer = ray.remote(**options)(BlockWriter)
            self.actors = [writer.remote(model=self.model, method=self.method, params=self.params, spec=job.spec,
                                         store=store.path, data=None if data is None else [data])
                           for _ in range(min(self.num_workers, len(blocks)))]
            if source.portable:
                feed = ((b, None) for b in blocks)
            else:  # a tf.data pipeline stays in this process: its blocks travel through the object store
                feed = ((b, ray.put((x, labels, ids)))
                        for b, x, labels, ids, _ in source.blocks(job.spec.batch_size, blocks, check_done))
            write = set(write)
            pending = {}

            def hand_out(actor):
                nxt = next(feed, None)
                if nxt is not None:
                    b, ref = nxt
                    pending[actor.write.remote(b, ref, b in write)] = actor

            for actor in self.actors:
                hand_out(actor)
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                actor = pending.pop(ref)
                row = ray.get(ref)
                if row["error"] is not None:
                    raise _from_actor(row["error"], row["block"])
                hand_out(actor)
                yield Done(row["block"], row["samples"], row["seconds"], None, row["partials"])
        finally:
            for actor in self.actors:
                ray.kill(actor, no_restart=True)
            self.actors = []
            if started:
                ray.shutdown()


def _from_actor(e, block):
    """The exception an actor returned, of its class, its message naming the block."""
    try:
        return type(e)(f"{e} (block {block}, in a Ray actor)")
    except Exception:  # noqa: BLE001 - a class that takes other arguments: as it came
        return e
