"""Text models (issue 14): integer token ids in, one relevance per token out.

A Keras-layer text classifier (Embedding, a learned position table, MultiHeadAttention,
LayerNorm, a GELU MLP, pooling, Dense logits) is explained end to end: maps (N, L), float,
finite; cp_lrp conserves the logit on a bias-free model; tokens the logit does not read get
exactly zero; the gradient presets give the gradient at the embedding output summed over
the embedding axis; bad ids are clear errors naming the samples and the fix."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras import layers as L

import lrpgraph
from lrpgraph.engine.assign import UnsupportedLayerError

VOCAB, LEN, DIM = 20, 6, 8


def text_model(seed=0, bias=True, layernorm=True, positions=True, mask=False, causal=False, pool="avg"):
    """ids (N, L) int32 [, padding mask (N, L)] -> 3 logits."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    ids = keras.Input((LEN,), dtype="int32", name="ids")
    inputs = [ids]
    x = L.Embedding(VOCAB, DIM, name="emb")(ids)
    table = keras.Variable(rng.normal(size=(LEN, DIM)).astype("float32"), name="pos")
    if positions:  # a learned position table added with keras.ops: a bias of the graph
        x = keras.ops.add(x, table)
    attention_mask = None
    if mask:
        pad = keras.Input((LEN,), dtype="int32", name="padding_mask")
        inputs.append(pad)
        attention_mask = keras.ops.expand_dims(pad, 1)  # (N, 1, L): every query sees the same keys
    h = L.MultiHeadAttention(2, 4, use_bias=bias, name="mha")(x, x, attention_mask=attention_mask,
                                                              use_causal_mask=causal)
    x = L.Add(name="res1")([x, h])
    if layernorm:
        x = L.LayerNormalization(name="ln1")(x)
    h = L.Dense(16, activation="gelu", use_bias=bias, name="fc1")(x)
    x = L.Add(name="res2")([x, L.Dense(DIM, use_bias=bias, name="fc2")(h)])
    if layernorm:
        x = L.LayerNormalization(name="ln2")(x)
    x = L.GlobalAveragePooling1D(name="gap")(x) if pool == "avg" else x[:, 0]
    model = keras.Model(inputs if mask else ids, L.Dense(3, use_bias=bias, name="head")(x))
    model.position_table = table
    return model


def token_ids(n=4, seed=1):
    return np.random.default_rng(seed).integers(0, VOCAB, size=(n, LEN)).astype("int32")


PADDING = np.array([[1] * 6, [1] * 4 + [0] * 2, [1] * 3 + [0] * 3, [1] * 5 + [0]], "int32")


@pytest.mark.parametrize("method", ["attn_lrp", "cp_lrp", "lrp.epsilon", "attn_lrp.gamma", "gradient",
                                    "input_t_gradient"])
def test_maps_are_per_token_float_and_finite(method):
    model, ids = text_model(), token_ids()
    r = lrpgraph.create_analyzer(method, model).analyze(ids, 1)
    assert r.shape == ids.shape and r.dtype == np.float32
    assert np.all(np.isfinite(r)) and np.abs(r).sum() > 0


def test_cp_lrp_conserves_on_a_bias_free_text_model():
    model = text_model(bias=False, layernorm=False, positions=False)
    ids = token_ids()
    logits = model(ids).numpy()
    for target in (0, 2):
        r = lrpgraph.create_analyzer("cp_lrp", model).analyze(ids, target)
        np.testing.assert_allclose(r.sum(1), logits[:, target], rtol=1e-4)


def test_cp_lrp_with_layernorm_conserves():
    """LayerNorm without beta (the biases zeroed) under cp_lrp: sigma is held constant and
    the centring is linear, so only the stabilisers leak (measured 4e-7 relative).  attn_lrp
    on the same model: 0.19 to 1.8 times the logit (its softmax rule)."""
    model = text_model(bias=False, layernorm=True, positions=False)
    for name in ("ln1", "ln2"):
        layer = model.get_layer(name)
        layer.beta.assign(np.zeros(layer.beta.shape, "float32"))
    ids = token_ids()
    logits = model(ids).numpy()[:, 0]
    r = lrpgraph.create_analyzer("cp_lrp", model).analyze(ids, 0)
    np.testing.assert_allclose(r.sum(1), logits, rtol=1e-4)
    r = lrpgraph.create_analyzer("attn_lrp", model).analyze(ids, 0)
    assert np.all(np.isfinite(r)) and np.max(np.abs(r.sum(1) / logits - 1)) > 0.05


