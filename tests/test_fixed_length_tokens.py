"""A fixed-length token input in front of a KerasHub backbone (issue 19): the Embedding's
output shape (None, None, D) is compatible with ids of shape (None, 8), as Keras has it (a
None axis matches any size), so the model is explained, and its maps equal those of the
same layers behind a None sequence axis."""

import numpy as np
import pytest

import keras
from keras import layers as L

import lrpgraph

LENGTH = 8


@pytest.fixture(scope="module")
def bert_models():
    return _bert_models()


def _bert_models():
    """The same BertBackbone and Dense head behind fixed-length (8) and None-length inputs."""
    hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = hub.models.BertBackbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16,
                                       intermediate_dim=32, max_sequence_length=12)
    head = L.Dense(3, name="head")
    models = {}
    for name, length in (("fixed", LENGTH), ("none", None)):
        inputs = {k: keras.Input((length,), dtype="int32", name=k)
                  for k in ("token_ids", "segment_ids", "padding_mask")}
        models[name] = keras.Model(inputs, head(backbone(inputs)["pooled_output"]))
    rng = np.random.default_rng(0)
    for w in backbone.weights + head.weights:  # unit-scale weights (BERT's 0.02 init makes every map tiny)
        if w.path.endswith(("kernel", "embeddings")):
            w.assign(rng.normal(size=w.shape).astype("float32") / np.sqrt(w.shape[0]))
    ids = rng.integers(0, 50, (3, LENGTH)).astype("int32")
    segments = np.zeros_like(ids)
    segments[:, 4:] = 1
    padding = np.ones_like(ids)
    padding[1, 6:] = 0
    return models, {"token_ids": ids, "segment_ids": segments, "padding_mask": padding}


@pytest.mark.parametrize("method", ["attn_lrp", "cp_lrp", "input_t_gradient"])
def test_fixed_length_bert_equals_the_none_length_one(bert_models, method):
    models, x = bert_models
    assert models["fixed"].inputs[0].shape == (None, LENGTH)
    y = models["none"](x).numpy()
    np.testing.assert_allclose(models["fixed"](x).numpy(), y, rtol=1e-6, atol=1e-6 * np.abs(y).max())
    maps = {}
    for name, model in models.items():
        order = lrpgraph.prepare(model).input_nodes
        maps[name] = dict(zip(order, lrpgraph.create_analyzer(method, model).analyze(x, 1)))
    for k in ("token_ids", "segment_ids", "padding_mask"):
        fixed, none = maps["fixed"][k], maps["none"][k]
        assert fixed.shape == (3, LENGTH) and np.all(np.isfinite(fixed))
        # the same layers and weights, traced with a static or a dynamic length: the same
        # float32 computation; only a different kernel choice for the static shape could
        # change the rounding, by a few ulps of each term (1e-5 of the max; measured 0)
        np.testing.assert_allclose(fixed, none, rtol=0, atol=1e-5 * max(np.abs(none).max(), 1e-30))
    r = maps["fixed"]["token_ids"]
    assert np.abs(r).max() > 0 and np.all(r[x["padding_mask"] == 0] == 0)  # padded tokens: nothing


def test_ids_sliced_before_the_embedding_are_still_refused():
    """A known, different length (ids (None, 8) looked up as (None, 4)) is still refused."""
    ids = keras.Input((LENGTH,), dtype="int32")
    x = L.Embedding(20, 4)(ids[:, :4])
    model = keras.Model(ids, L.Dense(2)(L.GlobalAveragePooling1D()(x)))
    X = np.arange(16, dtype="int32").reshape(2, LENGTH)
    with pytest.raises(NotImplementedError, match=r"shape \(None, 8\)\) reaches Embedding .* with another shape"):
        lrpgraph.create_analyzer("attn_lrp", model).analyze(X, 0)
