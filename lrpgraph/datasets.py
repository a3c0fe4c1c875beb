"""Explain a whole dataset into a resumable store: :func:`explain_dataset`, :func:`open_store`.

::

    import lrpgraph
    analyzer = lrpgraph.create_analyzer("lrp.epsilon", model)
    att = lrpgraph.explain_dataset(analyzer, dataset, "maps.zarr", batch_size=32)
    att.relevance[10:20]          # numpy, (10, H, W, C)
    att.plot(3)

The pieces, each usable alone:

* a *source* turns the data (a ``tf.data.Dataset``, numpy arrays or an image
  folder) into blocks ``(index, x, labels, ids)`` of ``batch_size`` samples,
  reading only the blocks asked for, with decoding in parallel and prefetching
  so that the input pipeline overlaps the compute (:func:`make_source`);
* a :class:`BlockJob` computes everything stored for one block (maps, top-k
  logits, targets, predicted class, per-sample metrics) with one
  :meth:`lrpgraph.Method.explain` call (or, with a ``tf.distribute`` strategy,
  one distributed call), and describes the store it writes into (array specs,
  the job metadata that a resumed run must match);
* :class:`lrpgraph.store.Store` writes each block atomically (marker last) and
  knows which blocks are done.

A Ray runner (``lrpgraph.distributed.ray``) reuses all three.  The driver builds
the source and a :class:`BlockJob`, creates the store once with the job's layout
(``Store.open_or_create(path, n=source.n, block_size=B, arrays=job.arrays(
source.id_width, source.sample_shape), job=job.job, versions=software_versions())``;
``job.arrays`` probes the map shape with one explained zero sample) and hands
``store.missing_blocks()`` out; each actor builds its analyzer and a
:class:`BlockJob` with the same arguments once, opens ``Store.open(path, "r+")``
and, per block ``(b, x, labels, ids, valid)`` from ``source.blocks(B, blocks)``::

    arrays = job.compute_block(x, labels, start=b * B, valid=valid)
    arrays["ids"] = encode_ids(ids, source.id_width)
    store.write_block(b, arrays)          # chunks first, the block's marker last
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import signal
import sys
import warnings
from collections import namedtuple
from pathlib import Path

import numpy as np
import tensorflow as tf

from . import postprocess as _post
from .io import IMAGE_EXTENSIONS  # the files an image folder source reads (re-exported)
from .methods.base import Method, check_batch_size
from .methods.registry import parameters as _method_parameters
from .store import ArraySpec, Store, StoreError, decode_ids, encode_ids

__all__ = ["explain_dataset", "open_store", "Attributions", "BlockJob", "make_source", "METRICS",
           "register_metric", "weights_fingerprint", "describe_method", "software_versions", "IMAGE_EXTENSIONS"]

TopK = namedtuple("TopK", ["values", "indices"])


# ---------------------------------------------------------------------------
# per-sample metrics: name -> f(maps, x, logits, targets, prepared) -> (b,) or (b, T)
# ---------------------------------------------------------------------------

METRICS = {}


def register_metric(name):
    """Decorator adding ``f(maps, x, logits, targets, prepared)`` to :data:`METRICS`
    under ``name``.  ``maps`` are the float32 maps of one block before ``reduce``,
    (b, ...) or (b, T, ...) for T targets per sample (then ``targets`` is (b, T));
    ``x`` the block's inputs, ``logits`` (b, K), ``prepared`` the method's
    :class:`lrpgraph.Prepared` model (for metrics that run it).  Returns one float
    per map: (b,) or (b, T).  The evaluation's per-sample metrics
    (:data:`lrpgraph.evaluation.PER_SAMPLE_METRICS`: ``aopc_morf``, ``aopc_lerf``,
    ``deletion``, ``insertion``, ``faithfulness``) are registered here too."""

    def deco(fn):
        if name in METRICS and METRICS[name] is not fn:
            raise ValueError(f"a dataset metric named {name!r} is already registered")
        METRICS[name] = fn
        return fn

    return deco


def _map_axes(maps, targets):
    return tuple(range(np.ndim(targets), np.ndim(maps)))


@register_metric("relevance_sum")
def relevance_sum(maps, x, logits, targets, prepared=None):
    """sum_i R_i over the map (conservation: equals the explained logit for
    conservative LRP rules without bias absorption)."""
    return np.sum(maps, axis=_map_axes(maps, targets), dtype=np.float64).astype(np.float32)


@register_metric("positive_share")
def positive_share(maps, x, logits, targets, prepared=None):
    """sum_i max(R_i, 0) / sum_i |R_i| (0 for an all-zero map)."""
    axes = _map_axes(maps, targets)
    pos = np.sum(np.maximum(maps, 0), axis=axes, dtype=np.float64)
    tot = np.sum(np.abs(maps), axis=axes, dtype=np.float64)
    return np.where(tot > 0, pos / np.where(tot > 0, tot, 1), 0).astype(np.float32)


def _evaluation_metric(name):
    def metric(maps, x, logits, targets, prepared=None):
        from .evaluation import PER_SAMPLE_METRICS

        if np.ndim(targets) != 1:
            raise ValueError(f"the dataset metric {name!r} scores one target per sample; explain one class per "
                             "sample (target='label', 'predicted' or an int) to store it")
        return PER_SAMPLE_METRICS[name](prepared, x, maps, targets)

    metric.__name__ = name
    metric.__doc__ = f"The evaluation metric ``{name}`` (docs/evaluation.md), with its default parameters."
    return metric


for _name in ("aopc_morf", "aopc_lerf", "deletion", "insertion", "faithfulness"):
    register_metric(_name)(_evaluation_metric(_name))


# ---------------------------------------------------------------------------
# job description
# ---------------------------------------------------------------------------


def weights_fingerprint(model):
    """SHA-256 of the model's weights (shapes, dtypes and values, in
    ``model.weights`` order; names are ignored, so the same weights loaded twice
    give the same fingerprint)."""
    h = hashlib.sha256()
    for w in model.weights:
        a = np.ascontiguousarray(np.asarray(w.numpy() if hasattr(w, "numpy") else w))
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(memoryview(a.reshape(-1)).cast("B"))  # no copy
    return h.hexdigest()


def _simple(v):
    if isinstance(v, (bool, int, float, str, type(None), np.generic)):
        return True
    if isinstance(v, (list, tuple)):
        return all(_simple(e) for e in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _simple(e) for k, e in v.items())
    return False


def describe_method(method):
    """{"name", "class", "params"}: what identifies a method's maps.  ``params`` are
    a preset's parameters (``Analyzer.params``) or the registered factory's
    named arguments read back from the method, plus ``neuron_selection_mode`` and
    the post-processing steps (callables by qualified name)."""
    params = {}
    if isinstance(getattr(method, "params", None), dict):
        params.update(method.params)
    try:
        names = _method_parameters(method.name)
    except ValueError:
        names = set()
    for p in sorted(names):
        v = getattr(method, p, None)
        if p not in params and _simple(v) and v is not None:
            params[p] = v
    params = {k: v for k, v in params.items() if _simple(v)}
    params["neuron_selection_mode"] = method.neuron_selection_mode
    params["postprocess"] = [s if isinstance(s, str) else getattr(s, "__qualname__", repr(s))
                             for s in _post.parse_steps(method.postprocess)]
    return {"name": method.name, "class": type(method).__name__, "params": params}


def _describe_target(target):
    if isinstance(target, str) or target is None:
        return target
    if callable(target):
        return f"callable {getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
    if isinstance(target, (int, np.integer)):
        return int(target)
    if isinstance(target, (list, tuple)):
        return [t if isinstance(t, str) else int(t) for t in target]
    a = np.asarray(target)
    return f"array {a.shape} sha256 {hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]}"


def software_versions():
    """The lrpgraph, TensorFlow, Keras and zarr versions (stored in every store)."""
    import zarr

    from . import __version__

    return {"lrpgraph": __version__, "tensorflow": tf.__version__, "keras": _keras_version(),
            "zarr": zarr.__version__}


def _keras_version():
    import keras

    return keras.__version__


# ---------------------------------------------------------------------------
# the computation of one block
# ---------------------------------------------------------------------------


class BlockJob:
    """What is computed and stored for each block of a dataset.

    ``BlockJob(method, target="label", reduce=None, dtype="float32", metrics=(),
    topk=5, strategy=None, skip_invalid=False)``; the arguments mean what they
    mean for :func:`explain_dataset`.  :meth:`arrays` gives the store's array
    specs, :attr:`job` the metadata a resumed run must match, and
    :meth:`compute_block` one block's arrays, ready for
    :meth:`lrpgraph.store.Store.write_block`."""

    def __init__(self, method, *, target="label", reduce=None, dtype="float32", metrics=(), topk=5,
                 strategy=None, skip_invalid=False, max_memory=None):
        if not isinstance(method, Method):
            raise TypeError(f"explain_dataset needs a method (lrpgraph.create_analyzer(name, model)), got "
                            f"{type(method).__name__}")
        self.method = method
        self.prepared = method.prepared
        if len(self.prepared.input_specs) != 1:
            raise ValueError(f"explain_dataset explains one-input models; {self.prepared.name!r} has "
                             f"{len(self.prepared.input_specs)} inputs")
        if reduce not in (None, "sum"):
            raise ValueError(f"reduce must be None or 'sum', got {reduce!r}")
        if str(dtype) not in ("float32", "float16"):
            raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
        if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
            raise ValueError(f"topk must be a positive int, got {topk!r}")
        self.target = _check_target_spec(target)
        self.reduce, self.dtype, self.metrics = reduce, str(dtype), metrics
        self.topk = min(int(topk), self.prepared.num_classes)
        self.skip_invalid = bool(skip_invalid)
        if max_memory is not None:
            from .memory import parse_memory

            parse_memory(max_memory)  # a bad budget fails here, not after the first block
            if strategy is not None:
                raise ValueError("max_memory splits each block on one device; with a strategy, size the blocks with "
                                 "batch_size instead")
        self.max_memory = max_memory
        self.strategy = None if strategy is None else _Distributed(method, strategy)
        self.multi = isinstance(self.target, (list, tuple)) or (
            isinstance(self.target, np.ndarray) and self.target.ndim == 2)
        self.sample_shape = tuple(self.prepared.input_specs[0].shape[1:])
        self._map_shape = None
        self._fingerprint = None
        self._fp_thread = None

    def check_source(self, source):
        """The checks made before anything is written: the data is not empty, has
        labels where the target is "label", and a target array has one row per sample."""
        if source.n == 0:
            raise ValueError(f"the data is empty (0 samples in the {source.kind}); nothing to explain")
        if self.needs_labels and not source.has_labels:
            raise ValueError(f"target='label' but the {source.kind} has no labels; pass target='predicted', a "
                             "class index, or data with labels ((x, labels), a dataset of (x, label), class "
                             "subfolders)")
        if isinstance(self.target, np.ndarray) and len(self.target) != source.n:
            raise ValueError(f"the target array has {len(self.target)} rows; the data has {source.n} samples")

    def start_fingerprint(self):
        """Hash the weights in a background thread (hashlib releases the GIL), so
        that it overlaps the first block; :attr:`job` waits for it."""
        import threading

        if self._fingerprint is None and self._fp_thread is None:
            def work():
                try:
                    self._fingerprint = weights_fingerprint(self.prepared.model)
                except Exception:  # noqa: BLE001 - recomputed (and raised) by .job
                    pass
            self._fp_thread = threading.Thread(target=work, daemon=True)
            self._fp_thread.start()

    @property
    def fingerprint(self):
        if self._fp_thread is not None:
            self._fp_thread.join()
            self._fp_thread = None
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.prepared.model)
        return self._fingerprint

    # -- description --------------------------------------------------------------
    @property
    def needs_labels(self):
        return isinstance(self.target, str) and self.target == "label"

    @property
    def job(self):
        """The metadata that identifies the maps (a resumed run must match it)."""
        model = self.prepared.model
        return {"method": describe_method(self.method), "model": model.name,
                "weights_sha256": self.fingerprint, "output": self.prepared.output_name,
                "target": _describe_target(self.target), "reduce": self.reduce, "dtype": self.dtype,
                "topk": self.topk, "metrics": list(self.metrics)}

    def set_map_shape(self, shape):
        """Record the stored map's shape (known from a computed block), so that
        :meth:`map_shape` needs no probe."""
        self._map_shape = tuple(int(s) for s in shape)

    def map_shape(self, sample_shape=None):
        """The shape of one sample's stored map (after the method's post-processing,
        several targets and ``reduce``), found by explaining one zero input (unless
        :meth:`set_map_shape` gave it)."""
        if self._map_shape is None:
            given = tuple(sample_shape) if sample_shape is not None else (None,) * len(self.sample_shape)
            shape = tuple(m if m is not None else s for m, s in zip(self.sample_shape, given))
            if None in shape:
                raise ValueError(f"the model takes inputs of any size {self.sample_shape} and the data does not "
                                 f"fix one ({given}); the store needs one size: resize the inputs in the pipeline "
                                 "(image folders: pass image_size=)")
            x = np.zeros((1,) + shape, self.prepared.input_specs[0].dtype.as_numpy_dtype)
            t = self._targets(x, np.zeros(1, np.int64), 0, np.zeros(1, bool), probe=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                maps = self.method.explain(x, t).maps
            if isinstance(maps, list):
                maps = maps[0]
            if maps is None:
                raise ValueError(f"{self.method.name} gives no map for this model's input")
            m = np.asarray(maps)[0]
            if self.reduce == "sum":
                lead = 1 if self.multi else 0
                if m.ndim - lead < 3:
                    raise ValueError(f"reduce='sum' sums the channel axis of (H, W, C) maps; {self.method.name} "
                                     f"gives maps of shape {m.shape} (already without channels: drop reduce)")
                m = m.sum(axis=-1)
            self._map_shape = tuple(m.shape)
        return self._map_shape

    def arrays(self, id_width, sample_shape=None):
        """dict name -> :class:`lrpgraph.store.ArraySpec` of the store's arrays."""
        t_shape = (self._n_targets(),) if self.multi else ()
        out = {
            "relevance": ArraySpec(self.map_shape(sample_shape), self.dtype, 0),
            "targets": ArraySpec(t_shape, "int32", -1),
            "labels": ArraySpec((), "int32", -1),
            "predicted": ArraySpec((), "int32", -1),
            "logits_topk_values": ArraySpec((self.topk,), "float32", 0),
            "logits_topk_indices": ArraySpec((self.topk,), "int32", -1),
            "ids": ArraySpec((int(id_width),), "uint8", 0),
            "valid": ArraySpec((), "bool", False),
        }
        for m in self.metrics:
            out[f"metric_{m}"] = ArraySpec(t_shape, "float32", float("nan"))
        return out

    def _n_targets(self):
        if isinstance(self.target, (list, tuple)):
            return len(self.target)
        return int(self.target.shape[1])

    # -- computing ---------------------------------------------------------------
    def _targets(self, x, labels, start, invalid, probe=False):
        b = len(x)
        t = self.target
        if isinstance(t, str):
            if t == "predicted":
                return None
            if t == "label":
                labels = np.asarray(labels)
                bad = np.nonzero(((labels < 0) | (labels >= self.prepared.num_classes)) & ~invalid)[0]
                if len(bad) and not probe:
                    raise ValueError(f"sample {start + bad[0]} has label {labels[bad[0]]}, not a class of the model "
                                     f"(0..{self.prepared.num_classes - 1}); target='label' needs a label per "
                                     "sample (or pass target='predicted')")
                return np.clip(labels, 0, self.prepared.num_classes - 1).astype(np.int64)
            return t  # a class name
        if isinstance(t, (int, np.integer)):
            return int(t)
        if isinstance(t, (list, tuple)):
            return np.tile(np.asarray(t)[None], (b, 1))
        if isinstance(t, np.ndarray):
            return t[:b] if probe else t[start:start + b]
        out = np.asarray(t(x, labels))  # callable
        if out.shape[:1] != (b,):
            raise ValueError(f"the target callable returned shape {out.shape} for a block of {b} samples; it must "
                             "return one class per sample ((b,) ints)")
        return out

    def compute_block(self, x, labels=None, start=0, valid=None):
        """The arrays of one block (dict name -> array, without ``ids``: add
        ``encode_ids(...)``).  ``x`` (b, ...) float inputs, ``labels`` (b,) ints or
        None (-1), ``start`` the index of the block's first sample (for messages
        and per-sample target arrays), ``valid`` (b,) bool: False for samples the
        source could not read (their maps are zero).  A non-finite input raises
        unless ``skip_invalid``; then it is stored as invalid."""
        x = np.asarray(x)
        b = len(x)
        labels = np.full(b, -1, np.int64) if labels is None else np.asarray(labels, np.int64)
        valid = np.ones(b, bool) if valid is None else np.asarray(valid, bool).copy()
        if not valid.all() and not self.skip_invalid:
            raise ValueError(f"sample {start + int(np.nonzero(~valid)[0][0])} could not be read; pass "
                             "skip_invalid=True to record unreadable samples as invalid and go on")
        finite = np.isfinite(x).reshape(b, -1).all(axis=1)
        if not finite.all():
            bad = np.nonzero(~finite)[0]
            if not self.skip_invalid:
                what = "NaN" if np.isnan(x[bad[0]]).any() else "Inf"
                raise ValueError(f"sample {start + bad[0]} contains {what} values"
                                 + (f" (and {len(bad) - 1} more in this block)" if len(bad) > 1 else "")
                                 + "; relevance of non-finite inputs is undefined. Fix the data, or pass "
                                 "skip_invalid=True to record such samples as invalid and go on")
            valid &= finite
        if not valid.all():
            x = np.where(valid.reshape((b,) + (1,) * (x.ndim - 1)), x, 0).astype(x.dtype)
        targets = self._targets(x, labels, start, ~valid)
        if self.strategy is not None:
            maps, logits, resolved = self.strategy.explain(x, targets)
        else:
            # a memory budget splits the block into the largest chunks that fit it
            ex = self.method.explain(x, targets, batch_size="auto" if self.max_memory else None,
                                     max_memory=self.max_memory)
            maps, logits, resolved = ex.maps, ex.logits, ex.targets
        if isinstance(maps, list):
            maps = maps[0]
        maps = np.asarray(maps, np.float32)
        logits = np.asarray(logits, np.float32)
        out = {}
        for m in self.metrics:
            out[f"metric_{m}"] = np.asarray(METRICS[m](maps, x, logits, resolved, self.prepared), np.float32)
        if self.reduce == "sum":
            maps = maps.sum(axis=-1)
        k = self.topk
        idx = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        out.update({
            "relevance": maps.astype(self.dtype),
            "targets": np.asarray(resolved, np.int32),
            "labels": labels.astype(np.int32),
            "predicted": logits.argmax(-1).astype(np.int32),
            "logits_topk_values": np.take_along_axis(logits, idx, axis=1),
            "logits_topk_indices": idx.astype(np.int32),
            "valid": valid,
        })
        if not valid.all():
            inv = ~valid
            for name in ("relevance", "logits_topk_values"):
                out[name][inv] = 0
            for name in ("targets", "predicted", "logits_topk_indices"):
                out[name][inv] = -1
            for m in self.metrics:
                out[f"metric_{m}"][inv] = np.nan
        return out


