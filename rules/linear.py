"""LRP rules for linear ops (Dense, Conv*, Depthwise, ConvTranspose, affine BatchNorm).

Notation: x input, w weights, b bias, z_j = sum_i x_i w_ij + b_j, R_j relevance
at the output, R_i what the rule gives the input; x+ = max(x, 0), x- = min(x, 0).
"Safe divide" means only exact zeros of the denominator become 1e-7
(iNNvestigate); a float ``stabilizer`` eps means z + eps * sign(z) with
sign(0) = +1 (Zennit).  References: Bach et al., "On Pixel-Wise Explanations for
Non-Linear Classifier Decisions by Layer-Wise Relevance Propagation", PLoS ONE
2015 (LRP-0, epsilon, alpha-beta); Montavon et al., "Explaining nonlinear
classification decisions with deep Taylor decomposition", Pattern Recognition
2017 (z+, w^2, z^B); Lapuschkin et al., "Unmasking Clever Hans predictors",
Nature Communications 2019 (flat); Montavon et al., "Layer-Wise Relevance
Propagation: An Overview", 2019 (gamma).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .base import (KEEP, BasicRule, ParamMod, identity, negative, ones, positive, safe_divide,
                   square, stabilize, vjp, zero)

__all__ = ["Z", "Epsilon", "AlphaBeta", "ZPlus", "ZPlusFast", "Gamma", "WSquare", "Flat",
           "ZBox", "Bounded", "proportional", "bias_share"]


def _check_nonneg(rule, name, value, meaning):
    """ValueError unless ``value`` is a finite number >= 0 (NaN fails too)."""
    try:
        ok = np.ndim(value) == 0 and np.isfinite(value) and value >= 0
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{rule}: {name} must be a finite number >= 0 ({meaning}), got {name}={value!r}")


def _check_stabilizer(rule, stabilizer):
    if stabilizer is not None:
        _check_nonneg(rule, "stabilizer", stabilizer,
                      "z + stabilizer * sign(z); None for the safe divide")


def _divider(stabilizer):
    if stabilizer is None:
        return safe_divide
    return lambda R, z: R / stabilize(z, stabilizer)


def _x_times_c(xs, cs):
    return sum(x * c for x, c in zip(xs, cs))


def proportional(ctx, R, divide):
    """R_i = x_i * (dy/dx_i)^T (R / y) for a parameter-free op (Add, Subtract, Average,
    average pooling): each input keeps the share it contributed to y."""
    xs = [tf.identity(x) for x in ctx.inputs]  # distinct tensors even for `x + x`
    real = [x for x in xs if x.dtype.is_floating]  # an integer input (indices) gets none
    with tf.GradientTape() as tape:
        tape.watch(real)
        y = ctx.op(xs)[0]
    gs = iter(tape.gradient(y, real, output_gradients=divide(R, ctx.output)))
    gs = [next(gs) if x.dtype.is_floating else None for x in xs]
    return [None if g is None else x * g for x, g in zip(xs, gs)]


class _Proportional(BasicRule):
    """A BasicRule that also handles parameter-free sum-like ops proportionally."""

    kinds = ("linear", "add", "pool_avg")

    def conservative(self, op):
        if op.kind == "linear":
            return super().conservative(op)
        return self._denominator is not None  # sum-like ops are homogeneous: only y = 0 loses

    def backward(self, ctx, R):
        if ctx.op.kind == "linear":
            return super().backward(ctx, R)
        if self._denominator is not None:
            ctx.require_nonzero(ctx.output)
        return proportional(ctx, R, self._divide)


class Epsilon(_Proportional):
    """LRP-epsilon: R_i = x_i * sum_j w_ij R_j / (z_j + eps * sign(z_j)), sign(0) = +1.

    ``bias=False`` drops b from z (iNNvestigate's ``_IB`` variants).  Bach et al. 2015.

    ``bias_factor`` (Arras et al., "Explaining Recurrent Neural Network Predictions in
    Sentiment Analysis", WASSA 2017; their ``lrp_linear``) on linear ops: 0 (default)
    lets the bias and the stabiliser absorb their share; 1 hands it back uniformly
    to the n_j inputs connected to output j (n_j = f(1, 1)_j: all D inputs of a Dense):

        R_i = sum_j (x_i w_ij + bias_factor * (b_j + eps sign(z_j)) / n_j) R_j / (z_j + eps sign(z_j)),

    which conserves exactly (sum_i R_i = sum_j R_j) with ``bias_factor=1``.
    """

    def __init__(self, epsilon=1e-7, bias=True, bias_factor=0.0):
        _check_nonneg("Epsilon", "epsilon", epsilon,
                      "R / (z + epsilon * sign(z)); 0 is LRP-0, larger values absorb more relevance")
        _check_nonneg("Epsilon", "bias_factor", bias_factor,
                      "0 absorbs the bias and stabiliser share, 1 redistributes it to the inputs")
        self.epsilon = epsilon
        self.bias = bias
        self._bias_factor = bias_factor
        self._divide = _divider(epsilon)
        super().__init__([identity], [KEEP if bias else ParamMod(identity, zero)],
                         lambda R, zs: [self._divide(R, zs[0])], _x_times_c)

    @property
    def bias_factor(self):
        return self._bias_factor

    def __repr__(self):  # bias_factor shown where it is set
        r = super().__repr__()
        return f"{r[:-1]}, bias_factor={self._bias_factor!r})" if self._bias_factor else r

    def modified_gradient(self, ctx, R):
        out = super().modified_gradient(ctx, R)
        if not self.bias_factor:
            return out
        return [out[0] + tf.cast(self.bias_factor, out[0].dtype) * bias_share(ctx, R, self.epsilon, self.bias)]


def bias_share(ctx, R, epsilon, bias=True):
    """What LRP-epsilon leaves with the bias and the stabiliser, handed to the inputs:
    R_i = sum_j [i feeds j] (b_j + eps sign(z_j)) / n_j * R_j / (z_j + eps sign(z_j)),
    n_j = f(1, 1)_j the number of inputs feeding output j (a Dense: all of them;
    connections weighted as the op's forward weights a constant factor in it)."""
    op, x = ctx.op, ctx.x
    k = op.kernel()
    b = op.bias() if (bias and op.bias is not None) else None
    z = ctx.output if (bias and op.activation is None) else op.add_bias(op.forward(x, k), b)
    extra = stabilize(tf.zeros_like(z), epsilon)
    extra = tf.where(z >= 0, extra, -extra)  # eps sign(z), sign(0) = +1
    if b is not None:
        extra = op.add_bias(extra, b)
    ones_k = tf.ones_like(k)
    n = op.forward(tf.ones_like(x), ones_k)
    share = safe_divide(extra * R / stabilize(z, epsilon), n)
    return vjp(lambda t: op.forward(t, ones_k), x, share)


class Z(_Proportional):
    """LRP-0: R_i = x_i * sum_j w_ij R_j / z_j, with a safe divide (zeros -> 1e-7).
    Equals gradient x input on ReLU networks.  Bach et al. 2015."""

    def __init__(self, bias=True, stabilizer=None):
        _check_stabilizer("Z", stabilizer)
        self.bias = bias
        self.stabilizer = stabilizer
        self._divide = _divider(stabilizer)
        super().__init__([identity], [KEEP if bias else ParamMod(identity, zero)],
                         lambda R, zs: [self._divide(R, zs[0])], _x_times_c, _first(stabilizer))


def _first(stabilizer):
    """The denominator of a one-term safe-divided rule (None: epsilon-stabilised, not conservative)."""
    return (lambda zs: zs[0]) if stabilizer is None else None


def _gamma_mod(gamma, part):
    def mod(w):
        return w + gamma * part(w)
    mod.__name__ = f"w+{gamma}*{part.__name__}(w)"
    return mod


class AlphaBeta(BasicRule):
    """LRP-alpha-beta: R_i = alpha * R+_i - beta * R-_i with alpha - beta = 1.

    Positive part z+ = x+ w+ + x- w-, negative part z- = x+ w- + x- w+; each part
    is redistributed by its own contributions.  Bias conventions:

    - ``bias=True`` (iNNvestigate): b+ + b- = b is added to both denominators;
    - ``bias="split"`` (Zennit): b+ joins z+ and b- joins z-;
    - ``bias=False``: no bias (iNNvestigate's ``IgnoreBias`` variants).

    ``stabilizer=None`` is iNNvestigate's safe divide, a float is Zennit's
    epsilon-stabiliser.  Bach et al. 2015.
    """

    def __init__(self, alpha=2.0, beta=1.0, bias=True, stabilizer=None):
        if alpha < 0 or beta < 0 or not np.isclose(alpha - beta, 1.0):
            raise ValueError(f"AlphaBeta needs alpha, beta >= 0 and alpha - beta = 1, got alpha={alpha}, beta={beta}")
        if bias not in (True, False, "split"):
            raise ValueError(f"AlphaBeta bias must be True, False or 'split', got {bias!r}")
        _check_stabilizer("AlphaBeta", stabilizer)
        self.alpha, self.beta, self.bias, self.stabilizer = alpha, beta, bias, stabilizer
        # bias modifier of each term: (x+, w+), (x-, w-), (x+, w-), (x-, w+)
        biases = {True: [positive, negative, negative, positive],
                  "split": [positive, zero, negative, zero],
                  False: [zero] * 4}[bias]
        inputs = [positive, negative, positive, negative]
        params = [ParamMod(w, b) for w, b in zip([positive, negative, negative, positive], biases)]
        if not beta:
            inputs, params = inputs[:2], params[:2]
        divide = _divider(stabilizer)

        def mapper(R, zs):
            s_pos = divide(R, zs[0] + zs[1])
            if not beta:
                return [s_pos, s_pos]
            s_neg = divide(R, zs[2] + zs[3])
            return [s_pos, s_pos, s_neg, s_neg]

        def reducer(xs, cs):
            pos = xs[0] * cs[0] + xs[1] * cs[1]
            if not beta:
                return alpha * pos if alpha != 1 else pos
            return alpha * pos - beta * (xs[2] * cs[2] + xs[3] * cs[3])

        conserving = not beta and stabilizer is None
        super().__init__(inputs, params, mapper, reducer, (lambda zs: zs[0] + zs[1]) if conserving else None)


class ZPlus(AlphaBeta):
    """LRP-z+: alpha=1, beta=0.  ``bias=False`` (default) is iNNvestigate's
    ``lrp.z_plus`` (z = x+ w+ + x- w-, safe divide); ``bias="split",
    stabilizer=1e-6`` is Zennit's ZPlus.  Montavon et al. 2017."""

    def __init__(self, bias=False, stabilizer=None):
        super().__init__(1.0, 0.0, bias=bias, stabilizer=stabilizer)


class ZPlusFast(BasicRule):
    """z+ assuming x >= 0: R_i = x_i * sum_j w+_ij R_j / sum_i' x_i' w+_i'j (no bias).
    iNNvestigate's ``lrp.z_plus_fast``.  Montavon et al. 2017."""

    def __init__(self):
        super().__init__([identity], [ParamMod(positive, zero)],
                         lambda R, zs: [safe_divide(R, zs[0])], _x_times_c, _first(None))


class Gamma(BasicRule):
    """Generalised LRP-gamma (Zennit 1.0): w -> w + gamma * w+ for the positive
    contributions of positive outputs and w + gamma * w- for negative outputs,
    over positive and negative inputs.  Montavon et al. 2019; Andeol et al. 2021.

    With up(w) = w + gamma w+ and down(w) = w + gamma w-: outputs with z_j > 0
    redistribute over x+ up(w) + x- down(w) + up(b), outputs with z_j < 0 over
    x+ down(w) + x- up(w) + down(b).  ``gamma`` >= 0 (0 is LRP-epsilon with the
    stabiliser, up to the sign split of R).

    On inputs known to be >= 0 (after a ReLU: every hidden layer of a ReLU net)
    :meth:`backward` takes a shorter, equal computation (see :meth:`_backward_nonneg`).
    """

    def __init__(self, gamma=0.25, stabilizer=1e-6):
        _check_nonneg("Gamma", "gamma", gamma, "w + gamma * w+ favours positive contributions; 0 adds nothing")
        _check_stabilizer("Gamma", stabilizer)
        self.gamma, self.stabilizer = gamma, stabilizer
        up, down = _gamma_mod(gamma, positive), _gamma_mod(gamma, negative)
        inputs = [positive, negative, positive, negative, identity]
        params = [ParamMod(up, up), ParamMod(down, zero), ParamMod(down, down), ParamMod(up, zero), KEEP]
        divide = self._divide = _divider(stabilizer)

        def mapper(R, zs):
            out = zs[4]
            s_pos = divide(R * tf.cast(out > 0, R.dtype), zs[0] + zs[1])
            s_neg = divide(R * tf.cast(out < 0, R.dtype), zs[2] + zs[3])
            return [s_pos, s_pos, s_neg, s_neg, None]

        super().__init__(inputs, params, mapper, lambda xs, cs: _x_times_c(xs[:4], cs[:4]))

    def modified_gradient(self, ctx, R):
        op = ctx.op
        if op.kind == "linear" and ctx.nonneg[0] and op.activation is None and op.kernel is not None:
            return self._backward_nonneg(ctx, R)
        return super().modified_gradient(ctx, R)  # the general five-term BasicRule recipe

    def _backward_nonneg(self, ctx, R):
        """The same rule on x >= 0 with one extra forward and two transposed ops.

        x- = 0 removes the x- terms.  f is linear in the kernel, so with
        q = f(x, w+) + b+ (the one extra forward) and the forward output y = f(x, w) + b:
        f(x, up(w)) + up(b) = y + g q and f(x, down(w)) + down(b) = y + g (y - q)
        (w- = w - w+, b- = b - b+).  With s = R / stab(that denominator) (the first
        where y > 0, the second where y < 0, nothing where y = 0), the transposed ops
        combine likewise: up(w)^T s_pos + down(w)^T s_neg = w^T a + w+^T b with
        a = s_pos + (1 + g) s_neg and b = g (s_pos - s_neg).
        """
        op, gamma = ctx.op, self.gamma
        kernel = op.kernel()
        bias = op.bias() if op.bias is not None else None
        # per-sample factors on the forward batch (several seeds per sample: tiled afterwards)
        x, y = (ctx.untiled[0][0], ctx.untiled[1]) if ctx.tile else (ctx.x, ctx.output)
        tile = ctx.tile or (lambda t: t)
        w_pos = positive(kernel)
        q = op.add_bias(op.forward(x, w_pos), None if bias is None else positive(bias))
        up, down = y > 0, y < 0
        s = self._divide(ctx.per_seed(R), y + gamma * tf.where(up, q, y - q))  # (seeds, N, ...)
        zero = tf.zeros([], s.dtype)
        # a = s (y > 0), (1 + g) s (y < 0), 0 (y = 0); b = g s (y > 0), -g s (y < 0), 0
        a = tf.where(up, s, tf.where(down, (1.0 + gamma) * s, zero))
        b = tf.where(up, gamma * s, tf.where(down, -gamma * s, zero))
        xt = tile(x)
        c = (vjp(lambda t: op.forward(t, kernel), xt, ctx.merge_seeds(a))
             + vjp(lambda t: op.forward(t, w_pos), xt, ctx.merge_seeds(b)))
        return [ctx.merge_seeds(x * ctx.per_seed(c))]


class WSquare(BasicRule):
    """LRP-w^2: R_i = sum_j w_ij^2 / sum_i' w_i'j^2 * R_j (ignores x and b).
    Montavon et al. 2017."""

    def __init__(self, stabilizer=None):
        _check_stabilizer("WSquare", stabilizer)
        self.stabilizer = stabilizer
        divide = _divider(stabilizer)
        super().__init__([ones], [ParamMod(square, zero)], lambda R, zs: [divide(R, zs[0])],
                         lambda xs, cs: cs[0], _first(stabilizer))


class Flat(BasicRule):
    """LRP-flat: R_i = sum_j 1 / (number of inputs of j) * R_j: w^2 with all w = 1
    (on a padded convolution only in-bounds inputs count).  Lapuschkin et al. 2019."""

    def __init__(self, stabilizer=None):
        _check_stabilizer("Flat", stabilizer)
        self.stabilizer = stabilizer
        divide = _divider(stabilizer)
        super().__init__([ones], [ParamMod(ones, zero)], lambda R, zs: [divide(R, zs[0])],
                         lambda xs, cs: cs[0], _first(stabilizer))


class ZBox(BasicRule):
    """Bounded z^B rule for inputs known to lie in [low, high]:
    z_j = sum_i x_i w_ij - l_i w+_ij - h_i w-_ij,
    R_i = sum_j (x_i w_ij - l_i w+_ij - h_i w-_ij) / z_j * R_j.

    ``low``/``high`` are scalars or per-channel arrays (broadcast against the
    input's trailing axes).  ``stabilizer=None`` is iNNvestigate's
    ``BoundedRule``; 1e-6 is Zennit's ``ZBox`` (whose bias terms cancel).
    Montavon et al. 2017.
    """

    def __init__(self, low=-1.0, high=1.0, stabilizer=None):
        _check_stabilizer("ZBox", stabilizer)
        low_c = np.asarray(low, dtype=np.float64)
        high_c = np.asarray(high, dtype=np.float64)
        try:
            np.broadcast(low_c, high_c)
        except ValueError:
            raise ValueError(f"ZBox: low and high must broadcast against each other (scalars or one value "
                             f"per channel), got shapes {low_c.shape} and {high_c.shape}") from None
        if np.any(low_c > high_c) or not (np.all(np.isfinite(low_c)) and np.all(np.isfinite(high_c))):
            raise ValueError(f"ZBox: the input bounds need low <= high, both finite (the range the layer's "
                             f"input lies in, e.g. low=0, high=1 for images in [0, 1]), got low={low!r}, "
                             f"high={high!r}")
        self.low, self.high, self.stabilizer = low, high, stabilizer

        def to_low(x):
            return tf.broadcast_to(tf.cast(low_c, x.dtype), tf.shape(x))

        def to_high(x):
            return tf.broadcast_to(tf.cast(high_c, x.dtype), tf.shape(x))

        self._bounds = (low_c, high_c, to_low, to_high)
        divide = self._zdivide = _divider(stabilizer)
        no_bias = ParamMod(identity, zero)
        super().__init__(
            [identity, to_low, to_high],
            [no_bias, ParamMod(positive, zero), ParamMod(negative, zero)],
            lambda R, zs: [divide(R, zs[0] - zs[1] - zs[2])] * 3,
            lambda xs, cs: xs[0] * cs[0] - xs[1] * cs[1] - xs[2] * cs[2],
            (lambda zs: zs[0] - zs[1] - zs[2]) if stabilizer is None else None,
        )

    def modified_gradient(self, ctx, R):
        """The same rule with two transposed ops and no full-batch extra forward.

        The bounds are the same for every sample, so f(l, w+) + f(h, w-) runs on a
        batch of one; f(x, w) = y - b is the forward output.  With w- = w - w+ the
        three transposed ops become two: x w^T s - l w+^T s - h w-^T s =
        (x - h) w^T s + (h - l) w+^T s.
        """
        op = ctx.op
        if op.kind != "linear" or op.activation is not None or op.kernel is None:
            return super().modified_gradient(ctx, R)  # the general three-term BasicRule recipe
        low_c, high_c, to_low, to_high = self._bounds
        kernel = op.kernel()
        bias = op.bias() if op.bias is not None else None
        x, y = (ctx.untiled[0][0], ctx.untiled[1]) if ctx.tile else (ctx.x, ctx.output)
        tile = ctx.tile or (lambda t: t)
        w_pos = positive(kernel)
        one = x[:1]
        bounds = op.forward(to_low(one), w_pos) + op.forward(to_high(one), negative(kernel))
        z = (y if bias is None else op.add_bias(y, -bias)) - bounds
        if self.stabilizer is None:
            ctx.require_nonzero(z)
        s = ctx.merge_seeds(self._zdivide(ctx.per_seed(R), z))  # z broadcasts over the seeds
        xt = tile(x)
        low, high = tf.cast(low_c, x.dtype), tf.cast(high_c, x.dtype)
        c_w = ctx.per_seed(vjp(lambda t: op.forward(t, kernel), xt, s))
        c_pos = ctx.per_seed(vjp(lambda t: op.forward(t, w_pos), xt, s))
        return [ctx.merge_seeds((x - high) * c_w + (high - low) * c_pos)]


Bounded = ZBox
