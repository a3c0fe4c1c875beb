"""KerasHub's ViT (``keras_hub.models.ViTBackbone`` / ``ViTImageClassifier``) as a model
lrpgraph explains: :func:`expand_vit`.

KerasHub's ViT is a functional model whose two big layers are subclassed:
``ViTPatchingAndEmbedding`` (Conv2D patches, a class token, an ``Embedding`` of
constant position ids added) and ``ViTEncoder`` (``num_layers`` ``ViTEncoderBlock`` s:
``x + MHA(LN(x))``, ``x + MLP(LN(x))``, then a final LayerNormalization).  A single op
description (``lrpgraph.register_layer``) cannot describe a whole encoder, so
:func:`expand_vit` rewrites the model into an equivalent functional model that calls
KerasHub's own sublayers (the same ``Conv2D``, ``MultiHeadAttention``,
``LayerNormalization`` and ``Dense`` objects: the variables are shared, not copied) and
two small layers for the class token and the position table, registered here with
``lrpgraph.ops.variable_concat`` / ``variable_add``.  Every preset then applies to it::

    from lrpgraph.ops.keras_hub import expand_vit
    model = expand_vit(keras_hub.models.ViTImageClassifier(backbone, num_classes=10))
    lrpgraph.create_analyzer("attn_lrp", model).analyze(images, target)

Dropout (inactive at inference) is left out.  ``channels_last`` only.  This module
imports ``keras_hub`` lazily (inside :func:`expand_vit`): it is optional.
"""

from __future__ import annotations

import keras

from .base import Unknown, variable_add, variable_concat
from .keras import register_layer

__all__ = ["expand_vit", "ClassTokenOf", "PositionTableOf"]


class ClassTokenOf(keras.layers.Layer):
    """concat([broadcast(token), x], axis=1) with the class token of a KerasHub
    ``ViTPatchingAndEmbedding`` (its variable, shared)."""

    def __init__(self, token, **kwargs):
        super().__init__(**kwargs)
        self.token = token

    def call(self, x):
        t = keras.ops.broadcast_to(keras.ops.cast(self.token, x.dtype), (keras.ops.shape(x)[0], 1, x.shape[-1]))
        return keras.ops.concatenate([t, x], axis=1)


class PositionTableOf(keras.layers.Layer):
    """x + table: the position embedding of a KerasHub ``ViTPatchingAndEmbedding`` (its
    ``Embedding`` of the constant ids 0..T-1 is the whole table, shared)."""

    def __init__(self, table, **kwargs):
        super().__init__(**kwargs)
        self.table = table

    def call(self, x):
        return x + keras.ops.cast(self.table, x.dtype)


register_layer(ClassTokenOf, lambda layer: variable_concat(layer.token, axis=1))
register_layer(PositionTableOf, lambda layer: variable_add(layer.table))

_EXPAND_HINT = ("KerasHub's {cls} is a whole subnetwork in one subclassed layer, which no single op "
                "describes; explain `lrpgraph.ops.keras_hub.expand_vit(model)` instead (the same model "
                "rebuilt from its own sublayers)")


def _register_unexpanded():
    """With keras_hub importable: its ViT layers, met unexpanded, are unknown ops whose
    reason names :func:`expand_vit` (instead of the generic "no description")."""
    try:
        from keras_hub.src.models.vit.vit_layers import ViTEncoder, ViTPatchingAndEmbedding
    except ImportError:  # keras_hub missing, or its layout changed: the generic message stays
        return
    for cls in (ViTPatchingAndEmbedding, ViTEncoder):
        register_layer(cls, lambda layer, cls=cls: Unknown(_EXPAND_HINT.format(cls=cls.__name__)))


_register_unexpanded()


def _vit_parts(model):
    import keras_hub

    if isinstance(model, keras_hub.models.ViTImageClassifier):
        return model.backbone, model
    if isinstance(model, keras_hub.models.ViTBackbone):
        return model, None
    raise TypeError(f"expand_vit takes a keras_hub.models.ViTBackbone or ViTImageClassifier, got "
                    f"{type(model).__name__}")


def expand_vit(model):
    """An equivalent functional keras.Model of a KerasHub ViT backbone or image classifier,
    made of its own sublayers (variables shared) and stock Keras layers, so that
    ``lrpgraph.check`` and every preset understand it (see the module docstring).

    A ``ViTBackbone`` expands to its (N, tokens, hidden) output; explain a classifier."""
    from keras import layers as L

    backbone, classifier = _vit_parts(model)
    embed = backbone.get_layer("vit_patching_and_embedding")
    encoder = backbone.get_layer("vit_encoder")
    if embed.data_format != "channels_last":
        raise ValueError("expand_vit supports data_format='channels_last' only")
    inp = keras.Input(tuple(backbone.input.shape[1:]), name="images", dtype=backbone.input.dtype)
    x = embed.patch_embedding(inp)
    x = L.Reshape((embed.num_patches, embed.hidden_dim), name="patch_tokens")(x)
    if embed.use_class_token:
        x = ClassTokenOf(embed.class_token, name="class_token")(x)
    x = PositionTableOf(embed.position_embedding.embeddings, name="position_embedding")(x)
    for block in encoder.encoder_layers:
        # one functional sub-model per block (lrpgraph inlines it): the blocks' sublayers
        # share names (ln_1, mha, ...), unique within a block
        b_in = keras.Input(tuple(x.shape[1:]), dtype=x.dtype)
        h = block.mha(*[block.layer_norm_1(b_in)] * 2)
        y = L.Add(name="res_1")([b_in, h])
        h = block.mlp.dense_2(block.mlp.dense_1(block.layer_norm_2(y)))
        y = L.Add(name="res_2")([y, h])
        x = keras.Model(b_in, y, name=block.name)(x)
    x = encoder.layer_norm(x)
    if classifier is None:
        return keras.Model(inp, x, name=f"{backbone.name}_expanded")
    if classifier.pooling == "token":
        x = x[:, 0]
    elif classifier.pooling == "gap":
        x = L.GlobalAveragePooling1D(name="gap")(x)
    else:
        raise ValueError(f"expand_vit: unknown pooling {classifier.pooling!r}")
    if classifier.intermediate_dim is not None:
        x = classifier.intermediate_layer(x)
    out = classifier.output_dense(x)
    return keras.Model(inp, out, name=f"{classifier.name}_expanded")
