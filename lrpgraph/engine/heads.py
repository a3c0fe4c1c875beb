"""Heads: the initial relevance at the logits, from the logits and the targets.

The compiled analysis talks to a head through one small protocol, :class:`Head`:

- ``n_seeds``: how many seeds per sample the head starts (1 for plain heads);
- ``seeds(logits, targets)``: the seed(s), (N, K) or, for ``n_seeds > 1``, (S, N, K);
- ``combine(maps, logits, targets)``: the final map from the S maps (S, N, ...),
  for ``n_seeds > 1``;
- ``one_pass``: None, or a function ``(logits, targets) -> (N, K)`` whose single
  reverse pass gives the same result as seeds + combine, provided every rule on
  the path is linear in the relevance it receives (``Rule.linear_in_relevance``)
  and, when ``one_pass_needs_conservation``, conserves it (``Rule.conservative``,
  checked at run time by a guard).  The compiled function uses it only then.

A plain callable ``head(logits, targets) -> R0`` (``logits`` (N, K), ``targets``
(N,) int32, TensorFlow ops) is a one-seed head: :func:`get_head` wraps it in
:class:`FunctionHead`.  A user can pass either.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["Head", "FunctionHead", "HEADS", "get_head", "logit", "logit_relu", "one", "all_logits", "all_ones", "one_hot",
           "ContrastiveHead", "sglrp_parts", "clrp_parts", "sglrp_head", "clrp_head",
           "signed_softmax_gradient", "sglrp_target", "sglrp_dual", "clrp_target", "clrp_dual"]


def one_hot(logits, targets):
    return tf.one_hot(targets, tf.shape(logits)[-1], dtype=logits.dtype)


def logit(logits, targets):
    """z_t at the target, 0 elsewhere (LRP: relevance starts as the target logit)."""
    return one_hot(logits, targets) * logits


def logit_relu(logits, targets):
    """max(z_t, 0) at the target (Deep Taylor's output ReLU: a negative logit explains nothing)."""
    return one_hot(logits, targets) * tf.nn.relu(logits)


def one(logits, targets):
    """1 at the target (plain derivatives: gradient, input x gradient)."""
    return one_hot(logits, targets)


def all_logits(logits, targets):
    """Every logit's value (iNNvestigate's neuron_selection_mode='all' for LRP)."""
    return logits


def all_ones(logits, targets):
    """1 at every class (neuron_selection_mode='all' for gradients)."""
    return tf.ones_like(logits)


HEADS = {"logit": logit, "logit_relu": logit_relu, "one": one, "all_logits": all_logits,
         "all_ones": all_ones}


class Head:
    """The head protocol (see the module docstring); subclass it or duck-type it."""

    n_seeds = 1
    one_pass = None
    one_pass_needs_conservation = False

    def seeds(self, logits, targets):  # pragma: no cover - abstract
        raise NotImplementedError

    def combine(self, maps, logits, targets):
        """The final map from the ``n_seeds`` maps; one seed: that map."""
        return maps[0]


class FunctionHead(Head):
    """A one-seed head from a function ``fn(logits, targets) -> R0``."""

    def __init__(self, fn):
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)

    def seeds(self, logits, targets):
        return self.fn(logits, targets)

    __call__ = seeds

    def __repr__(self):
        return f"FunctionHead({self.__name__})"


def get_head(head):
    """A :class:`Head` for a head name (:data:`HEADS`), a Head, or a callable."""
    if isinstance(head, Head):
        return head
    if isinstance(head, str):
        try:
            return FunctionHead(HEADS[head])
        except KeyError:
            raise ValueError(f"unknown head {head!r}; known: {sorted(HEADS)}, a Head or a callable") from None
    if callable(head):
        return FunctionHead(head)
    raise TypeError(f"head must be a name ({sorted(HEADS)}), a lrpgraph.engine.heads.Head or a callable "
                    f"head(logits, targets) -> R0; got {type(head).__name__}")


# ---- the SGLRP paper's heads (Iwana, Kuroki, Uchida, ICCV Workshops 2019) ------------

SGLRP_EPS = 1e-8


def _gate(logits, output_relu):
    """(values the head sees, mask of classes whose relevance passes the output ReLU)."""
    if not output_relu:
        return logits, tf.ones_like(logits)
    return tf.nn.relu(logits), tf.cast(logits > 0, logits.dtype)


def sglrp_parts(logits, targets, output_relu=True, eps=SGLRP_EPS):
    """SGLRP's two seeds (target, dual) from y = softmax(z):
    target: y_t (1 - y_t) + eps at t;  dual: y_t y_n at every n != t.
    With ``output_relu`` (the original code) z is replaced by max(z, 0) and classes
    with z <= 0 pass no relevance."""
    z, gate = _gate(logits, output_relu)
    y = tf.nn.softmax(z, axis=-1)
    hot = one_hot(logits, targets)
    y_t = tf.reduce_sum(y * hot, axis=-1, keepdims=True)
    target = hot * (y * (1.0 - y) + eps) * gate
    dual = (1.0 - hot) * y * y_t * gate
    return target, dual


