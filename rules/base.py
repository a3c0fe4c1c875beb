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

__all__ = [
    "Context", "Rule", "BasicRule", "ParamMod", "stabilize", "safe_divide", "vjp", "wide_dtype",
    "identity", "positive", "negative", "ones", "square", "zero",
]


class Context:
    """What a rule sees of one node.

    Attributes: ``op`` (the node's :class:`lrpgraph.ops.Op`), ``inputs`` (forward
    input tensors, one per slot), ``output`` (the forward output), ``nonneg``
    (per input: True where the input is known to be >= 0 everywhere, e.g. the
    output of a ReLU), ``name`` (node id), ``layer`` (the Keras layer).
    """

    def __init__(self, op, inputs, output, nonneg=None, name=None, layer=None, guards=None):
        self.tile = None  # set when the reverse pass runs several seeds per sample
        self.untiled = None  # then: (inputs, output) at the forward batch size
        self.guards = guards  # a list when the pass relies on the rules' conservation
        self.op = op
        self.inputs = inputs
        self.output = output
        self.nonneg = nonneg if nonneg is not None else [False] * len(inputs)
        self.name = name
        self.layer = layer

    @property
    def x(self):
        return self.inputs[0]

    def require_nonzero(self, denominator):
        """Report a denominator on which the rule's conservation depends (see
        :meth:`Rule.conservative`); a no-op unless the pass collects guards."""
        if self.guards is not None:
            # tf.equal(b, 0) is the op safe_divide builds on the same tensor: graph
            # optimisation merges the two, so the guard only reads a boolean mask
            self.guards.append(tf.logical_not(tf.reduce_any(tf.equal(denominator, 0))))


class Rule:
    """Base class: ``backward(ctx, R) -> list of relevances, one per input``.

    ``kinds`` names the op kinds the rule can handle (empty: any).  A rule
    must be linear in ``R`` for SGLRP/CLRP's one-pass subtraction; set
    ``linear_in_relevance = False`` otherwise.
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


def wide_dtype(dtype):
    """The dtype for statistics (variances, means) of ``dtype`` data: float32 for
    float16/bfloat16/float32, as Keras computes them, and float64 kept as float64."""
    return tf.float64 if tf.as_dtype(dtype) == tf.float64 else tf.float32


# ---- stabilisers --------------------------------------------------------------

def stabilize(z, epsilon):
    """z + epsilon * sign(z), with sign(0) = +1 (iNNvestigate's and Zennit's convention)."""
    eps = tf.cast(epsilon, z.dtype)
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
    return tf.maximum(t, tf.zeros_like(t))


def negative(t):
    return tf.minimum(t, tf.zeros_like(t))


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
    ``reducer(xs, cs) -> R_x``: combines the terms.
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
        op = ctx.op
        # Denominators depend on x only: with several seeds per sample, compute them
        # on the forward batch and tile the result; transposed ops run on R's batch.
        x, y = (ctx.untiled[0][0], ctx.untiled[1]) if ctx.tile else (ctx.x, ctx.output)
        tile = ctx.tile or (lambda t: t)
        kernel = op.kernel() if op.kernel is not None else None
        bias = op.bias() if op.bias is not None else None
        xs, zs, transposes = [], [], []
        z_pos = None  # f(x+, w+) without bias, for the complementary term below
        for imod, pmod in zip(self._inputs, self._params):
            skip = imod is negative and ctx.nonneg[0]
            xk = tf.zeros_like(x) if skip else imod(x)
            k = pmod.kernel(kernel) if kernel is not None else None
            b = pmod.bias(bias) if bias is not None else None
            if skip:  # x' == 0: only the bias remains
                z = op.add_bias(tf.zeros_like(y), b)
                transposes.append(None)
            elif imod is identity and pmod is KEEP and op.activation is None:
                z = y  # reuse the forward pass
                transposes.append(_transpose(op, tile(xk), k))
            elif (z_pos is not None and imod is positive and pmod.kernel is negative and ctx.nonneg[0]
                  and op.activation is None):
                # x >= 0: f(x, w-) = f(x, w) - f(x, w+), from the forward output, no extra op
                y0 = y if bias is None else op.add_bias(y, -bias)
                z = op.add_bias(y0 - z_pos, b)
                transposes.append(_transpose(op, tile(xk), k))
            elif ctx.tile:
                z0 = op.fn(xk, k, None)
                z = op.add_bias(z0, b)
                transposes.append(_transpose(op, tile(xk), k))
            else:
                with tf.GradientTape() as tape:
                    tape.watch(xk)
                    z0 = op.fn(xk, k, None)
                z = op.add_bias(z0, b)
                transposes.append(_Transpose(tape, z0, xk))
            if imod is positive and pmod.kernel is positive and not skip and z_pos is None:
                z_pos = z0
            xs.append(tile(xk))
            zs.append(tile(z))
        if self._denominator is not None:
            ctx.require_nonzero(self._denominator(zs))
        ss = self._mapper(R, zs)
        cs = [tf.zeros_like(xs[0]) if t is None or s is None else t(s) for t, s in zip(transposes, ss)]
        return [self._reducer(xs, cs)]


class _Transpose:
    def __init__(self, tape, z, x):
        self.tape, self.z, self.x = tape, z, x

    def __call__(self, s):
        return self.tape.gradient(self.z, self.x, output_gradients=s)


def _transpose(op, x, kernel):
    return lambda s: vjp(lambda t: op.fn(t, kernel, None), x, s)
