"""The command line, in-process: outputs written, and clear errors with non-zero exits."""

import io

import numpy as np
import pytest
from skimage import io as skio

import keras
from lrpgraph import cli, shapes


def run(argv, capsys):
    out = io.StringIO()
    code = cli.main(argv, out=out)
    err = capsys.readouterr().err
    return code, out.getvalue(), err


@pytest.fixture(scope="module")
def scene_images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    s = shapes.two_object_scenes(2, seed=5)
    paths = []
    for i, x in enumerate(s["x"]):
        p = d / f"scene{i}.png"
        skio.imsave(p, (x * 255).round().astype(np.uint8), check_contrast=False)
        paths.append(str(p))
    return paths, s["classes"]


def test_methods_lists_every_name(capsys):
    code, out, _ = run(["methods"], capsys)
    assert code == 0
    for name in ("lrp.epsilon", "sglrp", "clrp", "gradcam", "integrated_gradients", "epsilon_gamma_box"):
        assert any(line.split()[0] == name for line in out.splitlines()), name


def test_explain_writes_one_heatmap_per_image(tmp_path, capsys, scene_images):
    paths, classes = scene_images
    code, out, _ = run(["explain", *paths, "--model", "shapes", "--method", "sglrp",
                        "--out", str(tmp_path), "--npy"], capsys)
    assert code == 0, out
    pngs = sorted(tmp_path.glob("*.png"))
    npys = sorted(tmp_path.glob("*.npy"))
    assert len(pngs) == 2 and len(npys) == 2
    img = skio.imread(pngs[0])
    assert img.shape[:2] == (64, 64)
    r = np.load(npys[0])
    assert r.shape == (64, 64, 3) and np.isfinite(r).all() and np.abs(r).max() > 0
    assert out.count("explained") == 2  # the predicted class of each image


def test_explain_by_class_name(tmp_path, capsys, scene_images):
    paths, classes = scene_images
    target = shapes.CLASS_NAMES[classes[0, 0]]
    code, out, _ = run(["explain", paths[0], "--method", "lrp.epsilon", "--target", target,
                        "--out", str(tmp_path), "--npy"], capsys)
    assert code == 0
    assert f"explained {classes[0, 0]} {target}" in out
    assert np.abs(np.load(next(tmp_path.glob("*.npy")))).max() > 0


@pytest.mark.parametrize("argv,msg", [
    (["explain", "nope.png"], "image not found: nope.png"),
    (["explain", "IMG", "--method", "no_such_method"], "unknown method"),
    (["explain", "IMG", "--target", "giraffe"], "giraffe"),
    (["explain", "IMG", "--target", "17"], "out of range"),
    (["explain", "IMG", "--model", "missing.keras"], "model file not found"),
    (["check", "missing.keras"], "model file not found"),
])
def test_errors(tmp_path, capsys, scene_images, argv, msg):
    argv = [scene_images[0][0] if a == "IMG" else a for a in argv] + (
        ["--out", str(tmp_path)] if argv[0] == "explain" else [])
    code, _, err = run(argv, capsys)
    assert code == 1
    assert msg in err and "Traceback" not in err


def test_unreadable_image(tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    code, _, err = run(["explain", str(bad), "--out", str(tmp_path)], capsys)
    assert code == 1 and "broken.png" in err


def test_unsafe_keras_file_is_refused_without_flag(tmp_path, capsys, scene_images):
    inp = keras.Input((64, 64, 3))
    h = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(6)(h))
    path = tmp_path / "lambda.keras"
    model.save(path)
    code, _, err = run(["explain", scene_images[0][0], "--model", str(path), "--out", str(tmp_path)], capsys)
    assert code == 1 and "--unsafe" in err
    # with --unsafe it loads; the Lambda then needs a rule, which is a clear error too
    code, _, err = run(["explain", scene_images[0][0], "--model", str(path), "--unsafe", "--method", "gradient",
                        "--out", str(tmp_path)], capsys)
    assert code == 1 and "Lambda" in err


def test_check_prints_the_report(capsys):
    code, out, _ = run(["check", "shapes"], capsys)
    assert code == 0
    assert "block1_conv1" in out and "predictions" in out
