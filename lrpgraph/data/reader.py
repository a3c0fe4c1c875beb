"""Reading a dataset store back: :func:`open_store` and :class:`Attributions`.

::

    att = lrpgraph.open_store("maps.zarr")
    att.relevance[10:20]          # numpy, (10, H, W, C)
    att.metrics["relevance_sum"][:]
    att.reductions["class_sum"]   # {"sum": (K, ...), "count": (K,)}
    att.plot(3)
"""

from __future__ import annotations

from collections import namedtuple

import matplotlib.pyplot as plt
import numpy as np

from ..viz import plot_heatmap
from .store import Store, decode_ids

__all__ = ["open_store", "Attributions", "LogitsTopK"]

LogitsTopK = namedtuple("LogitsTopK", ["values", "indices"])


def open_store(path):
    """The :class:`Attributions` handle on the store at ``path`` (read-only)."""
    return Attributions(Store.open(path, mode="r"))


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
    ``done`` (N,) bool, True for written samples; ``complete``; ``reductions``
    dict name -> state (:mod:`lrpgraph.data.reductions`)."""

    def __init__(self, store):
        self.store = store
        self.computed = []  # the blocks the call that returned this handle computed
        self.timings = {}  # block -> seconds its executor spent on it

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
        return LogitsTopK(_ArrayView(self.store["logits_topk_values"]), _ArrayView(self.store["logits_topk_indices"]))

    @property
    def metrics(self):
        """dict name -> (N[, T]) view: the per-sample map statistics of the job
        (``relevance_sum``...) and the evaluation columns added since
        (``eval_aopc_morf``..., :func:`lrpgraph.evaluate` of the store; NaN where
        a block is not scored yet)."""
        out = {k[len("metric_"):]: _ArrayView(self.store[k]) for k in self.store.arrays if k.startswith("metric_")}
        out.update({k: _ArrayView(self.store[k]) for k in self.store.columns})
        return out

    @property
    def columns(self):
        """dict column -> what computed it (``{"metric", "params"}``) and
        ``"blocks"``, the blocks scored so far, for the columns added after the job."""
        return {k: dict(meta, blocks=self.store.column_done_blocks(k)) for k, (_, meta) in self.store.columns.items()}

    def __getitem__(self, name):
        """Any array or column of the store by name (``att["eval_aopc_morf"]``)."""
        return _ArrayView(self.store[name])

    @property
    def reductions(self):
        """dict name -> the state of each reduction the job asked for (a dict of
        numpy arrays, see :mod:`lrpgraph.data.reductions`; None before its first
        block).  It covers the blocks :meth:`reduction_blocks` lists: all of them
        once the store is complete."""
        return {d["name"]: self.store.read_reduction(d["name"])[0] for d in self.store.job.get("reductions", [])}

    def reduction_blocks(self, name):
        """The sorted blocks merged into the reduction ``name``."""
        return self.store.read_reduction(name)[1]

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
            plot_heatmap(a, m, title=f"{base}  target {int(tt)}", **kw)
        return axes[0] if len(axes) == 1 else axes

    def __repr__(self):
        j = self.store.job
        return (f"<Attributions {self.store.path}: {self.store.n} samples, "
                f"{len(self.store.done_blocks())}/{self.store.n_blocks} blocks, method "
                f"{j.get('method', {}).get('name')!r}, model {j.get('model')!r}>")
