"""LRP through recurrent layers (LSTM, GRU, SimpleRNN): :class:`RecurrentLRP`.

Arras et al., "Explaining Recurrent Neural Network Predictions in Sentiment
Analysis", WASSA 2017, and "Evaluating Recurrent Neural Network Explanations",
BlackboxNLP 2019 (reference code: ArrasL/LRP_for_LSTM).  Multiplicative gates are
constant weightings that receive no relevance ("signal-take-all"); every additive
join and every linear map redistributes by a linear rule.  Per step t, in the
layer's processing order, from the relevance R_h of h_t (the output's at t plus
what step t+1 handed back) and R_c of c_t:

LSTM (i, f, o gates, g = act(z_g), c_t = f c_{t-1} + i g, h_t = o act(c_t)):

    R_c  <- R_c + R_h                               (o and act(c): a weighting, all to c_t)
    (R_{c_{t-1}}, R_g) = split([f c_{t-1}, i g] -> c_t, R_c)      (``split`` rule)
    (R_{x_t}, R_{h_{t-1}}) = linear([x_t, h_{t-1}] -> z_g, R_g)    (``linear`` rule,
                                   z_g = x_t K_g + h_{t-1} U_g + b_g; act(z_g) passes R)

GRU (z, r gates, hh = act(z_h), h_t = z h_{t-1} + (1 - z) hh):

    (R_direct, R_hh) = split([z h_{t-1}, (1 - z) hh] -> h_t, R_h)
    (R_{x_t}, R_lin) = linear([x_t, h_{t-1}] -> z_h, R_hh),  z_h = x_t K_h + b_h + r (h_{t-1} U_h + b_rh)
                        (reset_after; reset_before: z_h = x_t K_h + (r h_{t-1}) U_h + b_h), the reset
                        gate r a constant factor on the recurrent term
    R_{h_{t-1}} = R_direct + R_lin

SimpleRNN (h_t = act(z), z = x_t K + h_{t-1} U + b):  (R_{x_t}, R_{h_{t-1}}) = linear([x_t, h_{t-1}] -> z, R_h).

``split`` sees the two summands as a Dense layer [a, b] -> a + b with kernel [I; I]
(so LRP-epsilon's stabiliser share, with ``bias_factor=1``, goes to all 2H units as in
Arras' code).  At a masked step the state passes through (R_{h_{t-1}} = R_h,
R_{c_{t-1}} = R_c) and x_t receives nothing; with ``zero_output_for_mask`` the
relevance of a masked output (a constant zero) is absorbed.  What reaches the
initial state (zeros: the layer is stateless) is absorbed, as Arras' code reports it
apart from the input's.  The reverse pass over time is one ``tf.scan`` inside the
compiled function (no retrace per sequence length).
"""

from __future__ import annotations

import tensorflow as tf

from lrpgraph.engine.context import Context
from lrpgraph.engine.ops import Linear

from .base import Rule
from .linear import Epsilon

__all__ = ["RecurrentLRP", "linear_step"]

ARRAS_EPSILON = 1e-3  # Arras' lrp(..., eps=0.001, bias_factor=0.0)


def _dense(x, k):
    return tf.matmul(x, k)


def linear_step(rule, forward, kernel, bias, x, z, R):
    """One linear part inside the recurrence: ``rule`` (a linear rule, e.g.
    :class:`~lrpgraph.rules.Epsilon`) on the op y = forward(x, kernel) + bias, whose
    output (bias included) is ``z``; the relevance of ``x``."""
    op = Linear(forward, lambda: kernel, None if bias is None else (lambda: bias), channel_axis=-1,
                subkind="dense")
    return rule.backward(Context(op, [x], z, nonneg=[False]), R)[0]