def test_position_table_absorbs_its_share_like_a_bias():
    """With a learned position table, cp_lrp gives the tokens only the share of e / (e + p)
    at the Add: the sum moves away from the logit, and zeroing the table restores it."""
    model = text_model(bias=False, layernorm=False, positions=True)
    ids = token_ids()
    logits = model(ids).numpy()[:, 0]
    r = lrpgraph.create_analyzer("cp_lrp", model).analyze(ids, 0)
    assert np.max(np.abs(r.sum(1) / logits - 1)) > 1e-3
    model.position_table.assign(np.zeros((LEN, DIM), "float32"))  # read inside the compiled function
    logits = model(ids).numpy()[:, 0]
    r = lrpgraph.create_analyzer("cp_lrp", model).analyze(ids, 0)
    np.testing.assert_allclose(r.sum(1), logits, rtol=1e-4)


@pytest.mark.parametrize("method", ["attn_lrp", "cp_lrp", "gradient"])
def test_tokens_the_logit_does_not_read_get_zero(method):
    """Causal attention and the logit read from token 0: token 0 attends to itself only,
    so tokens 1.. do not affect the logit and get (exactly) no relevance."""
    model = text_model(causal=True, pool="first")
    ids = token_ids()
    r = lrpgraph.create_analyzer(method, model).analyze(ids, 2)
    assert np.abs(r[:, 1:]).max() < 1e-7 * max(1.0, np.abs(r[:, 0]).max())
    assert np.all(np.abs(r[:, 0]) > 0)
    other = ids.copy()
    other[:, 1:] = (other[:, 1:] + 7) % VOCAB  # they really do not matter
    np.testing.assert_allclose(model(other).numpy(), model(ids).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["attn_lrp", "cp_lrp"])
def test_padding_mask_as_a_second_input(method):
    """An attention_mask input: padded keys get no attention, so (the logit read from
    token 0) padded tokens get no relevance; the mask's own map is zero."""
    model = text_model(mask=True, pool="first")
    ids = token_ids()
    r_ids, r_mask = lrpgraph.create_analyzer(method, model).analyze([ids, PADDING], 0)
    assert r_ids.shape == ids.shape and r_ids.dtype == np.float32 and np.all(np.isfinite(r_ids))
    assert np.all(r_mask == 0) and r_mask.dtype == np.float32
    assert np.all(np.abs(r_ids[PADDING == 0]) < 1e-7)
    assert np.all(np.abs(r_ids[PADDING == 1]).reshape(-1) >= 0) and np.abs(r_ids[PADDING == 1]).sum() > 0


def _embedding_gradient(model, ids, target):
    """d logit_target / d(embedding output) and the embedding output, by a tape."""
    emb = model.get_layer("emb")
    rest = keras.Model(emb.output, model.output)
    e = tf.constant(emb(tf.constant(ids)))
    with tf.GradientTape() as tape:
        tape.watch(e)
        y = rest(e)[:, target]
    return tape.gradient(y, e).numpy(), e.numpy()


def test_gradient_maps_are_the_embedding_gradient_summed():
    model, ids = text_model(), token_ids()
    grad, e = _embedding_gradient(model, ids, 1)
    g = lrpgraph.create_analyzer("gradient", model).analyze(ids, 1)
    np.testing.assert_allclose(g, grad.sum(-1), rtol=1e-4, atol=1e-6)
    ixg = lrpgraph.create_analyzer("input_t_gradient", model).analyze(ids, 1)
    np.testing.assert_allclose(ixg, (grad * e).sum(-1), rtol=1e-4, atol=1e-6)


def test_several_targets_per_sample():
    model, ids = text_model(), token_ids()
    an = lrpgraph.create_analyzer("attn_lrp", model)
    both = an.analyze(ids, np.array([[0, 2]] * len(ids)))
    assert both.shape == (len(ids), 2, LEN)
    np.testing.assert_allclose(both[:, 1], an.analyze(ids, 2), rtol=1e-5, atol=1e-7)


