"""The one mechanism every rule is built on: a modified gradient step.

A rule receives a :class:`Context` (the op, its forward inputs and output, what
is known about the inputs) and the relevance ``R`` at the op's output, and
returns the relevance for each input.

Most LRP rules for linear ops are the same computation with different
modifiers (the structure of Zennit's ``BasicHook``, Anders et al., "Software
for Dataset-wide XAI: From Local Explanations to Global Insights with Zennit,
CoRelAy, and ViRelAy", 2021)::

    z_k = f(input_modifier_k(x), param_modifier_k(W, b))   # one term per k
    s_k = gradient_mapper(R, [z_0, z_1, ...])[k]           # stabilised division
    c_k = (df/dx at the modified params)^T s_k             # one transposed conv/matmul
    R_x = reducer([x_0', x_1', ...], [c_0, c_1, ...])      # usually sum_k x_k' * c_k

:class:`BasicRule` runs exactly that; built-in rules are subclasses that pass
their modifiers to its constructor, and so is a user's custom rule.
"""

from __future__ import annotations

import tensorflow as tf

# the contract between the engine and a rule (Context in, one relevance per input out) is the
# engine's; rules implement it and re-export it from here
from lrpgraph.engine.context import Context, Rule  # noqa: F401
from lrpgraph.engine.ops import wide_dtype  # noqa: F401

__all__ = [
    "Context", "Rule", "BasicRule", "ParamMod", "stabilize", "safe_divide", "vjp", "wide_dtype",
    "identity", "positive", "negative", "ones", "square", "zero",
]


# ---- stabilisers --------------------------------------------------------------

def stabilize(z, epsilon):
    """z + epsilon * sign(z), with sign(0) = +1 (iNNvestigate's and Zennit's convention)."""
    # a Python float straight to z's dtype: tf.cast would round it through float32 first
    eps = tf.cast(epsilon, z.dtype) if tf.is_tensor(epsilon) else tf.constant(epsilon, z.dtype)
    return z + tf.where(z >= 0, eps, -eps)  # scalars broadcast: no full-size tensors of ones


def safe_divide(a, b, factor=1e-7):
    """a / b where only exact zeros of b are replaced by ``factor`` (iNNvestigate's SafeDivide)."""
    return a / (b + tf.cast(tf.equal(b, 0), b.dtype) * tf.cast(factor, b.dtype))


