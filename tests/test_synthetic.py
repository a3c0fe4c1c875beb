"""Synthetic shapes dataset and the shipped shapes CNN."""

import json

import numpy as np
import pytest

from lrpgraph.assets import DATA_DIR
from lrpgraph.evaluation import synthetic

MODEL_PATH = DATA_DIR / "shapes_cnn.keras"
INFO_PATH = DATA_DIR / "shapes_cnn.json"


def test_class_names():
    assert len(synthetic.CLASS_NAMES) >= 6
    assert len(set(synthetic.CLASS_NAMES)) == len(synthetic.CLASS_NAMES)
    assert "stripes" in synthetic.CLASS_NAMES
    assert synthetic.NUM_CLASSES == len(synthetic.CLASS_NAMES)


def test_single_object_dataset_shapes_and_range():
    x, y, masks = synthetic.single_object_dataset(30, size=64, seed=3)
    assert x.shape == (30, 64, 64, 3) and x.dtype == np.float32
    assert y.shape == (30,) and np.issubdtype(y.dtype, np.integer)
    assert masks.shape == (30, 64, 64) and masks.dtype == bool
    assert x.min() >= 0.0 and x.max() <= 1.0
    area = masks.sum(axis=(1, 2))
    assert area.min() > 40 and area.max() < 64 * 64 // 4  # an object, not the whole image
    assert ((y >= 0) & (y < synthetic.NUM_CLASSES)).all()


def test_single_object_dataset_deterministic():
    a = synthetic.single_object_dataset(12, seed=7)
    b = synthetic.single_object_dataset(12, seed=7)
    c = synthetic.single_object_dataset(12, seed=8)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[2], c[2])


def test_class_balance():
    _, y, _ = synthetic.single_object_dataset(6 * 10 + 3, seed=1)
    counts = np.bincount(y, minlength=synthetic.NUM_CLASSES)
    assert counts.max() - counts.min() <= 1
    assert counts.sum() == 63
    assert not np.array_equal(y, np.sort(y))  # shuffled, not in blocks


def test_two_object_scenes_masks_and_classes():
    n, size = 40, 64
    s = synthetic.two_object_scenes(n, size=size, seed=4)
    assert s["x"].shape == (n, size, size, 3) and s["x"].dtype == np.float32
    assert s["classes"].shape == (n, 2) and s["masks"].shape == (n, 2, size, size)
    assert (s["classes"][:, 0] != s["classes"][:, 1]).all()
    assert s["masks"].reshape(n, 2, -1).any(axis=-1).all()
    assert not (s["masks"][:, 0] & s["masks"][:, 1]).any()
    # each object lies in its own half (left/right or top/bottom)
    half = size // 2
    kinds = []
    for m0, m1 in s["masks"]:
        r0, c0 = np.nonzero(m0)
        r1, c1 = np.nonzero(m1)
        split = [c0.max() < half <= c1.min(), c1.max() < half <= c0.min(),
                 r0.max() < half <= r1.min(), r1.max() < half <= r0.min()]
        assert any(split)
        kinds.extend(np.flatnonzero(split).tolist())
    assert set(kinds) == {0, 1, 2, 3}  # both axes, both orders
    s2 = synthetic.two_object_scenes(n, size=size, seed=4)
    np.testing.assert_array_equal(s["x"], s2["x"])
    np.testing.assert_array_equal(s["masks"], s2["masks"])
    assert not np.array_equal(s["x"], synthetic.two_object_scenes(n, size=size, seed=5)["x"])


def test_scene_classes_cover_all():
    s = synthetic.two_object_scenes(120, seed=0)
    counts = np.bincount(s["classes"].ravel(), minlength=synthetic.NUM_CLASSES)
    assert counts.min() >= 20  # 240 objects over 6 classes, ~40 each


def test_draw_object_stays_in_radius():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    for cls in range(synthetic.NUM_CLASSES):
        layer, mask = synthetic.draw_object(cls, rng, size=64, center=(30.0, 25.0), radius=10.0)
        assert layer.shape == (64, 64, 3) and layer.dtype == np.float32
        assert mask.sum() > 40
        d2 = (yy[mask] - 30.0) ** 2 + (xx[mask] - 25.0) ** 2
        assert d2.max() <= 10.0 ** 2 + 1e-6


def test_stripes_are_black_and_white():
    rng = np.random.default_rng(1)
    stripes = synthetic.CLASS_NAMES.index("stripes")
    layer, mask = synthetic.draw_object(stripes, rng, size=64, radius=12.0)
    pix = layer[mask]
    np.testing.assert_array_equal(pix[:, 0], pix[:, 1])  # grey
    dark, light = (pix[:, 0] < 0.15).mean(), (pix[:, 0] > 0.8).mean()
    assert dark + light == 1.0 and 0.25 < dark < 0.75


def test_other_sizes_and_bad_class():
    x, y, masks = synthetic.single_object_dataset(6, size=32, seed=0)
    assert x.shape == (6, 32, 32, 3) and masks.any(axis=(1, 2)).all()
    with pytest.raises(ValueError):
        synthetic.draw_object(synthetic.NUM_CLASSES, np.random.default_rng(0))


def test_shipped_model_info():
    info = json.loads(INFO_PATH.read_text())
    assert info["class_names"] == list(synthetic.CLASS_NAMES)
    assert info["image_size"] == [64, 64, 3]
    assert info["test_accuracy"] > 0.95
    assert MODEL_PATH.stat().st_size < 2_000_000


def test_shipped_model_accuracy():
    keras = pytest.importorskip("keras")
    model = keras.saving.load_model(MODEL_PATH)
    allowed = {"InputLayer", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dropout"}
    assert {type(layer).__name__ for layer in model.layers} <= allowed
    names = [layer.name for layer in model.layers]
    for name in ("block1_conv1", "block3_pool", "flatten", "fc1", "predictions"):
        assert name in names
    # fresh images from a seed not used for training/testing/scenes in the script
    x, y, _ = synthetic.single_object_dataset(200, seed=987_654)
    probs = np.asarray(model.predict(x, batch_size=100, verbose=0))
    assert probs.shape == (200, synthetic.NUM_CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert (probs.argmax(axis=1) == y).mean() > 0.9
