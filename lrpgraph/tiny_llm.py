"""Tiny KerasHub causal LMs with RANDOM weights, built offline from a config.

KerasHub presets cannot be downloaded everywhere (no network, gated weights); these
models let the generation explanation, the CLI (``lrpgraph explain --text "..." --model
llama-tiny --generate 8``), the coverage benchmark and the tests run anywhere.  Their
weights are random (seeded): what they generate means nothing; the relevance shows the
mechanics (causality, conservation, where the rules send relevance), not language.

The tokenizer is :class:`CharTokenizer`: one token per printable ASCII character, so any
English prompt tokenizes without unknown tokens.
"""

from __future__ import annotations

import numpy as np

import keras

__all__ = ["CharTokenizer", "TINY_LLMS", "tiny_causal_lm", "TINY_CONFIG"]

# 2 blocks, hidden 32, 4 query heads sharing 2 key/value heads (grouped-query attention)
TINY_CONFIG = dict(num_layers=2, num_query_heads=4, num_key_value_heads=2, hidden_dim=32, intermediate_dim=64)


class CharTokenizer:
    """Character-level tokenizer: id 0 is ``<pad>``, ids 1..95 the printable ASCII
    characters ``' '..'~'``; other characters are an error naming them.  Has what
    :func:`lrpgraph.text.explain_generation` and KerasHub targets use: ``__call__``,
    ``id_to_token``, ``token_to_id``, ``vocabulary_size()``."""

    PAD = "<pad>"

    def __init__(self):
        self.tokens = [self.PAD] + [chr(i) for i in range(32, 127)]
        self._ids = {t: i for i, t in enumerate(self.tokens)}

    def vocabulary_size(self):
        return len(self.tokens)

    def __call__(self, text):
        bad = sorted({c for c in str(text) if c not in self._ids or c == self.PAD})
        if bad:
            raise ValueError(f"characters {bad} are not in the tiny models' vocabulary (printable ASCII only)")
        return np.array([self._ids[c] for c in str(text)], np.int32)

    def id_to_token(self, i):
        return self.tokens[int(i)]

    def token_to_id(self, token):
        if token not in self._ids:
            raise KeyError(f"{token!r} is not a token (one printable ASCII character)")
        return self._ids[token]


def _families():
    # keras_hub: optional and heavy, imported only when a tiny model is asked for
    import keras_hub

    m = keras_hub.models
    c = dict(TINY_CONFIG)
    heads = dict(c, head_dim=8)
    return {
        "llama-tiny": lambda v: m.LlamaCausalLM(m.LlamaBackbone(vocabulary_size=v, **c), preprocessor=None),
        "llama3-tiny": lambda v: m.Llama3CausalLM(m.Llama3Backbone(vocabulary_size=v, **c), preprocessor=None),
        "mistral-tiny": lambda v: m.MistralCausalLM(m.MistralBackbone(vocabulary_size=v, sliding_window=16, **c),
                                                    preprocessor=None),
        "qwen-tiny": lambda v: m.QwenCausalLM(m.QwenBackbone(vocabulary_size=v, **c), preprocessor=None),
        "qwen3-tiny": lambda v: m.Qwen3CausalLM(m.Qwen3Backbone(vocabulary_size=v, **heads), preprocessor=None),
        "phi3-tiny": lambda v: m.Phi3CausalLM(m.Phi3Backbone(vocabulary_size=v, **c), preprocessor=None),
        "gemma-tiny": lambda v: m.GemmaCausalLM(m.GemmaBackbone(vocabulary_size=v, **heads), preprocessor=None),
        "gemma3-tiny": lambda v: m.Gemma3CausalLM(backbone=m.Gemma3Backbone(
            vocabulary_size=v, image_size=16, **heads, use_post_ffw_norm=True, use_post_attention_norm=True,
            use_sliding_window_attention=True, sliding_window_size=16), preprocessor=None),
        "gpt2-tiny": lambda v: m.GPT2CausalLM(m.GPT2Backbone(
            vocabulary_size=v, num_layers=2, num_heads=4, hidden_dim=32, intermediate_dim=64,
            max_sequence_length=128), preprocessor=None),
        "mixtral-tiny": lambda v: m.MixtralCausalLM(m.MixtralBackbone(
            vocabulary_size=v, num_experts=4, top_k=2, sliding_window=16, **c), preprocessor=None),
        "qwen3-moe-tiny": lambda v: m.Qwen3MoeCausalLM(m.Qwen3MoeBackbone(
            vocabulary_size=v, moe_intermediate_dim=16, num_experts=4, top_k=2, **heads), preprocessor=None),
    }


TINY_LLMS = ("llama-tiny", "llama3-tiny", "mistral-tiny", "qwen-tiny", "qwen3-tiny", "phi3-tiny", "gemma-tiny",
             "gemma3-tiny", "gpt2-tiny", "mixtral-tiny", "qwen3-moe-tiny")


def tiny_causal_lm(name, seed=0):
    """``(causal_lm, tokenizer)``: the tiny KerasHub causal LM ``name`` (one of
    :data:`TINY_LLMS`) with seeded RANDOM weights and a :class:`CharTokenizer`, compiled
    with the greedy sampler (deterministic generation)."""
    if name not in TINY_LLMS:
        raise ValueError(f"unknown tiny model {name!r}; the tiny configs are {', '.join(TINY_LLMS)}")
    tok = CharTokenizer()
    keras.utils.set_random_seed(seed)
    lm = _families()[name](tok.vocabulary_size())
    lm.compile(sampler="greedy")
    return lm, tok
