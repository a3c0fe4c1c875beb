"""Key-value retrieval: a text task whose answer is decided by one earlier token.

A prompt lists ``pairs`` distinct keys (letters) with a value each (digits) and then asks
for one key::

    "a=3 b=7 c=1 d=4 b?"   ->   "7"

The next token after ``?`` is the queried key's value, so one prompt token decides the
answer: the **value token of the queried key** (the ``7`` after ``b=``), at
:func:`deciding_position`.  ``scripts/train_retrieval.py`` trains a tiny Llama-style
KerasHub causal LM on it (shipped as :data:`lrpgraph.assets.RETRIEVAL_MODEL`) and measures
how often each method's most relevant prompt token is that one (docs/methods/llms.md).

The tokenizer is one id per character (:data:`VOCAB`, no download): id 0 is padding,
then the letters ``a``-``h``, the digits, ``=``, space and ``?``.  Every prompt has the
same length, ``4 * pairs + 2`` characters.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .engine.prepared import prepare
from .errors import InputError
from .methods.rollout import attention_softmax_nodes, rollout_matrix

__all__ = ["KEYS", "VALUES", "VOCAB", "PAD", "CharTokenizer", "TOKENIZER", "prompt_length", "make_prompts",
           "deciding_position", "most_relevant_token", "hit_rate", "causal_rollout",
           "embedding_integrated_gradients", "training_sequences", "copy_sequences"]

KEYS = "abcdefgh"
VALUES = "0123456789"
PAD = "<pad>"
VOCAB: tuple[str, ...] = (PAD,) + tuple(KEYS) + tuple(VALUES) + ("=", " ", "?")


class CharTokenizer:
    """One id per character of :data:`VOCAB` (id = index; ``<pad>`` is 0).

    ``encode("a=3 b?")`` -> ids, ``decode(ids)`` -> the string (padding dropped),
    ``token_to_id`` / ``id_to_token`` as KerasHub tokenizers name them (so that
    ``lrpgraph.prepare(lm, tokenizer=TOKENIZER)`` takes ``target="7"``)."""

    def __init__(self, vocabulary=VOCAB):
        self.vocabulary = tuple(vocabulary)
        self._ids = {t: i for i, t in enumerate(self.vocabulary)}

    def vocabulary_size(self):
        return len(self.vocabulary)

    def token_to_id(self, token):
        if token not in self._ids:
            raise InputError(f"token {token!r} is not in the retrieval vocabulary {''.join(self.vocabulary[1:])!r}; "
                             "use one of its characters")
        return self._ids[token]

    def id_to_token(self, i):
        return self.vocabulary[int(i)]

    def encode(self, text):
        return np.array([self.token_to_id(c) for c in text], np.int32)

    def decode(self, ids):
        return "".join(self.vocabulary[int(i)] for i in ids if int(i) != 0)

    def tokens(self, ids):
        """The token strings of ``ids``, padding included (for a heatmap's labels)."""
        return [self.vocabulary[int(i)] for i in ids]


TOKENIZER = CharTokenizer()


def prompt_length(pairs):
    """Characters (tokens) of a prompt with ``pairs`` pairs: ``"k=v "`` each, then ``"k?"``."""
    return 4 * pairs + 2


def make_prompts(n, pairs=4, seed=0):
    """``n`` random prompts with ``pairs`` distinct keys each.

    Returns ``(x, answers, positions)``: ``x`` the causal LM's inputs
    ``{"token_ids": (n, T) int32, "padding_mask": (n, T) int32 (all ones)}``, ``answers``
    (n,) the vocabulary ids of the queried values (the next token after the last),
    ``positions`` (n,) the index of the deciding token (the queried key's value)."""
    if not 1 <= pairs <= len(KEYS):
        raise InputError(f"pairs={pairs}: a prompt has 1 to {len(KEYS)} distinct keys")
    rng = np.random.default_rng(seed)
    T = prompt_length(pairs)
    ids = np.zeros((n, T), np.int32)
    answers = np.zeros(n, np.int32)
    positions = np.zeros(n, np.int32)
    q = TOKENIZER.token_to_id("?")
    for i in range(n):
        keys, values = _write_pairs(rng, ids[i], pairs)
        k = rng.integers(0, pairs)
        ids[i, -2:] = (1 + keys[k], q)
        answers[i] = 1 + len(KEYS) + values[k]
        positions[i] = deciding_position(k)
    return {"token_ids": ids, "padding_mask": np.ones_like(ids)}, answers, positions


def _write_pairs(rng, row, pairs):
    """Draw ``pairs`` distinct keys and their values and write them into ``row`` as
    ``"k=v "`` each (4 tokens a pair); returns (key indices, value indices)."""
    keys = rng.choice(len(KEYS), pairs, replace=False)
    values = rng.integers(0, len(VALUES), pairs)
    eq, space = TOKENIZER.token_to_id("="), TOKENIZER.token_to_id(" ")
    for j in range(pairs):
        row[4 * j:4 * j + 4] = (1 + keys[j], eq, 1 + len(KEYS) + values[j], space)
    return keys, values


def deciding_position(pair_index):
    """The token index of the value of pair ``pair_index`` (``"k=v "`` per pair)."""
    return 4 * np.asarray(pair_index) + 2


def most_relevant_token(maps, mask=None):
    """(N,) the index of the largest relevance per prompt ((N, T) maps); padding
    (``mask == 0``) never wins."""
    maps = np.asarray(maps, np.float64)
    if mask is not None:
        maps = np.where(np.asarray(mask) != 0, maps, -np.inf)
    return np.argmax(maps, axis=-1)


def hit_rate(maps, positions, mask=None):
    """The fraction of prompts whose most relevant token is the deciding one."""
    return float(np.mean(most_relevant_token(maps, mask) == np.asarray(positions)))


def causal_rollout(causal_lm, x, position=None, residual=0.5):
    """Attention rollout (Abnar and Zuidema, ACL 2020) of a KerasHub causal LM, (N, T):
    the row of the explained ``position`` (default: the last non-padding token) of
    ``prod_l normalise(residual I + (1 - residual) mean_heads(A_l))``, with ``A_l`` every
    attention softmax of the rewritten graph in order
    (:func:`lrpgraph.methods.rollout.rollout_matrix`).  ``attention_rollout`` itself lays
    tokens on image patches and so refuses text models; this is the same matrix read at
    the explained token.  Target-agnostic, as rollout is."""
    p = prepare(causal_lm)
    x = p.fill_position(x, position)
    xs, _ = p.check_inputs(x)
    nodes = attention_softmax_nodes(p.graph, p.needed)
    if not nodes:
        raise InputError(f"model {p.name!r} has no attention softmax to roll out")
    values = p.activations([tf.convert_to_tensor(a) for a in xs])
    roll = rollout_matrix([values[(n, 0)] for n in nodes], residual).numpy()
    pos = np.asarray(x[p.position_input])
    return roll[np.arange(len(pos)), pos]


def embedding_integrated_gradients(causal_lm, x, targets, steps=32, position=None):
    """Integrated gradients (Sundararajan et al., ICML 2017) on the token embeddings of a
    KerasHub decoder causal LM (Llama-style backbone: ``token_embedding``,
    ``transformer_layers``, ``layer_norm``), (N, T):

        IG_t = sum_h e_th * mean_{k=1..steps} d logit_target(alpha_k e) / d e_th,
        alpha_k = (k - 1/2) / steps,

    the baseline all-zero embeddings (the midpoint Riemann sum), the padding mask and the
    positions (rotary) unchanged.  Token ids cannot be interpolated (integrated_gradients
    refuses them); their embedding vectors can."""
    bb = causal_lm.backbone
    ids = tf.convert_to_tensor(np.asarray(x["token_ids"]), tf.int32)
    mask = tf.convert_to_tensor(np.asarray(x["padding_mask"]), tf.int32)
    n, t = ids.shape
    if position is None:
        m = np.asarray(x["padding_mask"]) != 0
        position = t - 1 - np.argmax(m[:, ::-1], axis=1)
    pos = np.broadcast_to(np.asarray(position), (n,))
    sel = tf.constant(np.stack([np.arange(n), pos], 1), tf.int32)
    tgt = tf.constant(np.stack([np.arange(n), np.asarray(targets)], 1), tf.int32)
    emb = bb.token_embedding(ids)

    def logit(e):
        h = e
        for layer in bb.transformer_layers:
            h = layer(h, decoder_padding_mask=mask)
        h = tf.gather_nd(bb.layer_norm(h), sel)
        return tf.gather_nd(bb.token_embedding(h, reverse=True), tgt)

    total = tf.zeros_like(emb)
    for k in range(steps):
        e = emb * ((k + 0.5) / steps)
        with tf.GradientTape() as tape:
            tape.watch(e)
            y = logit(e)
        total += tape.gradient(y, e)
    return tf.reduce_sum(emb * total / steps, axis=-1).numpy()


def training_sequences(n, pairs=4, queries=3, seed=0):
    """Training data for a causal LM: ``n`` prompts of :func:`make_prompts`'s form followed
    by ``queries - 1`` more answered queries, ``"a=3 b=7 c=1 d=4 b?7d?4a?3"``; the first
    ``4 * pairs + 2`` tokens are exactly a prompt of :func:`make_prompts`.  Returns
    ``(x, labels, weights)``: ``labels[:, t]`` the next token after ``t``, ``weights`` 1 at
    every ``?`` (the answers; more signal per sequence than the one answer of a prompt)
    and 0 elsewhere."""
    rng = np.random.default_rng(seed)
    T = prompt_length(pairs) + 3 * (queries - 1) + 1
    ids = np.zeros((n, T), np.int32)
    q = TOKENIZER.token_to_id("?")
    for i in range(n):
        keys, values = _write_pairs(rng, ids[i], pairs)
        t = 4 * pairs
        for k in rng.integers(0, pairs, queries):
            ids[i, t:t + 3] = (1 + keys[k], q, 1 + len(KEYS) + values[k])
            t += 3
    ids = ids[:, :T]
    labels = np.zeros_like(ids)
    labels[:, :-1] = ids[:, 1:]
    weights = (ids == q).astype(np.float32)
    return {"token_ids": ids, "padding_mask": np.ones_like(ids)}, labels, weights


def copy_sequences(n, length, periods=(2, 3), seed=0):
    """Auxiliary training data: ``n`` periodic sequences of ``length`` tokens, each a
    random block of ``p`` letters and digits (``p`` drawn from ``periods``) repeated,
    e.g. ``"3a73a73a7..."`` (p = 3).  Returns ``(x, labels, weights)`` as
    :func:`training_sequences`: ``labels[:, t]`` the next token, which equals the token
    ``p - 1`` places before ``t``; ``weights`` 1 from the second period on.

    Why: retrieval needs first-layer heads that look a fixed number of places back (the
    ``?`` reads the queried key one place back, each value its key two places back);
    without them the second layer's key matching gets no gradient and training stalls on
    the "copy some value" plateau.  Sequences that are predictable only by looking 1 or 2
    places back grow those heads (``scripts/train_retrieval.py`` mixes them in)."""
    rng = np.random.default_rng(seed)
    periods = np.asarray(periods)
    if periods.ndim != 1 or len(periods) == 0 or periods.min() < 1 or periods.max() >= length:
        raise InputError(f"periods={periods.tolist()}: give periods between 1 and length - 1 = {length - 1}")
    p = rng.choice(periods, n)
    block = rng.integers(1, 1 + len(KEYS) + len(VALUES), (n, int(periods.max())))
    ids = np.take_along_axis(block, np.arange(length)[None] % p[:, None], 1).astype(np.int32)
    labels = np.zeros_like(ids)
    labels[:, :-1] = ids[:, 1:]
    weights = (np.arange(length)[None] >= p[:, None]).astype(np.float32)
    weights[:, -1] = 0.0  # the last token has no next token
    return {"token_ids": ids, "padding_mask": np.ones_like(ids)}, labels, weights
