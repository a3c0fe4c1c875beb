"""LXT's Input x Gradient formulation of AttnLRP and CP-LRP, as TensorFlow building blocks
(``lxt.efficient``: rules.py and patches.py), shared by the reference tests of the decoder
LLMs (test_llm.py) and the vision towers (test_vision_towers.py).

A reference forward pass is written with these in place of the model's layers, from the
layers' own variables and independently of lrpgraph's graph; relevance is then
``input * d logit / d input``:

- LayerNorm: the standard deviation detached, beta added after (``layer_norm``);
- element-wise nonlinearities: the identity rule's gradient ``f(x) / (x + 1e-10)``
  (``identity_rule``);
- attention (AttnLRP): the gradient divided by 4 at the query and the key and by 2 at the
  value (the uniform rule on q.k^T and on attention.v); CP-LRP: query and key detached
  (``attention``);
- products of two activations (AttnLRP): the gradient halved (``divide_gradient``);
- linear layers: the plain gradient (LRP-0; biases absorb their share) (``dense``).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


@tf.custom_gradient
def divide_gradient(x, factor):
    """Forward x, gradient divided by ``factor``."""
    def grad(g):
        return g / factor, None
    return tf.identity(x), grad


def identity_rule(fn, x):
    """LXT's identity_rule_implicit: forward fn(x), gradient fn(x) / (x + 1e-10) * g."""
    @tf.custom_gradient
    def inner(x):
        y = fn(x)

        def grad(g):
            return g * y / (x + 1e-10)
        return y, grad
    return inner(x)


def layer_norm(x, layer):
    """LXT's layer_norm_forward: (x - mean) / stop_gradient(std) * gamma + beta."""
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    var = tf.reduce_mean(tf.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) / tf.stop_gradient(tf.sqrt(var + layer.epsilon)) * layer.gamma + layer.beta


def dense(layer, x):
    """A Dense or EinsumDense layer's y = x W + b, from its variables (no activation)."""
    k = tf.convert_to_tensor(layer.kernel)
    eq = getattr(layer, "equation", None)
    y = tf.einsum(eq, x, k) if eq else tf.tensordot(x, k, axes=[[len(x.shape) - 1], [0]])
    return y if layer.bias is None else y + layer.bias


def attention(layer, query, value, mode, causal=False):
    """A ``keras.layers.MultiHeadAttention`` (key = value, one attention axis) written out
    from its projections: ``softmax(q k^T / sqrt(d)) v``, then the output projection;
    ``mode`` "attn": q/4, k/4, v/2 (AttnLRP), "cp": q and k detached (CP-LRP)."""
    q, k, v = dense(layer.query_dense, query), dense(layer.key_dense, value), dense(layer.value_dense, value)
    if mode == "attn":
        q, k, v = divide_gradient(q, 4.0), divide_gradient(k, 4.0), divide_gradient(v, 2.0)
    else:
        q, k = tf.stop_gradient(q), tf.stop_gradient(k)
    s = tf.einsum("bqhd,bkhd->bhqk", q * np.float32(1 / np.sqrt(layer.key_dim)), k)
    if causal:
        t = s.shape[-1]
        s = tf.where(np.tril(np.ones((t, t), bool)), s, -1e9)
    return dense(layer.output_dense, tf.einsum("bhqk,bkhd->bqhd", tf.nn.softmax(s, axis=-1), v))