# ---- bad input -------------------------------------------------------------------------

def test_out_of_vocabulary_id_names_the_sample():
    model, ids = text_model(), token_ids()
    ids[2, 3] = VOCAB + 5
    with pytest.raises(ValueError, match=r"token id 25 out of range in sample\(s\) \[2\].*vocabulary of 20"):
        lrpgraph.create_analyzer("attn_lrp", model).analyze(ids, 0)
    ids[2, 3] = -1
    with pytest.raises(ValueError, match=r"sample\(s\) \[2\]"):
        lrpgraph.create_analyzer("attn_lrp", model).analyze(ids, 0)


def test_float_ids_are_cast_when_whole_and_refused_otherwise():
    model, ids = text_model(), token_ids()
    an = lrpgraph.create_analyzer("cp_lrp", model)
    np.testing.assert_array_equal(an.analyze(ids.astype("float32"), 0), an.analyze(ids, 0))
    with pytest.raises(TypeError, match="non-integer values.*pass integer ids"):
        an.analyze(ids + 0.5, 0)
    with pytest.raises(TypeError, match="dtype <U"):
        an.analyze(np.array([["a"] * LEN]), 0)


def test_float_model_still_refuses_integer_data():
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(2)(inp))
    with pytest.raises(TypeError, match="pass floating-point data"):
        lrpgraph.create_analyzer("lrp.epsilon", model).analyze(np.ones((1, 4), "int32"), 0)


@pytest.mark.parametrize("method", ["integrated_gradients", "smoothgrad"])
def test_input_perturbing_methods_refuse_token_ids(method):
    with pytest.raises(TypeError, match="'ids' \\(int32\\) are integer.*attn_lrp"):
        lrpgraph.create_analyzer(method, text_model())


def test_mask_zero_is_a_clear_error_naming_attention_mask():
    ids = keras.Input((LEN,), dtype="int32")
    x = L.Embedding(VOCAB, DIM, mask_zero=True, name="emb")(ids)
    x = L.MultiHeadAttention(2, 4, name="mha")(x, x)
    model = keras.Model(ids, L.Dense(2)(L.GlobalAveragePooling1D()(x)))
    with pytest.raises(UnsupportedLayerError) as e:
        lrpgraph.create_analyzer("attn_lrp", model)
    assert "attention_mask" in str(e.value)


# ---- KerasHub BERT (random weights, built from a config; nothing is downloaded) -----------

def _bert(seed=0, zero_biases=False):
    hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(seed)
    backbone = hub.models.BertBackbone(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16,
                                       intermediate_dim=32, max_sequence_length=12)
    model = hub.models.BertTextClassifier(backbone=backbone, num_classes=3, preprocessor=None)
    rng = np.random.default_rng(seed)
    for w in model.weights:  # weights of unit scale (BERT's 0.02 init makes every map tiny)
        if zero_biases and (w.path.endswith(("bias", "beta")) or "position_embedding" in w.path):
            w.assign(np.zeros(w.shape, "float32"))
        elif w.path.endswith("kernel") or w.path.endswith("embeddings"):
            w.assign(rng.normal(size=w.shape).astype("float32") / np.sqrt(w.shape[0]))
    ids = rng.integers(0, 50, (3, 10)).astype("int32")
    segments = np.zeros_like(ids)
    segments[:, 5:] = 1
    padding = np.ones_like(ids)
    padding[1, 7:] = 0
    padding[2, 4:] = 0
    return model, {"token_ids": ids, "segment_ids": segments, "padding_mask": padding}


def test_bert_rewritten_graph_reproduces_the_logits():
    model, x = _bert()
    prepared = lrpgraph.prepare(model)
    kinds = {prepared.graph.nodes[n]["op"].kind for n in prepared.graph.nodes}
    assert "unknown" not in kinds and "nested" not in kinds and "attention" not in kinds
    y = model(x).numpy()
    np.testing.assert_allclose(prepared.logits(x), y, rtol=1e-5, atol=1e-5 * np.abs(y).max())


