"""Anything but a Keras model where a model is expected is a TypeError that says a
keras.Model is expected and what was passed (issue 19: the prepared-model cache took a weak
reference first and raised "cannot create weak reference to 'str' object")."""

import numpy as np
import pytest

import keras
import lrpgraph

NOT_MODELS = [("not a model", "str"), (None, "NoneType"), (np.zeros((2, 3), "float32"), "ndarray"), (3, "int"),
              (keras.layers.Dense(2), "Dense")]


@pytest.mark.parametrize("value, type_name", NOT_MODELS, ids=[t for _, t in NOT_MODELS])
@pytest.mark.parametrize("method", ["lrp.epsilon", "attn_lrp", "gradcam", "integrated_gradients", "sglrp"])
def test_create_analyzer_names_what_it_got(value, type_name, method):
    with pytest.raises(TypeError, match=rf"expected a keras\.Model, got {type_name}\. Build a Sequential"):
        lrpgraph.create_analyzer(method, value)


@pytest.mark.parametrize("value, type_name", NOT_MODELS, ids=[t for _, t in NOT_MODELS])
def test_prepare_and_check_name_what_they_got(value, type_name):
    for fn in (lrpgraph.prepare, lrpgraph.check):
        with pytest.raises(TypeError, match=rf"expected a keras\.Model, got {type_name}\."):
            fn(value)


def test_a_model_still_prepares_once():
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    assert lrpgraph.prepare(model) is lrpgraph.prepare(model)  # the cache still holds it
