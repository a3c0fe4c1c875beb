"""What a dataset job is: :class:`JobSpec`, and the identity a store records.

A job is a method (an :class:`lrpgraph.Method`, or for Ray a method name and its
parameters) plus the knobs of :class:`JobSpec`: what is explained (``target``),
what is stored per sample (``reduce``, ``dtype``, ``statistics``, ``topk``), what
is reduced over the dataset (``reductions``), how the data is read (``n``,
``preprocess``, ``image_size``, ``id_width``, ``skip_invalid``) and how it is cut
(``batch_size``, ``max_memory``).  The spec is frozen and validated once, when it
is built (``dataclasses.replace`` validates a changed copy again); every executor
and every Ray actor receives the same spec.

The store's job identity (:func:`identity`) is the dict a resumed run must match,
key by key (the mismatch error names each difference)::

    {"method": describe_method(method), "model", "weights_sha256", "output",
     "target", "reduce", "dtype", "topk", "metrics"[, "reductions"]}

It is the identity stores have always carried (the per-sample statistics keep the
key ``"metrics"`` and the arrays ``metric_<name>``), so stores written before the
dataset runner moved into :mod:`lrpgraph.data` resume unchanged; ``"reductions"``
is present only for jobs that reduce.  ``batch_size`` enters the store's layout
(one chunk per block), not the identity dict.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from ..postprocess import parse_steps
from .._version import __version__
from ..memory import parse_memory
from ..methods.base import check_batch_size
from ..methods.registry import parameters as _method_parameters
from ..targets import check_spec, describe
from .reductions import Reduction
from .statistics import MAP_STATISTICS

__all__ = ["JobSpec", "identity", "describe_method", "describe_target", "weights_fingerprint",
           "software_versions", "check_target_spec"]


@dataclass(frozen=True, eq=False)
class JobSpec:
    """The knobs of a dataset job, validated once (see :func:`lrpgraph.explain_dataset`
    for what each means).

    ``target``: "label", "predicted", a class index or name, a list of classes (T
    maps per sample), an (N,) / (N, T) array or ``f(x, labels) -> (b,)``;
    ``batch_size``: samples per block (per stored chunk); ``reduce``: None or "sum"
    (over the channel axis); ``dtype``: "float32" or "float16" (the stored maps);
    ``statistics``: names in :data:`lrpgraph.data.statistics.MAP_STATISTICS`, one
    float per stored map (``explain_dataset``'s ``metrics=``); ``reductions``:
    :class:`lrpgraph.data.reductions.Reduction` objects merged over the dataset;
    ``topk``: largest logits kept per sample; ``skip_invalid``; ``max_memory``: a
    memory budget splitting each block; ``n``, ``preprocess``, ``image_size``,
    ``id_width``: how the source reads the data (:func:`lrpgraph.data.sources.make_source`)."""

    target: object = "label"
    batch_size: int = 32
    reduce: str | None = None
    dtype: str = "float32"
    statistics: tuple = ()
    reductions: tuple = ()
    topk: int = 5
    skip_invalid: bool = False
    max_memory: object = None
    n: object = None
    preprocess: object = "auto"
    image_size: object = None
    id_width: int = 256

    def __post_init__(self):
        set_ = object.__setattr__  # normalised values on a frozen instance, once
        set_(self, "batch_size", check_batch_size(self.batch_size))
        if self.reduce not in (None, "sum"):
            raise ValueError(f"reduce must be None or 'sum', got {self.reduce!r}")
        if str(self.dtype) not in ("float32", "float16"):
            raise ValueError(f"dtype must be 'float32' or 'float16', got {self.dtype!r}")
        set_(self, "dtype", str(self.dtype))
        stats = (self.statistics,) if isinstance(self.statistics, str) else tuple(self.statistics)
        unknown = [m for m in stats if m not in MAP_STATISTICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(MAP_STATISTICS)}")
        set_(self, "statistics", stats)
        reds = (self.reductions,) if isinstance(self.reductions, Reduction) else tuple(self.reductions)
        for r in reds:
            if not isinstance(r, Reduction):
                raise TypeError(f"reductions takes lrpgraph.data.reductions.Reduction objects (ClassSum(), "
                                f"TopK(...)), got {type(r).__name__}")
        names = [r.name for r in reds]
        if len(set(names)) != len(names):
            raise ValueError(f"two reductions share a name ({names}); pass name= to tell them apart")
        set_(self, "reductions", reds)
        if isinstance(self.topk, bool) or not isinstance(self.topk, (int, np.integer)) or self.topk < 1:
            raise ValueError(f"topk must be a positive int, got {self.topk!r}")
        set_(self, "topk", int(self.topk))
        set_(self, "target", check_target_spec(self.target))
        set_(self, "skip_invalid", bool(self.skip_invalid))
        if self.max_memory is not None:
            parse_memory(self.max_memory)  # a bad budget fails here, not after the first block
        if isinstance(self.id_width, bool) or not isinstance(self.id_width, (int, np.integer)) or self.id_width < 1:
            raise ValueError(f"id_width must be a positive int, got {self.id_width!r}")

    @property
    def multi(self):
        """True when the target gives several classes per sample ((N, T, ...) maps)."""
        t = self.target
        return isinstance(t, (list, tuple)) or (isinstance(t, np.ndarray) and t.ndim == 2)

    @property
    def needs_labels(self):
        return isinstance(self.target, str) and self.target == "label"

    def source_options(self):
        """The keyword arguments of :func:`lrpgraph.data.sources.make_source`."""
        return dict(n=self.n, preprocess=self.preprocess, image_size=self.image_size, id_width=self.id_width)


def identity(spec, method, weights_sha256, topk):
    """The job identity stored in (and matched against) a store: see the module
    docstring.  ``topk`` is the spec's, capped at the model's number of classes."""
    prepared = method.prepared
    out = {"method": describe_method(method), "model": prepared.model.name, "weights_sha256": weights_sha256,
           "output": prepared.output_name, "target": describe_target(spec.target), "reduce": spec.reduce,
           "dtype": spec.dtype, "topk": int(topk), "metrics": list(spec.statistics)}
    if spec.reductions:
        out["reductions"] = [r.describe() for r in spec.reductions]
    return out


def check_target_spec(target):
    """``target`` as the job keeps it (:func:`lrpgraph.targets.check_spec`)."""
    return check_spec(target)


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
                             for s in parse_steps(method.postprocess)]
    return {"name": method.name, "class": type(method).__name__, "params": params}


def describe_target(target):
    """The target as stored in the job identity (:func:`lrpgraph.targets.describe`)."""
    return describe(target)



def software_versions():
    """The lrpgraph, TensorFlow, Keras and zarr versions (stored in every store)."""
    import zarr  # imported on use, as in lrpgraph.data.store

    return {"lrpgraph": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "zarr": zarr.__version__}
