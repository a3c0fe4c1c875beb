"""KerasHub's ViT-family vision towers described to lrpgraph (registered lazily, as the
ViT's): DeiT, DINOv2, SigLIP's vision encoder and CLIP's vision encoder.

Each backbone is a functional model (inlined by the ``inline_nested_models`` pass) whose
big layers are subclassed.  Each of those is a :class:`~lrpgraph.ops.Nested` op whose
``expand`` builds a functional model of the layer's own sublayers (the same ``Conv2D``,
``MultiHeadAttention``, ``LayerNormalization`` and ``Dense`` objects: variables shared, not
copied) plus three small layers of this module that carry the model's own variables:

=================  ==========================================================================
:class:`TokensAt`  ``concat([x[:, :i], tokens, x[:, i:]], axis=1)``: a class, distillation or
                   register token (or several) inserted at token index ``i``; a
                   :class:`~lrpgraph.ops.Linear` (subkind ``variable_concat``) whose forward
                   puts zeros there and whose bias is the tokens placed there, so the tokens
                   absorb the relevance reaching their positions (constants of the model)
:class:`AddTable`  ``x + table``: a learned position table, whole (DeiT, DINOv2's
                   interpolated table) or looked up at the layer's ``position_ids``
                   variable (SigLIP, CLIP); a ``variable_add`` (a bias: absorbs its share)
:class:`ProbeOf`   the learned query of SigLIP's attention-pooling head (MAP), broadcast over
                   the batch: a :class:`~lrpgraph.ops.Constant` (relevance reaching it
                   through the query is absorbed; CP-LRP sends it none)
=================  ==========================================================================

What each layer becomes (dropout, inactive at inference, is left out):

==============================  ==============================================================
``DeiTEmbeddings``              patch ``Conv2D``, reshape to tokens, the distillation and the
                                class token (``TokensAt``), the (1, T, D) position table
``DeiTEncoder``                 its ``DeiTEncoderBlock`` s, then the final LayerNorm (the
                                hidden-states and attention-scores outputs it returns empty
                                when not asked for are not described: using them is an error)
``DeiTEncoderBlock``            (inside the encoder's expansion, as a functional model of its
                                own) ``x + MHA(LN1(x))``, then ``y + output(gelu(dense(LN2(y))))``
``DINOV2PatchEmbedding``        patch ``Conv2D``, reshape to tokens
``DINOV2Embedding``             patches, class token, the interpolated position table (a
                                variable KerasHub fills at build time: the interpolation is
                                not part of the forward pass), then the register tokens
                                inserted after the class token (``TokensAt`` at index 1)
``DINOV2Encoder``               its ``DINOV2Layer`` s; outputs the last one and the per-stage
                                dict, as the layer does
``DINOV2Layer``                 ``x + ls1(attention(norm1(x)))``, ``y + ls2(mlp(norm2(y)))``
``DINOV2Attention``             its ``MultiHeadAttention`` (split by ``split_attention``)
``DINOV2LayerScale``            ``x * lambda1``: a ``Linear`` (subkind ``layer_scale``), an
                                element-wise linear map (epsilon rule, as a Dense's)
``DINOV2MLP``                   ``fc2(gelu(fc1(x)))``
``DINOV2SwiGLUFFN``             ``weights_out(silu(a) * b)`` with ``a, b`` the halves of
                                ``weights_in(x)``: the product a ``GatedProduct`` (uniform rule
                                in ``attn_lrp``; the gate ``silu(a)`` constant in ``cp_lrp``)
``DINOV2DropPath``              :class:`~lrpgraph.ops.Noise` (identity at inference)
``SigLIPVisionEmbedding``       patch ``Conv2D``, reshape, the position table at ``position_ids``
``SigLIPEncoderLayer``          ``x + MHA(LN1(x))``, ``y + mlp(LN2(y))``
``SigLIPMLP``                   ``fc2(act(fc1(x)))``
``SigLIPMultiHeadAttentionPooling``  ``h = MHA(probe, x, x)``, ``(h + mlp(LN(h)))[:, 0]``
``CLIPVisionEmbedding``         patch ``Conv2D`` (no bias), reshape, the class embedding
                                (``TokensAt``), the position table at ``position_ids``
``CLIPEncoderLayer``            ``x + MHA(LN1(x))``, ``y + dense_2(quick_gelu(dense_1(LN2(y))))``
                                (``quick_gelu`` = ``x * sigmoid(1.702 x)``, element-wise:
                                the identity rule); its causal mask where the layer has one
``CLIPVisionPooler``            ``x[:, 0]``: a reshape
==============================  ==============================================================

``channels_last`` only (a ``channels_first`` patch embedding is an unknown op whose reason
says so, as for the ViT).  The expansions read KerasHub's attribute names (checked against
keras-hub 0.32); ``tests/test_vision_towers.py`` checks that the rewritten models reproduce
the logits, that ``cp_lrp`` conserves on bias-free configurations, and that ``attn_lrp`` and
``cp_lrp`` equal LXT's Input x Gradient formulation written out in TensorFlow.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from .base import Constant, Linear, Nested, Noise, Reshape, Unknown, variable_add
from .keras import register_layer
from .keras_hub_llm import GatedProduct

__all__ = ["register", "TokensAt", "AddTable", "ProbeOf", "deit_embedding_model", "deit_encoder_model",
           "deit_block_model", "dinov2_patch_model", "dinov2_embedding_model", "dinov2_encoder_model",
           "dinov2_layer_model", "dinov2_attention_model", "fc_mlp_model", "dinov2_swiglu_model",
           "siglip_embedding_model", "siglip_encoder_layer_model", "siglip_pooling_model",
           "clip_embedding_model", "clip_encoder_layer_model"]


# ---- small layers with op descriptions ------------------------------------------------------

def _token_rows(tokens):
    """A token variable of shape (D,), (1, D) or (1, n, D) as a (1, n, D) tensor."""
    t = tf.convert_to_tensor(tokens)
    return tf.reshape(t, (1, -1, t.shape[-1]))


class TokensAt(keras.layers.Layer):
    """``concat([x[:, :index], broadcast(tokens), x[:, index:]], axis=1)``: learned tokens (a
    KerasHub variable of shape (D,), (1, D) or (1, n, D), shared) inserted at token
    ``index`` of a (batch, T, D) sequence."""

    def __init__(self, tokens, index=0, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.tokens, self.index = tokens, int(index)
        self.length = None

    def build(self, input_shape):
        self.length = input_shape[1]

    def call(self, x):
        t = tf.cast(_token_rows(self.tokens), x.dtype)
        t = tf.broadcast_to(t, tf.stack([tf.shape(x)[0], t.shape[1], t.shape[2]]))
        return tf.concat([x[:, :self.index], t, x[:, self.index:]], axis=1)


def _tokens_op(layer):
    if layer.length is None:
        return Unknown(f"{layer.name!r} inserts tokens into a sequence of unknown length; lrpgraph needs the "
                       "number of tokens (a fixed image shape)")
    i, length, tokens = layer.index, layer.length, layer.tokens

    def placed():
        t = _token_rows(tokens)
        zeros = lambda n: tf.zeros((1, n, t.shape[-1]), t.dtype)  # noqa: E731
        return tf.concat([zeros(i), t, zeros(length - i)], axis=1)

    def forward(x, k):
        n = _token_rows(tokens).shape[1]
        gap = tf.zeros(tf.stack([tf.shape(x)[0], n, x.shape[-1]]), x.dtype)
        return tf.concat([x[:, :i], gap, x[:, i:]], axis=1) * k

    return Linear(forward, lambda: tf.ones([], tokens.dtype), placed, channel_axis=None,
                  subkind="variable_concat")


class AddTable(keras.layers.Layer):
    """``x + table()``: a learned position table (``table`` reads the model's variables:
    the whole table, or its rows at the layer's ``position_ids``)."""

    def __init__(self, table, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.table = table

    def call(self, x):
        return x + tf.cast(self.table(), x.dtype)


class ProbeOf(keras.layers.Layer):
    """The learned probe of a SigLIP attention-pooling head, (batch, 1, D): the query of its
    attention, the same for every image (``x`` gives only the batch size)."""

    def __init__(self, probe, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.probe = probe

    def call(self, x):
        p = tf.cast(tf.convert_to_tensor(self.probe), x.dtype)
        return tf.broadcast_to(p, tf.stack([tf.shape(x)[0], p.shape[1], p.shape[2]]))


def _rows(embedding, ids):
    """The rows of an Embedding's table at a (1, T) ids variable: (1, T, D)."""
    return lambda: tf.gather(tf.convert_to_tensor(embedding.embeddings), tf.convert_to_tensor(ids))


def _whole(variable):
    return lambda: tf.convert_to_tensor(variable)


# ---- the expansions --------------------------------------------------------------------------

def _one_input(layer, specs, what="one tensor"):
    if len(specs) != 1:
        raise NotImplementedError(f"KerasHub {type(layer).__name__} {layer.name!r} is called with {len(specs)} "
                                  f"tensors; lrpgraph describes the call on {what} (no masks)")
    return keras.Input(batch_shape=tuple(specs[0].shape), dtype=specs[0].dtype, name="x")


def _tokens(conv_out, hidden, name="patch_tokens"):
    """(B, h, w, D) patch features -> (B, h * w, D) tokens, row-major as KerasHub reshapes them."""
    h, w = conv_out.shape[1], conv_out.shape[2]
    if h is None or w is None:
        raise NotImplementedError("lrpgraph describes KerasHub vision towers on images of a fixed size "
                                  "(the backbone's image_shape)")
    return keras.layers.Reshape((h * w, hidden), name=name)(conv_out)


def _channels_last(layer, what):
    """None, or the Unknown op of a channels_first patch embedding."""
    fmt = getattr(layer, "data_format", "channels_last")
    if fmt == "channels_last":
        return None
    return Unknown(f"KerasHub {type(layer).__name__} {layer.name!r} has data_format={fmt!r}; lrpgraph describes "
                   f"channels_last only: build the {what} with data_format='channels_last' and copy the weights "
                   "over (new_model.set_weights(model.get_weights()): their shapes do not depend on the format)")


def _nested(expand, what=None):
    """describe(layer): a Nested op expanding the layer with ``expand(layer, specs)``
    (an Unknown op for a channels_first patch embedding when ``what`` names the backbone)."""
    def describe(layer):
        if what is not None:
            bad = _channels_last(layer, what)
            if bad is not None:
                return bad
        return Nested(expand=lambda specs: expand(layer, specs))
    return describe


def deit_embedding_model(layer, specs):
    """KerasHub's ``DeiTEmbeddings`` (channels_last, no ``bool_masked_pos``): patch Conv2D,
    tokens, ``[class, distillation, patches]``, plus the (1, T, D) position table."""
    images = _one_input(layer, specs, "images")
    x = _tokens(layer.patch_embedding(images), layer.hidden_dim)
    x = TokensAt(layer.distillation_token, 0, name="distillation_token")(x)
    x = TokensAt(layer.class_token, 0, name="class_token")(x)
    x = AddTable(_whole(layer.position_embedding), name="position_embedding")(x)
    return keras.Model(images, x, name=layer.name)


def deit_block_model(block, specs):
    """KerasHub's ``DeiTEncoderBlock`` (no attention mask): ``x + MHA(LN1(x))``, then
    ``y + output_layer.dense(mlp.dense(LN2(y)))`` (the MLP's Dense carries its GELU)."""
    x_in = _one_input(block, specs)
    h = block.layer_norm_1(x_in)
    x = keras.layers.Add(name="res_1")([block.mha(h, h), x_in])
    y = block.output_layer.dense(block.mlp.dense(block.layer_norm_2(x)))
    return keras.Model(x_in, keras.layers.Add(name="res_2")([y, x]), name=block.name)


def deit_encoder_model(layer, specs):
    """KerasHub's ``DeiTEncoder`` (no masks, no hidden states or scores asked for): its
    blocks in order, then the final LayerNorm; the model's first output only."""
    x_in = _one_input(layer, specs)
    x = x_in
    for block in layer.encoder_layers:
        # a functional model per block (lrpgraph inlines it): the block itself returns
        # (y, None), which Keras cannot record in a functional graph
        x = deit_block_model(block, [x])(x)
    return keras.Model(x_in, layer.layer_norm(x), name=layer.name)


def dinov2_patch_model(layer, specs):
    """KerasHub's ``DINOV2PatchEmbedding`` (channels_last): the projection Conv2D, tokens."""
    images = _one_input(layer, specs, "images")
    return keras.Model(images, _tokens(layer.projection(images), layer.hidden_dim), name=layer.name)


def dinov2_embedding_model(layer, specs):
    """KerasHub's ``DINOV2Embedding`` (no masks): patches, the class token, the interpolated
    position table, the register tokens after the class token."""
    images = _one_input(layer, specs, "images")
    x = layer.patch_embeddings(images)
    x = TokensAt(layer.cls_token, 0, name="class_token")(x)
    x = AddTable(_whole(layer.interpolated_position_embeddings), name="position_embedding")(x)
    if layer.num_register_tokens > 0:
        x = TokensAt(layer.register_tokens, 1, name="register_tokens")(x)
    return keras.Model(images, x, name=layer.name)


def dinov2_attention_model(layer, specs):
    """KerasHub's ``DINOV2Attention``: its MultiHeadAttention on (x, x, x)."""
    x = _one_input(layer, specs)
    return keras.Model(x, layer.attention(query=x, value=x, key=x, use_causal_mask=False), name=layer.name)


def dinov2_swiglu_model(layer, specs):
    """KerasHub's ``DINOV2SwiGLUFFN``: ``weights_out(silu(a) * b)``, ``[a, b] = weights_in(x)``."""
    x = _one_input(layer, specs)
    h = layer.weights_in(x)
    n = layer.actual_intermediate_dim
    gate = keras.layers.Activation("silu", name="silu")(h[..., :n])
    return keras.Model(x, layer.weights_out(GatedProduct(name="gated")(h[..., n:], gate)), name=layer.name)


def dinov2_layer_model(layer, specs):
    """KerasHub's ``DINOV2Layer`` at inference: ``y = x + ls1(attention(norm1(x)))``,
    ``y + ls2(mlp(norm2(y)))`` (drop path: identity at inference)."""
    x_in = _one_input(layer, specs)
    a = layer.drop_path(layer.layer_scale1(layer.attention(layer.norm1(x_in))))
    y = keras.layers.Add(name="res_1")([a, x_in])
    f = layer.drop_path(layer.layer_scale2(layer.mlp(layer.norm2(y))))
    return keras.Model(x_in, keras.layers.Add(name="res_2")([f, y]), name=layer.name)


def dinov2_encoder_model(layer, specs):
    """KerasHub's ``DINOV2Encoder``: its layers in order; outputs ``(x, {"stage1": ...})``
    as the layer does."""
    x_in = _one_input(layer, specs)
    x, stages = x_in, {}
    for i, block in enumerate(layer.layers, start=1):
        x = block(x)
        stages[f"stage{i}"] = x
    return keras.Model(x_in, (x, stages), name=layer.name)


def siglip_embedding_model(layer, specs):
    """KerasHub's ``SigLIPVisionEmbedding`` (channels_last): patch Conv2D, tokens, plus the
    position table at ``position_ids``."""
    images = _one_input(layer, specs, "images")
    x = _tokens(layer.patch_embedding(images), layer.hidden_dim)
    x = AddTable(_rows(layer.position_embedding, layer.position_ids), name="position_embedding")(x)
    return keras.Model(images, x, name=layer.name)


def fc_mlp_model(layer, specs):
    """KerasHub's ``DINOV2MLP`` and ``SigLIPMLP``: ``fc2(fc1(x))`` (fc1 carries the
    activation)."""
    x = _one_input(layer, specs)
    return keras.Model(x, layer.fc2(layer.fc1(x)), name=layer.name)


def siglip_encoder_layer_model(layer, specs):
    """KerasHub's ``SigLIPEncoderLayer``: ``y = x + MHA(LN1(x))``, ``y + mlp(LN2(y))``."""
    x_in = _one_input(layer, specs)
    h = layer.layer_norm1(x_in)
    y = keras.layers.Add(name="res_1")([x_in, layer.self_attn(h, h, h, use_causal_mask=layer.use_causal_mask)])
    return keras.Model(x_in, keras.layers.Add(name="res_2")([y, layer.mlp(layer.layer_norm2(y))]), name=layer.name)


def siglip_pooling_model(layer, specs):
    """KerasHub's ``SigLIPMultiHeadAttentionPooling`` (MAP head): ``h = MHA(probe, x, x)``,
    ``(h + mlp(LN(h)))[:, 0]``."""
    x = _one_input(layer, specs)
    probes = ProbeOf(layer.probe, name="probe")(x)
    h = layer.attention(probes, x, x)
    h = keras.layers.Add(name="res")([h, layer.mlp(layer.layer_norm(h))])
    return keras.Model(x, h[:, 0], name=layer.name)


def clip_embedding_model(layer, specs):
    """KerasHub's ``CLIPVisionEmbedding`` (channels_last): patch Conv2D, tokens, the class
    embedding first, plus the position table at ``position_ids``."""
    images = _one_input(layer, specs, "images")
    x = _tokens(layer.patch_embedding(images), layer.hidden_dim)
    x = TokensAt(layer.class_embedding, 0, name="class_embedding")(x)
    x = AddTable(_rows(layer.position_embedding, layer.position_ids), name="position_embedding")(x)
    return keras.Model(images, x, name=layer.name)


def clip_encoder_layer_model(layer, specs):
    """KerasHub's ``CLIPEncoderLayer``: ``y = x + MHA(LN1(x))`` (causal where the layer is),
    ``y + dense_2(act(dense_1(LN2(y))))``."""
    x_in = _one_input(layer, specs)
    h = layer.layer_norm_1(x_in)
    y = keras.layers.Add(name="res_1")([x_in, layer.attention(h, h, h, use_causal_mask=layer.use_causal_mask)])
    f = layer.dense_2(layer.activation(layer.dense_1(layer.layer_norm_2(y))))
    return keras.Model(x_in, keras.layers.Add(name="res_2")([y, f]), name=layer.name)


# ---- registration --------------------------------------------------------------------------------

def _layer_scale(layer):
    return Linear(lambda x, k: x * k, layer.lambda1, None, channel_axis=-1, scale_axes=(-1,), subkind="layer_scale")


def _class(module, name):
    try:
        mod = __import__(f"keras_hub.src.models.{module}", fromlist=[name])
    except ImportError:  # another keras_hub layout: no description, the generic error
        return None
    return getattr(mod, name, None)


_NESTED = (
    ("deit.deit_layers", "DeiTEmbeddings", deit_embedding_model, "DeiTBackbone"),
    ("deit.deit_layers", "DeiTEncoder", deit_encoder_model, None),
    ("dinov2.dinov2_layers", "DINOV2PatchEmbedding", dinov2_patch_model, "DINOV2Backbone"),
    ("dinov2.dinov2_layers", "DINOV2Embedding", dinov2_embedding_model, None),
    ("dinov2.dinov2_layers", "DINOV2Encoder", dinov2_encoder_model, None),
    ("dinov2.dinov2_layers", "DINOV2Layer", dinov2_layer_model, None),
    ("dinov2.dinov2_layers", "DINOV2Attention", dinov2_attention_model, None),
    ("dinov2.dinov2_layers", "DINOV2MLP", fc_mlp_model, None),
    ("dinov2.dinov2_layers", "DINOV2SwiGLUFFN", dinov2_swiglu_model, None),
    ("siglip.siglip_layers", "SigLIPVisionEmbedding", siglip_embedding_model, "SigLIPVisionEncoder"),
    ("siglip.siglip_layers", "SigLIPEncoderLayer", siglip_encoder_layer_model, None),
    ("siglip.siglip_layers", "SigLIPMLP", fc_mlp_model, None),
    ("siglip.siglip_layers", "SigLIPMultiHeadAttentionPooling", siglip_pooling_model, None),
    ("clip.clip_layers", "CLIPVisionEmbedding", clip_embedding_model, "CLIPVisionEncoder"),
    ("clip.clip_layers", "CLIPEncoderLayer", clip_encoder_layer_model, None),
)


def register():
    """Register the descriptions of KerasHub's DeiT, DINOv2, SigLIP and CLIP vision layers
    (imports keras_hub's modules of them)."""
    register_layer(TokensAt, _tokens_op)
    register_layer(AddTable, lambda layer: variable_add(layer.table))
    register_layer(ProbeOf, lambda layer: Constant())
    # replace=False: a user's register_layer made before keras_hub was first seen stays
    for module, name, expand, backbone in _NESTED:
        cls = _class(module, name)
        if cls is not None:
            register_layer(cls, _nested(expand, backbone), replace=False)
    for module, name, describe in (("dinov2.dinov2_layers", "DINOV2LayerScale", _layer_scale),
                                   ("dinov2.dinov2_layers", "DINOV2DropPath", lambda layer: Noise()),
                                   ("clip.clip_layers", "CLIPVisionPooler", lambda layer: Reshape("first_token"))):
        cls = _class(module, name)
        if cls is not None:
            register_layer(cls, describe, replace=False)
