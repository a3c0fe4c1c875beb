"""Attention rollout (Abnar and Zuidema, "Quantifying Attention Flow in Transformers",
ACL 2020): the baseline transformer papers compare relevance maps against.

Per attention layer l (in the order the model computes them), with A_l the attention
weights averaged over heads ((T, T): row = query token, column = key token),

    A~_l = 0.5 * A_l + 0.5 * I            (the residual connection, as in the paper)
    A^_l = A~_l / rowsum(A~_l)            (rows renormalised)
    rollout = A^_L @ ... @ A^_2 @ A^_1

and the relevance of token j is rollout[cls, j] for a model with a class token, or
mean_i rollout[i, j] for a model that averages its tokens (GlobalAveragePooling1D).
The patch tokens' values are laid out on the patch grid and upsampled (nearest) to the
input's height and width: maps (N, H, W, 1).  The map does not depend on the target
class (attention is class-agnostic): ``target`` only selects the logits returned.

The attention weights are read from the rewritten graph: every ``softmax`` node
whose output is the weights input (``const_slot``) of a bilinear product -- the
``id/softmax`` nodes the ``split_attention`` pass makes of each
``keras.layers.MultiHeadAttention``, and a ``keras.ops.softmax`` whose result
multiplies the values in attention written with ``keras.ops``.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ..engine import graph as G
from .base import Method
from .registry import register

__all__ = ["AttentionRollout", "attention_softmax_nodes", "rollout_matrix"]


def attention_softmax_nodes(g, needed=None):
    """The softmax nodes of ``g`` that are attention weights (the ``const_slot`` input of
    a bilinear product), in topological order."""
    out = []
    for n in G.topo_order(g):
        if needed is not None and n not in needed:
            continue
        if G.op(g, n).kind != "softmax":
            continue
        for v, _, slot in G.consumers(g, n):
            op = G.op(g, v)
            if op.kind == "bilinear" and getattr(op, "const_slot", None) == slot:
                out.append(n)
                break
    return out


def rollout_matrix(weights, residual=0.5):
    """The rollout of a list of attention weights, each (B, heads, T, T) or (B, T, T),
    in the order the model computes them: prod_l normalise(residual*I + (1-residual)*mean_heads(A_l)),
    later layers on the left.  Returns (B, T, T)."""
    roll = None
    for a in weights:
        if len(a.shape) == 4:
            a = tf.reduce_mean(a, axis=1)
        t = a.shape[-1]
        a = (1.0 - residual) * a + residual * tf.eye(t, dtype=a.dtype)
        a = a / tf.reduce_sum(a, axis=-1, keepdims=True)
        roll = a if roll is None else tf.matmul(a, roll)
    return roll


class AttentionRollout(Method):
    """Attention rollout (Abnar and Zuidema, ACL 2020); see :mod:`lrpgraph.methods.rollout`.

    The model needs one image input (N, H, W, C) and self-attention with the same
    number of tokens in every layer.

    Parameters
    ----------
    head : {"auto", "cls", "mean"}
        Which row of the rollout gives the token relevance: the class token's
        (row 0, "cls") or the mean over all rows ("mean", for models that average
        their tokens).  "auto": "cls" when the sequence has more tokens than patches
        (a class token in front), else "mean".
    prefix_tokens : int or None
        How many tokens precede the patch tokens (class / distillation tokens);
        None: the sequence length minus the number of patches.
    grid : (rows, cols) or None
        The patch grid; None: inferred from the token count and the input's aspect
        ratio (square patches dividing the image).
    residual : float
        The weight of the identity, 0.5 in the paper.
    """

    name = "attention_rollout"
    supports_all = False

    def __init__(self, model, *, head="auto", prefix_tokens=None, grid=None, residual=0.5,
                 neuron_selection_mode="max_activation", output=None, postprocess=None):
        super().__init__(model, neuron_selection_mode=neuron_selection_mode, output=output, postprocess=postprocess)
        if head not in ("auto", "cls", "mean"):
            raise ValueError(f"head must be 'auto', 'cls' or 'mean', got {head!r}")
        if not 0.0 <= float(residual) < 1.0:
            raise ValueError(f"residual must be in [0, 1), got {residual!r}")
        self.residual = float(residual)
        prepared = self.prepared
        g = prepared.graph
        self.nodes = attention_softmax_nodes(g, prepared.needed)
        if not self.nodes:
            raise ValueError(f"attention_rollout found no attention weights in model {prepared.name!r}: it needs "
                             "keras.layers.MultiHeadAttention (or a softmax whose result multiplies the values); "
                             "use attn_lrp or a gradient method for other models")
        if len(prepared.input_specs) != 1 or len(prepared.input_specs[0].shape) != 4:
            raise ValueError("attention_rollout maps tokens back onto image patches: it needs one image input "
                             f"(N, H, W, C); model {prepared.name!r} has inputs "
                             f"{[tuple(s.shape) for s in prepared.input_specs]}")
        shapes = [G.output_shape(g, n) for n in self.nodes]
        tokens = {s[-1] for s in shapes} | {s[-2] for s in shapes}
        if len(tokens) != 1 or any(len(s) not in (3, 4) for s in shapes):
            raise ValueError(f"attention_rollout needs self-attention over the same tokens in every layer; the "
                             f"attention weights have shapes {shapes} ({self.nodes})")
        self.tokens = int(tokens.pop())
        h, w = prepared.input_specs[0].shape[1:3]
        if h is None or w is None:
            raise ValueError("attention_rollout needs the input's height and width in the model's input shape")
        self.grid, self.prefix = self._layout(h, w, grid, prefix_tokens)
        self.head = head if head != "auto" else ("cls" if self.prefix > 0 else "mean")
        self.image_size = (int(h), int(w))
        self._fn = tf.function(self._body, input_signature=[list(self.input_specs)], reduce_retracing=True,
                               autograph=False)

    def _layout(self, h, w, grid, prefix):
        t = self.tokens
        if grid is not None:
            gh, gw = (int(v) for v in grid)
            prefix = t - gh * gw if prefix is None else int(prefix)
            if prefix < 0 or prefix + gh * gw != t:
                raise ValueError(f"grid {grid} and prefix_tokens {prefix} do not make the {t} tokens")
        else:
            found = None
            for p in ([int(prefix)] if prefix is not None else range(0, min(t, 9))):
                n = t - p
                r = math.isqrt(n * h // w) if n * h % w == 0 else 0
                for gh in (r, r + 1):
                    if gh > 0 and n % gh == 0 and h % gh == 0 and w % (n // gh) == 0 and h // gh == w // (n // gh):
                        found = ((gh, n // gh), p)
                        break
                if found:
                    break
            if found is None:
                raise ValueError(f"attention_rollout cannot lay the {t} tokens on a patch grid of the {h}x{w} "
                                 "input; pass grid=(rows, cols) and prefix_tokens=...")
            (gh, gw), prefix = found
        if h % gh or w % gw:
            raise ValueError(f"the patch grid {(gh, gw)} does not divide the {h}x{w} input")
        return (gh, gw), prefix

    def _body(self, inputs):
        values = self.prepared.activations(inputs)
        roll = rollout_matrix([values[(n, 0)] for n in self.nodes], self.residual)
        rel = roll[:, 0, :] if self.head == "cls" else tf.reduce_mean(roll, axis=1)
        gh, gw = self.grid
        m = tf.reshape(rel[:, self.prefix:], [-1, gh, gw, 1])
        h, w = self.image_size
        m = tf.repeat(tf.repeat(m, h // gh, axis=1), w // gw, axis=2)
        return m, values[self.prepared.output]

    def compute(self, xs, targets):
        m, logits = self._fn([tf.convert_to_tensor(xs[0])])
        return [m.numpy().astype(xs[0].dtype, copy=False)], np.asarray(logits)


register("attention_rollout", "Attention rollout: head-averaged attention plus identity, multiplied through the "
         "layers, upsampled onto the patches (Abnar and Zuidema, ACL 2020)")(AttentionRollout)
