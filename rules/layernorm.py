"""LRP through LayerNormalization: the LN-rule of Ali et al., "XAI for Transformers:
Better Explanations through Conservative Propagation", ICML 2022.

LayerNormalization computes y = gamma * (x - mean(x)) / sigma(x) + beta over the
normalised axes.  Its gradient mixes every position through sigma(x), which breaks
conservation.  The LN-rule holds the normaliser sigma = sqrt(var(x) + eps) fixed
(``sigma.detach()`` in the paper).  The centring x - mean(x) is itself linear in x
and stays: holding the mean fixed too would turn it into a bias -mean/sigma that
absorbs relevance.  What remains is a linear map without bias,

    z_j = gamma_j / sigma * (x_j - (1/N) sum_i x_i),

and relevance follows it as through a linear layer (LRP-epsilon):

    R_i = x_i * sum_j gamma_j / sigma * (delta_ij - 1/N) * R_j / (z_j + eps * sign(z_j)).

Because z is linear and homogeneous in x, sum_i R_i = sum_j R_j * z_j / (z_j +
eps sign z_j): conservative up to the stabiliser.  ``bias=True`` divides by the full
output y_j = z_j + beta_j instead (beta then absorbs its share, as a bias does in
LRP-epsilon):

    R_i = x_i * sum_j gamma_j / sigma * (delta_ij - 1/N) * R_j / (y_j + eps * sign(y_j)).

That is the reference's rule: LXT (AttnLRP's code, ``layer_norm_forward``) detaches sigma,
adds beta after the normalisation and takes gradient x input, which is this formula with
eps = 0 (the mean is not detached: relevance flows through the centring, whose -1/N terms
move it between positions).  Ali et al.'s code detaches sigma the same way but trains its
LayerNorms without gamma and beta (``lnv='nowb'``), so the two choices coincide there.  The
``attn_lrp`` and ``cp_lrp`` presets use ``bias=True``.  ``bias=False``
(the default, kept for the classic presets) is not a stable variant of it: the next layer
assigns R_j in proportion to y_j = z_j + beta_j, and dividing that by z_j alone scales it
by y_j / z_j, unbounded where |z_j| << |beta_j| (the stabiliser eps does not help once
|z_j| > eps).  On the shipped shapes ViT that made ``attn_lrp``'s maps differ from LXT's
by up to 4x their maximum (tests/test_attention.py checks the reference).
With ``rms_scaling=True`` (RMSNorm: Keras's ``rms_scaling``, the norms of KerasHub's LLMs,
sigma = sqrt(mean(x^2) + eps)) nothing is centred: z_j = gamma_j x_j / sigma, and the rule
hands each feature its own relevance, R_i = R_i z_i / (z_i + eps sign z_i): AttnLRP's
identity rule on the normalisation, LXT's ``rms_norm_forward`` (variance detached).
"""

from __future__ import annotations

import tensorflow as tf

from lrpgraph.engine import ops

from .base import Rule, stabilize, wide_dtype

__all__ = ["LayerNorm"]


class LayerNorm(Rule):
    """The LN-rule (Ali et al., ICML 2022) for Keras ``LayerNormalization`` nodes
    (op kind ``layernorm``): the normaliser sigma is a constant, relevance flows
    through the centring and scaling like LRP-epsilon through a linear layer
    without bias (see the module docstring for the formula).

    ``epsilon``: the stabiliser of the division (z + eps * sign(z)).
    ``bias``: divide by the output including beta (beta absorbs relevance; LXT's rule,
    used by ``attn_lrp`` and ``cp_lrp``).
    """

    kinds = ("layernorm",)

    def __init__(self, epsilon=1e-6, bias=False):
        self.epsilon = epsilon
        self.bias = bias

    def backward(self, ctx, R):
        op = ctx.op
        if not isinstance(op, ops.LayerNorm):
            raise ValueError(f"LayerNorm rule: node {ctx.name!r} ({type(ctx.layer).__name__}) is not a "
                             "LayerNormalization (op kind 'layernorm'); give it another rule in overrides")
        x = tf.cast(ctx.x, wide_dtype(ctx.x.dtype))
        rank = len(x.shape)
        axes = sorted(a % rank for a in op.axes)
        shape = [1] * rank
        for a in axes:
            shape[a] = x.shape[a]
        gamma = None if op.gamma is None else tf.reshape(tf.cast(op.gamma(), x.dtype), shape)
        beta = None if op.beta is None else tf.reshape(tf.cast(op.beta(), x.dtype), shape)
        rms = op.rms_scaling
        if rms:  # RMSNorm: the mean square (Keras's rms_scaling, KerasHub's LLM norms)
            var = tf.reduce_mean(tf.square(x), axis=axes, keepdims=True)
        else:
            _, var = tf.nn.moments(x, axes=axes, keepdims=True)
        inv = tf.stop_gradient(tf.math.rsqrt(var + op.epsilon))

        def linear(t):
            c = t if rms else t - tf.reduce_mean(t, axis=axes, keepdims=True)
            c = c * inv
            return c if gamma is None else c * gamma

        with tf.GradientTape() as tape:
            tape.watch(x)
            z = linear(x)
        denom = z + beta if (self.bias and beta is not None and not rms) else z
        s = tf.cast(R, x.dtype) / stabilize(denom, self.epsilon)
        c = tape.gradient(z, x, output_gradients=s)
        return [tf.cast(x * c, ctx.x.dtype)]