@pytest.mark.parametrize("method", ["attn_lrp", "cp_lrp", "input_t_gradient"])
def test_bert_per_token_maps(method):
    model, x = _bert()
    maps = lrpgraph.create_analyzer(method, model).analyze(x, 1)
    order = lrpgraph.prepare(model).input_nodes  # a dict input: maps in the model's input order
    r = dict(zip(order, maps))
    for name in ("token_ids", "segment_ids", "padding_mask"):
        assert r[name].shape == x["token_ids"].shape and r[name].dtype == np.float32
        assert np.all(np.isfinite(r[name]))
    assert np.all(r["padding_mask"] == 0)
    assert np.all(r["token_ids"][x["padding_mask"] == 0] == 0)  # padded tokens: no attention, no relevance
    assert np.abs(r["token_ids"][x["padding_mask"] == 1]).min() > 0


def test_bert_cp_lrp_conserves_without_biases():
    """With biases, LayerNorm betas and the position table zeroed, cp_lrp conserves on
    BERT up to its epsilons and float32: token and segment relevance sum to the logit
    (measured 4e-6 relative); with them, they absorb their share as biases do."""
    model, x = _bert(zero_biases=True)
    y = model(x).numpy()[:, 0]
    r = dict(zip(lrpgraph.prepare(model).input_nodes, lrpgraph.create_analyzer("cp_lrp", model).analyze(x, 0)))
    np.testing.assert_allclose(r["token_ids"].sum(1) + r["segment_ids"].sum(1), y, rtol=1e-4)


def test_bert_is_listed_as_supported():
    model, _ = _bert()
    report = lrpgraph.check(model, presets=("attn_lrp", "cp_lrp", "lrp.epsilon", "gradient"))
    text = str(report)
    assert "every node has a rule in every checked preset" in text
    assert "logits reproduced" in text
    assert "TransformerEncoder" not in text  # expanded into its sublayers


FRESH_BERT_CHECK = """
import keras_hub, lrpgraph
backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16,
                                         intermediate_dim=32, max_sequence_length=12)
model = keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=3, preprocessor=None)
report = lrpgraph.check(model, presets=("attn_lrp",))
print("SUPPORTED" if report.ok else report)
"""


