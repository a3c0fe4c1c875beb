"""The shipped key-value retrieval model (lrpgraph/bundled/retrieval_llama.keras): a tiny
KerasHub LlamaCausalLM trained by scripts/train_retrieval.py on lrpgraph.retrieval's prompts
"a=3 b=7 c=1 d=4 b?" -> "7", whose answer is decided by one prompt token (the queried key's
value).

- the task generator and tokenizer (hand-checked prompt);
- the loaded model's accuracy on held-out prompts (the first N of the training script's test
  seed) is what retrieval_llama.json records (1.0: it matches the queried key);
- the auxiliary periodic copy sequences of the training recipe;
- how often each method's most relevant token is the deciding one, as measured (the table in
  docs/methods/llms.md).

Integrated gradients on the embeddings is not checked for completeness: the first RMSNorm makes
the logit scale-invariant in the embeddings except for alpha below ~sqrt(eps)/rms(e), a jump the
midpoint steps skip (measured: sum IG -0.7..2.0 against f(e) - f(0) = 4.7..6.4, 64 steps).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import lrpgraph
from lrpgraph import assets
from lrpgraph import retrieval as R

pytest.importorskip("keras_hub")

N = 200
SEED = 1000  # the training script's test seed: these are the first N of its 500 test prompts

# Hit rates measured on these N prompts (CPU, oneDNN on; scripts/train_retrieval.py --seed 0, the
# model at held-out accuracy 1.0). Margin 0.05 = 10 of 200 prompts: argmax flips between
# near-tied tokens under other CPUs / oneDNN settings (float32 rounding); the closest top-two
# gap measured here is 0.35% of the top value (input_t_gradient), far above float32 noise, so
# the margin is slack for the rounding of other builds, not a measured spread.
MEASURED = {"attn_lrp": 0.99, "cp_lrp": 1.0, "input_t_gradient": 0.545, "integrated_gradients_embeddings": 0.615,
            "attention_rollout": 0.0}
MARGIN = 0.05


@pytest.fixture(scope="module")
def lm():
    return assets.load_retrieval_model()


@pytest.fixture(scope="module")
def data():
    return R.make_prompts(N, seed=SEED)


def test_prompts_and_tokenizer():
    x, answers, positions = R.make_prompts(5, pairs=3, seed=3)
    tok = R.TOKENIZER
    for ids, a, p in zip(x["token_ids"], answers, positions):
        s = tok.decode(ids)
        assert len(s) == R.prompt_length(3) == 14
        pairs = dict(item.split("=") for item in s[:-3].split(" "))
        assert len(pairs) == 3  # distinct keys
        assert s[-1] == "?" and s[-2] in pairs
        assert tok.id_to_token(a) == pairs[s[-2]]  # the answer is the queried key's value
        assert s[p] == pairs[s[-2]] and s[p - 2] == s[-2]  # the deciding token follows "key="
    assert np.all(x["padding_mask"] == 1)
    assert np.array_equal(tok.encode("a=3 b?"), [1, 19, 12, 20, 2, 21])
    with pytest.raises(ValueError, match="not in the retrieval vocabulary"):
        tok.encode("A")


def test_copy_sequences_repeat_their_period():
    x, labels, weights = R.copy_sequences(6, 11, seed=2)
    ids = x["token_ids"]
    assert ids.shape == (6, 11) and np.all(x["padding_mask"] == 1)
    assert ids.min() >= 1 and ids.max() <= len(R.KEYS) + len(R.VALUES)  # letters and digits only
    for row, lab, w in zip(ids, labels, weights):
        p = 2 if np.array_equal(row[2:], row[:-2]) else 3
        np.testing.assert_array_equal(row[p:], row[:-p])  # period 2 or 3
        assert w[:p].sum() == 0 and w[p:-1].all() and w[-1] == 0  # the loss from the second period on
        np.testing.assert_array_equal(lab[:-1], row[1:])  # the next token...
        np.testing.assert_array_equal(lab[p:-1], row[1:-p])  # ...is the one p - 1 places back
    with pytest.raises(ValueError, match="periods"):
        R.copy_sequences(2, 3, periods=(3,))


def test_hit_rate_ignores_padding():
    maps = np.array([[0.0, 5.0, 1.0], [3.0, 1.0, 2.0]])
    assert R.hit_rate(maps, [1, 0]) == 1.0
    assert R.hit_rate(maps, [2, 0], mask=np.array([[1, 0, 1], [1, 1, 1]])) == 1.0


def test_accuracy_as_recorded(lm, data):
    x, answers, _ = data
    info = json.loads((assets.DATA_DIR / "retrieval_llama.json").read_text())
    acc = float(np.mean(np.argmax(lm(x).numpy()[:, -1], -1) == answers))
    # the JSON's accuracy is over 500 prompts, these are 200 of them: binomial spread
    # sqrt(p(1-p)/200) <= 0.035; 0.05 covers it and float32 argmax flips
    assert abs(acc - info["test_accuracy"]) < 0.05, acc
    # measured on these 200: 1.0 (500 of 500 in the JSON): the model answers the queried key's
    # value, not just some value of the prompt (the earlier model's plateau, 0.345); 0.98 leaves
    # room for float32 argmax flips on other builds
    assert acc >= 0.98, acc
    # and it matches keys: on prompts whose four values are distinct, copying a random one of
    # them would score 0.25
    vals = x["token_ids"][:, 2:-2:4]
    distinct = np.array([len(set(v)) == len(v) for v in vals])
    pred = np.argmax(lm(x).numpy()[:, -1], -1)
    assert distinct.sum() > 50 and np.mean(pred[distinct] == answers[distinct]) >= 0.98


@pytest.mark.slow
def test_hit_rates_as_measured(lm, data):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from train_retrieval import method_maps

    x, answers, positions = data
    got = {m: R.hit_rate(method_maps(lm, x, answers, m), positions) for m in MEASURED}
    for m, want in MEASURED.items():
        assert abs(got[m] - want) <= MARGIN, (m, got[m], want)
    # what the docs claim: AttnLRP and CP-LRP find the deciding token almost always, far more
    # often than chance (1/18) and than gradient x input or integrated gradients
    lrp = min(got["attn_lrp"], got["cp_lrp"])
    assert lrp >= 0.95
    assert lrp > max(got["input_t_gradient"], got["integrated_gradients_embeddings"]) + 0.2


def test_causal_rollout_rows_are_distributions(lm, data):
    x = {k: v[:4] for k, v in data[0].items()}
    r = R.causal_rollout(lm, x)
    assert r.shape == (4, x["token_ids"].shape[1])
    # rollout rows stay probability distributions (each factor is row-stochastic); float32 sums
    np.testing.assert_allclose(r.sum(1), 1.0, atol=1e-5)
    assert np.all(r >= 0)


def test_attn_lrp_map_shape(lm, data):
    x = {k: v[:2] for k, v in data[0].items()}
    r = lrpgraph.create_analyzer("attn_lrp", lm).analyze(x, target="predicted")
    assert r.shape == x["token_ids"].shape
