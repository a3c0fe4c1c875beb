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
    assert img.shape[1] > 3 * 64  # input | heatmap | overlay and a colour bar
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
                          "--heatmap", "--overlay", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    stem = f"scene0_lrp.epsilon_{t}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{stem}.png", f"{stem}.npy", f"{stem}_heatmap.png", f"{stem}_overlay.png"])
    model = keras.saving.load_model(assets.SHAPES_MODEL, compile=False)
    px = lio.load_image(paths[0], (64, 64))
    want = lrpgraph.create_analyzer("lrp.epsilon", model).analyze(px[None] / 255.0, target=t)[0]
    got = np.load(tmp_path / f"{stem}.npy")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7 * np.abs(want).max())
    png = skio.imread(tmp_path / f"{stem}_heatmap.png")[..., :3].astype(int)
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


def _offline_tinynet(monkeypatch, calls=None):
    """A keras.applications stand-in whose ImageNet download always fails (no network)."""
    def tiny(weights=None):
        if calls is not None:
            calls.append(weights)
        if weights == "imagenet":
            raise Exception("URL fetch failure: Name or service not known")
        inp = keras.Input((16, 16, 3))
        h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)  # named as applications name theirs
        return keras.Model(inp, keras.layers.Dense(1000, name="predictions")(keras.layers.Flatten(name="flatten")(h)),
                           name="tinynet")

    monkeypatch.setattr(keras.applications, "TinyNet", tiny, raising=False)
    monkeypatch.setitem(lio.APPLICATIONS, "tinynet", ("TinyNet", "vgg16"))


def test_offline_fallback_weights_are_seeded_so_a_dataset_job_resumes(monkeypatch, tmp_path, capsys):
    """Without network the application runs on random weights that are the same on every
    run: a second run of the same explain-dataset command finds the store made by the same
    job (same weights_sha256) and resumes it instead of refusing it."""
    import lrpgraph

    _offline_tinynet(monkeypatch)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.uniform(0, 255, (4, 16, 16, 3)).astype(np.float32))
    argv = ["explain-dataset", str(tmp_path / "d.npz"), "--model", "tinynet", "--method", "gradient",
            "--target", "predicted", "--batch-size", "2", "--out", str(tmp_path / "s.zarr")]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "seeded" in out and "the same on every run" in out
    sha = lrpgraph.open_store(tmp_path / "s.zarr").store.job["weights_sha256"]
    first = np.asarray(lrpgraph.open_store(tmp_path / "s.zarr").relevance[:])
    code, out, err = run(argv, capsys)
    assert code == 0, err  # before: "the store was made by a different job: weights_sha256 ..."
    assert "0 block(s) computed now" in out
    assert lrpgraph.open_store(tmp_path / "s.zarr").store.job["weights_sha256"] == sha
    # a fresh store from a third run holds the same maps (the weights, not only their hash, agree)
    code, _, err = run(argv[:-1] + [str(tmp_path / "t.zarr")], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.asarray(lrpgraph.open_store(tmp_path / "t.zarr").relevance[:]), first)


