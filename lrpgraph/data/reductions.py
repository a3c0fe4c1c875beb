"""Reductions over a dataset: what a job keeps besides the per-sample arrays.

A :class:`Reduction` turns each block into a small *state* (a dict of numpy
arrays) with :meth:`Reduction.partial`, and two states into one with
:meth:`Reduction.merge`, an associative merge (``merge(merge(a, b), c) ==
merge(a, merge(b, c))``).  The driver merges each block's partial into the
job's running state and saves it in the store together with the list of blocks
it covers (:meth:`lrpgraph.data.store.Store.write_reduction`), so a job that
stops keeps its reductions and a resumed run merges only the blocks not yet in
them: the result equals a one-shot run's.  Blocks finish in any order on a Ray
pool, so the shipped reductions are also commutative.

Shipped:

* :class:`ClassSum`: per class c, the sum of the maps explained for c and their
  count (``sum[c] / count[c]`` is the class's mean map);
* :class:`TopK`: a running top-k per channel: for each column of a per-sample
  score (the relevance per channel of the map, a map statistic, or any
  ``f(block) -> (b,) or (b, C)``), the k samples with the largest score and their
  indices (the reference samples of concept mining, zennit-crp's "top-k per
  channel").

A new reduction is a subclass with ``name``, :meth:`describe` (what enters the
job identity), :meth:`partial` and :meth:`merge`; the runner needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .statistics import MAP_STATISTICS

__all__ = ["Reduction", "Block", "ClassSum", "TopK"]


@dataclass(frozen=True)
class Block:
    """What a reduction sees of one block: ``start`` (the index of its first
    sample), ``maps`` float32 (b, ...) or (b, T, ...) before ``reduce`` and the
    stored dtype's cast, ``x`` the inputs, ``logits`` (b, K), ``targets`` (b,) or
    (b, T) (resolved), ``labels`` (b,) (-1: none), ``valid`` (b,) bool (invalid
    samples: zero maps, to be left out) and the method's ``prepared`` model."""

    start: int
    maps: np.ndarray
    x: np.ndarray
    logits: np.ndarray
    targets: np.ndarray
    labels: np.ndarray
    valid: np.ndarray
    prepared: object = None

    @property
    def indices(self):
        """(b,) int64: the dataset indices of the block's samples."""
        return np.arange(self.start, self.start + len(self.valid), dtype=np.int64)


