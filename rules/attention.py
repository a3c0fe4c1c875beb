"""Rules for transformers: softmax, bilinear products (attention), embeddings, constants.

Notation: s = softmax(x) over the softmax axes; a bilinear op z = scale * einsum(a, b)
(q.k^T, attention.v, ``keras.ops.matmul``/``einsum`` between two activations); R the
relevance at the op's output; eps the stabiliser, z + eps * sign(z) with sign(0) = +1.

- AttnLRP (Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance
  Propagation for Transformers", ICML 2024): :class:`SoftmaxLRP` (its softmax rule,
  Prop. 3.1: a Taylor decomposition at x with the bias term dropped) and
  :class:`UniformBilinear` (its uniform rule for products of two activations, Prop. 3.3);
  element-wise nonlinearities get the identity rule (``Pass``), the normalisation of
  LayerNorm too (``LayerNorm``: sigma held constant), linear layers epsilon or gamma.
- CP-LRP (Ali et al., "XAI for Transformers: Better Explanations through Conservative
  Propagation", ICML 2022): :class:`ValueBilinear` (attention weights held constant:
  all relevance to the values) and :class:`Constant` on the softmax (no relevance to
  the attention scores); LayerNorm's scale held constant (``LayerNorm``).
- :class:`TokenSum`: the embedding lookup of a text model; relevance per token is the
  relevance reaching the embedding vector, summed over the embedding axis.
"""

from __future__ import annotations

import tensorflow as tf

from .base import Rule, stabilize

__all__ = ["SoftmaxLRP", "UniformBilinear", "ValueBilinear", "Constant", "TokenSum", "bilinear_share",
           "bilinear_shares"]


class SoftmaxLRP(Rule):
    """AttnLRP's softmax rule (Achtibat et al., ICML 2024, Prop. 3.1; LXT's ``softmax``):

        R_in_i = x_i * (R_i - s_i * sum_j R_j),   s = softmax(x),

    the sums over the softmax axes.  It is x * J^T (R / s), the epsilon-free
    z-rule of the linearisation at x, without its bias term: sum_i R_in_i =
    sum_i x_i R_i - (sum_i s_i x_i) sum_j R_j differs from sum_j R_j, so the rule is
    not conservative by design (the bias of the Taylor expansion absorbs the rest).
    A mask input (attention) gets no relevance; masked positions have s_i = 0 and,
    where relevance flows from attention.v, R_i = 0, so they get none either.
    """

    kinds = ("softmax",)

    def backward(self, ctx, R):
        x, s = ctx.inputs[0], ctx.output
        axes = [a % len(s.shape) for a in ctx.op.axes]
        R = tf.cast(R, s.dtype)
        total = tf.reduce_sum(R, axis=axes, keepdims=True)
        return [x * (R - s * total)] + [None] * (len(ctx.inputs) - 1)


def bilinear_share(ctx, R, slot, epsilon):
    """R_slot = x_slot * (dz/dx_slot)^T (R / (z + eps sign z)): the relevance of one
    factor of a bilinear z = f(a, b) with the other factor held constant (z is linear
    in each factor, so the shares of a and of b each sum to sum(R z / (z + eps sign z)))."""
    return bilinear_shares(ctx, R, (slot,), epsilon)[0]


def bilinear_shares(ctx, R, slots, epsilon):
    """:func:`bilinear_share` for each of ``slots``, from one division and one tape.  z is
    the forward output (``ctx.output``), not recomputed: the transposed products do not
    need it, so the tape's recomputation of z is dead code the compiled pass drops (an
    einsum of the attention's size per share otherwise)."""
    xs = [tf.identity(x) for x in ctx.inputs]
    with tf.GradientTape() as tape:
        for slot in slots:
            tape.watch(xs[slot])
        z = ctx.op(xs)[0]
    s = tf.cast(R, z.dtype) / stabilize(tf.cast(ctx.output, z.dtype), epsilon)
    grads = tape.gradient(z, [xs[slot] for slot in slots], output_gradients=s)
    return [xs[slot] * g for slot, g in zip(slots, grads)]


class UniformBilinear(Rule):
    """AttnLRP's uniform rule for a product of two activations (Achtibat et al., ICML 2024,
    Prop. 3.3): each factor gets half, by the epsilon rule with the other held constant,

        R_a = 1/2 * a * (dz/da)^T (R / z),   R_b = 1/2 * b * (dz/db)^T (R / z),

    z = scale * einsum(a, b) (stabilised: z + eps * sign(z)).  q.k^T splits between
    queries and keys, attention.v between the attention weights and the values.
    Conservative up to eps: sum R_a + sum R_b = sum R z / (z + eps sign z).
    """

    kinds = ("bilinear",)

    def __init__(self, epsilon=1e-9):
        self.epsilon = epsilon

    def backward(self, ctx, R):
        return [0.5 * r for r in bilinear_shares(ctx, R, (0, 1), self.epsilon)]

    def conservative(self, op):
        return False  # eps-stabilised


class ValueBilinear(Rule):
    """CP-LRP's rule for attention.v (Ali et al., ICML 2022): the attention weights are
    constants, all relevance flows to the values by the epsilon rule,

        R_v = v * (dz/dv)^T (R / z),   R_weights = 0,

    z = scale * einsum(weights, v) (stabilised: z + eps * sign(z)).  The weights are the
    op's ``const_slot`` (set for attention.v and, by the ``mark_gates`` pass, for any
    product with a softmax); a product without one is split uniformly as by
    :class:`UniformBilinear` (documented fallback).  Conservative up to eps.
    """

    kinds = ("bilinear",)

    def __init__(self, epsilon=1e-9):
        self.epsilon = epsilon

    def backward(self, ctx, R):
        const = getattr(ctx.op, "const_slot", None)
        if const is None:
            return [0.5 * r for r in bilinear_shares(ctx, R, (0, 1), self.epsilon)]
        out = [None, None]
        out[1 - const] = bilinear_share(ctx, R, 1 - const, self.epsilon)
        return out


class Constant(Rule):
    """The op's output is a constant of the model: R_in = 0 for every input.  CP-LRP's
    treatment of the attention weights (Ali et al., ICML 2022: the softmax is held
    constant, so no relevance reaches the scores q.k^T), and the rule of ops whose
    output does not depend on the input's values (kind ``constant``)."""

    def backward(self, ctx, R):
        return [None] * len(ctx.inputs)


class TokenSum(Rule):
    """Embedding lookup (the input layer of a text model): the relevance of a token is
    the relevance reaching its embedding vector, summed over the embedding axis,

        R_token_t = sum_d R_{t, d}.

    Conservative.  The result has the ids' shape and the relevance's float dtype.
    """

    kinds = ("embedding",)

    def backward(self, ctx, R):
        return [tf.reduce_sum(R, axis=-1)]

    def conservative(self, op):
        return True
