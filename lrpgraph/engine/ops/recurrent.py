"""Recurrent layers: the :class:`Recurrent` op description and its Keras adapter.

``keras.layers.LSTM``, ``GRU`` (both ``reset_after`` settings) and ``SimpleRNN``
become one :class:`Recurrent` node each (kind ``recurrent``, subkind the cell:
``lstm``, ``gru``, ``simple``).  The op computes the layer from its own weights
(``kernel``, ``recurrent_kernel``, ``bias``: readers of the layer's variables, read
inside the compiled function) with a ``tf.scan`` over time, so a sequence length not
known in advance never retraces.  ``Bidirectional`` is described as the functional
model it computes (``Nested(expand=...)``): its forward and backward layers (each a
``recurrent`` node), the time flip of the backward sequence and the merge
(Concatenate, Add, Average or Multiply), which a rewrite pass inlines.

A Keras mask (``Masking``, ``Embedding(mask_zero=True)``) reaches the layer as a
second input, the boolean (N, T) tensor Keras computes (its ``NotEqual``/``Any``
nodes are described as :class:`~lrpgraph.ops.Constant`: a boolean carries no
relevance).  At a masked step the state is carried through unchanged and the output
is the previous output (zeros where the layer has ``zero_output_for_mask``, as the
layers inside a ``Bidirectional`` returning sequences do), as in Keras.

Unsupported (a clear error at conversion): ``stateful=True``, ``return_state=True``,
an ``initial_state`` argument, ``Bidirectional(merge_mode=None)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import tensorflow as tf

import keras
from keras import layers as L
from keras.src.backend import KerasTensor
from keras.src.ops import numpy as knp

from .base import Constant, Nested, Op, Reshape, Unknown

__all__ = ["Recurrent", "BUILDERS", "CELLS"]

# gate blocks of the kernels, in Keras's column order
CELLS = {"lstm": ("i", "f", "c", "o"), "gru": ("z", "r", "h"), "simple": ("h",)}


@dataclass(frozen=True, eq=False, repr=False)
class Recurrent(Op):
    """A stateless recurrent layer over (N, T, D) sequences (kind ``recurrent``).

    ``cell``: 'lstm', 'gru' or 'simple' (the subkind).  ``units``: H.  ``kernel``
    (D, G*H), ``recurrent_kernel`` (H, G*H), ``bias`` ((G*H,), GRU with
    ``reset_after``: (2, 3H), input and recurrent bias; None without bias): readers,
    gate blocks in Keras's order (:data:`CELLS`: LSTM i, f, c, o; GRU z, r, h).
    ``activation`` (tanh by default) and ``recurrent_activation`` (the gates'
    sigmoid): callables.  ``reset_after`` (GRU): the reset gate multiplies
    ``h U_h + b_rh`` (True) or ``h`` before ``U_h`` (False).  ``return_sequences``,
    ``go_backwards``, ``zero_output_for_mask``: as the Keras layer.  ``masked``:
    input slot 1 is the boolean (N, T) mask.

    LSTM:  z_t = x_t K + h_{t-1} U + b,  i, f, o = sigma(z_i, z_f, z_o),
           g_t = act(z_c),  c_t = f c_{t-1} + i g_t,  h_t = o act(c_t).
    GRU:   z, r = sigma(x K_z + h U_z + b_z, x K_r + h U_r + b_r),
           hh = act(x K_h + b_h + r (h U_h + b_rh))   (reset_after)
           hh = act(x K_h + (r h) U_h + b_h)          (reset_before),
           h_t = z h_{t-1} + (1 - z) hh.
    Simple: h_t = act(x_t K + h_{t-1} U + b).
    """

    kind = "recurrent"
    cell: str = "lstm"
    units: int = 0
    kernel: Callable | None = None
    recurrent_kernel: Callable | None = None
    bias: Callable | None = None
    activation: Callable = tf.tanh
    recurrent_activation: Callable | None = tf.sigmoid
    reset_after: bool = False
    return_sequences: bool = False
    go_backwards: bool = False
    zero_output_for_mask: bool = False
    masked: bool = False

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"Recurrent cell must be one of {sorted(CELLS)}, got {self.cell!r}")
        for name in ("kernel", "recurrent_kernel", "bias"):
            v = getattr(self, name)
            if isinstance(v, (keras.Variable, tf.Variable)):
                object.__setattr__(self, name, lambda v=v: tf.convert_to_tensor(getattr(v, "value", v)))
            elif v is not None and not callable(v):
                raise TypeError(f"Recurrent {name}= must be a Keras variable or a zero-argument callable, "
                                f"got {type(v).__name__}")
        if self.kernel is None or self.recurrent_kernel is None:
            raise TypeError("Recurrent needs kernel= and recurrent_kernel= (Keras variables or callables)")

    @property
    def subkind(self):
        return self.cell

    # -- the forward pass ---------------------------------------------------------
    def weights(self, dtype):
        """(K, U, b_in, b_rec) in ``dtype``: b_rec is the GRU's recurrent bias with
        ``reset_after`` (else None); b_in None without bias."""
        k = tf.cast(self.kernel(), dtype)
        u = tf.cast(self.recurrent_kernel(), dtype)
        b = None if self.bias is None else tf.cast(self.bias(), dtype)
        if b is not None and len(b.shape) == 2:
            return k, u, b[0], b[1]
        return k, u, b, None

    def time_major(self, x, mask=None):
        """(N, T, ...) -> (T, N, ...) in processing order (reversed with go_backwards);
        the mask likewise (all True when None)."""
        xt = tf.transpose(x, [1, 0] + list(range(2, len(x.shape))))
        m = tf.ones(tf.shape(xt)[:2], tf.bool) if mask is None else tf.transpose(tf.cast(mask, tf.bool))
        if self.go_backwards:
            xt, m = tf.reverse(xt, [0]), tf.reverse(m, [0])
        return xt, m

    def steps(self, x, mask=None):
        """The forward recursion, time-major in processing order: a dict of (T, N, ...)
        tensors: ``x`` (inputs), ``m`` (mask), ``h_prev`` and ``h`` (state before and
        after each step; carried unchanged at masked steps), and per cell: LSTM
        ``c_prev``, ``c``, ``gates`` (i, f, g, o after their activations) and ``z_c``
        (g's pre-activation); GRU ``z``, ``r`` (gates), ``hh`` (candidate), ``z_h``
        (its pre-activation), ``rec_h`` (h U_h + b_rh with reset_after); Simple
        ``z_h`` (the pre-activation).  Rules rerun this to get the internal states."""
        dtype = x.dtype
        k, u, b, b_rec = self.weights(dtype)
        xt, m = self.time_major(x, mask)
        H = self.units
        xk = tf.einsum("tnd,dg->tng", xt, k)
        if b is not None:
            xk = xk + b
        n = tf.shape(x)[0]
        h0 = tf.zeros(tf.stack([n, H]), dtype)
        sig = self.recurrent_activation
        act = self.activation

        if self.cell == "lstm":
            def step(carry, elem):
                h, c = carry[0], carry[1]
                xk_t, m_t = elem
                z = xk_t + tf.matmul(h, u)
                zi, zf, zc, zo = tf.split(z, 4, axis=-1)
                i, f, g, o = sig(zi), sig(zf), act(zc), sig(zo)
                c_new = f * c + i * g
                h_new = o * act(c_new)
                keep = m_t[:, None]
                return (tf.where(keep, h_new, h), tf.where(keep, c_new, c), tf.concat([i, f, g, o], -1), zc)

            init = (h0, h0, tf.zeros(tf.stack([n, 4 * H]), dtype), h0)
            h, c, gates, zc = tf.scan(step, (xk, m), init)
            h_prev = tf.concat([h0[None], h[:-1]], 0)
            c_prev = tf.concat([h0[None], c[:-1]], 0)
            return dict(x=xt, m=m, h=h, h_prev=h_prev, c=c, c_prev=c_prev, gates=gates, z_c=zc)

        if self.cell == "gru":
            def step(carry, elem):
                h = carry[0]
                xk_t, m_t = elem
                xz, xr, xh = tf.split(xk_t, 3, axis=-1)
                if self.reset_after:
                    inner = tf.matmul(h, u)
                    if b_rec is not None:
                        inner = inner + b_rec
                    rz, rr, rh = tf.split(inner, 3, axis=-1)
                    z, r = sig(xz + rz), sig(xr + rr)
                    zh = xh + r * rh
                else:
                    rz, rr = tf.split(tf.matmul(h, u[:, :2 * H]), 2, axis=-1)
                    z, r = sig(xz + rz), sig(xr + rr)
                    rh = tf.zeros_like(h)
                    zh = xh + tf.matmul(r * h, u[:, 2 * H:])
                hh = act(zh)
                h_new = z * h + (1 - z) * hh
                return (tf.where(m_t[:, None], h_new, h), z, r, hh, zh, rh)

            init = (h0, h0, h0, h0, h0, h0)
            h, z, r, hh, zh, rh = tf.scan(step, (xk, m), init)
            h_prev = tf.concat([h0[None], h[:-1]], 0)
            return dict(x=xt, m=m, h=h, h_prev=h_prev, z=z, r=r, hh=hh, z_h=zh, rec_h=rh)

        def step(carry, elem):
            h = carry[0]
            xk_t, m_t = elem
            zh = xk_t + tf.matmul(h, u)
            return (tf.where(m_t[:, None], act(zh), h), zh)

        h, zh = tf.scan(step, (xk, m), (h0, h0))
        h_prev = tf.concat([h0[None], h[:-1]], 0)
        return dict(x=xt, m=m, h=h, h_prev=h_prev, z_h=zh)

    def outputs(self, h, m):
        """The layer's output from the time-major states ``h`` and mask ``m`` (processing
        order): the sequence (N, T, H) in processing order (reversed with go_backwards,
        as Keras returns it), masked steps zero with ``zero_output_for_mask`` (else the
        carried state, i.e. the previous output); or the last output (N, H)."""
        if not self.return_sequences:
            return h[-1]
        if self.zero_output_for_mask:
            h = tf.where(m[:, :, None], h, tf.zeros([], h.dtype))
        return tf.transpose(h, [1, 0, 2])

    def __call__(self, inputs):
        x = inputs[0]
        mask = inputs[1] if self.masked else None
        s = self.steps(x, mask)
        return [self.outputs(s["h"], s["m"])]


# ---- the Keras adapter ------------------------------------------------------------

def _cast_read(layer, attr):
    if getattr(layer, attr, None) is None:
        return None
    dtype = layer.compute_dtype

    def read():
        v = getattr(layer, attr)
        return tf.cast(v.value if hasattr(v, "value") else v, dtype)
    return read


def _call_problem(layer, call):
    """Why this call of a recurrent layer cannot be described (None: it can)."""
    if call is None:
        return None
    kw = call.kwargs
    if kw.get("initial_state") is not None or len(call.args) > 1:
        return ("it is called with an initial_state; lrpgraph explains stateless layers starting from zeros: "
                "call the layer on the sequence alone")
    if kw.get("training"):
        return "it is called with training=True (dropout is random); call it with training=False"
    return None


def _mask_slot(call):
    m = call.kwargs.get("mask") if call is not None else None
    if m is None:
        return False
    if not isinstance(m, KerasTensor) or len(call.input_specs) != 2:
        return None
    return True


def recurrent_op(layer, call=None, rank=None):
    """The :class:`Recurrent` op of a Keras LSTM, GRU or SimpleRNN layer (its cell's
    weights read where called).  ValueError for a stateful layer or one returning its
    states; :class:`Unknown` for a call lrpgraph cannot reproduce."""
    if layer.stateful:
        raise ValueError(
            f"layer {layer.name!r} ({type(layer).__name__}) is stateful: its output depends on the state left by "
            "earlier batches, which an explanation of one batch cannot see. Rebuild the model with stateful=False "
            "and copy the weights (new_model.set_weights(model.get_weights()))")
    if layer.return_state:
        raise ValueError(
            f"layer {layer.name!r} ({type(layer).__name__}) has return_state=True (several outputs); lrpgraph "
            "explains one output per layer: build it with return_state=False")
    problem = _call_problem(layer, call)
    masked = _mask_slot(call)
    if problem is None and masked is None:
        problem = "its mask is not a model tensor"
    if problem is not None:
        return Unknown(f"{type(layer).__name__} {layer.name!r}: {problem}", call)
    cell = layer.cell
    name = "lstm" if isinstance(layer, L.LSTM) else "gru" if isinstance(layer, L.GRU) else "simple"
    rec_act = getattr(cell, "recurrent_activation", None)
    return Recurrent(
        cell=name, units=int(cell.units), kernel=_cast_read(cell, "kernel"),
        recurrent_kernel=_cast_read(cell, "recurrent_kernel"),
        bias=_cast_read(cell, "bias") if cell.use_bias else None,
        activation=cell.activation or (lambda t: t), recurrent_activation=rec_act,
        reset_after=bool(getattr(cell, "reset_after", False)), return_sequences=bool(layer.return_sequences),
        go_backwards=bool(layer.go_backwards), zero_output_for_mask=bool(layer.zero_output_for_mask),
        masked=bool(masked))


def bidirectional_model(layer, specs):
    """The functional model a ``Bidirectional`` layer computes with its own sublayers:
    ``y = forward_layer(x)``, ``y_rev = backward_layer(x)`` (``go_backwards``), the
    backward sequence flipped back to input order (``return_sequences``), then the
    merge: Concatenate (concat), Add (sum), Average (ave) or Multiply (mul)."""
    ins = [keras.Input(batch_shape=tuple(s.shape), dtype=s.dtype) for s in specs]
    kw = {"mask": ins[1]} if len(ins) == 2 else {}
    y = layer.forward_layer(ins[0], **kw)
    y_rev = layer.backward_layer(ins[0], **kw)
    if layer.return_sequences:
        y_rev = knp.flip(y_rev, axis=1)
    policy = layer.dtype_policy  # the merge computes in the layer's dtype, as Bidirectional does
    merge = {"concat": lambda: L.Concatenate(axis=-1, dtype=policy), "sum": lambda: L.Add(dtype=policy),
             "ave": lambda: L.Average(dtype=policy), "mul": lambda: L.Multiply(dtype=policy)}[layer.merge_mode]()
    return keras.Model(ins, merge([y, y_rev]), name=layer.name)


def _bidirectional(layer, call, rank):
    if layer.merge_mode is None:
        raise ValueError(
            f"Bidirectional layer {layer.name!r} has merge_mode=None (two outputs); lrpgraph explains one "
            "output per layer: use merge_mode 'concat', 'sum', 'ave' or 'mul'")
    if layer.return_state or layer.stateful:
        raise ValueError(
            f"Bidirectional layer {layer.name!r} is stateful or returns its states; build it with "
            "stateful=False, return_state=False and copy the weights")
    for sub in (layer.forward_layer, layer.backward_layer):
        if not isinstance(sub, (L.LSTM, L.GRU, L.SimpleRNN)):
            return Unknown(f"Bidirectional {layer.name!r} wraps a {type(sub).__name__}; lrpgraph describes "
                           "LSTM, GRU and SimpleRNN", call)
    problem = _call_problem(layer, call)
    if problem is None and _mask_slot(call) is None:
        problem = "its mask is not a model tensor"
    if problem is not None:
        return Unknown(f"Bidirectional {layer.name!r}: {problem}", call)
    return Nested(call, expand=lambda specs: bidirectional_model(layer, specs))


def _masking(layer, call, rank):
    """Masking: y = x where any(x != mask_value) over the features, else 0 (a re-indexing:
    relevance passes where the step is kept)."""
    return Reshape("Masking", call)


_BOOLEAN_OPS = tuple(getattr(knp, n) for n in (
    "NotEqual", "Equal", "Any", "All", "LogicalAnd", "LogicalOr", "LogicalNot", "Greater", "GreaterEqual",
    "Less", "LessEqual") if hasattr(knp, n))

# (layer classes -> builder(layer, call, input_rank)), spliced into lrpgraph.ops.keras.BUILDERS
BUILDERS = [
    ((L.Bidirectional,), _bidirectional),
    ((L.LSTM, L.GRU, L.SimpleRNN), recurrent_op),
    ((L.Masking,), _masking),
    ((knp.Flip,), lambda layer, call, rank: Reshape("Flip", call)),
    # masks: a boolean output carries no relevance (Keras's NotEqual/Any of a mask)
    (_BOOLEAN_OPS, lambda layer, call, rank: Constant(call)),
]
