"""Text models: from a string to one relevance per token.

``explain_text(model, "some words", method="attn_lrp", vocab=...)`` tokenizes the text
(whitespace, or a vocabulary file with one token per line, the line number being the
id), builds the model's inputs (token ids; a padding mask and segment ids where the
model takes them, recognised by their input names), runs the method and returns a
:class:`TextExplanation` (tokens, one relevance per token, logits, target).  The CLI's
``lrpgraph explain --text`` is this function plus :func:`lrpgraph.viz.token_heatmap`.

The map of a token is the relevance reaching its embedding vector, summed over the
embedding axis (``rules.TokenSum``; the gradient presets: the gradient there, times the
embedding for ``input_t_gradient``), see docs/methods/transformers.md, "Text models".
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from .engine.ops.keras_hub_llm import SPAN_TARGETS, causal_lm_span_model
from .engine.prepared import prepare
from .errors import InputError
from .methods.analyzer import Analyzer
from .methods.base import Method
from .methods.registry import create_analyzer
from .viz import token_heatmap, token_html

__all__ = ["TextExplanation", "read_vocab", "tokenize", "encode", "text_inputs", "explain_text",
           "import_keras_hub", "GenerationExplanation", "explain_generation", "block_outputs", "relevance_trace"]

_UNKNOWN = ("[UNK]", "<unk>", "<UNK>", "[unk]")
_PADDING = ("[PAD]", "<pad>", "<PAD>", "[pad]")


@dataclass(frozen=True)
class TextExplanation:
    """What :func:`explain_text` returns: ``tokens`` (the L' tokens of the text, without
    padding), ``ids`` (their ids), ``relevance`` ((L',) float), ``logits`` ((K,)),
    ``target`` (the explained class) and ``predicted`` (the argmax of the logits)."""

    tokens: list
    ids: np.ndarray
    relevance: np.ndarray
    logits: np.ndarray
    target: int
    predicted: int

    def table(self):
        """One line per token: position, token, id, relevance."""
        width = max([5] + [len(t) for t in self.tokens])
        lines = [f"{'#':>3}  {'token'.ljust(width)}  {'id':>6}  relevance"]
        for i, (t, k, r) in enumerate(zip(self.tokens, self.ids, self.relevance)):
            lines.append(f"{i:>3}  {t.ljust(width)}  {int(k):>6}  {r:+.6g}")
        return "\n".join(lines)


def import_keras_hub():
    """Import ``keras_hub`` where it is installed (it registers its layers with Keras,
    so that ``.keras`` files of KerasHub models load); True if it is there."""
    try:
        import keras_hub  # noqa: F401  (optional, lrpgraph[transformers]: importing it registers its layers)
    except ImportError:
        return False
    return True


def read_vocab(path):
    """A vocabulary file, one token per line (the line number is the id; BERT's
    ``vocab.txt`` format) -> dict token -> id.  Blank lines keep their id."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"vocabulary file not found: {path}", param="vocab")
    vocab = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        tok = line.rstrip("\r\n")
        if tok and tok not in vocab:
            vocab[tok] = i
    if not vocab:
        raise InputError(f"vocabulary file {path} is empty; it needs one token per line", param="vocab")
    return vocab


def tokenize(text, vocab=None):
    """Whitespace tokenization; lower-cased where the vocabulary has no upper-case word
    (an uncased vocabulary such as BERT's uncased ``vocab.txt``)."""
    tokens = str(text).split()
    if not tokens:
        raise InputError("no text given: the text is empty; pass some words", param="text")
    if vocab is not None and not any(t != t.lower() for t in vocab if not re.fullmatch(r"[\[<].*[\]>]", t)):
        tokens = [t.lower() for t in tokens]
    return tokens


def encode(tokens, vocab=None):
    """Ids of ``tokens``: by ``vocab`` (an unknown word takes the vocabulary's ``[UNK]`` /
    ``<unk>`` id, or is an error naming it), or, without a vocabulary, tokens that are
    integers themselves (``"12 7 3"``)."""
    if vocab is None:
        try:
            return np.array([int(t) for t in tokens], np.int64)
        except ValueError:
            bad = next(t for t in tokens if not re.fullmatch(r"-?\d+", t))
            raise InputError(f"token {bad!r} is not an id and no vocabulary was given: pass a vocabulary "
                             "(vocab=FILE, one token per line, or a dict token -> id) or the text as integer ids",
                             param="vocab") from None
    unk = next((vocab[u] for u in _UNKNOWN if u in vocab), None)
    ids = []
    for t in tokens:
        if t in vocab:
            ids.append(vocab[t])
        elif unk is not None:
            ids.append(unk)
        else:
            raise InputError(f"word {t!r} is not in the vocabulary and it has no [UNK] token: add it to the "
                             "vocabulary file or leave it out")
    return np.array(ids, np.int64)


def text_inputs(prepared, ids, pad_id=0):
    """The model's inputs for one text: a list in the model's input order.  The token-id
    input is the integer input that feeds an Embedding and is named neither mask nor
    segment; ``*mask*`` inputs get 1 on the tokens and 0 on the padding, ``*segment*`` /
    ``*type*`` inputs zeros.  A fixed length pads with ``pad_id`` (or is an error when the
    text is longer)."""
    names = list(prepared.input_nodes)
    role = {}
    for n, spec in zip(names, prepared.input_specs):
        low = n.lower()
        if spec.dtype.is_floating:
            raise InputError(f"model {prepared.name!r} has a floating input {n!r}; explaining a text needs a text "
                             "model whose inputs are token ids (and optionally a padding mask / segment ids)",
                             param="model")
        role[n] = "mask" if "mask" in low else "segment" if ("segment" in low or "type" in low) else "ids"
    id_inputs = [n for n in names if role[n] == "ids"]
    if len(id_inputs) != 1:
        raise InputError(f"model {prepared.name!r} has inputs {names}; explaining a text needs exactly one "
                         "token-id input (the others named *mask* or *segment*)", param="model")
    spec = prepared.input_specs[names.index(id_inputs[0])]
    if len(spec.shape) != 2:
        raise InputError(f"the token-id input {id_inputs[0]!r} has shape {tuple(spec.shape)}; expected (batch, "
                         "length)")
    length = spec.shape[1]
    n_tok = len(ids)
    if length is not None and n_tok > length:
        raise InputError(f"the text has {n_tok} tokens; the model takes at most {length}: shorten the text")
    L = n_tok if length is None else int(length)
    padded = np.full((1, L), pad_id, np.int64)
    padded[0, :n_tok] = ids
    mask = np.zeros((1, L), np.int64)
    mask[0, :n_tok] = 1
    feeds = {"ids": padded, "mask": mask, "segment": np.zeros((1, L), np.int64)}
    return [feeds[role[n]] for n in names], names.index(id_inputs[0])


def explain_text(model, text, method="attn_lrp", vocab=None, target=None, **params):
    """Explain ``text`` with ``method`` on a text model: a :class:`TextExplanation`.

    ``vocab``: a dict token -> id, a path to a vocabulary file (one token per line), or
    None (the text is whitespace-separated integer ids).  ``target``: a class index (or
    name where the model has class names); None: the predicted class.  ``params``: the
    method's parameters.  Padding (to a fixed model length) is masked where the model
    has a padding-mask input and is left out of the returned tokens either way."""
    if vocab is not None and not isinstance(vocab, dict):
        vocab = read_vocab(vocab)
    prepared = prepare(model)
    tokens = tokenize(text, vocab)
    ids = encode(tokens, vocab)
    pad_id = next((vocab[p] for p in _PADDING if vocab and p in vocab), 0)
    xs, slot = text_inputs(prepared, ids, pad_id)
    try:
        analyzer = create_analyzer(method, prepared, **params)
        exp = analyzer.explain(xs if len(xs) > 1 else xs[0], target)
    except (TypeError, ValueError) as e:
        raise InputError(f"method {method!r}: {e}", param="method") from None
    maps = exp.maps if isinstance(exp.maps, list) else [exp.maps]
    rel = np.asarray(maps[slot])[0, :len(ids)]
    logits = exp.logits[0]
    return TextExplanation(tokens, ids, rel, logits, int(exp.targets[0]), int(np.argmax(logits)))


# ---- causal LMs: explaining generated tokens ---------------------------------------------------

@dataclass(frozen=True)
class GenerationExplanation:
    """What :func:`explain_generation` returns.

    ``ids``: the L token ids of prompt + generation; ``tokens``: their strings (ids as
    strings without a tokenizer); ``prompt_length``: how many of them are the prompt;
    ``relevance``: (G, L), row g the relevance of every token for generated token
    ``prompt_length + g`` (the logit of that token at the position before it; zero on
    and after it, by causality); ``logits``: (G,) the explained logits.  ``spans``: the
    spans explained in one pass each (``explain_generation(spans=...)``), ``(start,
    stop)`` -> (relevance (L,), the summed logit)."""

    ids: np.ndarray
    tokens: list
    prompt_length: int
    relevance: np.ndarray
    logits: np.ndarray
    spans: dict = field(default_factory=dict)

    @property
    def generated(self):
        """The generated tokens' strings."""
        return self.tokens[self.prompt_length:]

    def span(self, start=0, stop=None):
        """Relevance (L,) of the sum of the logits of generated tokens ``start:stop``
        (indices into the generation): the one-pass map where ``explain_generation``
        computed this span (``spans=``), else the sum of the tokens' rows, which equals it
        up to float32 rounding for rules linear in the relevance (every LRP rule of
        ``attn_lrp`` and ``cp_lrp``; the forward pass is the same for every row)."""
        key = _span_key(start, stop, len(self.ids) - self.prompt_length)
        if key in self.spans:
            return self.spans[key][0]
        return self.relevance[key[0]:key[1]].sum(axis=0)

    def html(self, row=None):
        """The prompt and generation as HTML, coloured by the relevance of generated token
        ``row`` (None: of the whole generation, :meth:`span`)."""
        r = self.span() if row is None else self.relevance[row]
        return token_html(self.tokens, r)

    def figure(self, row=None, **kwargs):
        """A matplotlib token heatmap (:func:`lrpgraph.viz.token_heatmap`) of ``row``."""
        r = self.span() if row is None else self.relevance[row]
        return token_heatmap(self.tokens, r, **kwargs)


def explain_generation(causal_lm, prompt, max_length, method="attn_lrp", *, tokenizer=None, analyzer=None,
                       spans=None, **params):
    """Generate with KerasHub's ``causal_lm.generate`` (its compiled sampler; compile the
    model with ``sampler="greedy"`` for a deterministic generation) from ``prompt`` (a
    string, tokenized by ``tokenizer`` or the model's preprocessor's, or 1-D token ids)
    up to ``max_length`` tokens, then explain each generated token: the logit of token
    ``p`` at position ``p - 1`` by ``method`` (``attn_lrp``, ``cp_lrp``, any LRP or
    gradient preset; ``params`` its parameters, or a ready ``analyzer``).  All generated
    tokens are explained in one batched call of the compiled analysis (one row per
    token, the same forward pass for each).  ``spans``: ``(start, stop)`` index pairs into
    the generation (``stop`` None: to its end); each span's summed logits are explained
    from one seed covering all its positions, one forward and one reverse pass per span
    (:func:`lrpgraph.ops.keras_hub_llm.causal_lm_span_model`, as LXT's maintainers
    recommend for spans), by ``method`` and ``params``; :meth:`GenerationExplanation.span`
    returns them.  Returns a :class:`GenerationExplanation`."""
    tokenizer = tokenizer or getattr(getattr(causal_lm, "preprocessor", None), "tokenizer", None)
    if isinstance(prompt, str):
        if tokenizer is None:
            raise ValueError("a string prompt needs a tokenizer: pass tokenizer=, attach a preprocessor to the "
                             "model, or pass the prompt as token ids")
        ids = np.asarray(tokenizer(prompt)).reshape(-1)
    else:
        ids = np.asarray(prompt).reshape(-1)
    ids = ids.astype(np.int32)
    n0 = len(ids)
    if not 0 < n0 < max_length:
        raise ValueError(f"the prompt has {n0} tokens; max_length ({max_length}) must exceed it (and it must "
                         "not be empty)")
    x = {"token_ids": np.zeros((1, max_length), np.int32), "padding_mask": np.zeros((1, max_length), np.int32)}
    x["token_ids"][0, :n0] = ids
    x["padding_mask"][0, :n0] = 1
    preprocessor = getattr(causal_lm, "preprocessor", None)
    causal_lm.preprocessor = None  # generate from ids, not strings
    try:
        out = causal_lm.generate(x, stop_token_ids=None)
    finally:
        causal_lm.preprocessor = preprocessor
    mask = np.asarray(out["padding_mask"])[0].astype(bool)
    length = int(mask.sum())
    full = np.asarray(out["token_ids"])[0, :length].astype(np.int32)
    g = length - n0
    if g < 1:
        raise ValueError("the model generated no token")
    a = analyzer if isinstance(analyzer, Method) else create_analyzer(method, causal_lm, **params)
    batch = {"token_ids": np.repeat(full[None], g, 0), "padding_mask": np.ones((g, length), np.int32)}
    exp = a.explain(batch, full[n0:], position=np.arange(n0 - 1, length - 1))
    tokens = [_token_string(tokenizer, int(i)) for i in full]
    done = _explain_spans(causal_lm, full, n0, spans, method, params) if spans else {}
    return GenerationExplanation(full, tokens, n0, np.asarray(exp.maps), exp.logits[np.arange(g), full[n0:]], done)


_SPAN_MODELS = weakref.WeakKeyDictionary()  # causal LM -> its span model (converted once by prepare)


def _span_key(start, stop, g):
    """``(start, stop)`` of a span of the ``g`` generated tokens, as non-negative ints."""
    start, stop, step = slice(start, stop).indices(g)
    if step != 1 or stop <= start:
        raise ValueError(f"span ({start}, {stop}) of a generation of {g} tokens is empty")
    return start, stop


def _explain_spans(causal_lm, full, n0, spans, method, params):
    """{(start, stop): (relevance (L,), summed logit)}: one row per span, each row seeded by the
    sum of the span's logits (the logit of token p at position p - 1 for each p in it)."""
    g, length = len(full) - n0, len(full)
    keys = [_span_key(*(tuple(s) + (None,))[:2], g) for s in spans]
    targets = np.full((len(keys), length), -1, np.int32)
    for row, (start, stop) in enumerate(keys):
        p = np.arange(n0 + start, n0 + stop)  # the explained tokens; their logits sit at p - 1
        targets[row, p - 1] = full[p]
    model = _SPAN_MODELS.get(causal_lm)
    if model is None:
        model = _SPAN_MODELS[causal_lm] = causal_lm_span_model(causal_lm)
    x = {"token_ids": np.repeat(full[None], len(keys), 0), "padding_mask": np.ones((len(keys), length), np.int32),
         SPAN_TARGETS: targets}
    exp = create_analyzer(method, model, **params).explain(x, 0)
    maps = exp.maps if isinstance(exp.maps, list) else [exp.maps]
    rel = np.asarray(maps[list(prepare(model).input_nodes).index("token_ids")])
    return {k: (rel[i], float(exp.logits[i, 0])) for i, k in enumerate(keys)}


def _token_string(tokenizer, i):
    if tokenizer is None:
        return str(i)
    try:
        return str(tokenizer.id_to_token(i))
    except (KeyError, ValueError, IndexError):
        return str(i)


def block_outputs(causal_lm):
    """The node ids of the residual stream after each decoder block of a KerasHub causal LM
    (in the prepared graph, in order): for each block, the node of its expansion that feeds
    a node outside it."""
    prepared = prepare(causal_lm)
    g = prepared.graph
    backbone = causal_lm.backbone
    out = []
    for block in backbone.transformer_layers:
        prefix = f"{backbone.name}/{block.name}/"
        inside = [n for n in g if n.startswith(prefix) and n in prepared.needed]
        leaving = [n for n in inside if any(not v.startswith(prefix) for v in g.successors(n))]
        if len(leaving) != 1:
            raise ValueError(f"block {block.name!r}: cannot find its one output node in the prepared graph")
        out.append(leaving[0])
    return out


def relevance_trace(causal_lm, x, target=None, method="attn_lrp", *, position=None, **params):
    """The relevance of each token in the residual stream after every decoder block (LXT's
    "latent relevance"): (N, L + 1, T), row 0 the relevance per token at the embeddings (the
    usual map), row l the relevance at block l's output summed over the hidden axis,
    R^l_t = sum_h R^l_{t,h}.  For an LRP or gradient preset (one seed per sample, no
    post-processing) every row comes from one compiled pass that reads the relevance at
    the block outputs as it passes them; other methods run one analysis per row
    (``stop_at`` each block's output).  With cp_lrp on a bias-free model every row sums
    to the explained logit.  Where relevance concentrates by layer and token (e.g. on the
    first token, an attention sink) shows here."""
    a = create_analyzer(method, causal_lm, **params)
    nodes = block_outputs(causal_lm)
    if type(a) is Analyzer and a.program.n_seeds == 1 and not a.postprocess:
        return _trace_one_pass(a, x, target, position, nodes)
    rows = [a.analyze(x, target, position=position)]
    for node in nodes:
        stopped = create_analyzer(method, causal_lm, stop_at=node, **params)
        rows.append(np.asarray(stopped.analyze(x, target, position=position)).sum(-1))
    return np.stack(rows, axis=1)


def _trace_one_pass(a, x, target, position, nodes):
    """relevance_trace's rows from one compiled pass of analyzer ``a``."""
    prepared = a.prepared
    xs, _ = prepared.check_inputs(prepared.fill_position(x, position))
    targets, multi = prepared.check_targets(target, xs[0].shape[0])
    if multi:
        raise ValueError("relevance_trace explains one target per sequence; pass an int, a token id per sequence "
                         "or 'predicted'")
    token = prepared.token_input
    wanted = set(nodes)

    def run(inputs, t):
        got = {}
        maps, _ = a.program.recorded_analysis(inputs, t, lambda n, R, R_in: got.__setitem__(n, R) if n in wanted
                                              else None)
        ids = inputs[token]
        rows = [tf.zeros(tf.shape(ids), maps[token].dtype) if n not in got
                else tf.cast(tf.reduce_sum(got[n], axis=-1), maps[token].dtype) for n in nodes]
        return tf.stack([maps[token]] + rows, axis=1)

    fn = tf.function(run, autograph=False)
    return fn([tf.convert_to_tensor(v) for v in xs], tf.convert_to_tensor(targets)).numpy()
