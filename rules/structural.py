"""Rules for elementwise, pooling, merging and shape ops.

- :class:`Pass`: activations hand relevance through unchanged (LRP's convention
  for ReLU and other elementwise activations: Bach et al. 2015).
- :class:`Gradient`: the plain vector-Jacobian product.  On max pooling it is
  winner-takes-all, on average pooling a uniform split (1/pool-size to each input,
  iNNvestigate's Deep Taylor), on Concatenate a split, on Flatten/Reshape/padding/slicing
  a re-indexing; on linear ops it is the gradient, for the gradient methods.
- :class:`GuidedReLU` / :class:`DeconvReLU`: guided backpropagation
  (Springenberg et al., "Striving for Simplicity: The All Convolutional Net",
  ICLR workshop 2015) and DeconvNet (Zeiler & Fergus, "Visualizing and
  Understanding Convolutional Networks", ECCV 2014) on ReLU-like activations.
- :class:`Gate`: y = value * gate (squeeze-and-excitation, gating): the value
  input receives all of R, the gate none (Arras et al., "Explaining Recurrent
  Neural Network Predictions in Sentiment Analysis", WASSA 2017).
"""

from __future__ import annotations

import tensorflow as tf

from .base import Rule

__all__ = ["Pass", "Gradient", "GuidedReLU", "DeconvReLU", "Gate", "gate_slot"]

RELU_LIKE = ("relu", "relu6", "leaky_relu")
# the gradient of these drops what lies on the padded positions; every other shape op
# and max pooling, concatenation and re-indexing hand on all of R.  So does average
# pooling: each output is the mean of the n inputs in its window, and its R goes 1/n to
# each of them; with "same" padding Keras (tf.nn.avg_pool) averages over the in-bounds
# inputs only, so n counts those and nothing falls on the padding (checked in
# tests/test_avg_pool.py for valid/same, strided, 1D/3D and global pooling).
_PADDING = ("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Pad")


class Pass(Rule):
    """R_x = R_y for an elementwise op (shape-preserving, one input)."""

    kinds = ("elementwise", "reshape", "noise", "softmax")

    def backward(self, ctx, R):
        if len(ctx.inputs) != 1 or tuple(ctx.inputs[0].shape[1:]) != tuple(ctx.output.shape[1:]):
            raise ValueError(f"Pass needs a one-input, shape-preserving op; node {ctx.name!r} is not")
        return [R]

    def conservative(self, op):
        return True


class Gradient(Rule):
    """R_x_i = (dy/dx_i)^T R_y: the chain rule (any op)."""

    def conservative(self, op):
        return type(self) is Gradient and (op.kind in ("pool_max", "pool_avg", "concat") or
                                           (op.kind == "reshape" and op.subkind not in _PADDING))

    def backward(self, ctx, R):
        xs = [tf.identity(x) for x in ctx.inputs]  # distinct tensors even for `x + x`
        with tf.GradientTape() as tape:
            tape.watch([x for x in xs if x.dtype.is_floating])  # an integer index input gets none
            y = ctx.op(xs)[0]
        return tape.gradient(y, xs, output_gradients=R)


class GuidedReLU(Gradient):
    """Guided backprop at ReLU-like activations: R_x = relu'(x) * max(R_y, 0);
    other activations get the plain gradient.  Not linear in R (max(R, 0))."""

    kinds = ("elementwise",)
    linear_in_relevance = False

    def backward(self, ctx, R):
        if ctx.op.subkind not in RELU_LIKE:
            return super().backward(ctx, R)
        (g,) = super().backward(ctx, tf.nn.relu(R))
        return [g]


class DeconvReLU(Gradient):
    """DeconvNet at ReLU-like activations: R_x = max(R_y, 0), ignoring the forward
    input; other activations get the plain gradient.  Not linear in R."""

    kinds = ("elementwise",)
    linear_in_relevance = False

    def backward(self, ctx, R):
        if ctx.op.subkind not in RELU_LIKE:
            return super().backward(ctx, R)
        return [tf.nn.relu(R)]


def gate_slot(ctx):
    """Which input of a Multiply is the gate: the op's ``gate_slot`` when a rewrite
    pass set it (the input made by a sigmoid), else the input with fewer elements
    (it is broadcast: squeeze-and-excitation), else slot 1."""
    slot = getattr(ctx.op, "gate_slot", None)
    if slot is not None:
        return slot
    sizes = [int(tf.TensorShape(x.shape[1:]).num_elements() or 0) for x in ctx.inputs]
    if len(sizes) == 2 and sizes[0] != sizes[1]:
        return 0 if sizes[0] < sizes[1] else 1
    return 1


class Gate(Rule):
    """y = value * gate: R_value = R_y (summed over broadcast axes), R_gate = 0."""

    kinds = ("multiply",)

    def backward(self, ctx, R):
        if len(ctx.inputs) != 2:
            raise ValueError(f"Gate expects a two-input Multiply; node {ctx.name!r} has {len(ctx.inputs)}")
        g = gate_slot(ctx)
        value = ctx.inputs[1 - g]
        out = [None, None]
        out[1 - g] = _unbroadcast(R, value)
        return out

    def conservative(self, op):
        return True


def _unbroadcast(R, x):
    """Sum R over the axes along which x was broadcast to R's shape."""
    if tuple(x.shape[1:]) == tuple(R.shape[1:]):
        return R
    rank = len(R.shape)
    xshape = [1] * (rank - len(x.shape)) + list(x.shape)
    axes = [a for a in range(1, rank) if xshape[a] == 1 and R.shape[a] != 1]
    return tf.reshape(tf.reduce_sum(R, axis=axes, keepdims=True), tf.shape(x))
