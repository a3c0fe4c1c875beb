"""Descriptions of KerasHub's text-model layers (BERT and friends), registered lazily.

KerasHub (``keras_hub``) builds its backbones as functional models (inlined by the
``inline_nested_models`` pass) out of a few subclassed layers.  This module says what
those compute, with :func:`lrpgraph.register_layer`:

==========================  ==========================================================
``ReversibleEmbedding``     a ``keras.layers.Embedding`` subclass: already an ``embedding``
                            op (relevance per token: ``rules.TokenSum``)
``PositionEmbedding``       :class:`~lrpgraph.ops.Constant`: the learned (T, D) table
                            sliced to the input's length and broadcast to its shape; the
                            model adds it with an ``Add``, whose rule gives the table its
                            share (absorbed, as a bias absorbs it)
``TokenAndPositionEmbedding``  expanded: ``token_embedding(ids) + position_embedding(...)``
``TransformerEncoder``      expanded into its own sublayers (same weights): the
                            ``MultiHeadAttention`` (split by ``split_attention``), the
                            residual Adds, the two LayerNorms (post- or pre-norm), the
                            Dense/activation MLP; ``padding_mask`` becomes the attention
                            mask ``expand_dims(padding_mask, 1)`` as KerasHub merges it;
                            dropout is inactive at inference and left out
==========================  ==========================================================

The expansions are :class:`~lrpgraph.ops.Nested` ops with an ``expand`` function that
builds a functional model from the recorded call's inputs; it calls the layer's
sublayers, reading KerasHub's attribute names (``_self_attention_layer``, ...; checked
against keras-hub 0.32).  ``tests/test_text.py`` checks that the rewritten BERT
reproduces the model's logits to 1e-5.

Registration is lazy: :func:`lrpgraph.engine.ops.keras_hub.register_if_loaded` (called by
:func:`lrpgraph.prepare` and :func:`lrpgraph.check`) registers these descriptions, with
the ViT's, the first time a model is prepared or checked after ``keras_hub`` was
imported, so importing lrpgraph never imports KerasHub.  Call
:func:`lrpgraph.engine.ops.keras_hub.register` (or :func:`register` here, text layers only)
yourself before using the lower-level ``graph.to_graph`` / ``rewrite.canonicalize``
directly.  A user's ``register_layer`` of one of these classes, made before or after that
registration, takes precedence.
"""

from __future__ import annotations

import keras

from .base import Constant, Nested
from .keras import register_layer

__all__ = ["register", "transformer_encoder_model", "token_and_position_model"]


def register():
    """Register the descriptions of KerasHub's text layers (imports keras_hub)."""
    from keras_hub import layers as H  # optional and heavy: imported only once a KerasHub model is seen

    # replace=False: a user's register_layer made before keras_hub was first seen stays
    register_layer(H.PositionEmbedding, lambda layer: Constant(), replace=False)
    register_layer(H.TokenAndPositionEmbedding,
                   lambda layer: Nested(expand=lambda specs: token_and_position_model(layer, specs)), replace=False)
    register_layer(H.TransformerEncoder,
                   lambda layer: Nested(expand=lambda specs: transformer_encoder_model(layer, specs)), replace=False)


def _input_like(spec, name):
    return keras.Input(batch_shape=tuple(spec.shape), dtype=spec.dtype, name=name)


def token_and_position_model(layer, specs):
    """A functional model computing ``TokenAndPositionEmbedding(ids)``: the token
    embedding plus the position table broadcast to its shape."""
    if len(specs) != 1:
        raise NotImplementedError(f"TokenAndPositionEmbedding {layer.name!r} is called with {len(specs)} tensors; "
                                  "lrpgraph describes the call on token ids alone (no positions=)")
    ids = _input_like(specs[0], "ids")
    e = layer.token_embedding(ids)
    return keras.Model(ids, keras.ops.add(e, layer.position_embedding(e)), name=layer.name)


def transformer_encoder_model(layer, specs):
    """A functional model computing KerasHub's ``TransformerEncoder`` call at inference:
    inputs ``[x]``, ``[x, padding_mask]`` (rank 2) or ``[x, attention_mask]`` (rank 3),
    in the order of the recorded call."""
    x_in = _input_like(specs[0], "x")
    inputs, padding, attention = [x_in], None, None
    for i, spec in enumerate(specs[1:]):
        t = _input_like(spec, f"mask{i}")
        inputs.append(t)
        if len(spec.shape) == 2 and padding is None:
            padding = t
        elif len(spec.shape) == 3 and attention is None:
            attention = t
        else:
            raise NotImplementedError(f"TransformerEncoder {layer.name!r}: unexpected input of shape {spec.shape}; "
                                      "lrpgraph describes calls with padding_mask and/or attention_mask")
    mask = None
    if padding is not None:  # KerasHub's merge_padding_and_attention_mask
        mask = keras.ops.cast(keras.ops.expand_dims(padding, axis=1), "int32")
    if attention is not None:
        a = keras.ops.cast(attention, "int32")
        mask = a if mask is None else keras.ops.minimum(mask, a)
    norm_first = layer.normalize_first
    attn_norm, ff_norm = layer._self_attention_layer_norm, layer._feedforward_layer_norm
    x = x_in
    residual = x
    if norm_first:
        x = attn_norm(x)
    x = layer._self_attention_layer(query=x, value=x, attention_mask=mask)
    x = keras.ops.add(x, residual)
    if not norm_first:
        x = attn_norm(x)
    residual = x
    if norm_first:
        x = ff_norm(x)
    x = layer._feedforward_output_dense(layer._feedforward_intermediate_dense(x))
    x = keras.ops.add(x, residual)
    if not norm_first:
        x = ff_norm(x)
    return keras.Model(inputs, x, name=layer.name)