def test_every_command_prints_the_preprocessing_and_bounds(tmp_path, capsys, scene_images):
    """A .keras file of a keras.applications architecture (named as MobileNetV2 names its
    model) gets MobileNetV2's preprocess_input ([-1, 1]) and every command says so."""
    inp = keras.Input((16, 16, 3))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inp))
    path = tmp_path / "finetuned.keras"
    keras.Model(inp, keras.layers.Dense(3)(h), name="mobilenetv2_1.00_224").save(path)
    line = "preprocessing keras.applications.mobilenet_v2.preprocess_input (the model is named 'mobilenetv2_1.00_224'"
    code, out, err = run(["explain", scene_images[0][0], "--model", str(path), "--method", "gradient",
                          "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    assert line in out and "bounds low=-1 high=1" in out
    code, out, err = run(["check", str(path)], capsys)
    assert line in out and "bounds low=-1 high=1" in out
    code, out, err = run(["explain", scene_images[0][0], "--model", str(path), "--method", "gradient",
                          "--preprocess", "unit", "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    assert "preprocessing [0, 1] pixels (x / 255) (as asked), bounds low=0 high=1" in out
    folder = tmp_path / "imgs"
    folder.mkdir()
    skio.imsave(folder / "a.png", np.full((16, 16, 3), 9, np.uint8), check_contrast=False)
    code, out, err = run(["explain-dataset", str(folder), "--model", str(path), "--method", "gradient",
                          "--target", "predicted", "--out", str(tmp_path / "s.zarr")], capsys)
    assert code == 0, err
    assert f"inputs: {line}" in out and "bounds low=-1 high=1" in out
    code, out, err = run(["evaluate", "--model", str(path), "--data", str(folder), "--methods", "gradient",
                          "--metrics", "deletion", "--n", "1", "--out", str(tmp_path / "e")], capsys)
    assert code == 0, err
    assert f"inputs: {line}" in out


def _class_folders(root, names, n=1):
    for name in names:
        (root / name).mkdir(parents=True)
        for k in range(n):
            skio.imsave(root / name / f"{k}.png", np.full((16, 16, 3), 40 * k, np.uint8), check_contrast=False)
    return root


def test_class_folders_are_explained_as_the_classes_they_name(tmp_path, capsys):
    """--target label on images/dots/, images/triangle/ explains the shapes model's classes
    'dots' (2) and 'triangle' (4), not the folders' alphabetical positions 0 and 1."""
    import lrpgraph

    folder = _class_folders(tmp_path / "images", ["triangle", "dots"], n=2)
    code, out, err = run(["explain-dataset", str(folder), "--method", "gradient", "--batch-size", "2",
                          "--out", str(tmp_path / "s.zarr")], capsys)
    assert code == 0, err
    assert "dots -> 2 dots, triangle -> 4 triangle" in out
    att = lrpgraph.open_store(tmp_path / "s.zarr")
    assert list(att.targets[:]) == [2, 2, 4, 4] and list(att.labels[:]) == [0, 0, 1, 1]
    # show: input | heatmap | overlay with the class names, the input read from --source
    from lrpgraph import viz

    figures = []
    real = viz.explanation_figure
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(viz, "explanation_figure", lambda *a, **k: figures.append(real(*a, **k)) or figures[-1])
        code, out, err = run(["show", str(tmp_path / "s.zarr"), "--index", "3", "--source", str(folder),
                              "--out", str(tmp_path / "show.png")], capsys)
    assert code == 0, err
    assert out.startswith("sample 3 (triangle/1.png): target 4 triangle, predicted ")
    (fig,) = figures
    assert len(fig.axes) == 4 and fig.axes[1].get_title() == "explained 4 triangle"
    assert fig._suptitle.get_text().startswith("gradient: triangle/1.png, predicted ")
    assert (tmp_path / "show.png").stat().st_size > 1000
    bad = _class_folders(tmp_path / "bad", ["dots", "giraffe"])
    code, out, err = run(["explain-dataset", str(bad), "--method", "gradient", "--out", str(tmp_path / "b.zarr")],
                         capsys)
    assert code == 1 and "class folder 'giraffe' is not a class of" in err and "--target predicted" in err


def test_class_folders_of_a_model_without_class_names_keep_their_index(tmp_path, capsys):
    import lrpgraph

    inp = keras.Input((16, 16, 3))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inp))
    keras.Model(inp, keras.layers.Dense(3)(h), name="nameless").save(tmp_path / "m.keras")
    folder = _class_folders(tmp_path / "images", ["cat", "dog"])
    code, out, err = run(["explain-dataset", str(folder), "--model", str(tmp_path / "m.keras"), "--method",
                          "gradient", "--out", str(tmp_path / "s.zarr")], capsys)
    assert code == 0, err
    assert out.count("has no class names") == 1 and "(cat=0, dog=1)" in out
    assert list(lrpgraph.open_store(tmp_path / "s.zarr").targets[:]) == [0, 1]


def test_explain_figure_is_input_heatmap_overlay_with_class_names(tmp_path, capsys, scene_images, monkeypatch):
    """The PNG of `lrpgraph explain` is viz.explanation_figure: three panels and a symmetric
    seismic colour bar, titled with the method and the explained and predicted class names."""
    from lrpgraph import viz

    figures = []
    real = viz.explanation_figure
    monkeypatch.setattr(viz, "explanation_figure", lambda *a, **k: figures.append(real(*a, **k)) or figures[-1])
    paths, classes = scene_images
    name = synthetic.CLASS_NAMES[classes[0, 0]]
    code, out, err = run(["explain", paths[0], "--method", "lrp.epsilon", "--target", name, "--npy",
                          "--out", str(tmp_path)], capsys)
    assert code == 0, err
    (fig,) = figures
    assert len(fig.axes) == 4 and [a.get_title() for a in fig.axes[:3]] == ["input", "relevance", "overlay"]
    title = fig._suptitle.get_text()
    assert title.startswith("lrp.epsilon: explained ") and f"{classes[0, 0]} {name}" in title and "predicted" in title
    heat = fig.axes[1].images[0]
    r = np.load(next(tmp_path.glob("*.npy"))).sum(-1)
    assert np.abs(r).max() > 0
    assert heat.get_cmap().name == "seismic" and heat.get_clim() == pytest.approx((-np.abs(r).max(), np.abs(r).max()))
    cbar = fig.axes[3]
    assert cbar.get_ylim() == pytest.approx(heat.get_clim())  # the colour bar spans [-M, M]


def test_cli_is_the_only_package_that_imports_argparse():
    import ast
    from pathlib import Path

    root = Path(__import__("lrpgraph").__file__).parent
    users = []
    for path in list(root.rglob("*.py")) + list((root.parent / "rules").rglob("*.py")):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        if "argparse" in names and "cli" not in path.relative_to(root).parts[:1]:
            users.append(str(path))
    assert not users, users


def test_library_errors_get_flag_advice(capsys, tmp_path, scene_images):
    """The library names its argument (size=N); the command line names the flag."""
    from lrpgraph.cli.options import advice
    from lrpgraph.errors import InputError

    assert advice(InputError("x", param="vocab")) == "x (on the command line: --vocab FILE)"
    assert advice(InputError("x", param="target", value="predicted")) == "x (on the command line: --target predicted)"
    assert advice(InputError("x")) == "x"
    inp = keras.Input((None, None, 3))
    keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inp))).save(tmp_path / "any.keras")
    code, _, err = run(["explain", scene_images[0][0], "--model", str(tmp_path / "any.keras"), "--out",
                        str(tmp_path)], capsys)
    assert code == 1 and "pass a size (size=N" in err and "(on the command line: --size N)" in err


def test_python_dash_m_and_the_console_script_entry_point(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "lrpgraph", "methods"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "lrp.epsilon" in r.stdout
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["lrpgraph"] == "lrpgraph.cli:main"
    assert "lrpgraph.cli" in meta["tool"]["setuptools"]["packages"]
