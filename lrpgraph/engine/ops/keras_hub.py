"""KerasHub (``keras_hub``) models described to lrpgraph, registered lazily: the ViT's
layers here, the other ViT-family towers (DeiT, DINOv2, SigLIP's and CLIP's vision encoders)
in :mod:`lrpgraph.engine.ops.keras_hub_vision`, the text layers (BERT and friends) in
:mod:`lrpgraph.engine.ops.keras_hub_text`, the decoder LLMs in
:mod:`lrpgraph.engine.ops.keras_hub_llm`.

KerasHub's ViT (``keras_hub.models.ViTBackbone`` / ``ViTImageClassifier``) is a
functional model (inlined by the ``inline_nested_models`` pass) whose big layers are
subclassed.  Each is a :class:`~lrpgraph.ops.Nested` op whose ``expand`` builds a
functional model of its own sublayers (the same ``Conv2D``, ``MultiHeadAttention``,
``LayerNormalization`` and ``Dense`` objects: variables shared, not copied), which the
pass inlines in its place:

===========================  =========================================================
``ViTPatchingAndEmbedding``  the patch ``Conv2D``, a ``Reshape`` to (patches, hidden),
                             the class token (:class:`ClassTokenOf`, a
                             ``variable_concat``) and the position table
                             (:class:`PositionTableOf`, a ``variable_add``: KerasHub looks
                             up the constant ids 0..T-1, i.e. adds the whole table)
``ViTEncoder``               its ``ViTEncoderBlock`` s, then the final LayerNormalization
``ViTEncoderBlock``          ``x + MHA(LN1(x))``, then ``y + Dense2(Dense1(LN2(y)))``
                             (the ``MultiHeadAttention`` is split by ``split_attention``)
===========================  =========================================================

Dropout (inactive at inference) is left out.  ``channels_last`` only (a
``channels_first`` patch embedding is an unknown op whose reason says so).  The
expansions read KerasHub's attribute names (``patch_embedding``, ``encoder_layers``,
``layer_norm_1``, ``mha``, ``mlp.dense_1``, ...; checked against keras-hub 0.32).
``tests/test_vit.py`` checks that the rewritten model reproduces the logits and gives
the maps of :func:`expand_vit`'s model.  So the one call works::

    model = keras_hub.models.ViTImageClassifier(backbone, num_classes=10, activation=None)
    lrpgraph.create_analyzer("attn_lrp", model).analyze(images, target)

:func:`expand_vit` builds the same expansion as a standalone Keras model of stock
layers (plus the two small layers above), e.g. to inspect it, to save its graph, or for
tools that do not read lrpgraph's op registrations.

Registration is lazy: :func:`register_if_loaded` (called by :func:`lrpgraph.prepare`
and :func:`lrpgraph.check`) registers the ViT and text descriptions the first time a
model is prepared after ``keras_hub`` was imported, so importing lrpgraph never imports
KerasHub.  Call :func:`register` yourself before using the lower-level
``graph.to_graph`` / ``rewrite.canonicalize`` directly.  A ``register_layer`` made after
that registration replaces these descriptions.
"""

from __future__ import annotations

import sys

import keras
from keras import layers as L

from . import keras_hub_llm, keras_hub_text, keras_hub_vision
from .base import Nested, Unknown, variable_add, variable_concat
from .keras import register_layer

__all__ = ["register", "register_if_loaded", "is_causal_lm", "causal_lm_model", "expand_vit", "vit_embedding_model", "vit_encoder_model",
           "vit_encoder_block_model", "ClassTokenOf", "PositionTableOf"]


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

_DONE = [False]


def is_causal_lm(model):
    """True for a KerasHub causal LM (only once ``keras_hub`` was imported)."""
    return "keras_hub" in sys.modules and keras_hub_llm.is_causal_lm(model)


def causal_lm_model(model):
    """:func:`lrpgraph.ops.keras_hub_llm.causal_lm_model`: the causal LM with a ``position``
    input and the (batch, vocabulary) logits at that position as its output."""
    return keras_hub_llm.causal_lm_model(model)


def register_if_loaded():
    """Register the descriptions of KerasHub's layers (ViT and text) once, if
    ``keras_hub`` has been imported."""
    if not _DONE[0] and "keras_hub" in sys.modules:
        register()


def register():
    """Register the descriptions of KerasHub's ViT, vision-tower (DeiT, DINOv2, SigLIP, CLIP),
    text and decoder-LLM layers (imports keras_hub)."""
    keras_hub_text.register()
    keras_hub_llm.register()
    keras_hub_vision.register()
    _DONE[0] = True
    try:
        # keras_hub: optional and heavy, imported only once a KerasHub model is seen
        from keras_hub.src.models.vit.vit_layers import ViTEncoder, ViTEncoderBlock, ViTPatchingAndEmbedding
    except ImportError:  # a keras_hub without its ViT, or its layout changed: generic "no description"
        return
    # replace=False: a user's register_layer made before keras_hub was first seen stays
    register_layer(ViTPatchingAndEmbedding, _describe_embedding, replace=False)
    register_layer(ViTEncoder, lambda layer: Nested(expand=lambda specs: vit_encoder_model(layer, specs)),
                   replace=False)
    register_layer(ViTEncoderBlock, lambda layer: Nested(expand=lambda specs: vit_encoder_block_model(layer, specs)),
                   replace=False)


