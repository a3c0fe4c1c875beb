"""Heads: the initial relevance at the logits, from the logits and the targets.

A head is any callable ``head(logits, targets) -> R0`` with ``logits`` (N, K)
and ``targets`` (N,) int32; it runs inside the compiled function, so it must be
written with TensorFlow ops.  A user can pass their own.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["HEADS", "get_head", "logit", "logit_relu", "one", "all_logits", "all_ones", "one_hot"]


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