class Reduction:
    """A state merged over the blocks of a dataset (see the module docstring).

    Subclasses set :attr:`name` (the store keeps the state under it) and
    implement :meth:`describe`, :meth:`partial` and :meth:`merge`."""

    name = None

    def describe(self):
        """A JSON dict of what defines the reduction (it enters the job identity:
        a resumed run must ask for the same reductions)."""
        raise NotImplementedError

    def partial(self, block):
        """The state of one :class:`Block` alone (dict name -> numpy array)."""
        raise NotImplementedError

    def merge(self, a, b):
        """The state of two disjoint sets of blocks together; associative."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({self.describe()})"


def _one_per_row(block):
    """(maps, targets, valid) with several targets per sample flattened to rows."""
    maps, t, valid = block.maps, np.asarray(block.targets), np.asarray(block.valid, bool)
    if t.ndim == 2:
        return maps.reshape((-1,) + maps.shape[2:]), t.reshape(-1), np.repeat(valid, t.shape[1])
    return maps, t, valid


class ClassSum(Reduction):
    """Per class c (of the explained targets): ``sum`` (K, ...) float64 of the maps
    explained for c, and ``count`` (K,) int64 of them; invalid samples (and maps
    of no single class) are left out.  ``sum[c] / count[c]`` is the class's mean map (:meth:`mean`).  Sums in
    float64, so the merge order moves the result by float64 rounding only."""

    def __init__(self, name="class_sum"):
        self.name = name

    def describe(self):
        return {"kind": "class_sum", "name": self.name}

    def partial(self, block):
        maps, t, ok = _one_per_row(block)
        ok = ok & (t >= 0)  # -1: every logit explained at once (neuron_selection_mode="all"): no class
        k = int(block.logits.shape[1])
        s = np.zeros((k,) + maps.shape[1:], np.float64)
        np.add.at(s, t[ok], maps[ok].astype(np.float64))
        return {"sum": s, "count": np.bincount(t[ok], minlength=k).astype(np.int64)}

    def merge(self, a, b):
        return {"sum": a["sum"] + b["sum"], "count": a["count"] + b["count"]}

    @staticmethod
    def mean(state):
        """(K, ...) mean map per class (NaN for a class with no sample)."""
        c = state["count"].reshape((-1,) + (1,) * (state["sum"].ndim - 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(c > 0, state["sum"] / np.maximum(c, 1), np.nan)


class TopK(Reduction):
    """A running top-k per channel: for each column c of a per-sample score
    (b, C), the ``k`` largest scores over the dataset (``values`` (C, k)
    float32, descending) and the samples they came from (``indices`` (C, k)
    int64); fewer than k samples leave -inf / -1.  Ties go to the lower sample
    index, so the result does not depend on the order blocks are merged in.
    Invalid samples and NaN scores never enter.

    ``score``: ``"channel_relevance"`` (default: the map summed over every axis
    but the last, the relevance per channel), the name of a map statistic
    (:data:`lrpgraph.data.statistics.MAP_STATISTICS`: one column, or one per
    target), or ``f(block) -> (b,) or (b, C)`` (a :class:`Block`)."""

    def __init__(self, k=8, score="channel_relevance", name=None):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"TopK needs a positive int k, got {k!r}")
        if isinstance(score, str) and score != "channel_relevance" and score not in MAP_STATISTICS:
            raise ValueError(f"unknown TopK score {score!r}: 'channel_relevance', a map statistic "
                             f"({sorted(MAP_STATISTICS)}) or a function f(block) -> (b,) or (b, C)")
        if not (isinstance(score, str) or callable(score)):
            raise TypeError(f"TopK score must be a name or a function f(block), got {type(score).__name__}")
        self.k, self.score = int(k), score
        self.name = name or f"topk_{score if isinstance(score, str) else getattr(score, '__name__', 'score')}"

    def describe(self):
        score = self.score if isinstance(self.score, str) else \
            f"callable {getattr(self.score, '__module__', '?')}.{getattr(self.score, '__qualname__', repr(self.score))}"
        return {"kind": "topk", "name": self.name, "k": self.k, "score": score}

    def scores(self, block):
        """(b, C) float32 scores of the block's samples."""
        b = len(block.valid)
        if self.score == "channel_relevance":
            m = np.asarray(block.maps, np.float64)
            lead = 2 if np.ndim(block.targets) == 2 else 1
            s = m.sum(axis=tuple(range(lead, m.ndim - 1))) if m.ndim - lead >= 1 else m
        elif isinstance(self.score, str):
            s = MAP_STATISTICS[self.score](block.maps, block.x, block.logits, block.targets, block.prepared)
        else:
            s = self.score(block)
        return np.asarray(s, np.float32).reshape(b, -1)  # the stored precision: every comparison sees the same values

    def partial(self, block):
        s = self.scores(block)
        keep = np.asarray(block.valid, bool)[:, None] & ~np.isnan(s)
        idx = np.where(keep, block.indices[:, None], -1)  # left out: the padding's (-inf, -1)
        return self._top(np.where(keep, s, np.float32(-np.inf)).T, idx.T)

    def merge(self, a, b):
        return self._top(np.concatenate([a["values"], b["values"]], 1), np.concatenate([a["indices"], b["indices"]], 1))

    def _top(self, values, indices):
        """The k best (value descending, index ascending) of each row; padded."""
        c, m = values.shape
        if m < self.k:
            values = np.concatenate([values, np.full((c, self.k - m), -np.inf, np.float32)], 1)
            indices = np.concatenate([indices, np.full((c, self.k - m), -1, np.int64)], 1)
        # padding (-1) sorts after every real sample of the same (-inf) score
        key_idx = np.where(indices < 0, np.iinfo(np.int64).max, indices)
        order = np.lexsort((key_idx, -values), axis=1)[:, :self.k]
        return {"values": np.take_along_axis(values, order, 1).astype(np.float32),
                "indices": np.take_along_axis(indices, order, 1).astype(np.int64)}