def vjp(fn, x, s):
    """(d fn / d x)^T s for a function linear in ``x`` (one transposed op)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = fn(x)
    return tape.gradient(z, x, output_gradients=s)


# ---- modifiers ------------------------------------------------------------------
# Input modifiers map x -> x'; parameter modifiers map a kernel or bias -> a new
# one (or None: drop it).  They are plain functions so that a rule's recipe can be
# read as data; the engine recognises ``negative`` on inputs that are known to be
# non-negative and skips that term's transposed op.

def identity(t):
    return t


def positive(t):
    return tf.maximum(t, tf.zeros([], t.dtype))  # a scalar: no full-size zeros beside a kernel's copy


def negative(t):
    return tf.minimum(t, tf.zeros([], t.dtype))


def ones(t):
    return tf.ones_like(t)


def square(t):
    return tf.square(t)


def zero(t):
    return None


class ParamMod:
    """How one term modifies the parameters: ``kernel`` and ``bias`` modifiers."""

    def __init__(self, kernel=identity, bias=identity):
        self.kernel = kernel
        self.bias = bias

    def __repr__(self):
        return f"ParamMod({self.kernel.__name__}, {getattr(self.bias, '__name__', self.bias)})"


KEEP = ParamMod(identity, identity)


class BasicRule(Rule):
    """The generic modified-gradient rule for ``linear`` ops (see module docstring).

    ``input_modifiers``: list of functions x -> x', one per term.
    ``param_modifiers``: list of :class:`ParamMod`, one per term.
    ``gradient_mapper(R, zs) -> list of s``: the stabilised division (an
    ``s`` of None skips that term's transposed op).
    ``reducer(xs, cs) -> R_x``: combines the terms.  Mappers and reducers must combine
    tensors by elementwise, broadcasting arithmetic (negative axes only): a term whose
    input modifier is ``negative`` on an input known to be >= 0 is skipped (its x', c
    and, without a bias, z are scalar zeros; with a bias, z is the bias broadcast to one
    sample), and when several seeds per sample run as one pass (two-seed SGLRP/CLRP,
    several targets) ``R``, the ``s`` and the ``cs`` carry a leading seeds axis,
    (seeds, N, ...), while the ``zs`` and ``xs`` stay (N, ...).
    ``denominator(zs)``: for a conservative rule (the reducer's terms sum over
    the inputs to this, it is safe-divided, no bias enters), the denominator;
    None makes no conservation promise.
    """

    kinds = ("linear",)

    def __init__(self, input_modifiers, param_modifiers, gradient_mapper, reducer, denominator=None):
        if len(input_modifiers) != len(param_modifiers):
            raise ValueError("one parameter modifier per input modifier")
        self._inputs = list(input_modifiers)
        self._params = list(param_modifiers)
        self._mapper = gradient_mapper
        self._reducer = reducer
        self._denominator = denominator

    def conservative(self, op):
        biased = op.bias is not None and any(p.bias is not zero for p in self._params)
        return self._denominator is not None and op.kind == "linear" and op.activation is None and not biased

    def backward(self, ctx, R):
        return self.modified_gradient(ctx, R)

    def modified_gradient(self, ctx, R):
        """The recipe of the module docstring (subclasses with a cheaper exact form for
        some ops override this).  The reverse pass runs it behind a control dependency
        on ``ctx.ready``, so that the modified weights and outputs it builds from the
        forward pass are made just before the step that needs them."""
        op = ctx.op
        # Denominators depend on x only: with several seeds per sample, compute them on
        # the forward batch; R, s and c are viewed per seed ((seeds, N, ...), ctx.per_seed)
        # so that zs and xs broadcast against them untiled; transposed ops run on R's batch.
        x, y = (ctx.untiled[0][0], ctx.untiled[1]) if ctx.tile else (ctx.x, ctx.output)
        tile = ctx.tile or (lambda t: t)
        kernel = op.kernel() if op.kernel is not None else None
        bias = op.bias() if op.bias is not None else None
        xs, zs, transposes = [], [], []
        z_pos = None  # f(x+, w+) without bias, for the complementary term below
        for imod, pmod in zip(self._inputs, self._params):
            skip = imod is negative and ctx.nonneg[0]
            # x >= 0: x- is 0 and x+ is x; a skipped term's x' and z stay scalars or a
            # bias vector (broadcast by the mapper and reducer), never full-size zeros
            xk = tf.zeros([], x.dtype) if skip else x if (imod is positive and ctx.nonneg[0]) else imod(x)
            b = pmod.bias(bias) if bias is not None else None
            if skip:  # x' == 0: only the bias remains
                z = tf.zeros([], y.dtype) if b is None else op.add_bias(tf.zeros([1] * len(y.shape), y.dtype), b)
                transposes.append(None)
                xs.append(xk)
                zs.append(z)
                continue
            elif imod is identity and pmod is KEEP and op.activation is None:
                z = y  # reuse the forward pass
                transposes.append(_transpose(op, tile(xk), lambda: kernel))
            elif (z_pos is not None and imod is positive and pmod.kernel is negative and ctx.nonneg[0]
                  and op.activation is None):
                # x >= 0: f(x, w-) = f(x, w) - f(x, w+), from the forward output, no extra op;
                # w- is made only for the transposed op, after the terms before it are done
                y0 = y if bias is None else op.add_bias(y, -bias)
                z = op.add_bias(y0 - z_pos, b)
                transposes.append(_transpose(op, tile(xk), lambda mod=pmod.kernel: mod(kernel)))
            elif ctx.tile:
                k = pmod.kernel(kernel) if kernel is not None else None
                z0 = op.forward(xk, k)
                z = op.add_bias(z0, b)
                transposes.append(_transpose(op, tile(xk), lambda k=k: k))
            else:
                k = pmod.kernel(kernel) if kernel is not None else None
                with tf.GradientTape() as tape:
                    tape.watch(xk)
                    z0 = op.forward(xk, k)
                z = op.add_bias(z0, b)
                transposes.append(_Transpose(tape, z0, xk))
            if imod is positive and pmod.kernel is positive and z_pos is None:
                z_pos = z0
            xs.append(xk)
            zs.append(z)
        if self._denominator is not None:
            ctx.require_nonzero(self._denominator(zs))
        ss = self._mapper(ctx.per_seed(R), zs)
        cs, done = [], []
        for t, s in zip(transposes, ss):
            if t is None or s is None:
                cs.append(tf.zeros([], x.dtype))
                continue
            # one transposed op after the other: a term's modified kernel made here
            # (VGG16's fc1: 392 MiB) is not alive beside the previous term's
            with tf.control_dependencies(done):
                cs.append(ctx.per_seed(t(ctx.merge_seeds(s))))
            done = [cs[-1]]
        return [ctx.merge_seeds(self._reducer(xs, cs))]


class _Transpose:
    def __init__(self, tape, z, x):
        self.tape, self.z, self.x = tape, z, x

    def __call__(self, s):
        return self.tape.gradient(self.z, self.x, output_gradients=s)


def _transpose(op, x, kernel):
    """(d op.forward(x, k) / dx)^T s with ``k = kernel()`` made where it is called."""
    return lambda s: vjp(lambda t: op.forward(t, kernel()), x, s)
