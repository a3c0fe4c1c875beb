"""The one interface every method has: :class:`Method`.

Every registered method (the LRP and gradient presets, SGLRP/CLRP, the CAM
family, integrated gradients, SmoothGrad, occlusion) is a ``Method`` over one
:class:`lrpgraph.engine.prepared.Prepared` model.  The base class owns everything that
is the same for all of them: input and target validation (by the prepared
model), ``neuron_selection_mode``, several targets per sample, batching,
post-processing and the returned shapes.  A family implements one hook,
:meth:`Method.compute`.  The dataset runner and the evaluation call
:meth:`Method.explain`, which also returns the logits and the resolved targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from .. import memory
from .. import postprocess as _post
from ..engine.prepared import prepare
from ..targets import resolve_predicted

__all__ = ["Method", "Explanation", "NEURON_SELECTION_MODES", "chunked", "check_batch_size"]

NEURON_SELECTION_MODES = ("max_activation", "index", "all")


@dataclass(frozen=True)
class Explanation:
    """What :meth:`Method.explain` returns.

    ``maps``: the maps as :meth:`Method.analyze` returns them (an array shaped
    like the input, (N, T, ...) for T targets per sample; a list with one entry
    per input for a multi-input model, None where a method has no map);
    ``logits``: (N, K) logits of the explained output; ``targets``: the explained
    classes, (N,) or (N, T), with "the predicted class" resolved."""

    maps: list
    logits: np.ndarray
    targets: np.ndarray


class Method:
    """Base of every method: ``analyze(x, target)`` -> numpy maps.

    Parameters (shared by every method)
    ----------
    model : keras.Model or Prepared
        Converted once per model (:func:`lrpgraph.prepare`) and shared.
    neuron_selection_mode : {"max_activation", "index", "all"}
        As in iNNvestigate: explain the predicted class, the given ``target``,
        or (where a method supports it) all logits at once.  A target passed to
        ``analyze`` always wins over "max_activation".
    output : int or str, optional
        Which model output to explain; default the first.
    postprocess : str, callable or list, optional
        Steps applied to the numpy maps (:mod:`lrpgraph.postprocess`).

    Subclasses implement ``compute(xs, targets) -> (maps, logits)`` for a list of
    validated arrays and (N,) int32 targets (-1, :data:`lrpgraph.targets.PREDICTED`:
    the predicted class; :mod:`lrpgraph.targets` parses and resolves them), returning
    one numpy map per input (or None) and the (N, K) logits (or None, then the
    base computes them).  ``compute_multi(xs, targets)`` handles (N, T) targets;
    its default runs ``compute`` once per column.
    """

    name = None
    supports_all = True  # neuron_selection_mode="all"

    def __init__(self, model, *, neuron_selection_mode="max_activation", output=None, postprocess=None):
        if neuron_selection_mode not in NEURON_SELECTION_MODES:
            raise ValueError(f"neuron_selection_mode must be one of {NEURON_SELECTION_MODES}, "
                             f"got {neuron_selection_mode!r}")
        if neuron_selection_mode == "all" and not self.supports_all:
            raise ValueError(f"{self.name} explains one class per sample; use neuron_selection_mode="
                             "'max_activation' or 'index'")
        self.prepared = prepare(model, output)
        self.model = self.prepared.model
        self.neuron_selection_mode = neuron_selection_mode
        self.postprocess = _post.parse_steps(postprocess)
        self.last_logits = None
        self.costs = {}  # input shapes -> memory.Cost, measured by batch_size="auto"

    @property
    def num_classes(self):
        return self.prepared.num_classes

    @property
    def input_specs(self):
        return self.prepared.input_specs

    def compute(self, xs, targets):  # pragma: no cover - abstract
        raise NotImplementedError

    def compute_multi(self, xs, targets):
        cols = [self.compute(xs, np.ascontiguousarray(targets[:, t])) for t in range(targets.shape[1])]
        maps = [None if cols[0][0][i] is None else np.stack([c[0][i] for c in cols], axis=1)
                for i in range(len(cols[0][0]))]
        return maps, cols[0][1]

    def finalize(self, maps, logits, targets):
        """Hook after the whole batch: method-specific steps on the numpy maps
        (before the user's post-processing)."""
        return maps

    # -- public ---------------------------------------------------------------------
    def analyze(self, x, target=None, *, neuron_selection=None, batch_size=None, max_memory=None, position=None):
        """Relevance maps for ``x`` (numpy), shaped like ``x``.

        ``target``: an int, a class name, one per sample, an (N, T) array for T
        targets per sample (maps shaped (N, T, ...)), or None (the predicted
        class; required with neuron_selection_mode="index"); see :mod:`lrpgraph.targets`.
        ``neuron_selection`` is iNNvestigate's alias of ``target``.  Models with
        several inputs take and return lists.  ``batch_size`` splits the batch
        into chunks of at most that many samples; ``"auto"`` picks the largest
        chunk whose measured peak memory fits ``max_memory`` (bytes or "8GB";
        default: the device's free memory), see :mod:`lrpgraph.memory`.

        A KerasHub causal LM takes ``x = {"token_ids", "padding_mask"}`` and explains the
        next-token logits at ``position`` (an int or one per sequence; default the last
        non-padding token); ``target`` is a vocabulary id (or "predicted") and the map is
        the relevance per token, (N, T)."""
        return self.explain(x, target, neuron_selection=neuron_selection, batch_size=batch_size,
                            max_memory=max_memory, position=position).maps

    def memory_cost(self, x, target=None):
        """The :class:`lrpgraph.memory.Cost` of this method on inputs shaped like ``x``
        (one sample is enough), measured once per input shape and cached."""
        xs, _ = self.prepared.check_inputs(x)
        key = tuple(a.shape[1:] for a in xs)
        if key not in self.costs:
            targets, multi = self.prepared.check_targets(target, xs[0].shape[0])
            one = [a[:1] for a in xs]
            t = targets[:1]

            def run(batch):
                tb = np.repeat(t, batch[0].shape[0], axis=0)
                return self.compute_multi(batch, tb) if multi else self.compute(batch, tb)

            self.costs[key] = memory.analysis_cost(run, one)
        return self.costs[key]

    def explain(self, x, target=None, *, neuron_selection=None, batch_size=None, max_memory=None, position=None):
        """:class:`Explanation` for ``x``: the maps (as :meth:`analyze` returns them),
        the logits and the resolved targets (-1 where neuron_selection_mode="all"
        explains every logit)."""
        if position is not None:  # a causal LM (without: check_inputs fills the default)
            x = self.prepared.fill_position(x, position)
        if neuron_selection is not None:
            if target is not None:
                raise TypeError("pass either target or neuron_selection, not both")
            target = neuron_selection
        if max_memory is not None and batch_size != "auto":
            raise ValueError("max_memory is used with batch_size='auto'; pass batch_size='auto' too")
        if batch_size is not None and batch_size != "auto":
            batch_size = check_batch_size(batch_size)
        xs, single = self.prepared.check_inputs(x)
        n = xs[0].shape[0]
        targets, multi = self.prepared.check_targets(
            target, n, required=self.neuron_selection_mode == "index")
        if batch_size == "auto":
            budget = memory.available_memory() if max_memory is None else memory.parse_memory(max_memory)
            batch_size = memory.fit_batch_size(self.memory_cost(xs, target), budget, n)
        step = batch_size or n
        outs, logits = [], []
        for s in range(0, n, step):
            chunk = [a[s:s + step] for a in xs]
            t = targets[s:s + step]
            maps, z = self.compute_multi(chunk, t) if multi else self.compute(chunk, t)
            outs.append(maps)
            logits.append(self.prepared.logits(chunk) if z is None else z)
        logits = np.concatenate(logits, axis=0)
        self.last_logits = logits
        maps = [None if outs[0][i] is None else np.concatenate([o[i] for o in outs], axis=0)
                for i in range(len(outs[0]))]
        resolved = resolve_predicted(logits, targets)
        if self.neuron_selection_mode == "all" and target is None:
            resolved = np.full_like(resolved, -1)
        maps = self.finalize(maps, logits, resolved)
        maps = [None if m is None else _post.apply(m, self.postprocess, 2 if multi else 1) for m in maps]
        if self.prepared.token_input is not None and not self.single_output:  # a causal LM: the tokens' map
            maps, single = [maps[self.prepared.token_input]], True
        if single or self.single_output:
            maps = maps[0] if len(maps) == 1 else maps
        return Explanation(maps, logits, resolved.astype(np.int32))

    @property
    def single_output(self):
        """True where ``analyze`` returns one array even for a multi-input model."""
        return False

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r} on {self.model.name!r}>"


def check_batch_size(batch_size):
    """A positive int, or a ValueError naming the value."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def chunked(n_copies, n, batch_size, make_chunk, analyze_chunk, init):
    """Inside a tf.function: loop over the n_copies * n items (item j: copy j // n of
    sample j % n) in chunks of at most ``batch_size``; ``make_chunk(copy_idx,
    sample_idx, valid, c)`` builds a chunk, ``analyze_chunk(acc, *chunk)`` folds
    it in.  The last chunk is padded with repeats whose ``valid`` is 0."""
    total = n_copies * n
    b = tf.minimum(tf.constant(batch_size), total)
    n_chunks = (total + b - 1) // b

    def body(c, accs):
        j = c * b + tf.range(b)
        valid = j < total
        j = tf.minimum(j, total - 1)
        return c + 1, analyze_chunk(accs, *make_chunk(j // n, j % n, valid, c))

    _, accs = tf.while_loop(lambda c, _: c < n_chunks, body, (tf.constant(0), init))
    return accs
