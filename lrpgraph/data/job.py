"""The per-block computation of a dataset job: :class:`BlockJob`.

A :class:`BlockJob` is a :class:`lrpgraph.data.spec.JobSpec` bound to a method in
one process (the driver's, or a Ray actor's).  For each block it makes one
:meth:`lrpgraph.Method.explain` call (which also returns the logits and the
resolved targets), then derives everything stored from it: the maps (``reduce``,
dtype), the targets, labels, predicted class, top-k logits, validity, the map
statistics, and each reduction's partial state.  Every executor runs exactly
this; the MirroredStrategy executor only hands in another :class:`lrpgraph.Method`
(``runner``) that splits each batch over the replicas.

It also describes the store the job writes: :meth:`BlockJob.arrays` (the array
specs) and :attr:`BlockJob.identity` (the job identity a resumed run must match).
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

import numpy as np

from ..methods.base import Method
from ..targets import block_targets
from .reductions import Block
from .spec import JobSpec, identity, weights_fingerprint
from .statistics import MAP_STATISTICS
from .store import ArraySpec, encode_ids

__all__ = ["BlockJob", "BlockResult"]


@dataclass
class BlockResult:
    """One computed block: ``arrays`` (every array of the store, ``ids`` included,
    ready for :meth:`lrpgraph.data.store.Store.write_block`) and ``partials``
    (reduction name -> that block's partial state)."""

    arrays: dict
    partials: dict


class BlockJob:
    """What is computed and stored for each block of a dataset.

    ``method``: the :class:`lrpgraph.Method` whose maps are stored (it defines the
    job identity); ``spec``: the :class:`JobSpec`; ``runner``: the Method that
    computes them (default ``method``; the MirroredStrategy executor passes a
    :class:`lrpgraph.data.executors.MirroredMethod` of it)."""

    def __init__(self, method, spec, runner=None):
        if not isinstance(method, Method):
            raise TypeError(f"explain_dataset needs a method (lrpgraph.create_analyzer(name, model)), got "
                            f"{type(method).__name__}")
        if not isinstance(spec, JobSpec):
            raise TypeError(f"BlockJob needs a JobSpec, got {type(spec).__name__}")
        self.method = method
        self.runner = method if runner is None else runner
        self.spec = spec
        self.prepared = method.prepared
        if len(self.prepared.input_specs) != 1:
            raise ValueError(f"explain_dataset explains one-input models; {self.prepared.name!r} has "
                             f"{len(self.prepared.input_specs)} inputs")
        self.topk = min(spec.topk, self.prepared.num_classes)
        self.sample_shape = tuple(self.prepared.input_specs[0].shape[1:])
        self._map_shape = None
        self._fingerprint = None
        self._fp_thread = None

    # -- checks and identity -------------------------------------------------------------
    def check_source(self, source):
        """The checks made before anything is written: the data is not empty, has
        labels where the target is "label", and a target array has one row per sample."""
        if source.n == 0:
            raise ValueError(f"the data is empty (0 samples in the {source.kind}); nothing to explain")
        if self.spec.needs_labels and not source.has_labels:
            raise ValueError(f"target='label' but the {source.kind} has no labels; pass target='predicted', a "
                             "class index, or data with labels ((x, labels), a dataset of (x, label), class "
                             "subfolders)")
        target = self.spec.target
        if isinstance(target, np.ndarray) and len(target) != source.n:
            raise ValueError(f"the target array has {len(target)} rows; the data has {source.n} samples")

    def start_fingerprint(self):
        """Hash the weights in a background thread (hashlib releases the GIL), so
        that it overlaps the first block; :attr:`identity` waits for it."""
        if self._fingerprint is None and self._fp_thread is None:
            def work():
                try:
                    self._fingerprint = weights_fingerprint(self.prepared.model)
                except Exception:  # noqa: BLE001 - recomputed (and raised) by .fingerprint
                    pass
            self._fp_thread = threading.Thread(target=work, daemon=True)
            self._fp_thread.start()

    @property
    def fingerprint(self):
        """SHA-256 of the model's weights (:func:`lrpgraph.data.spec.weights_fingerprint`)."""
        if self._fp_thread is not None:
            self._fp_thread.join()
            self._fp_thread = None
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.prepared.model)
        return self._fingerprint

    @property
    def identity(self):
        """The job identity stored in the store (:func:`lrpgraph.data.spec.identity`)."""
        return identity(self.spec, self.method, self.fingerprint, self.topk)

    # -- the store's layout -----------------------------------------------------------
    def set_map_shape(self, shape):
        """Record the stored map's shape (known from a store or a computed block), so
        that :meth:`map_shape` needs no probe."""
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
                maps = self.runner.explain(x, t).maps
            if isinstance(maps, list):
                maps = maps[0]
            if maps is None:
                raise ValueError(f"{self.method.name} gives no map for this model's input")
            m = np.asarray(maps)[0]
            if self.spec.reduce == "sum":
                lead = 1 if self.spec.multi else 0
                if m.ndim - lead < 3:
                    raise ValueError(f"reduce='sum' sums the channel axis of (H, W, C) maps; {self.method.name} "
                                     f"gives maps of shape {m.shape} (already without channels: drop reduce)")
                m = m.sum(axis=-1)
            self._map_shape = tuple(m.shape)
        return self._map_shape

    def arrays(self, id_width, sample_shape=None):
        """dict name -> :class:`lrpgraph.data.store.ArraySpec` of the store's arrays."""
        t_shape = (self._n_targets(),) if self.spec.multi else ()
        out = {
            "relevance": ArraySpec(self.map_shape(sample_shape), self.spec.dtype, 0),
            "targets": ArraySpec(t_shape, "int32", -1),
            "labels": ArraySpec((), "int32", -1),
            "predicted": ArraySpec((), "int32", -1),
            "logits_topk_values": ArraySpec((self.topk,), "float32", 0),
            "logits_topk_indices": ArraySpec((self.topk,), "int32", -1),
            "ids": ArraySpec((int(id_width),), "uint8", 0),
            "valid": ArraySpec((), "bool", False),
        }
        for m in self.spec.statistics:
            out[f"metric_{m}"] = ArraySpec(t_shape, "float32", float("nan"))
        return out

    def _n_targets(self):
        t = self.spec.target
        return len(t) if isinstance(t, (list, tuple)) else int(t.shape[1])

    # -- computing ------------------------------------------------------------------------
    def _targets(self, x, labels, start, invalid, probe=False):
        return block_targets(self.spec.target, x, labels, start, self.prepared.num_classes, invalid, probe)

    def run_block(self, x, labels, ids, start, valid, id_width, source_error=None):
        """:class:`BlockResult` of one block as a source yields it: ``ids`` its
        sample ids (encoded to ``id_width`` bytes), ``valid`` None or (b,) bool
        (False: the source could not read the sample; ``source_error(i)`` says
        why).  An unreadable sample stops the job unless ``skip_invalid``."""
        if valid is not None and not np.all(valid) and not self.spec.skip_invalid:
            bad = int(np.nonzero(~np.asarray(valid))[0][0])
            why = source_error(start + bad) if source_error is not None else "unreadable"
            raise ValueError(f"sample {start + bad} ({ids[bad]}): {why}; pass skip_invalid=True to record "
                             "unreadable files as invalid and go on")
        arrays, partials = self.compute_block(x, labels, start, valid)
        arrays["ids"] = encode_ids(ids, id_width)
        return BlockResult(arrays, partials)

    def compute_block(self, x, labels=None, start=0, valid=None):
        """``(arrays, partials)`` of one block: the arrays (dict name -> array,
        without ``ids``) and each reduction's partial state.  ``x`` (b, ...) float
        inputs, ``labels`` (b,) ints or None (-1), ``start`` the index of the
        block's first sample (for messages and per-sample target arrays),
        ``valid`` (b,) bool: False for samples the source could not read (their
        maps are zero).  A non-finite input raises unless ``skip_invalid``; then
        it is stored as invalid."""
        spec = self.spec
        x = np.asarray(x)
        b = len(x)
        labels = np.full(b, -1, np.int64) if labels is None else np.asarray(labels, np.int64)
        valid = np.ones(b, bool) if valid is None else np.asarray(valid, bool).copy()
        if not valid.all() and not spec.skip_invalid:
            raise ValueError(f"sample {start + int(np.nonzero(~valid)[0][0])} could not be read; pass "
                             "skip_invalid=True to record unreadable samples as invalid and go on")
        finite = np.isfinite(x).reshape(b, -1).all(axis=1)
        if not finite.all():
            bad = np.nonzero(~finite)[0]
            if not spec.skip_invalid:
                what = "NaN" if np.isnan(x[bad[0]]).any() else "Inf"
                raise ValueError(f"sample {start + bad[0]} contains {what} values"
                                 + (f" (and {len(bad) - 1} more in this block)" if len(bad) > 1 else "")
                                 + "; relevance of non-finite inputs is undefined. Fix the data, or pass "
                                 "skip_invalid=True to record such samples as invalid and go on")
            valid &= finite
        if not valid.all():
            x = np.where(valid.reshape((b,) + (1,) * (x.ndim - 1)), x, 0).astype(x.dtype)
        targets = self._targets(x, labels, start, ~valid)
        # a memory budget splits the block into the largest chunks that fit it
        ex = self.runner.explain(x, targets, batch_size="auto" if spec.max_memory else None,
                                 max_memory=spec.max_memory)
        maps, logits, resolved = ex.maps, ex.logits, ex.targets
        if isinstance(maps, list):
            maps = maps[0]
        maps = np.asarray(maps, np.float32)
        logits = np.asarray(logits, np.float32)
        out = {}
        for m in spec.statistics:
            out[f"metric_{m}"] = np.asarray(MAP_STATISTICS[m](maps, x, logits, resolved, self.prepared), np.float32)
        partials = {}
        if spec.reductions:
            block = Block(start, maps, x, logits, np.asarray(resolved), labels, valid, self.prepared)
            partials = {r.name: r.partial(block) for r in spec.reductions}
        if spec.reduce == "sum":
            maps = maps.sum(axis=-1)
        k = self.topk
        idx = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        out.update({
            "relevance": maps.astype(spec.dtype),
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
            for m in spec.statistics:
                out[f"metric_{m}"][inv] = np.nan
        return out, partials
