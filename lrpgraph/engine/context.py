"""The contract between the engine and a rule: :class:`Context` (what a rule sees of one
node during the reverse pass) and :class:`Rule` (what the engine calls).

The reverse pass (:func:`lrpgraph.engine.compile.reverse_pass`) builds one context per
node, in one go, and hands it with the relevance at the node's output to the node's rule.
The rule library (``lrpgraph.rules``, the top-level ``rules/`` folder) implements
:class:`Rule` and re-exports both names; the engine never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import tensorflow as tf

__all__ = ["Context", "Rule"]


@dataclass(frozen=True, eq=False)
class Context:
    """What a rule sees of one node (immutable).

    ``op``: the node's op description (:mod:`lrpgraph.ops`); rules read its typed
    fields (a ``Linear``'s ``forward``, ``kernel``, ``bias``, ...).
    ``inputs``: the forward input tensors, one per input slot, at the reverse pass's
    batch size (tiled when several seeds per sample run as one batch).
    ``output``: the forward output tensor, tiled like ``inputs``.
    ``nonneg``: per input slot, True where that input is known to be >= 0 everywhere
    (e.g. the output of a ReLU); None means all False.
    ``name``: the node id.
    ``layer``: the Keras layer (or ``keras.ops`` operation) behind the node, None for a
    node a rewrite pass made.
    ``guards``: None, or the list that :meth:`require_nonzero` appends to when the
    pass relies on the rules' conservation (scaled SGLRP/CLRP in one pass).
    ``tile``: None, or the function mapping a forward tensor to the reverse pass's
    batch (several seeds per sample); rules may then compute batch-independent parts
    on ``untiled`` and tile the result.
    ``untiled``: with ``tile``, ``(inputs, output)`` at the forward batch size.
    ``ready``: a tensor of the reverse pass that exists shortly before this node's
    relevance does (the relevance a few nodes above it).  The reverse pass calls the
    rule behind a control dependency on it, so whatever the rule builds from the
    forward pass alone (modified weights and outputs, denominators) is computed a
    step ahead of its use instead of during the forward pass; a rule that runs work
    outside the pass (a nested tf.function) can wait for it too.  None: wait for nothing.
    """

    op: object
    inputs: list
    output: object
    nonneg: list | None = None
    name: str | None = None
    layer: object = None
    guards: list | None = None
    tile: Callable | None = None
    untiled: tuple | None = None
    ready: object = None

    def __post_init__(self):
        if self.nonneg is None:
            object.__setattr__(self, "nonneg", [False] * len(self.inputs))

    def per_seed(self, t):
        """With several seeds per sample (``tile``), a reverse-pass tensor shaped
        (seeds * N, ...) viewed as (seeds, N, ...): forward tensors of the forward batch
        (``untiled``, shaped (N, ...)) then broadcast against it without tiled copies.
        Unchanged with one seed per sample."""
        if self.tile is None:
            return t
        n = tf.shape(self.untiled[1])[:1]
        out = tf.reshape(t, tf.concat([[-1], n, tf.shape(t)[1:]], 0))
        out.set_shape([None, None] + list(t.shape[1:]))
        return out

    def merge_seeds(self, t):
        """The inverse of :meth:`per_seed`: (seeds, N, ...) -> (seeds * N, ...)."""
        if self.tile is None:
            return t
        out = tf.reshape(t, tf.concat([[-1], tf.shape(t)[2:]], 0))
        out.set_shape([None] + list(t.shape[2:]))
        return out

    @property
    def x(self):
        """The first input."""
        return self.inputs[0]

    def require_nonzero(self, denominator):
        """Report a denominator on which the rule's conservation depends (see
        :meth:`lrpgraph.rules.Rule.conservative`); a no-op unless the pass collects guards."""
        if self.guards is not None:
            # tf.equal(b, 0) is the op safe_divide builds on the same tensor: graph
            # optimisation merges the two, so the guard only reads a boolean mask
            self.guards.append(tf.logical_not(tf.reduce_any(tf.equal(denominator, 0))))


class Rule:
    """Base class: ``backward(ctx, R) -> list of relevances, one per input``.

    ``kinds`` names the op kinds the rule can handle (empty: any).
    ``linear_in_relevance``: True when backward(ctx, a R1 + b R2) = a backward(ctx, R1)
    + b backward(ctx, R2) (denominators from the forward pass only).  A head's
    one-pass form (SGLRP/CLRP: A(target) - m A(dual) = A(target - m dual)) is used
    only where every rule on the path says so; a rule that is not (GuidedReLU,
    DeconvReLU: they clip R) sets it to False and the compiled function runs the
    seeds as a batch instead.
    """

    kinds: tuple = ()
    linear_in_relevance = True

    def backward(self, ctx, R):  # pragma: no cover - abstract
        raise NotImplementedError

    def conservative(self, op):
        """True if, on ``op``, sum(R_in) == sum(R) for every R whenever each
        denominator the rule reports with ``ctx.require_nonzero`` is nonzero.
        Scaled SGLRP/CLRP then take their sums from the seeds and run one pass
        (a guard falls back to two when a denominator is zero).  Default: no promise."""
        return False

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"
