"""Heads: the initial relevance at the logits, from the logits and the targets.

A head is any callable ``head(logits, targets) -> R0`` with ``logits`` (N, K)
and ``targets`` (N,) int32; it runs inside the compiled function, so it must be
written with TensorFlow ops.  A user can pass their own.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["HEADS", "get_head", "logit", "logit_relu", "one", "all_logits", "all_ones", "one_hot",
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


def get_head(head):
    if callable(head):
        return head
    try:
        return HEADS[head]
    except KeyError:
        raise ValueError(f"unknown head {head!r}; known: {sorted(HEADS)} or a callable") from None


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


class ContrastiveHead:
    """A head made of a target seed and a dual seed, result A(target) - m * A(dual).

    ``scaling=False``: m = 1, and the subtraction runs as ONE reverse pass seeded
    with target - dual (every LRP rule is linear in the relevance it receives).
    ``scaling=True``: m = sum A(target) / sum A(dual) per sample, so each map sums
    to zero; both seeds run as one batched pass (``n_seeds = 2``) and ``combine``
    subtracts.  A sample whose sums are both zero (its gated target logit is <= 0)
    gets an all-zero map instead of 0/0.
    """

    def __init__(self, parts, scaling=True, sign=-1.0, **kw):
        self.parts = parts
        self.scaling = scaling
        self.sign = sign
        self.kw = kw
        self.n_seeds = 2 if scaling else 1

    def __call__(self, logits, targets):
        target, dual = self.parts(logits, targets, **self.kw)
        if self.scaling:
            return tf.stack([target, dual])
        return target + self.sign * dual

    def one_pass(self, logits, targets):
        """The scaled result's seed for ONE pass, target - m * dual with
        m = sum target / sum dual: equal to A(target) - m A(dual) when every rule
        conserves (sum A(s) = sum s), which the compiled function checks."""
        target, dual = self.parts(logits, targets, **self.kw)
        m = tf.math.divide_no_nan(tf.reduce_sum(target, -1, keepdims=True), tf.reduce_sum(dual, -1, keepdims=True))
        return target + self.sign * m * dual

    def combine(self, maps, logits, targets):
        a_t, a_d = maps[0], maps[1]
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
