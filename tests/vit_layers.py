"""Keras layers of the ViT-style test models (a class token, a position table), shared by
tests/test_attention.py and tests/test_vit.py; the ``vit_layers`` fixture in conftest.py
registers their descriptions with lrpgraph.register_layer."""

import keras
from keras import layers as L


class ClassToken(L.Layer):
    """ViT-style: concatenate a learned token in front of the patches."""

    def build(self, shape):
        self.token = self.add_weight(shape=(1, 1, shape[-1]), initializer="random_normal", name="token")

    def call(self, x):
        t = keras.ops.broadcast_to(self.token, (keras.ops.shape(x)[0], 1, x.shape[-1]))
        return keras.ops.concatenate([t, x], axis=1)


class PositionEmbedding(L.Layer):
    """x + a learned (T, D) table."""

    def build(self, shape):
        self.pos = self.add_weight(shape=tuple(shape[1:]), initializer="random_normal", name="pos")

    def call(self, x):
        return x + self.pos
