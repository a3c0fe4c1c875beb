"""The ``lrpgraph`` command line.

::

    lrpgraph methods                          # every method name with a one-line description
    lrpgraph explain IMAGE... [--model M] [--method NAME] [--target N|name] [--out DIR]
    lrpgraph demo [--out DIR]                 # the shapes model, a two-object scene, all methods
    lrpgraph check MODEL                      # lrpgraph.check(model): rules per node, logits

``--model`` is a path to a ``.keras`` file, ``shapes`` (the shipped two-object
benchmark model, the default) or a ``keras.applications`` name (``vgg16``,
``resnet50``, ... see ``lrpgraph explain --help``).  Images are read and resized
to the model's input with scikit-image and preprocessed with the model's own
``keras.applications.<module>.preprocess_input`` (``--preprocess`` overrides
this; a ``.keras`` file gets [0, 1] pixels by default).  The bounds ``low`` /
``high`` of bounded Deep Taylor, LRP, CLRP and SGLRP are the range of the
preprocessed pixels (caffe: -123.68 / 151.061, as in the SGLRP paper's code).

ImageNet weights (``--weights imagenet``, the default for application models)
are downloaded by Keras on first use; where the download fails (no network) the
command says so on one line and continues with RANDOM weights, and every output
line repeats that.  ``--weights none`` asks for random weights, ``--weights
FILE`` loads a weights file.

``.keras`` files are loaded with ``safe_mode=True``: a file with a Python
``Lambda`` layer is refused unless ``--unsafe`` is given (only for files you
trust: it runs code from the file).

Every error (missing or unreadable file, unknown method, model or class name)
prints one ``lrpgraph: error: ...`` line to stderr and exits with status 1; a
bad command line exits with status 2.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

__all__ = ["main", "CLIError", "ProgressBar", "load_model", "load_image", "imagenet_class_names",
           "APPLICATIONS", "SHAPES_MODEL"]

DATA_DIR = Path(__file__).resolve().parent / "data"
SHAPES_MODEL = DATA_DIR / "shapes_cnn.keras"
IMAGENET_INDEX = DATA_DIR / "imagenet_class_index.json"

# keras.applications: name -> (constructor, module with preprocess_input)
APPLICATIONS = {
    "vgg16": ("VGG16", "vgg16"), "vgg19": ("VGG19", "vgg19"),
    "resnet50": ("ResNet50", "resnet"), "resnet101": ("ResNet101", "resnet"),
    "resnet152": ("ResNet152", "resnet"),
    "resnet50v2": ("ResNet50V2", "resnet_v2"), "resnet101v2": ("ResNet101V2", "resnet_v2"),
    "resnet152v2": ("ResNet152V2", "resnet_v2"),
    "inception_v3": ("InceptionV3", "inception_v3"),
    "inception_resnet_v2": ("InceptionResNetV2", "inception_resnet_v2"),
    "xception": ("Xception", "xception"),
    "mobilenet": ("MobileNet", "mobilenet"), "mobilenet_v2": ("MobileNetV2", "mobilenet_v2"),
    "mobilenet_v3_small": ("MobileNetV3Small", "mobilenet_v3"),
    "mobilenet_v3_large": ("MobileNetV3Large", "mobilenet_v3"),
    "densenet121": ("DenseNet121", "densenet"), "densenet169": ("DenseNet169", "densenet"),
    "densenet201": ("DenseNet201", "densenet"),
    "efficientnetb0": ("EfficientNetB0", "efficientnet"), "efficientnetb1": ("EfficientNetB1", "efficientnet"),
    "efficientnetb2": ("EfficientNetB2", "efficientnet"), "efficientnetb3": ("EfficientNetB3", "efficientnet"),
    "efficientnetv2b0": ("EfficientNetV2B0", "efficientnet_v2"),
    "convnext_tiny": ("ConvNeXtTiny", "convnext"),
    "nasnetmobile": ("NASNetMobile", "nasnet"),
}
PREPROCESS = ("auto", "unit", "raw", "caffe", "tf", "torch")


class CLIError(Exception):
    """An error the command line reports as one line and exit status 1."""


# ---------------------------------------------------------------------------
# progress bar
# ---------------------------------------------------------------------------


class ProgressBar:
    """A one-line text progress bar: ``[#######.......] 7/16 name``.

    Redrawn in place (carriage return) on a terminal; on anything else (a file,
    a pipe, a test's captured stream) one line every ``max(1, total // 10)``
    steps and at the end, so logs stay short."""

    def __init__(self, total, stream=None, width=30, label=""):
        self.total, self.width, self.label = max(int(total), 0), width, label
        self.stream = sys.stderr if stream is None else stream
        self.count = 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = max(1, self.total // 10)
        self.t0 = time.perf_counter()

    def update(self, n=1, text=""):
        self.count = min(self.count + n, self.total)
        if not self.tty and self.count % self.every and self.count != self.total:
            return
        fill = int(self.width * self.count / self.total) if self.total else self.width
        line = (f"{self.label}[{'#' * fill}{'.' * (self.width - fill)}] {self.count}/{self.total} "
                f"{time.perf_counter() - self.t0:5.1f}s {text}")
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150).rstrip() + "\x1b[K")
        else:
            self.stream.write(line.rstrip() + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------


class LoadedModel:
    """A model with what the command line needs to feed and describe it."""

    def __init__(self, model, name, preprocess, class_names=None, weights_note=""):
        self.model, self.name, self.preprocess = model, name, preprocess
        self.class_names = class_names
        self.weights_note = weights_note


def _keras():
    import keras

    return keras


def _load_keras_file(path, unsafe):
    keras = _keras()
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"model file not found: {path}")
    if path.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        raise CLIError(f"cannot load {path}: expected a .keras (or legacy .h5) model file")
    import zipfile

    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise CLIError(f"cannot load model {path}: not a .keras file (a .keras file is a zip archive written by "
                       "model.save)")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as e:  # noqa: BLE001 - one clear line instead of a Keras traceback
        msg = str(e)
        if "safe_mode" in msg or "unsafe" in msg.lower():
            raise CLIError(f"{path} contains Python code (e.g. a Lambda layer) that Keras only deserialises "
                           "with safe_mode=False; pass --unsafe to load it, and only if you trust the file") from None
        first = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
        raise CLIError(f"cannot load model {path}: {first}") from None


def _class_names_beside(path, num_classes):
    """Class names from ``<model>.json`` next to a model file (key ``class_names``), if any."""
    meta = Path(path).with_suffix(".json")
    if not meta.is_file():
        return None
    try:
        names = json.loads(meta.read_text()).get("class_names")
    except (ValueError, AttributeError):
        return None
    return list(map(str, names)) if isinstance(names, list) and len(names) == num_classes else None


def imagenet_class_names():
    """The 1000 ImageNet class names in Keras's order (``lrpgraph/data/imagenet_class_index.json``,
    the file ``keras.applications.*.decode_predictions`` uses)."""
    index = json.loads(IMAGENET_INDEX.read_text())
    return [index[str(i)][1] for i in range(len(index))]


def read_labels(path):
    """Class names from a file: a JSON list, a JSON ``{"idx": [wnid, name]}`` dict, or one name per line."""
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"labels file not found: {path}")
    text = path.read_text()
    try:
        data = json.loads(text)
    except ValueError:
        return [ln.strip() for ln in text.splitlines() if ln.strip()]
    if isinstance(data, list):
        return [str(d) for d in data]
    if isinstance(data, dict):
        try:
            return [str(v[-1]) if isinstance(v, list) else str(v) for _, v in
                    sorted(data.items(), key=lambda kv: int(kv[0]))]
        except ValueError:
            pass
    raise CLIError(f"cannot read class names from {path}: expected a JSON list, a JSON dict "
                   '{"0": [wnid, name], ...} or one name per line')


def _application(name, weights, out):
    keras = _keras()
    ctor_name, module_name = APPLICATIONS[name]
    ctor = getattr(keras.applications, ctor_name)
    module = getattr(keras.applications, module_name)
    note = ""
    if weights == "imagenet":
        try:
            model = ctor(weights="imagenet")
        except Exception as e:  # noqa: BLE001 - no network, a proxy, a corrupt cache...
            reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            print(f"lrpgraph: could not get the ImageNet weights of {name} ({reason}); using RANDOM weights "
                  "(the maps explain an untrained network)", file=out)
            model = ctor(weights=None)
            note = "RANDOM weights (ImageNet download failed)"
    elif weights in (None, "none"):
        model = ctor(weights=None)
        note = "RANDOM weights (--weights none)"
    else:
        if not Path(weights).is_file():
            raise CLIError(f"weights file not found: {weights}")
        model = ctor(weights=None)
        try:
            model.load_weights(weights)
        except Exception as e:  # noqa: BLE001
            raise CLIError(f"cannot load weights {weights} into {name}: {str(e).splitlines()[0]}") from None
    return model, module.preprocess_input, note


def load_model(spec, *, weights="imagenet", unsafe=False, labels=None, preprocess="auto", out=None):
    """Resolve ``--model``: ``"shapes"``, a keras.applications name or a model file.

    Returns a :class:`LoadedModel` whose ``preprocess`` maps float RGB pixels in
    [0, 255] to the model's input."""
    out = sys.stdout if out is None else out
    key = str(spec).lower()
    if key == "shapes":
        if not SHAPES_MODEL.is_file():
            raise CLIError(f"the shipped shapes model {SHAPES_MODEL} is missing; create it with "
                           "`python scripts/train_shapes.py`")
        spec, key = SHAPES_MODEL, str(SHAPES_MODEL)
    note, app_pre = "", None
    if key in APPLICATIONS and not Path(spec).exists():
        model, app_pre, note = _application(key, weights, out)
        name = key
    elif Path(spec).exists() or Path(spec).suffix or os.sep in str(spec):
        model = _load_keras_file(spec, unsafe)
        name = Path(spec).name
    else:
        close = difflib.get_close_matches(key, list(APPLICATIONS) + ["shapes"], n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise CLIError(f"unknown model {spec!r}{hint}: pass a path to a .keras file, 'shapes' or one of "
                       f"{', '.join(APPLICATIONS)}")
    num_classes = int(model.outputs[0].shape[-1])
    if labels is not None:
        names = read_labels(labels)
        if len(names) != num_classes:
            raise CLIError(f"{labels} has {len(names)} class names but the model has {num_classes} classes")
    elif app_pre is not None or num_classes == 1000:
        names = imagenet_class_names() if num_classes == 1000 else None
    else:
        names = _class_names_beside(spec, num_classes)
    mode = preprocess
    if mode == "auto":
        mode = "app" if app_pre is not None else "unit"
    fn = _preprocess_fn(mode, app_pre)
    return LoadedModel(model, name, fn, names, note)


def _preprocess_fn(mode, app_pre=None):
    if mode == "app":
        return lambda x: np.asarray(app_pre(np.array(x, dtype=np.float32)), dtype=np.float32)
    if mode == "unit":
        return lambda x: (np.asarray(x, np.float32) / 255.0)
    if mode == "raw":
        return lambda x: np.asarray(x, np.float32)
    if mode in ("caffe", "tf", "torch"):
        from keras.applications import imagenet_utils

        return lambda x: np.asarray(imagenet_utils.preprocess_input(np.array(x, np.float32), mode=mode),
                                    np.float32)
    raise CLIError(f"unknown --preprocess {mode!r}; one of {', '.join(PREPROCESS)}")


def input_bounds(preprocess):
    """(low, high): the range of the preprocessed pixels, from pixel values 0 and 255
    (caffe: min over channels of 0 - mean = -123.68, max of 255 - mean = 151.061)."""
    lo = preprocess(np.zeros((1, 1, 1, 3), np.float32))
    hi = preprocess(np.full((1, 1, 1, 3), 255.0, np.float32))
    both = np.concatenate([lo.ravel(), hi.ravel()])
    return float(both.min()), float(both.max())


# ---------------------------------------------------------------------------
# images, targets, methods
# ---------------------------------------------------------------------------


def load_image(path, size, channels=3):
    """Read ``path`` with scikit-image and resize it to ``size`` = (H, W).

    Grey images are repeated to RGB, an alpha channel is dropped (``channels=1``
    gives a grey image).  Returns float32 pixels in [0, 255], shape (H, W, channels)."""
    from skimage import color, io, transform

    path = Path(path)
    if not path.is_file():
        raise CLIError(f"image not found: {path}")
    try:
        img = io.imread(path)
    except Exception as e:  # noqa: BLE001 - every reader error means the same to the user
        raise CLIError(f"cannot read image {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    img = np.asarray(img)
    # to floats in [0, 1] first: uint8/uint16 by their range, bool as 0/1, floats as given
    if img.dtype == bool:
        img = img.astype(np.float64)
    elif img.dtype.kind in "ui":
        img = img / float(np.iinfo(img.dtype).max)
    elif img.dtype.kind == "f":
        img = img.astype(np.float64)
        img = img / 255.0 if img.size and img.max() > 1.0 else img
    else:
        raise CLIError(f"cannot read image {path}: pixel type {img.dtype} is not an image")
    if img.ndim == 3 and img.shape[-1] == 4:
        img = color.rgba2rgb(img)  # alpha blended on white
    elif img.ndim == 3 and img.shape[-1] == 2:  # grey + alpha
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3 or img.size == 0:
        raise CLIError(f"cannot read image {path}: shape {img.shape} is not a grey, RGB or RGBA image")
    img = img * 255.0
    img = transform.resize(img, tuple(size), mode="reflect", anti_aliasing=True, preserve_range=True)
    if channels == 1:
        img = (img @ np.array([0.299, 0.587, 0.114]))[..., None]
    return np.clip(img, 0.0, 255.0).astype(np.float32)


def _norm_name(s):
    return re.sub(r"[\s_\-]+", "_", str(s).strip().lower())


def resolve_target(target, class_names, num_classes):
    """``None`` -> None (the predicted class); an int in range; or a class name
    (case, spaces, dashes and underscores do not matter)."""
    if target is None:
        return None
    t = str(target).strip()
    if re.fullmatch(r"-?\d+", t):
        i = int(t)
        if not 0 <= i < num_classes:
            raise CLIError(f"target {i} is out of range: the model has {num_classes} classes (0..{num_classes - 1})")
        return i
    if not class_names:
        raise CLIError(f"target {t!r} is a name but the model has no class names; pass a class index "
                       "or --labels FILE")
    norm = [_norm_name(n) for n in class_names]
    if _norm_name(t) in norm:
        return norm.index(_norm_name(t))
    close = difflib.get_close_matches(_norm_name(t), norm, n=3)
    hint = f"; did you mean {', '.join(class_names[norm.index(c)] for c in close)}?" if close else ""
    if not close and len(class_names) <= 30:
        hint = f"; the model's classes: {', '.join(class_names)}"
    raise CLIError(f"unknown class name {t!r}{hint}")


def _parse_params(items):
    params = {}
    for item in items or []:
        if "=" not in item:
            raise CLIError(f"--param {item!r}: expected NAME=VALUE (e.g. --param epsilon=0.01)")
        k, v = item.split("=", 1)
        try:
            params[k.strip()] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            params[k.strip()] = v
    return params


def build_method(name, model, low, high, params=None):
    """``create_analyzer(name, model, **params)`` with ``low``/``high`` filled in where the
    method takes them and ``params`` does not set them."""
    import lrpgraph

    known = lrpgraph.methods()
    if name not in known:
        close = difflib.get_close_matches(name, list(known), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise CLIError(f"unknown method {name!r}{hint}; `lrpgraph methods` lists them")
    from .benchmark import accepted_params

    params = dict(params or {})
    accepted = accepted_params(name)
    for k, v in (("low", low), ("high", high)):
        if k in accepted and k not in params:
            params[k] = v
    try:
        return lrpgraph.create_analyzer(name, model, **params)
    except (TypeError, ValueError) as e:
        raise CLIError(f"method {name!r}: {e}") from None


def _slug(s):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(s)).strip("_") or "x"


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


def cmd_methods(args, out):
    import lrpgraph

    ms = lrpgraph.methods()
    width = max(map(len, ms))
    for name in sorted(ms):
        print(f"{name.ljust(width)}  {ms[name]}", file=out)
    return 0


def cmd_explain(args, out):
    from . import viz

    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise CLIError(f"image not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    lm = load_model(args.model, weights=args.weights, unsafe=args.unsafe, labels=args.labels,
                    preprocess=args.preprocess, out=out)
    model = lm.model
    shape = tuple(model.inputs[0].shape[1:])
    if len(model.inputs) != 1 or len(shape) != 3 or shape[-1] not in (1, 3):
        raise CLIError(f"explain needs a model with one image input (H, W, 1 or 3); {lm.name} has inputs "
                       f"{[tuple(i.shape) for i in model.inputs]}")
    size = shape[:2]
    if None in size:
        if args.size is None:
            raise CLIError(f"{lm.name} accepts any image size: pass --size N to resize images to N x N")
        size = (args.size, args.size)
    num_classes = int(model.outputs[0].shape[-1])
    target = resolve_target(args.target, lm.class_names, num_classes)
    low, high = input_bounds(lm.preprocess)
    analyzer = build_method(args.method, model, low, high, _parse_params(args.param))

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name_of = (lambda i: f"{i} {lm.class_names[i]}") if lm.class_names else str
    stems = [Path(p).stem for p in args.images]
    dup = {s for s in stems if stems.count(s) > 1}
    bar = ProgressBar(len(args.images), stream=sys.stderr, label=f"{args.method} ")
    rows, notes = [], []
    for start in range(0, len(args.images), args.batch_size):
        paths = args.images[start:start + args.batch_size]
        pixels = np.stack([load_image(p, size, shape[-1]) for p in paths])
        x = lm.preprocess(pixels)
        pred = np.asarray(model(x, training=False)).argmax(-1)
        targets = pred if target is None else np.full(len(paths), target)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            maps = analyzer.analyze(x, target=targets.astype(np.int64))
        for w in caught:
            msg = str(w.message).split(" for sample(s)")[0]
            if msg not in notes:
                notes.append(msg)
                print(f"lrpgraph: warning: {w.message}", file=sys.stderr)
        for k, p in enumerate(paths):
            i = start + k
            stem = f"{i:04d}_{stems[i]}" if stems[i] in dup else stems[i]
            base = out_dir / f"{_slug(stem)}_{_slug(args.method)}_{int(targets[k])}"
            rgb = viz.heatmap_rgb(maps[k])
            # names like "lrp.epsilon" hold dots: build file names by string, not with_suffix
            files = [Path(f"{base}.png")]
            _imsave(files[0], rgb)
            if args.overlay:
                ov = viz.overlay(pixels[k].astype(np.uint8) if shape[-1] == 3 else pixels[k, ..., 0] / 255.0,
                                 maps[k])
                files.append(Path(f"{base}_overlay.png"))
                _imsave(files[-1], ov)
            if args.npy:
                files.append(Path(f"{base}.npy"))
                np.save(files[-1], maps[k])
            rows.append((p, int(pred[k]), int(targets[k]), files))
            bar.update(1, Path(p).name)
    bar.close()
    note = f" [{lm.weights_note}]" if lm.weights_note else ""
    print(f"model {lm.name}{note}, method {args.method}, bounds low={low:g} high={high:g}", file=out)
    for p, pr, t, files in rows:
        print(f"{p}: predicted {name_of(pr)}, explained {name_of(t)} -> {', '.join(map(str, files))}", file=out)
    print(f"wrote {len(rows)} heatmap(s) to {out_dir.resolve()}{note}", file=out)
    return 0


def _imsave(path, rgb):
    from skimage import io

    io.imsave(path, (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8), check_contrast=False)


def cmd_check(args, out):
    from .check import check

    lm = load_model(args.model, weights=args.weights, unsafe=args.unsafe, out=out)
    report = check(lm.model)
    if lm.weights_note:
        print(f"model {lm.name} [{lm.weights_note}]", file=out)
    print(report, file=out)
    return 0 if report.ok else 1


def cmd_demo(args, out):
    from .demo import run_demo

    run_demo(out_dir=args.out, n_scenes=args.scenes, out=out)
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="lrpgraph", description="LRP, SGLRP, CLRP, gradient and CAM maps for Keras 3 "
                                "models.", epilog="Errors exit with status 1, a bad command line with 2.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    sp = sub.add_parser("methods", help="list every method name with a one-line description")
    sp.set_defaults(fn=cmd_methods)

    def model_args(sp, default=None):
        sp.add_argument("--weights", default="imagenet",
                        help="keras.applications models: 'imagenet' (default; falls back to random weights "
                             "with a message when the download fails), 'none' (random) or a weights file")
        sp.add_argument("--unsafe", action="store_true",
                        help="allow .keras files with Python code (Lambda layers): only for files you trust")

    sp = sub.add_parser("explain", help="write a heatmap PNG per image",
                        description="Explain images: one heatmap PNG (seismic colormap, red positive, blue "
                                    "negative, symmetric limits) per image in --out.")
    sp.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything scikit-image reads)")
    sp.add_argument("--model", default="shapes",
                    help="a .keras file, 'shapes' (the shipped benchmark model, default) or a "
                         f"keras.applications name: {', '.join(APPLICATIONS)}")
    sp.add_argument("--method", default="sglrp", help="method name (`lrpgraph methods`), default sglrp")
    sp.add_argument("--target", default=None,
                    help="class index or class name (ImageNet names for 1000-class models, the names in "
                         "<model>.json or --labels); default: the predicted class")
    sp.add_argument("--out", default="out", help="output folder (default ./out)")
    sp.add_argument("--labels", default=None, help="class names: JSON list, Keras class-index JSON or text")
    sp.add_argument("--preprocess", default="auto", choices=PREPROCESS,
                    help="auto: keras.applications' own preprocess_input, [0,1] pixels for a model file; "
                         "unit: [0,1]; raw: [0,255]; caffe/tf/torch: keras.applications.imagenet_utils modes")
    sp.add_argument("--size", type=int, default=None, help="resize to N x N when the model takes any size")
    sp.add_argument("--param", action="append", metavar="NAME=VALUE",
                    help="method parameter, repeatable (e.g. --param epsilon=0.01 --param layer=block5_pool)")
    sp.add_argument("--batch-size", type=int, default=8, help="images per analysis call (default 8)")
    sp.add_argument("--npy", action="store_true", help="also save each map as .npy")
    sp.add_argument("--overlay", action="store_true", help="also save the heatmap blended over the image")
    model_args(sp)
    sp.set_defaults(fn=cmd_explain)

    sp = sub.add_parser("demo", help="the shapes model on a two-object scene: method grid PNG and metrics table")
    sp.add_argument("--out", default="out", help="output folder (default ./out)")
    sp.add_argument("--scenes", type=int, default=24, help="scenes for the metrics table (default 24)")
    sp.set_defaults(fn=cmd_demo)

    sp = sub.add_parser("check", help="print lrpgraph.check(model): op kind and rule per node, logits test")
    sp.add_argument("model", help="a .keras file, 'shapes' or a keras.applications name")
    model_args(sp)
    sp.set_defaults(fn=cmd_check)

    from .dataset_cli import add_parsers  # explain-dataset, show
    add_parsers(sub)
    return p


def main(argv=None, out=None):
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage)."""
    out = sys.stdout if out is None else out
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    if getattr(args, "batch_size", 1) < 1:
        print("lrpgraph: error: --batch-size must be >= 1", file=sys.stderr)
        return 2
    if getattr(args, "scenes", 1) < 1:
        print("lrpgraph: error: --scenes must be >= 1", file=sys.stderr)
        return 2
    import logging

    # each analyzer is its own tf.function; TF's "N out of the last N calls ... retracing"
    # warning counts them together and means nothing here
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        return args.fn(args, out)
    except CLIError as e:
        print(f"lrpgraph: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lrpgraph: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