def test_check_first_in_a_fresh_process_knows_bert():
    """lrpgraph.check registers KerasHub's descriptions itself, as prepare() does: called
    first in a fresh process it lists BERT as supported (it used to report
    TransformerEncoder unsupported unless something had been prepared before)."""
    pytest.importorskip("keras_hub")
    proc = subprocess.run([sys.executable, "-c", FRESH_BERT_CHECK], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0 and proc.stdout.strip().endswith("SUPPORTED"), proc.stdout + proc.stderr


FRESH_USER_REGISTRATION = """
import keras_hub, lrpgraph
lrpgraph.register_layer(keras_hub.layers.TransformerEncoder, lambda layer: lrpgraph.ops.Unknown("the user's own"))
backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16,
                                         intermediate_dim=32, max_sequence_length=12)
model = keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=3, preprocessor=None)
report = lrpgraph.check(model, presets=("attn_lrp",))
print("USER" if not report.ok and all("the user's own" in u["reason"] for u in report.unsupported) else report)
"""


def test_a_users_registration_made_before_keras_hub_is_seen_stays():
    """lrpgraph registers its KerasHub descriptions lazily with replace=False: a user's
    register_layer of TransformerEncoder made before the first check/prepare is kept."""
    pytest.importorskip("keras_hub")
    proc = subprocess.run([sys.executable, "-c", FRESH_USER_REGISTRATION], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0 and proc.stdout.strip().endswith("USER"), proc.stdout + proc.stderr


@pytest.mark.parametrize("normalize_first", [False, True])
def test_keras_hub_layers_in_a_keras_model(normalize_first):
    """TokenAndPositionEmbedding and TransformerEncoder (post- and pre-norm, with a padding
    mask) used directly in a functional model: the rewrite reproduces the output to 1e-5."""
    hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(3)
    ids = keras.Input((LEN,), dtype="int32")
    pad = keras.Input((LEN,), dtype="int32")
    x = hub.layers.TokenAndPositionEmbedding(VOCAB, LEN, DIM, name="tok_pos")(ids)
    x = hub.layers.TransformerEncoder(16, 2, normalize_first=normalize_first, name="enc")(x, padding_mask=pad)
    model = keras.Model([ids, pad], L.Dense(3, name="head")(x[:, 0]))
    xs = [token_ids(), PADDING]
    y = model(xs).numpy()
    np.testing.assert_allclose(lrpgraph.prepare(model).logits(xs), y, rtol=1e-5, atol=1e-6)
    r = lrpgraph.create_analyzer("attn_lrp", model).analyze(xs, 0)
    assert r[0].shape == (4, LEN) and np.all(np.isfinite(r[0])) and np.all(r[0][PADDING == 0] == 0)


# ---- viz: tokens coloured by relevance -------------------------------------------------

def test_token_colors_red_positive_blue_negative_white_zero():
    from lrpgraph import viz

    c = viz.token_colors([2.0, -2.0, 0.0, 1.0])
    red, blue, white, half = c
    assert red[0] > 0.4 and red[1] < 0.05 and red[2] < 0.05          # seismic's +M: dark red
    assert blue[2] > 0.25 and blue[0] < 0.05 and blue[1] < 0.05      # -M: dark blue
    assert np.all(white > 0.99)                                      # 0: white (to 1/128)
    assert half[0] > 0.99 and half[1] < 0.02 and half[2] < 0.02     # +M/2: bright red
    # symmetric limits: +x and -x are mirror images; an explicit limit clips
    np.testing.assert_allclose(viz.token_colors([3.0, -3.0])[0], viz.token_colors([3.0, -1.0], limit=3.0)[0])
    np.testing.assert_allclose(viz.token_colors([5.0], limit=1.0), viz.token_colors([1.0]))


def test_token_heatmap_figure_colours_each_token():
    from lrpgraph import viz

    tokens = ["good", "bad", "the"] + ["filler"] * 20  # long enough to wrap
    r = np.array([1.5, -1.5, 0.0] + [0.1] * 20)
    fig = viz.token_heatmap(tokens, r, title="target 1", width=4)
    texts = fig.texts[:len(tokens)]
    assert [t.get_text() for t in texts] == tokens
    faces = np.array([t.get_bbox_patch().get_facecolor()[:3] for t in texts])
    np.testing.assert_allclose(faces, viz.token_colors(r), atol=1e-6)
    rows = {round(t.get_position()[1], 6) for t in texts}
    assert len(rows) > 1  # wrapped onto several lines
    # the rendered pixels: inside each box, left of its text, the box colour
    pixels = viz.figure_to_array(fig)
    renderer = fig.canvas.get_renderer()
    for t, want in zip(texts[:3], ([127, 0, 0], [0, 0, 76], [255, 253, 253])):
        box = t.get_bbox_patch().get_window_extent(renderer)
        x, y = int(box.x0 + 2), int(pixels.shape[0] - (box.y0 + box.y1) / 2)
        np.testing.assert_allclose(pixels[y, x], want, atol=3)


def test_token_html_and_bad_lengths():
    from lrpgraph import viz

    html = viz.token_html(["a<b", "c", "d"], [1.0, -1.0, 0.0])
    assert "a&lt;b" in html and "#800000" in html and "#00004c" in html and "#fffdfd" in html
    with pytest.raises(ValueError, match="one value per token: 3 tokens"):
        viz.token_heatmap(["a", "b", "c"], np.zeros((2, 3)))


# ---- lrpgraph.text and the CLI's explain --text --------------------------------------

WORDS = ["[PAD]", "[UNK]", "the", "movie", "was", "good", "bad", "not", "very", "plot"]


def _saved_text_model(tmp_path, mask=True):
    """A plain-Keras text model (no custom layers, so the .keras file loads anywhere) and
    its vocabulary file."""
    keras.utils.set_random_seed(5)
    ids = keras.Input((8,), dtype="int32", name="token_ids")
    inputs = [ids]
    x = L.Embedding(len(WORDS), DIM, name="emb")(ids)
    attention_mask = None
    if mask:
        pad = keras.Input((8,), dtype="int32", name="padding_mask")
        inputs.append(pad)
        attention_mask = keras.ops.expand_dims(pad, 1)
    x = L.Add()([x, L.MultiHeadAttention(2, 4, name="mha")(x, x, attention_mask=attention_mask)])
    model = keras.Model(inputs if mask else ids, L.Dense(2, name="head")(x[:, 0]))
    path = tmp_path / "text.keras"
    model.save(path)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    return model, path, vocab


def test_explain_text_matches_the_analyzer(tmp_path):
    from lrpgraph.text import explain_text

    model, _, vocab = _saved_text_model(tmp_path)
    exp = explain_text(model, "The movie was NOT good zzz", "cp_lrp", vocab=vocab, target=1)
    assert exp.tokens == ["the", "movie", "was", "not", "good", "zzz"]  # an uncased vocabulary: lower-cased
    np.testing.assert_array_equal(exp.ids, [2, 3, 4, 7, 5, 1])       # zzz -> [UNK]
    ids = np.zeros((1, 8), "int32")
    ids[0, :6] = exp.ids
    pad = (ids > 0).astype("int32")
    ref = lrpgraph.create_analyzer("cp_lrp", model).analyze([ids, pad], 1)[0][0]
    np.testing.assert_allclose(exp.relevance, ref[:6], rtol=1e-6)
    assert exp.target == 1 and exp.relevance.dtype == np.float32
    np.testing.assert_allclose(exp.logits, model([ids, pad]).numpy()[0], rtol=1e-5)
    assert "not" in exp.table()


def test_text_errors(tmp_path):
    from lrpgraph.errors import InputError
    from lrpgraph.text import encode, explain_text, tokenize

    model, _, vocab = _saved_text_model(tmp_path)
    with pytest.raises(InputError, match=r"'plot!' is not an id.*vocab=FILE") as e:
        encode(["plot!"])
    assert e.value.param == "vocab" and "--" not in str(e.value)  # the library speaks Python, not flags
    with pytest.raises(InputError, match="no text given") as e:
        tokenize("  ")
    assert e.value.param == "text"
    with pytest.raises(InputError, match="has 9 tokens; the model takes at most 8"):
        explain_text(model, " ".join(["the"] * 9), vocab=vocab)
    with pytest.raises(InputError, match="token id 10 out of range in sample"):
        explain_text(model, "2 3 10")  # ids given directly, one beyond the vocabulary


def test_cli_explain_text(tmp_path, capsys):
    from lrpgraph.cli import main
    import io as _io

    _, path, vocab = _saved_text_model(tmp_path)
    out = _io.StringIO()
    rc = main(["explain", "--text", "the movie was very bad", "--model", str(path), "--vocab", str(vocab),
               "--method", "attn_lrp", "--target", "0", "--out", str(tmp_path / "out")], out=out)
    text = out.getvalue()
    assert rc == 0, text
    assert "explained 0" in text and "very" in text
    lines = [l for l in text.splitlines() if l[:3].strip().isdigit()]
    assert len(lines) == 5 and all(np.isfinite(float(l.split()[-1])) for l in lines)
    png = tmp_path / "out" / "text_attn_lrp_0.png"
    assert png.is_file() and png.stat().st_size > 1000
    assert main(["explain", "--model", str(path), "--out", str(tmp_path / "o2")], out=_io.StringIO()) == 2
    # the library's error, with the command line's flag as the advice
    capsys.readouterr()
    assert main(["explain", "--text", "plot!", "--model", str(path), "--out", str(tmp_path / "o3")],
                out=_io.StringIO()) == 1
    err = capsys.readouterr().err
    assert "'plot!' is not an id" in err and "--vocab FILE" in err and err.count("\n") == 1


# ---- docs/methods/transformers.md, "Text models": the example runs and says what it shows ----

def test_docs_text_example(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "methods" / "transformers.md").read_text()
    section = doc[doc.index("## Text models"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code, "transformers.md", "exec"), scope)
    rel = dict(zip(scope["tokens"], scope["relevance"]))
    assert rel["great"] > 0 and rel["fun"] > 0 and rel["dull"] < 0
    neutral = max(abs(rel[w]) for w in ("the", "plot", "was", "but", "movie", "is"))
    assert neutral < 0.25 * min(abs(rel["great"]), abs(rel["dull"]))
    assert (tmp_path / "text_tokens.png").stat().st_size > 1000