def _describe_embedding(layer):
    if layer.data_format != "channels_last":
        return Unknown(f"KerasHub ViTPatchingAndEmbedding {layer.name!r} has data_format="
                       f"{layer.data_format!r}; lrpgraph describes channels_last only: build the ViTBackbone "
                       "with data_format='channels_last' and copy the weights over "
                       "(new_model.set_weights(model.get_weights()): their shapes do not depend on the format)")
    return Nested(expand=lambda specs: vit_embedding_model(layer, specs))


def _one_input(layer, specs):
    if len(specs) != 1:
        raise NotImplementedError(f"KerasHub {type(layer).__name__} {layer.name!r} is called with {len(specs)} "
                                  "tensors; lrpgraph describes the call on one tensor")
    return keras.Input(batch_shape=tuple(specs[0].shape), dtype=specs[0].dtype, name="x")


def _patch_tokens(layer, images):
    """``ViTPatchingAndEmbedding(images)`` from its sublayers (channels_last)."""
    x = layer.patch_embedding(images)
    x = keras.layers.Reshape((layer.num_patches, layer.hidden_dim), name="patch_tokens")(x)
    if layer.use_class_token:
        x = ClassTokenOf(layer.class_token, name="class_token")(x)
    return PositionTableOf(layer.position_embedding.embeddings, name="position_embedding")(x)


def vit_embedding_model(layer, specs):
    """A functional model computing KerasHub's ``ViTPatchingAndEmbedding`` (channels_last):
    patch Conv2D, reshape to tokens, class token, position table."""
    images = _one_input(layer, specs)
    return keras.Model(images, _patch_tokens(layer, images), name=layer.name)


def vit_encoder_block_model(block, specs):
    """A functional model computing KerasHub's ``ViTEncoderBlock`` at inference:
    ``x + MHA(LN1(x))``, then ``y + Dense2(Dense1(LN2(y)))`` (its MLP; dropout left out)."""
    x_in = _one_input(block, specs)
    h = block.layer_norm_1(x_in)
    x = keras.layers.Add(name="res_1")([x_in, block.mha(h, h)])
    h = block.mlp.dense_2(block.mlp.dense_1(block.layer_norm_2(x)))
    return keras.Model(x_in, keras.layers.Add(name="res_2")([x, h]), name=block.name)


def vit_encoder_model(layer, specs):
    """A functional model computing KerasHub's ``ViTEncoder`` at inference: its blocks in
    order (each a ``ViTEncoderBlock``, described by :func:`vit_encoder_block_model`),
    then the final LayerNormalization."""
    x_in = _one_input(layer, specs)
    x = x_in
    for block in layer.encoder_layers:
        x = block(x)
    return keras.Model(x_in, layer.layer_norm(x), name=layer.name)


def _vit_parts(model):
    import keras_hub  # optional and heavy (lrpgraph[transformers]): imported only for a KerasHub model

    if isinstance(model, keras_hub.models.ViTImageClassifier):
        return model.backbone, model
    if isinstance(model, keras_hub.models.ViTBackbone):
        return model, None
    raise TypeError(f"expand_vit takes a keras_hub.models.ViTBackbone or ViTImageClassifier, got "
                    f"{type(model).__name__}")


def expand_vit(model):
    """An equivalent functional keras.Model of a KerasHub ViT backbone or image classifier,
    made of its own sublayers (variables shared), stock Keras layers and
    :class:`ClassTokenOf` / :class:`PositionTableOf`: the expansion lrpgraph applies to
    the model itself (see the module docstring), as a standalone model.  lrpgraph does
    not need it (``create_analyzer(method, model)`` takes the KerasHub model directly);
    it is for inspecting the expansion or for tools that read only stock layers.

    A ``ViTBackbone`` expands to its (N, tokens, hidden) output; explain a classifier."""
    backbone, classifier = _vit_parts(model)
    embed = backbone.get_layer("vit_patching_and_embedding")
    encoder = backbone.get_layer("vit_encoder")
    if embed.data_format != "channels_last":
        raise ValueError("expand_vit supports data_format='channels_last' only")
    inp = keras.Input(tuple(backbone.input.shape[1:]), name="images", dtype=backbone.input.dtype)
    x = _patch_tokens(embed, inp)
    for block in encoder.encoder_layers:
        # one functional sub-model per block (lrpgraph inlines it): the blocks' sublayers
        # share names (ln_1, mha, ...), unique within a block
        x = vit_encoder_block_model(block, [x])(x)
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
