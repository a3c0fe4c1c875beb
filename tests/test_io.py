"""lrpgraph.io and lrpgraph.assets: class names, bounds, labels, image decoding, image folders."""

import json

import numpy as np
import pytest
from skimage import io as skio

from lrpgraph import assets, targets
from lrpgraph import io as lio


def _png(path, value=128, shape=(6, 8, 3)):
    path.parent.mkdir(parents=True, exist_ok=True)
    skio.imsave(path, np.full(shape, value, np.uint8), check_contrast=False)
    return path


def test_class_names_bounds_and_labels(tmp_path):
    names = assets.imagenet_class_names()
    assert len(names) == 1000 and names[101] == "tusker"
    assert targets.parse_text("zebra", names, 1000) == 340
    assert targets.parse_text("African elephant", names, 1000) == 386
    assert targets.parse_text("african-elephant", names, 1000) == 386
    assert targets.parse_text(" 7 ", names, 1000) == 7 and targets.parse_text(None, names, 1000) is None
    with pytest.raises(lio.InputError, match="did you mean zebra"):
        targets.parse_text("zebrra", names, 1000)
    lo, hi = lio.input_bounds(lio.preprocess_fn("caffe"))
    assert lo == pytest.approx(-123.68, abs=1e-3) and hi == pytest.approx(151.061, abs=1e-3)
    assert lio.input_bounds(lio.preprocess_fn("tf")) == pytest.approx((-1.0, 1.0))
    assert lio.input_bounds(lio.preprocess_fn("unit")) == (0.0, 1.0)
    (tmp_path / "labels.json").write_text(json.dumps({"0": ["n0", "cat"], "1": ["n1", "dog"]}))
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    assert lio.read_labels(tmp_path / "labels.json") == lio.read_labels(tmp_path / "labels.txt") == ["cat", "dog"]


def test_shapes_model_is_loaded_with_its_class_names_and_bounds():
    lm = lio.load_model("shapes")
    assert lm.class_names == list(assets.SHAPES_CLASS_NAMES) and lm.num_classes == 6
    assert lm.bounds == assets.SHAPES_INPUT_RANGE == (0.0, 1.0)
    assert lm.image_shape() == (64, 64, 3) and lm.weights_note == ""
    with pytest.raises(lio.InputError, match="did you mean shapes"):
        lio.load_model("shapess")


def test_image_loading_grey16_and_rgba(tmp_path):
    skio.imsave(tmp_path / "g16.png", np.full((4, 4), 65535, np.uint16), check_contrast=False)
    np.testing.assert_allclose(lio.load_image(tmp_path / "g16.png", (2, 2)), 255.0, rtol=1e-6)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red but fully transparent: blended on white
    skio.imsave(tmp_path / "rgba.png", rgba, check_contrast=False)
    np.testing.assert_allclose(lio.load_image(tmp_path / "rgba.png", (4, 4)), 255.0, rtol=1e-6)


def test_load_input_resizes_to_the_model_and_preprocesses(tmp_path):
    """A 6x8 image of value 51 becomes the shapes model's (64, 64, 3) input at 51 / 255 = 0.2."""
    lm = lio.load_model("shapes")
    x = lio.load_input(_png(tmp_path / "a.png", value=51), lm)
    assert x.shape == (64, 64, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x, 0.2, atol=1e-6)