def _check_target_spec(target):
    if isinstance(target, str):
        return target  # "label", "predicted" or a class name (checked by the method)
    if isinstance(target, bool):
        raise TypeError("target must be 'label', 'predicted', an int, a list of ints, an array or a callable")
    if isinstance(target, (int, np.integer)) or callable(target):
        return target
    if isinstance(target, (list, tuple)):
        if not target:
            raise ValueError("target=[] names no class; pass 'label', 'predicted' or class indices")
        return tuple(target)
    if isinstance(target, np.ndarray):
        if target.ndim not in (1, 2):
            raise ValueError(f"a target array must be (N,) or (N, T), got shape {target.shape}")
        return target
    raise TypeError(f"target must be 'label', 'predicted', an int, a list of ints (several per sample), an "
                    f"(N,) / (N, T) array or a callable f(x, labels); got {type(target).__name__}")


class _Distributed:
    """A rule-engine method run under a ``tf.distribute`` strategy: each block is
    split over the replicas inside one tf.function (``strategy.run``) and the
    per-replica maps and logits are concatenated in replica order."""

    def __init__(self, method, strategy):
        if not hasattr(method, "traced"):
            raise ValueError(f"strategy= runs methods built on the rule engine (the LRP presets, gradient, "
                             f"SGLRP/CLRP); {method.name!r} ({type(method).__name__}) runs its own compiled loop: "
                             "run it without strategy")
        if method.neuron_selection_mode == "all":
            raise ValueError("strategy= explains one target per sample; neuron_selection_mode='all' is not "
                             "supported with it")
        self.method = method
        self.strategy = strategy
        self.replicas = int(strategy.num_replicas_in_sync)

        def replica_fn(x, t):
            maps, logits, _ = method.traced([x], t)
            return maps[0], logits

        def step(dx, dt):
            maps, logits = strategy.run(replica_fn, args=(dx, dt))
            local = strategy.experimental_local_results
            return tf.concat(local(maps), axis=0), tf.concat(local(logits), axis=0)

        self._step = tf.function(step, reduce_retracing=True, autograph=False)

    def explain(self, x, targets):
        prepared = self.method.prepared
        (x,), _ = prepared.check_inputs([x])
        t, multi = prepared.check_targets(targets, len(x))
        if multi:
            raise ValueError("strategy= explains one target per sample; pass one target per sample")
        n = len(x)
        if n < self.replicas:  # every replica gets at least one sample (repeats of the last, dropped after)
            pad = np.minimum(np.arange(self.replicas), n - 1)
            x, t = x[pad], t[pad]
        parts = np.array_split(np.arange(len(x)), self.replicas)

        def shard(a):
            return self.strategy.experimental_distribute_values_from_function(
                lambda ctx: tf.constant(a[parts[ctx.replica_id_in_sync_group]]))

        maps, logits = self._step(shard(x), shard(t))
        maps, logits, t = maps.numpy()[:n], logits.numpy()[:n], t[:n]
        resolved = np.where(t < 0, logits.argmax(-1), t).astype(np.int32)
        maps = self.method.finalize([maps], logits, resolved)[0]
        maps = _post.apply(maps, self.method.postprocess, 1)
        return maps, logits, resolved