class RecurrentLRP(Rule):
    """LRP through a ``recurrent`` op (Arras et al. 2017, see the module docstring):
    gates are weightings (no relevance), ``linear`` (a linear rule; default
    LRP-epsilon, eps 1e-3, bias_factor 0: Arras' published setting) redistributes
    through the linear parts, ``split`` (default: the same rule) divides the relevance
    of an additive state update between its two summands."""

    kinds = ("recurrent",)

    def __init__(self, linear=None, split=None):
        self.linear = linear if linear is not None else Epsilon(ARRAS_EPSILON)
        self.split = split if split is not None else self.linear
        for name, r in (("linear", self.linear), ("split", self.split)):
            if not isinstance(r, Rule):
                raise TypeError(f"RecurrentLRP {name}= must be a rule (e.g. rules.Epsilon(1e-3)), got {r!r}")

    @property
    def linear_in_relevance(self):
        return self.linear.linear_in_relevance and self.split.linear_in_relevance

    def backward(self, ctx, R):
        op = ctx.op
        x = ctx.inputs[0]
        mask = ctx.inputs[1] if op.masked else None
        s = op.steps(x, mask)
        m = s["m"]
        H, D = op.units, x.shape[-1]
        dtype = x.dtype
        R = tf.cast(R, dtype)
        if op.return_sequences:
            R_out = tf.transpose(R, [1, 0, 2])  # processing order, as Keras returns it
            if op.zero_output_for_mask:
                R_out = tf.where(m[:, :, None], R_out, tf.zeros([], dtype))
        else:
            R_out = tf.concat([tf.zeros_like(s["h"][:-1]), R[None]], 0)
        k, u, b, b_rec = op.weights(dtype)
        zero_h = tf.zeros_like(s["h"][0])
        zero_x = tf.zeros_like(s["x"][0])
        step = {"lstm": self._lstm, "gru": self._gru, "simple": self._simple}[op.cell]
        init, elems, fn = step(op, s, R_out, k, u, b, b_rec, H, D, zero_h, zero_x)
        acc = tf.scan(fn, elems, init, reverse=True)
        R_x = acc[-1]  # (T, N, D), processing order
        if op.go_backwards:
            R_x = tf.reverse(R_x, [0])
        R_x = tf.transpose(R_x, [1, 0, 2])
        return [R_x, None] if op.masked else [R_x]

    # -- per cell: (initial carry, scanned elements, step) ----------------------------
    def _lstm(self, op, s, R_out, k, u, b, b_rec, H, D, zero_h, zero_x):
        kg = tf.concat([k[:, 2 * H:3 * H], u[:, 2 * H:3 * H]], 0)
        bg = None if b is None else b[2 * H:3 * H]
        eye = tf.eye(H, dtype=kg.dtype)
        pair = tf.concat([eye, eye], 0)  # [a, b] -> a + b

        def fn(acc, e):
            Rh, Rc = acc[0], acc[1]
            r_out, m_t, x_t, h_prev, c_prev, c_t, gates, zc = e
            i, f, g, _ = tf.split(gates, 4, axis=-1)
            Rh_t = Rh + r_out
            Rc_t = Rc + Rh_t
            Rab = linear_step(self.split, _dense, pair, None, tf.concat([f * c_prev, i * g], -1), c_t, Rc_t)
            Rin = linear_step(self.linear, _dense, kg, bg, tf.concat([x_t, h_prev], -1), zc, Rab[:, H:])
            keep = m_t[:, None]
            return (tf.where(keep, Rin[:, D:], Rh_t), tf.where(keep, Rab[:, :H], Rc),
                    tf.where(keep, Rin[:, :D], tf.zeros([], Rin.dtype)))

        elems = (R_out, s["m"], s["x"], s["h_prev"], s["c_prev"], s["c"], s["gates"], s["z_c"])
        return (zero_h, zero_h, zero_x), elems, fn

    def _gru(self, op, s, R_out, k, u, b, b_rec, H, D, zero_h, zero_x):
        kh = tf.concat([k[:, 2 * H:], u[:, 2 * H:]], 0)
        eye = tf.eye(H, dtype=kh.dtype)
        pair = tf.concat([eye, eye], 0)
        bh = None if b is None else b[2 * H:]
        brh = None if b_rec is None else b_rec[2 * H:]

        def fn(acc, e):
            Rh = acc[0]
            r_out, m_t, x_t, h_prev, z, r, hh, zh = e
            Rh_t = Rh + r_out
            a, c = z * h_prev, (1 - z) * hh
            Rab = linear_step(self.split, _dense, pair, None, tf.concat([a, c], -1), a + c, Rh_t)
            if op.reset_after:  # z_h = x K_h + b_h + r (h U_h + b_rh): r weights the recurrent term
                def forward(t, kk, r=r):
                    return tf.matmul(t[:, :D], kk[:D]) + r * tf.matmul(t[:, D:], kk[D:])
                bias = bh if brh is None else (bh + r * brh if bh is not None else r * brh)
            else:  # z_h = x K_h + (r h) U_h + b_h
                def forward(t, kk, r=r):
                    return tf.matmul(t[:, :D], kk[:D]) + tf.matmul(r * t[:, D:], kk[D:])
                bias = bh
            Rin = linear_step(self.linear, forward, kh, bias, tf.concat([x_t, h_prev], -1), zh, Rab[:, H:])
            keep = m_t[:, None]
            return (tf.where(keep, Rab[:, :H] + Rin[:, D:], Rh_t),
                    tf.where(keep, Rin[:, :D], tf.zeros([], Rin.dtype)))

        elems = (R_out, s["m"], s["x"], s["h_prev"], s["z"], s["r"], s["hh"], s["z_h"])
        return (zero_h, zero_x), elems, fn

    def _simple(self, op, s, R_out, k, u, b, b_rec, H, D, zero_h, zero_x):
        kc = tf.concat([k, u], 0)

        def fn(acc, e):
            Rh = acc[0]
            r_out, m_t, x_t, h_prev, zh = e
            Rh_t = Rh + r_out
            Rin = linear_step(self.linear, _dense, kc, b, tf.concat([x_t, h_prev], -1), zh, Rh_t)
            keep = m_t[:, None]
            return (tf.where(keep, Rin[:, D:], Rh_t), tf.where(keep, Rin[:, :D], tf.zeros([], Rin.dtype)))

        elems = (R_out, s["m"], s["x"], s["h_prev"], s["z_h"])
        return (zero_h, zero_x), elems, fn