def clrp_parts(logits, targets, output_relu=True):
    """CLRP's two seeds: target z_t at t; dual z_t / (K - 1) at every n != t
    (Gu, Yang, Tresp, "Understanding Individual Decisions of CNNs via Contrastive
    Backpropagation", ACCV 2018)."""
    z, gate = _gate(logits, output_relu)
    hot = one_hot(logits, targets)
    z_t = tf.reduce_sum(z * hot, axis=-1, keepdims=True)
    k = tf.cast(tf.shape(logits)[-1], logits.dtype)
    target = hot * z * gate
    dual = (1.0 - hot) * z_t / (k - 1.0) * gate
    return target, dual


class ContrastiveHead(Head):
    """A head made of a target seed and a dual seed, result A(target) - m * A(dual).

    The two seeds run as one batched pass (``n_seeds = 2``) and ``combine``
    subtracts: ``scaling=True``: m = sum A(target) / sum A(dual) per sample, so
    each map sums to zero (a sample whose sums are both zero, its gated target
    logit <= 0, gets an all-zero map instead of 0/0); ``scaling=False``: m = 1.

    ``one_pass`` seeds ONE reverse pass with target - m * dual.  It is exact when
    every rule on the path is linear in the relevance (A(a) - A(b) = A(a - b)), and
    for ``scaling=True`` also conservative, so that m = sum target / sum dual
    (``one_pass_needs_conservation``; the compiled function guards it at run time).
    """

    n_seeds = 2

    def __init__(self, parts, scaling=True, sign=-1.0, **kw):
        self.parts = parts
        self.scaling = scaling
        self.sign = sign
        self.kw = kw
        self.one_pass_needs_conservation = bool(scaling)

    def seeds(self, logits, targets):
        return tf.stack(self.parts(logits, targets, **self.kw))

    def one_pass(self, logits, targets):
        target, dual = self.parts(logits, targets, **self.kw)
        if not self.scaling:
            return target + self.sign * dual
        m = tf.math.divide_no_nan(tf.reduce_sum(target, -1, keepdims=True), tf.reduce_sum(dual, -1, keepdims=True))
        return target + self.sign * m * dual

    def combine(self, maps, logits, targets):
        a_t, a_d = maps[0], maps[1]
        if not self.scaling:
            return a_t + self.sign * a_d
        axes = list(range(1, len(a_t.shape)))
        s_t = tf.reduce_sum(a_t, axis=axes, keepdims=True)
        s_d = tf.reduce_sum(a_d, axis=axes, keepdims=True)
        m = tf.math.divide_no_nan(s_t, s_d)
        return a_t + self.sign * a_d * m


def sglrp_head(output_relu=True, scaling=True, eps=SGLRP_EPS):
    """SGLRP: A(target) - m * A(dual) with the softmax-gradient seeds."""
    return ContrastiveHead(sglrp_parts, scaling, output_relu=output_relu, eps=eps)


def clrp_head(output_relu=True, scaling=True):
    """CLRP: A(target) - m * A(dual) with the contrastive seeds."""
    return ContrastiveHead(clrp_parts, scaling, output_relu=output_relu)


def signed_softmax_gradient(logits, targets, eps=SGLRP_EPS):
    """SGLRPSeqA/B's one-pass head: y_t (1 - y_t) + eps at t, -y_t y_n elsewhere
    (d y_t / d z, raw logits, no output ReLU)."""
    target, dual = sglrp_parts(logits, targets, output_relu=False, eps=eps)
    return target - dual


def _part(parts, which, **kw):
    def head(logits, targets):
        return parts(logits, targets, **kw)[which]
    head.__name__ = f"{parts.__name__.replace('_parts', '')}_{'target' if which == 0 else 'dual'}"
    return head


def sglrp_target(output_relu=True):
    """Only SGLRP's target seed (golden key ``sglrp.target``)."""
    return _part(sglrp_parts, 0, output_relu=output_relu)


def sglrp_dual(output_relu=True):
    """Only SGLRP's dual seed (golden key ``sglrp.others``)."""
    return _part(sglrp_parts, 1, output_relu=output_relu)


def clrp_target(output_relu=True):
    """Only CLRP's target seed (golden key ``clrp.target``)."""
    return _part(clrp_parts, 0, output_relu=output_relu)


def clrp_dual(output_relu=True):
    """Only CLRP's dual seed (golden key ``clrp.others``)."""
    return _part(clrp_parts, 1, output_relu=output_relu)