def test_image_errors_name_the_file_and_the_fix(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(lio.InputError, match=r"cannot read image .*broken\.png.*PNG, JPEG"):
        lio.load_image(bad, (4, 4))
    with pytest.raises(lio.InputError, match=r"image not found: .*missing\.png"):
        lio.load_image(tmp_path / "missing.png", (4, 4))
    skio.imsave(tmp_path / "volume.tif", np.zeros((2, 3, 3, 3), np.uint8), check_contrast=False)
    with pytest.raises(lio.InputError, match=r"volume\.tif: shape .* save one frame"):
        lio.load_image(tmp_path / "volume.tif", (4, 4))


def test_list_images_with_class_subfolders(tmp_path):
    """Like keras.utils.image_dataset_from_directory: sorted subfolder names are the classes,
    a file's label is its subfolder's index, files below a class folder count at any depth;
    non-images and hidden folders are skipped."""
    for rel in ("dog/b.png", "dog/a.JPG", "cat/x.png", "cat/deep/y.png", "zebra/1.bmp",
                ".ipynb_checkpoints/z.png", "cat/.hidden.png"):
        _png(tmp_path / rel)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    found = lio.list_images(tmp_path)
    assert found.class_names == ["cat", "dog", "zebra"]
    rel = [p.relative_to(tmp_path).as_posix() for p in found.paths]
    assert rel == ["cat/deep/y.png", "cat/x.png", "dog/a.JPG", "dog/b.png", "zebra/1.bmp"]
    assert found.labels.dtype == np.int64 and found.labels.tolist() == [0, 0, 1, 1, 2]


def test_list_images_flat_folder_and_errors(tmp_path):
    for name in ("b.png", "a.jpg", "c.jpeg"):
        _png(tmp_path / "flat" / name)
    found = lio.list_images(tmp_path / "flat")
    assert [p.name for p in found.paths] == ["a.jpg", "b.png", "c.jpeg"]
    assert found.labels is None and found.class_names is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(lio.InputError, match=r"the image folder .*empty is empty: no image files .* in it; put the images"):
        lio.list_images(tmp_path / "empty")
    with pytest.raises(lio.InputError, match=r"image folder not found: .*nowhere"):
        lio.list_images(tmp_path / "nowhere")
    with pytest.raises(lio.InputError, match="that is a file"):
        lio.list_images(tmp_path / "flat" / "a.jpg")
    _png(tmp_path / "flat" / "cls" / "d.png")  # loose files and a class folder: ambiguous
    with pytest.raises(lio.InputError, match=r"both image files \(a\.jpg, \.\.\.\) and class subfolders"):
        lio.list_images(tmp_path / "flat")


def test_application_model_names_map_to_their_preprocessing():
    """The names keras.applications gives its models (kept in a saved .keras file)."""
    want = {"vgg16": "vgg16", "resnet50": "resnet", "resnet50v2": "resnet_v2", "inception_v3": "inception_v3",
            "mobilenet_1.00_224": "mobilenet", "mobilenetv2_1.00_224": "mobilenet_v2",
            "mobilenetv2_0.35_96": "mobilenet_v2", "MobileNetV3Small": "mobilenet_v3", "densenet121": "densenet",
            "efficientnetb0": "efficientnet", "efficientnetv2-b0": "efficientnet_v2",
            "convnext_tiny": "convnext", "nasnet_mobile": "nasnet", "xception": "xception"}
    for name, module in want.items():
        assert lio.application_module(name) == module, name
    for name in ("functional", "sequential", "shapes_cnn", "my_resnet50", "vgg16_finetuned"):
        assert lio.application_module(name) is None, name


def _tiny_file(path, name, classes=10):
    import keras

    inp = keras.Input((8, 8, 3))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inp))
    keras.Model(inp, keras.layers.Dense(classes)(h), name=name).save(path)
    return path


@pytest.mark.parametrize("name,module,bounds", [
    ("mobilenetv2_1.00_224", "mobilenet_v2", (-1.0, 1.0)),   # tf mode: x / 127.5 - 1
    ("resnet50v2", "resnet_v2", (-1.0, 1.0)),                # not caffe (ResNet50's), which its prefix suggests
    ("densenet121", "densenet", ((0 - 0.485) / 0.229, (1 - 0.406) / 0.225)),  # torch mode
])
def test_a_model_file_of_an_application_gets_its_preprocess_input(tmp_path, name, module, bounds):
    """A fine-tuned keras.applications model saved by its user is recognised by its model
    name: the application's preprocess_input, as `--model NAME` gets; preprocess= overrides."""
    import importlib

    path = _tiny_file(tmp_path / "finetuned.keras", name)
    lm = lio.load_model(path)
    assert lm.bounds == pytest.approx(bounds, rel=1e-6)
    assert f"keras.applications.{module}.preprocess_input" in lm.preprocessing and name in lm.preprocessing
    px = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    want = importlib.import_module(f"keras.applications.{module}").preprocess_input(px.copy())
    np.testing.assert_allclose(lm.preprocess(px), want, rtol=1e-6)
    unit = lio.load_model(path, preprocess="unit")
    assert unit.bounds == (0.0, 1.0) and "as asked" in unit.preprocessing
    other = lio.load_model(_tiny_file(tmp_path / "mine.keras", "my_classifier"))
    assert other.bounds == (0.0, 1.0) and other.preprocessing.startswith("[0, 1] pixels (x / 255) (a model file")


def test_random_application_weights_are_seeded():
    """Two builds of a real keras.applications model (MobileNet, tiny input) with
    random_application hold the same weights: Keras's unseeded initializers draw their
    seeds from Python's random, which is seeded meanwhile and restored after."""
    import random

    import keras

    def build(weights=None):
        return keras.applications.MobileNet(weights=weights, input_shape=(32, 32, 3), alpha=0.25, classes=3)

    state = random.getstate()
    a, b = lio.random_application(build), lio.random_application(build)
    assert random.getstate() == state  # the caller's random stream is left as it was
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    c = build()  # unseeded: other weights
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights()))
