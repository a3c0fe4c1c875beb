"""lrpgraph.assets: the shipped .keras archives load with every Keras that lrpgraph's
Pythons get (Keras 3.12 on Python 3.10 up to 3.15): their config.json holds none of the
keys that Keras >= 3.13 writes and Keras 3.12 rejects, and save_bundled (how the
training scripts save them) leaves those keys out without changing the model."""

import json
import os
import zipfile

import numpy as np
import pytest

import keras
from keras import layers as L

from lrpgraph import assets


def _object_configs(config):
    """Every (class_name, config dict) pair of a nested Keras config."""
    if isinstance(config, list):
        for v in config:
            yield from _object_configs(v)
    elif isinstance(config, dict):
        if "class_name" in config and isinstance(config.get("config"), dict):
            yield config["class_name"], config["config"]
        for v in config.values():
            yield from _object_configs(v)


def _archive_config(path):
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("config.json"))


@pytest.mark.parametrize("path", [assets.SHAPES_MODEL, assets.SHAPES_VIT], ids=["cnn", "vit"])
def test_shipped_archives_have_no_keys_keras_3_12_rejects(path):
    config = _archive_config(path)
    objects = list(_object_configs(config))
    assert len(objects) > 20  # the walk reaches the layers and their initializers
    found = [(cls, key) for cls, inner in objects for key in assets.NEWER_KERAS_CONFIG_KEYS if key in inner]
    assert not found, f"{path.name} needs Keras >= 3.13 (re-save it with assets.save_bundled): {found}"
    assert assets.portable_config(config) == config


def test_shipped_models_load_safely_and_predict():
    cnn, vit = assets.load_shapes_model(), assets.load_shapes_vit()
    x = np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 3)).astype("float32")
    for model in (cnn, vit):
        assert model.output_shape == (None, len(assets.SHAPES_CLASS_NAMES))
        assert np.all(np.isfinite(model.predict(x, verbose=0)))
    assert {type(layer).__module__.split(".")[0] for layer in cnn.layers + vit.layers} == {"keras"}


def test_portable_config_drops_only_keys_at_their_off_value():
    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "Dense", "config": {"name": "fc", "units": 3, "quantization_config": None,
                                           "kernel_initializer": {"class_name": "GlorotUniform", "config": {
                                               "seed": None, "input_axes": None, "output_axes": None}}}},
        {"class_name": "MultiHeadAttention", "config": {"name": "mha", "num_heads": 2, "use_gate": False,
                                                        "sliding_window": None, "dropout": 0.0}},
    ]}}
    before = json.dumps(config)
    out = assets.portable_config(config)
    assert json.dumps(config) == before  # the input is not modified
    dense, mha = out["config"]["layers"]
    assert dense["config"] == {"name": "fc", "units": 3, "kernel_initializer": {
        "class_name": "GlorotUniform", "config": {"seed": None}}}
    assert mha["config"] == {"name": "mha", "num_heads": 2, "dropout": 0.0}
    # a plain dict without class_name is data, not an object config: left alone
    assert assets.portable_config({"use_gate": False}) == {"use_gate": False}


def test_portable_config_refuses_features_keras_3_12_lacks():
    config = {"class_name": "MultiHeadAttention", "config": {"name": "mha", "use_gate": True}}
    with pytest.raises(ValueError, match=r"MultiHeadAttention 'mha' has use_gate=True.*Keras 3\.12"):
        assets.portable_config(config)


def test_save_bundled_round_trip_is_exact(tmp_path):
    keras.utils.set_random_seed(3)
    inp = keras.Input((4, 4, 3))
    x = L.Reshape((2, 2, 2, 2, 3))(inp)
    x = L.EinsumDense("bhiwjc,ijcd->bhwd", output_shape=(2, 2, 8), bias_axes="hwd")(x)
    x = L.Reshape((4, 8))(x)
    x = L.Add()([x, L.MultiHeadAttention(2, 4)(x, x)])
    out = L.Dense(3)(L.GlobalAveragePooling1D()(L.LayerNormalization()(x)))
    model = keras.Model(inp, out)

    plain, bundled = tmp_path / "plain.keras", tmp_path / "bundled.keras"
    model.save(plain)
    assets.save_bundled(model, bundled)
    assert os.stat(bundled).st_mode == os.stat(plain).st_mode  # not the temp file's 0600
    with zipfile.ZipFile(plain) as a, zipfile.ZipFile(bundled) as b:
        assert a.namelist() == b.namelist()
        assert a.read("model.weights.h5") == b.read("model.weights.h5")
    config = _archive_config(bundled)
    assert not [key for _, inner in _object_configs(config) for key in assets.NEWER_KERAS_CONFIG_KEYS
                if key in inner]
    assert config == assets.portable_config(_archive_config(plain))

    loaded = keras.saving.load_model(bundled, compile=False, safe_mode=True)
    xs = np.random.default_rng(1).uniform(0, 1, (5, 4, 4, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(xs, verbose=0), model.predict(xs, verbose=0))
    for w0, w1 in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(w0, w1)
