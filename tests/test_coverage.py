"""lrpgraph.coverage: per-node rules and measured conservation.

- a tiny CNN: the Dense layer with a bias leaks under LRP-epsilon by exactly what the bias
  takes (closed form below), the bias-free convolution and Dense layers conserve, and a
  Lambda layer is listed as unsupported with its reason;
- a tiny KerasHub Llama (bias-free): CP-LRP conserves at every node and in total; under
  AttnLRP only the softmax nodes leak (the softmax rule drops the Taylor bias term).
"""

from __future__ import annotations

import numpy as np
import pytest

import keras
import lrpgraph
from lrpgraph.evaluation.coverage import ABSORBS, CONSERVES, LEAKS, MAP, UNSUPPORTED


def _cnn(with_lambda=False):
    keras.utils.set_random_seed(3)
    inp = keras.Input((6, 6, 2), name="image")  # named: auto-names depend on what ran before
    h = keras.layers.Conv2D(3, 3, use_bias=False, name="conv")(inp)
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.Flatten(name="flat")(h)
    h = keras.layers.Dense(5, name="fc_bias", bias_initializer=keras.initializers.RandomUniform(-1, 1))(h)
    if with_lambda:
        h = keras.layers.Lambda(lambda t: t * keras.ops.sigmoid(t), name="my_swish")(h)
    out = keras.layers.Dense(3, use_bias=False, name="logits")(h)
    return keras.Model(inp, out)


def test_biased_dense_leaks_by_its_bias_share():
    model = _cnn()
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 2)).astype("float32")
    rep = lrpgraph.coverage(model, "lrp.epsilon", x, target=[0, 2], epsilon=1e-12)
    status = {n.name: n.status["lrp.epsilon"] for n in rep.nodes}
    assert status["fc_bias"] == LEAKS
    assert status["conv"] == status["logits"] == status["relu"] == status["flat"] == CONSERVES
    assert status["image"] == MAP
    assert rep.leaks("lrp.epsilon") == ["fc_bias"]
    # closed form: the bias-free logits layer hands fc_bias R_j = h_j w_jt (epsilon 1e-12);
    # fc_bias's epsilon rule passes on R_j (z_j - b_j) / z_j, losing sum_j w_jt b_j of
    # sum_j |h_j w_jt|
    fc, head = model.get_layer("fc_bias"), model.get_layer("logits")
    h = keras.Model(model.input, fc.output)(x).numpy()
    w = head.kernel.numpy()[:, [0, 2]].T                      # (2 samples, 5)
    b = fc.bias.numpy()
    want = np.max(np.abs((w * b).sum(1)) / np.abs(h * w).sum(1))
    # float32 sums of 5-54 terms: 1e-4 relative
    np.testing.assert_allclose(rep.node("fc_bias").error["lrp.epsilon"], want, rtol=1e-4)
    # the totals: the map sums to the logit minus the bias share
    logits = model(x).numpy()[[0, 1], [0, 2]]
    np.testing.assert_allclose(rep.totals["lrp.epsilon"]["logit"], logits, rtol=1e-5)
    np.testing.assert_allclose(rep.totals["lrp.epsilon"]["relevance"], logits - (w * b).sum(1), rtol=1e-4,
                               atol=1e-5)
    assert "fc_bias" in str(rep) and "| fc_bias |" in rep.to_markdown()
    assert rep.rows()[1]["node"] == "conv" and rep.rows()[1]["lrp.epsilon status"] == CONSERVES


def test_unsupported_layer_listed_with_reason():
    rep = lrpgraph.coverage(_cnn(with_lambda=True), ("lrp.epsilon", "gradient"))
    assert [u["node"] for u in rep.unsupported] == ["my_swish"]
    assert "Lambda" in rep.unsupported[0]["reason"]
    assert rep.node("my_swish").rules["lrp.epsilon"] == UNSUPPORTED
    assert "lrp.epsilon" not in rep.totals and "unsupported" in rep.errors["lrp.epsilon"]
    text = str(rep)
    assert "unsupported: my_swish (Lambda" in text and "not measured" in text


keras_hub = pytest.importorskip("keras_hub")


def _llama():
    keras.utils.set_random_seed(7)
    lm = keras_hub.models.LlamaCausalLM(keras_hub.models.LlamaBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=4, hidden_dim=16, intermediate_dim=32,
        num_key_value_heads=2), preprocessor=None)
    rng = np.random.RandomState(3)
    for v in lm.weights:  # norm scales of 1 would hide a missing scale
        if v.path.endswith("scale"):
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype(v.dtype))
    return lm


def test_llama_cp_lrp_conserves_everywhere_attn_lrp_leaks_at_softmax():
    rep = lrpgraph.coverage(_llama(), epsilon=1e-12)
    assert rep.leaks("cp_lrp") == []
    # bias-free: CP-LRP conserves the logit; float32 over ~10^3 terms, 1e-4 relative
    np.testing.assert_allclose(rep.totals["cp_lrp"]["ratio"], 1.0, rtol=1e-4)
    leaks = rep.leaks("attn_lrp")
    assert leaks and all(n.endswith("/softmax") for n in leaks)
    measured = [n for n in rep.nodes if n.error.get("attn_lrp") is not None]
    assert len(measured) > 20  # norms, projections, rotary, q.k, a.v, gates, head
    kinds = {n.kind for n in rep.nodes if n.status.get("cp_lrp") == CONSERVES}
    assert {"layernorm", "bilinear/combine", "bilinear/gated", "linear/reverse_embedding", "add/add"} <= kinds
    # CP-LRP holds q and k constant: nothing reaches the rotary maps; AttnLRP's pass conserves there
    assert {n.status["cp_lrp"] for n in rep.nodes if n.kind == "linear/rotary"} == {"no relevance"}
    assert {n.status["attn_lrp"] for n in rep.nodes if n.kind == "linear/rotary"} == {CONSERVES}
    assert rep.node("token_ids").status["cp_lrp"] == MAP
    assert not rep.unsupported and ABSORBS not in {n.status["cp_lrp"] for n in rep.nodes}
