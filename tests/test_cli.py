"""The command line, in-process: outputs written, and clear errors with non-zero exits."""

import io

import numpy as np
import pytest
from skimage import io as skio

import keras
from lrpgraph import assets, cli
from lrpgraph.evaluation import synthetic
from lrpgraph import io as lio


def run(argv, capsys):
    out = io.StringIO()
    code = cli.main(argv, out=out)
    err = capsys.readouterr().err
    return code, out.getvalue(), err


@pytest.fixture(scope="module")
def scene_images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    s = synthetic.two_object_scenes(2, seed=5)
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
    target = synthetic.CLASS_NAMES[classes[0, 0]]
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


# --- exact outputs, application models, helpers -------------------------------------------


def test_explain_file_names_and_maps_equal_the_library(tmp_path, capsys, scene_images):
    """A method name with a dot keeps its full name in the files (not cut by with_suffix); the
    .npy is the library's map of the resized [0, 1] image and the PNG its seismic heatmap."""
    import lrpgraph
    from lrpgraph import viz

    paths, classes = scene_images
    t = int(classes[0, 1])
    code, out, err = run(["explain", paths[0], "--method", "lrp.epsilon", "--target", str(t), "--npy",
                          "--overlay", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    stem = f"scene0_lrp.epsilon_{t}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{stem}.png", f"{stem}.npy", f"{stem}_overlay.png"])
    model = keras.saving.load_model(assets.SHAPES_MODEL, compile=False)
    px = lio.load_image(paths[0], (64, 64))
    want = lrpgraph.create_analyzer("lrp.epsilon", model).analyze(px[None] / 255.0, target=t)[0]
    got = np.load(tmp_path / f"{stem}.npy")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7 * np.abs(want).max())
    png = skio.imread(tmp_path / f"{stem}.png")[..., :3].astype(int)
    assert np.abs(png - np.round(viz.heatmap_rgb(got) * 255).astype(int)).max() <= 1


def test_application_model_falls_back_to_random_weights(monkeypatch, tmp_path, capsys, scene_images):
    """A keras.applications model whose ImageNet download fails runs on random weights and says
    so; its own preprocess_input (here VGG16's caffe mode) sets low/high."""
    calls = []

    def tiny(weights=None):
        calls.append(weights)
        if weights == "imagenet":
            raise Exception("URL fetch failure: Name or service not known")
        inp = keras.Input((16, 16, 3))
        h = keras.layers.Conv2D(4, 3, activation="relu")(inp)
        return keras.Model(inp, keras.layers.Dense(1000)(keras.layers.Flatten()(h)))

    monkeypatch.setattr(keras.applications, "TinyNet", tiny, raising=False)
    monkeypatch.setitem(lio.APPLICATIONS, "tinynet", ("TinyNet", "vgg16"))
    code, out, err = run(["explain", scene_images[0][0], "--model", "tinynet", "--method", "lrp",
                          "--target", "zebra", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert calls == ["imagenet", None]
    lines = out.splitlines()
    assert lines[0].startswith("lrpgraph: could not get the ImageNet weights of tinynet (URL fetch failure")
    assert "RANDOM weights" in lines[0] and "RANDOM weights" in lines[-1]
    assert "bounds low=-123.68 high=151.061" in out
    assert (tmp_path / "scene0_lrp_340.png").is_file()  # zebra is ImageNet class 340


def test_usage_errors_exit_2_and_a_non_zip_keras_file_is_named(tmp_path, capsys, scene_images):
    assert run(["explain"], capsys)[0] == 2
    assert run(["frobnicate"], capsys)[0] == 2
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"nope")
    code, _, err = run(["explain", scene_images[0][0], "--model", str(bad), "--out", str(tmp_path)], capsys)
    assert code == 1 and "not a .keras file" in err and err.count("\n") == 1


def test_progress_goes_to_stderr_with_count_and_rate(tmp_path, capsys, scene_images):
    """keras.utils.Progbar on stderr (stdout keeps the report): the final line counts
    every image and gives the time per image."""
    paths, _ = scene_images
    code, out, err = run(["explain", *paths, "--method", "gradient", "--batch-size", "1",
                          "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert "2/2" in err and "/image" in err
    assert "/image" not in out and out.count("explained") == 2