# ---------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------


class _Source:
    """Blocks of a dataset: ``n`` samples of ``sample_shape``, ``has_labels``,
    ``id_width`` (bytes of the longest id) and ``blocks(block_size, wanted,
    check_done)`` yielding ``(block, x, labels, ids, valid)`` for the wanted
    blocks in increasing order."""

    kind = "?"
    has_labels = False
    n = 0
    id_width = 1
    sample_shape = None


def _prefetch(gen, depth=2):
    """Run the generator ``gen`` in a background thread, ``depth`` items ahead."""
    import queue
    import threading

    q = queue.Queue(maxsize=depth)
    end = object()
    stop = threading.Event()

    def work():
        try:
            for item in gen:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            q.put((end, e))
            return
        q.put((end, None))

    th = threading.Thread(target=work, daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if isinstance(item, tuple) and len(item) == 2 and item[0] is end:
                if item[1] is not None:
                    raise item[1]
                return
            yield item
    finally:
        stop.set()


class _ArraySource(_Source):
    kind = "arrays"

    def __init__(self, x, labels, n_model_rank, dtype_hint):
        if isinstance(x, (list, tuple)):
            x = _stack_elements(x)
        x = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
        if x.dtype.kind != "f":
            raise TypeError(f"x has dtype {x.dtype} (element 0 on); the model takes floating-point inputs: apply "
                            "the model's preprocessing and x.astype('float32')")
        if x.ndim != n_model_rank:
            raise ValueError(f"x has shape {x.shape}: element 0 has shape {x.shape[1:]}, rank {x.ndim - 1}; the "
                             f"model takes samples of rank {n_model_rank - 1}")
        self.x = x
        self.n = len(x)
        self.sample_shape = x.shape[1:]
        if labels is not None:
            labels = np.asarray(labels)
            if labels.ndim == 2:  # one-hot
                labels = labels.argmax(-1)
            if labels.shape != (self.n,):
                raise ValueError(f"labels has shape {labels.shape}; it needs one label per sample ({self.n},)")
            if labels.dtype.kind not in "iub":
                raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
            self.has_labels = True
        self.labels = labels
        self.id_width = max(1, len(str(max(self.n - 1, 0))))

    def blocks(self, block_size, wanted, check_done=None):
        def gen():
            for b in wanted:
                s, e = b * block_size, min((b + 1) * block_size, self.n)
                labels = None if self.labels is None else self.labels[s:e]
                yield b, np.ascontiguousarray(self.x[s:e]), labels, [str(i) for i in range(s, e)], None
        return _prefetch(gen())


def _stack_elements(xs):
    """Stack a list of per-sample arrays, naming the first element of another
    shape or dtype."""
    first = np.asarray(xs[0])
    for i, a in enumerate(xs):
        a = np.asarray(a)
        if a.shape != first.shape:
            raise ValueError(f"element {i} has shape {a.shape}; element 0 has {first.shape}: every sample needs "
                             "the same shape (resize them first)")
        if a.dtype.kind != "f":
            raise TypeError(f"element {i} has dtype {a.dtype}; pass floating-point inputs (after the model's "
                            "preprocessing)")
    return np.stack([np.asarray(a) for a in xs])


def _application_preprocess(model):
    """keras.applications' ``preprocess_input`` for a model whose name is an
    application's (``vgg16``, ``resnet50``...), else None."""
    from .io import APPLICATIONS

    key = model.name.lower()
    for name, (_, module) in APPLICATIONS.items():
        if key == name or key.startswith(name.replace("_", "")) or key == module:
            return importlib.import_module(f"keras.applications.{module}").preprocess_input
    return None


def _pixel_preprocess(model, preprocess):
    """A function from float RGB pixels in [0, 255] to the model's input: ``"auto"``
    (an application's ``preprocess_input`` for keras.applications models, else
    [0, 1] pixels), a mode of :func:`lrpgraph.io.preprocess_fn`, or a callable."""
    from .io import preprocess_fn

    if callable(preprocess):
        return preprocess
    if preprocess in (None, "auto"):
        app = _application_preprocess(model)
        return preprocess_fn("unit") if app is None else preprocess_fn("app", app)
    return preprocess_fn(preprocess)


class _FolderSource(_Source):
    kind = "image folder"

    def __init__(self, folder, prepared, preprocess, image_size):
        self.folder = Path(folder)
        from .io import list_images

        self.paths, labels, self.class_names = list_images(folder)
        self.n = len(self.paths)
        self.has_labels = labels is not None
        self.labels = labels
        shape = tuple(prepared.input_specs[0].shape[1:])
        if len(shape) != 3 or shape[-1] not in (1, 3):
            raise ValueError(f"an image folder feeds models with one (H, W, 1 or 3) image input; "
                             f"{prepared.name!r} takes {shape}")
        size = tuple(shape[:2])
        if image_size is not None:
            size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if None in size:
            raise ValueError(f"{prepared.name!r} accepts any image size: pass image_size=(H, W)")
        self.size, self.channels = size, shape[-1]
        self.sample_shape = size + (self.channels,)
        self.preprocess = _pixel_preprocess(prepared.model, preprocess)
        self.ids = [p.relative_to(self.folder).as_posix() for p in self.paths]
        self.id_width = max(1, max(len(s.encode("utf-8")) for s in self.ids))
        self.errors = {}

    def _load(self, i):
        from .io import load_image

        i = int(i)
        try:
            img = self.preprocess(load_image(self.paths[i], self.size, self.channels)[None])[0]
            return np.asarray(img, np.float32), np.bool_(True)
        except Exception as e:  # noqa: BLE001 - reported per sample by the runner
            self.errors[i] = str(e).splitlines()[0] if str(e) else type(e).__name__
            return np.zeros(self.sample_shape, np.float32), np.bool_(False)

    def blocks(self, block_size, wanted, check_done=None):
        idx = np.concatenate([np.arange(b * block_size, min((b + 1) * block_size, self.n)) for b in wanted])
        shape = self.sample_shape

        @tf.autograph.experimental.do_not_convert
        def load(i):
            img, ok = tf.numpy_function(self._load, [i], (tf.float32, tf.bool), stateful=False)
            img.set_shape(shape)
            ok.set_shape(())
            return i, img, ok

        ds = (tf.data.Dataset.from_tensor_slices(idx.astype(np.int64))
              .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
              .batch(block_size).prefetch(tf.data.AUTOTUNE))
        for b, (i, x, ok) in zip(wanted, ds.as_numpy_iterator()):
            labels = None if self.labels is None else self.labels[i]
            yield b, x, labels, [self.ids[k] for k in i], ok

    def error(self, i):
        return self.errors.get(int(i), "unreadable")


class _TFSource(_Source):
    kind = "tf.data.Dataset"

    def __init__(self, ds, prepared, n, id_width):
        spec = ds.element_spec
        if isinstance(spec, dict):
            raise TypeError("the dataset yields dicts; map it to x, (x, label) or (x, label, id) tuples")
        parts = spec if isinstance(spec, tuple) else (spec,)
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"the dataset yields {len(parts)}-tuples; explain_dataset reads x, (x, label) or "
                             "(x, label, id)")
        model_rank = len(prepared.input_specs[0].shape)
        xs = parts[0]
        if not isinstance(xs, tf.TensorSpec):
            raise TypeError(f"the dataset's x must be a tensor, got {xs}")
        if not xs.dtype.is_floating:
            raise TypeError(f"the dataset's x elements have dtype {xs.dtype.name} (element 0 on); the model takes "
                            "floating-point inputs after its preprocessing: ds.map(lambda x, *rest: "
                            "(preprocess(tf.cast(x, tf.float32)), *rest))")
        rank = xs.shape.rank
        if rank == model_rank:
            ds = ds.unbatch()
        elif rank != model_rank - 1:
            raise ValueError(f"the dataset's x elements have shape {xs.shape}; the model takes samples of shape "
                             f"{tuple(prepared.input_specs[0].shape[1:])} (or batches of them)")
        card = int(ds.cardinality())
        if n is None:
            if card == tf.data.INFINITE_CARDINALITY:
                raise ValueError("the dataset is infinite (a .repeat()?): take the samples to explain first")
            if card < 0:
                raise ValueError("the dataset's number of samples is unknown (cardinality unknown, e.g. after "
                                 "batch, filter or from_generator), and the store is sized up front: pass "
                                 "n=NUMBER_OF_SAMPLES, or n='count' to read the dataset once to count them")
            n = card
        elif n == "count":
            n = int(ds.reduce(np.int64(0), lambda c, _: c + 1))
        elif card >= 0 and card != n:
            raise ValueError(f"n={n} but the dataset holds {card} samples")
        self.want_shape = tuple(prepared.input_specs[0].shape[1:])
        got = tuple(xs.shape[1:] if rank == model_rank else xs.shape)
        if any(g is not None and w is not None and g != w for g, w in zip(got, self.want_shape)):
            raise ValueError(f"the dataset's x elements have shape {got} (element 0 on); the model takes "
                             f"{self.want_shape}")
        self.n = int(n)
        self.has_labels = len(parts) >= 2
        self.sample_shape = tuple(xs.shape[1:] if rank == model_rank else xs.shape)
        self.id_width = int(id_width)
        self.ds = ds
        self.n_parts = len(parts)
        self.num_classes = prepared.num_classes

    def blocks(self, block_size, wanted, check_done=None):
        want = list(self.want_shape)
        n_parts = self.n_parts

        def checked(i, el):
            el = el if isinstance(el, tuple) else (el,)
            x = el[0]
            shp = tf.shape(x)
            known = [k for k, s in enumerate(want) if s is not None]
            ok = tf.reduce_all(tf.equal(tf.gather(shp, known), [want[k] for k in known]))
            msg = tf.strings.format("lrpgraph-bad-element {} has shape {}", (i, shp))
            with tf.control_dependencies([tf.debugging.Assert(ok, [msg])]):
                x = tf.identity(x)
            x = tf.ensure_shape(x, [None] * len(want))
            label = el[1] if n_parts >= 2 else tf.constant(-1, tf.int64)
            if label.shape.rank == 1:  # one-hot
                label = tf.argmax(label, output_type=tf.int64)
            label = tf.cast(label, tf.int64)
            ident = el[2] if n_parts == 3 else tf.strings.as_string(i)
            if ident.dtype != tf.string:
                ident = tf.strings.as_string(ident)
            return x, label, ident

        ds = self.ds.enumerate().map(checked, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(block_size).prefetch(tf.data.AUTOTUNE)
        wanted_set = set(wanted)
        last = max(wanted)
        it = iter(ds)
        b = 0
        while True:
            try:
                x, labels, ids = next(it)
            except StopIteration:
                break
            except tf.errors.InvalidArgumentError as e:
                m = re.search(r"lrpgraph-bad-element (\d+) has shape \[([^\]]*)\]", str(e))
                if m:
                    got = tuple(int(s) for s in m.group(2).split())
                    raise ValueError(f"element {m.group(1)} of the dataset has shape {got}; the model takes "
                                     f"{tuple(self.want_shape)}") from None
                raise
            ids = [s.decode("utf-8") for s in ids.numpy()]
            expected = min(block_size, self.n - b * block_size)
            if len(ids) != expected:
                got = b * block_size + len(ids)
                if len(ids) > expected:
                    raise ValueError(f"the dataset holds more than the n={self.n} samples the store was sized for "
                                     f"(at least {got})")
                raise ValueError(f"the dataset ended after {got} samples; the store was sized for n={self.n}")
            if b in wanted_set:
                yield b, x.numpy(), labels.numpy(), ids, None
                if b == last:
                    return
            elif check_done is not None:
                check_done(b, ids)
            b += 1
        if b <= last:
            raise ValueError(f"the dataset ended after {b * block_size} samples; the store was sized for n={self.n}")


def _rank(a):
    """The rank of an array, or of a list of per-sample arrays (without stacking it)."""
    if isinstance(a, (list, tuple)):
        return 1 + _rank(a[0]) if len(a) else 1
    return np.ndim(a)


def make_source(data, prepared, *, n=None, preprocess="auto", image_size=None, id_width=256):
    """The source for ``data``: a ``tf.data.Dataset`` (yielding x, (x, label) or
    (x, label, id), batched or not), numpy ``x`` or ``(x, labels)``, or the path of
    an image folder (files, or one subfolder per class)."""
    if isinstance(data, tf.data.Dataset):
        return _TFSource(data, prepared, n, id_width)
    model_rank = len(prepared.input_specs[0].shape)
    if isinstance(data, (str, os.PathLike)):
        p = Path(data)
        if p.is_file():
            raise ValueError(f"{p} is a file; data must be a folder of images, numpy arrays or a tf.data.Dataset")
        return _FolderSource(p, prepared, preprocess, image_size)
    if isinstance(data, tuple) and len(data) == 2 and _rank(data[0]) != model_rank - 1:
        return _ArraySource(data[0], data[1], model_rank, None)  # (x, labels), not two samples
    return _ArraySource(data, None, model_rank, None)


# ---------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------


class _Interrupt:
    """SIGINT while blocks are computed: finish the block in flight, then stop.
    A second Ctrl-C stops at once (that block is recomputed on resume)."""

    def __init__(self):
        self.requested = False
        self.old = None

    def __enter__(self):
        try:
            self.old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C is not ours to catch
            self.old = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nlrpgraph: interrupted: finishing the block in flight (Ctrl-C again to stop now)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        return False


def explain_dataset(analyzer, data, store, *, target="label", batch_size=32, resume=True, progress=True,
                    strategy=None, reduce=None, dtype="float32", metrics=(), overwrite=False,
                    skip_invalid=False, n=None, topk=5, preprocess="auto", image_size=None, id_width=256,
                    on_block=None, max_memory=None):
    """Explain every sample of ``data`` with ``analyzer`` into the store at ``store``.

    Parameters
    ----------
    analyzer : lrpgraph.Method
        Any method (``lrpgraph.create_analyzer(name, model, **params)``) of a
        one-input model.
    data : tf.data.Dataset, numpy arrays or an image folder
        A dataset yielding ``x``, ``(x, label)`` or ``(x, label, id)`` (batched or
        not; in a fixed order: resuming relies on it); ``x`` or ``(x, labels)``
        numpy arrays; or the path of a folder of images (one subfolder per class
        gives labels, as in ``keras.utils.image_dataset_from_directory``), decoded
        in parallel by the CLI's loader, resized to the model's input and
        preprocessed with ``preprocess``.
    store : str
        A local folder or fsspec URL for the zarr store (see
        :mod:`lrpgraph.store`): one chunk per block of ``batch_size`` samples.
    target : "label", "predicted", int, list of ints, array or callable
        The class explained per sample: the label, the predicted class, one class
        for all, several classes for all (``[3, 7]``: maps (N, 2, ...)), an (N,) or
        (N, T) array in data order, or ``f(x, labels) -> (b,)`` per block.
    batch_size : int
        Samples per block: per analysis call and per stored chunk.
    max_memory : int or str, optional
        A memory budget ("8GB"): each block is analysed in the largest chunks whose
        measured peak fits it (:mod:`lrpgraph.memory`; the per-sample cost is
        measured once per method and input shape).  The stored chunks stay blocks
        of ``batch_size``.
    resume : bool
        Finish an existing store made by the same job (only its missing blocks are
        computed).  With ``False`` an existing store is an error.
    progress : bool
        A ``keras.utils.Progbar`` (rate and ETA) on stdout.
    strategy : tf.distribute.Strategy, optional
        E.g. ``tf.distribute.MirroredStrategy()``: each block is split over the
        replicas inside one compiled call (rule-engine methods).
    reduce : None or "sum"
        "sum" stores (N, H, W) maps summed over the channels.
    dtype : "float32" or "float16"
        The stored maps' dtype (metrics are computed in float32 first).
    metrics : sequence of str
        Per-sample numbers to store (names in :data:`METRICS`: ``relevance_sum``,
        ``positive_share``, ...), as arrays ``metric_<name>``.
    overwrite : bool
        Replace an existing store (of any job) instead of resuming it.
    skip_invalid : bool
        Record samples with NaN/Inf inputs (or unreadable image files) as invalid
        (``valid`` False, zero map, target -1) instead of stopping with an error.
    n : int or "count", optional
        The number of samples when the dataset cannot say (cardinality unknown):
        the store is sized up front.  "count" reads the dataset once to count.
    topk : int
        How many of the largest logits (values and indices) to keep per sample.
    preprocess, image_size
        Image folders: ``preprocess`` "auto" (keras.applications' own
        ``preprocess_input`` when the model's name is an application's, [0, 1]
        pixels otherwise), "unit", "raw", "caffe", "tf", "torch" or a function of
        [0, 255] pixels; ``image_size`` (H, W) for models taking any size.
    id_width : int
        Bytes kept per sample id for datasets that yield string ids.
    on_block : callable, optional
        ``on_block(block_index, attributions)`` after each block is written.

    Returns
    -------
    Attributions
        The handle on the store (also :func:`open_store`); ``.computed`` lists the
        blocks this call computed.

    Ctrl-C finishes the block in flight, prints how to resume and raises
    KeyboardInterrupt; rerunning the same call computes only the missing blocks.
    """
    batch_size = check_batch_size(batch_size)
    job = BlockJob(analyzer, target=target, reduce=reduce, dtype=dtype, metrics=metrics, topk=topk,
                   strategy=strategy, skip_invalid=skip_invalid, max_memory=max_memory)
    source = make_source(data, job.prepared, n=n, preprocess=preprocess, image_size=image_size, id_width=id_width)
    job.check_source(source)
    job.start_fingerprint()  # overlaps the first block
    n_blocks = -(-source.n // batch_size)
    st = Store.find(store)
    if st is not None and not overwrite:
        if not resume:
            raise StoreError(f"{st.path} already holds a store; pass resume=True to finish it or overwrite=True to "
                             "replace it")
        job.set_map_shape(st.arrays["relevance"].shape)  # no probe; write_block checks the computed maps
        st.check_compatible(n=source.n, block_size=batch_size, arrays=job.arrays(source.id_width), job=job.job)
        missing = st.missing_blocks()
    else:
        st = None  # created (or replaced) once the first block is computed: its maps give the layout
        missing = list(range(n_blocks))
    att = Attributions(st) if st is not None else None
    computed = []
    if not missing:
        if progress:
            print(f"{st.path}: all {st.n_blocks} blocks already written", flush=True)
        att.computed = computed
        return att
    total = sum(min((b + 1) * batch_size, source.n) - b * batch_size for b in missing)
    bar = None
    if progress:
        import keras

        if n_blocks - len(missing):
            print(f"resuming {st.path}: {n_blocks - len(missing)} of {n_blocks} blocks already written", flush=True)
        bar = keras.utils.Progbar(total, unit_name="sample")

    def check_done(b, ids):
        s = b * batch_size
        have = decode_ids(st["ids"][s:s + len(ids)])
        if have != list(ids):
            raise ValueError(f"block {b} of the data differs from the store's (sample ids {have[:3]}... in the store, "
                             f"{list(ids)[:3]}... now): the dataset's order changed (shuffled?). Resuming needs the "
                             "same order; pass overwrite=True to start again")

    count = 0
    with _Interrupt() as intr:
        try:
            for b, x, labels, ids, ok in source.blocks(batch_size, missing, check_done):
                s = b * batch_size
                if ok is not None and not np.all(ok):
                    bad = int(np.nonzero(~np.asarray(ok))[0][0])
                    if not skip_invalid:
                        raise ValueError(f"sample {s + bad} ({ids[bad]}): {source.error(s + bad)}; pass "
                                         "skip_invalid=True to record unreadable files as invalid and go on")
                arrs = job.compute_block(x, labels, s, ok)
                arrs["ids"] = encode_ids(ids, source.id_width)
                if st is None:
                    job.set_map_shape(arrs["relevance"].shape[1:])
                    st = Store.create(store, n=source.n, block_size=batch_size, arrays=job.arrays(source.id_width),
                                      job=job.job, versions=software_versions(), overwrite=overwrite)
                    att = Attributions(st)
                st.write_block(b, arrs)
                computed.append(b)
                att.computed = computed
                count += len(x)
                if bar is not None:
                    bar.update(count)
                if on_block is not None:
                    on_block(b, att)
                if intr.requested:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            if st is None:
                print("\nlrpgraph: stopped before the first block was written; nothing was stored.", file=sys.stderr,
                      flush=True)
            else:
                left = len(st.missing_blocks())
                print(f"\nlrpgraph: stopped; {st.n_blocks - left} of {st.n_blocks} blocks are in {st.path}. Run the "
                      f"same call (or command) again to compute the other {left}; blocks already written are kept.",
                      file=sys.stderr, flush=True)
            raise
    return att


def open_store(path):
    """The :class:`Attributions` handle on the store at ``path`` (read-only)."""
    return Attributions(Store.open(path, mode="r"))


# ---------------------------------------------------------------------------
# reading back
# ---------------------------------------------------------------------------


class _Ids:
    """The sample ids, sliceable like a numpy array: an int gives a str, a slice
    or index array a list of str."""

    def __init__(self, arr):
        self.arr = arr

    def __getitem__(self, key):
        return decode_ids(self.arr[key])

    def __len__(self):
        return self.arr.shape[0]


class _ArrayView:
    """A zarr array indexed like numpy: slices and ints directly, integer lists
    or arrays and boolean masks on the first axis through ``oindex``."""

    def __init__(self, arr):
        self.arr = arr

    shape = property(lambda self: self.arr.shape)
    dtype = property(lambda self: self.arr.dtype)
    ndim = property(lambda self: len(self.arr.shape))

    def __getitem__(self, key):
        first = key[0] if isinstance(key, tuple) and key else key
        if isinstance(first, (list, np.ndarray)):
            first = np.asarray(first)
            if first.dtype == bool:
                first = np.nonzero(first)[0]
            rest = key[1:] if isinstance(key, tuple) else ()
            return self.arr.oindex[(first.astype(np.int64),)][(slice(None),) + tuple(rest)]
        return self.arr[key]

    def __len__(self):
        return self.arr.shape[0]

    def __array__(self, dtype=None, copy=None):
        a = self.arr[...]
        return a if dtype is None else a.astype(dtype)

    def __repr__(self):
        return f"<array {self.shape} {self.dtype} in a dataset store>"


class Attributions:
    """A dataset store, read back.

    Attributes (zarr arrays, sliceable like numpy; samples not yet written read
    as the fill values: 0 maps, -1 classes, ``valid`` False):

    ``relevance`` (N, [T,] H, W[, C]); ``targets`` (N[, T]) the explained classes;
    ``labels`` (N,) (-1: none); ``predicted`` (N,); ``ids`` (str per sample:
    the file path for image folders, the id a dataset yielded, else the index);
    ``logits_topk`` (``.values`` (N, k) float32, ``.indices`` (N, k)); ``valid``
    (N,) bool; ``metrics`` dict name -> (N[, T]); ``meta`` a dict (the job:
    method, parameters, model, weights fingerprint...; the versions; the layout);
    ``done`` (N,) bool, True for written samples; ``complete``."""

    def __init__(self, store):
        self.store = store
        self.computed = []

    relevance = property(lambda self: _ArrayView(self.store["relevance"]))
    targets = property(lambda self: _ArrayView(self.store["targets"]))
    labels = property(lambda self: _ArrayView(self.store["labels"]))
    predicted = property(lambda self: _ArrayView(self.store["predicted"]))
    valid = property(lambda self: _ArrayView(self.store["valid"]))

    @property
    def ids(self):
        return _Ids(self.store["ids"])

    @property
    def logits_topk(self):
        return TopK(_ArrayView(self.store["logits_topk_values"]), _ArrayView(self.store["logits_topk_indices"]))

    @property
    def metrics(self):
        return {k[len("metric_"):]: _ArrayView(self.store[k]) for k in self.store.arrays if k.startswith("metric_")}

    @property
    def meta(self):
        st = self.store
        return dict(st.job, versions=dict(st.versions), n=st.n, block_size=st.block_size, n_blocks=st.n_blocks,
                    path=st.path)

    @property
    def done(self):
        return self.store.done_mask()

    @property
    def complete(self):
        return self.store.complete

    def __len__(self):
        return self.store.n

    def plot(self, i, ax=None, title=None, **kw):
        """Draw sample ``i``'s map with :func:`lrpgraph.viz.plot_heatmap` (a new
        figure when ``ax`` is None); returns the axes.  For several targets per
        sample, each target's map in a row of axes."""
        import matplotlib.pyplot as plt

        from . import viz

        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range: the store holds {len(self)} samples")
        if not self.done[i]:
            raise ValueError(f"sample {i} is not written yet (its block is missing): resume the job first")
        r = np.asarray(self.relevance[i], np.float32)
        t = np.atleast_1d(self.targets[i])
        maps = r if r.ndim and len(t) > 1 and r.shape[0] == len(t) else r[None]
        if ax is None:
            _, axes = plt.subplots(1, len(maps), figsize=(3.2 * len(maps), 3.4), squeeze=False)
            axes = list(axes[0])
        else:
            axes = list(np.atleast_1d(ax))
        base = title if title is not None else f"{self.ids[i]}  pred {int(self.predicted[i])}"
        for a, m, tt in zip(axes, maps, t):
            viz.plot_heatmap(a, m, title=f"{base}  target {int(tt)}", **kw)
        return axes[0] if len(axes) == 1 else axes

    def __repr__(self):
        j = self.store.job
        return (f"<Attributions {self.store.path}: {self.store.n} samples, "
                f"{len(self.store.done_blocks())}/{self.store.n_blocks} blocks, method "
                f"{j.get('method', {}).get('name')!r}, model {j.get('model')!r}>")
