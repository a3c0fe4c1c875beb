"""Op descriptions (:mod:`lrpgraph.engine.ops.base`, what rules are written against) and the
adapters that make them:

- :mod:`~lrpgraph.engine.ops.keras`: Keras layers and operations (``BUILDERS``), with
  :func:`register_layer` for custom layers;
- :mod:`~lrpgraph.engine.ops.recurrent`: LSTM, GRU, SimpleRNN (:class:`Recurrent`) and
  Bidirectional, masks included;
- :mod:`~lrpgraph.engine.ops.keras_hub`, :mod:`~lrpgraph.engine.ops.keras_hub_vision`,
  :mod:`~lrpgraph.engine.ops.keras_hub_text`, :mod:`~lrpgraph.engine.ops.keras_hub_llm`:
  KerasHub's ViT, its other ViT-family vision towers (DeiT, DINOv2, SigLIP, CLIP), its text
  encoders and its decoder LLMs, registered when a KerasHub model is first seen (importing lrpgraph never
  imports KerasHub).
"""

from .base import (Add, Attention, Bilinear, Chain, Concat, Constant, Elementwise, Embedding, Identity,
                   Input, LayerNorm, Linear, Multiply, Nested, Noise, Op, Pooling, Reshape, Softmax,
                   Unknown, replace, variable_add, variable_concat, wide_dtype)
from .keras import describe, register_layer, registrations_generation, unregister_layer
from .recurrent import Recurrent

__all__ = [
    "Op", "Input", "Linear", "Elementwise", "Pooling", "Add", "Concat", "Multiply", "Reshape",
    "Identity", "Softmax", "Noise", "LayerNorm", "Nested", "Chain", "Unknown", "replace",
    "Bilinear", "Attention", "Embedding", "Constant", "variable_add", "variable_concat",
    "wide_dtype", "Recurrent", "describe", "register_layer", "unregister_layer", "registrations_generation",
]
