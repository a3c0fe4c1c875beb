"""Inputs for explanations: models, images, preprocessing, class names, targets.

What the command line (:mod:`lrpgraph.cli`), the notebooks and a dataset runner
share, with no printing and no argument parsing:

* :func:`load_model`: a ``.keras`` file (``safe_mode=True`` unless ``unsafe``),
  ``"shapes"`` (the bundled model, :mod:`lrpgraph.assets`) or a
  ``keras.applications`` name (:data:`APPLICATIONS`) with ImageNet weights, no
  weights or a weights file.  Returns a :class:`LoadedModel`: the model, its
  preprocessing, its class names, and a note when its weights are random.
* :func:`preprocess_fn` / :func:`input_bounds`: the preprocessing modes
  (:data:`PREPROCESS`) and the range ``(low, high)`` of the preprocessed pixels,
  the bounds of bounded Deep Taylor, LRP, CLRP and SGLRP (caffe: -123.68 /
  151.061, as in the SGLRP paper's code).
* :func:`load_image` (decode and resize one file to float pixels in [0, 255]),
  :func:`load_input` (the same, then the model's preprocessing) and
  :func:`list_images` (an image folder, or one subfolder per class as
  ``keras.utils.image_dataset_from_directory`` reads it).
* :func:`read_labels` (class names), :func:`build_method` (``create_analyzer``
  with the input bounds filled in).  Targets (class indices and names) are
  :mod:`lrpgraph.targets`'.

Every bad input raises :class:`lrpgraph.errors.InputError` (a ValueError;
``lrpgraph.io.InputError`` is a re-export kept for one release) whose message names the file or value and what to do about
it, in the library's terms (the argument to pass: ``unsafe=True``, ``size=N``).
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import random
import re
import warnings
import zipfile
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
from keras.applications import imagenet_utils
from skimage import color, transform
from skimage import io as skio

from . import assets
from .errors import InputError
from .methods.registry import METHODS, create_analyzer, fill_bounds

__all__ = ["InputError", "LoadedModel", "APPLICATIONS", "APPLICATION_MODEL_NAMES", "PREPROCESS",
           "PREPROCESS_DESCRIPTIONS", "IMAGE_EXTENSIONS", "RANDOM_WEIGHTS_SEED", "load_model", "random_application",
           "application_module", "application_preprocess", "read_labels", "preprocess_fn", "input_bounds",
           "load_image", "load_input", "ImageFolder", "list_images", "method_params", "build_method"]

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
# The names keras.applications' constructors give their models (``model.name``, kept by
# model.save) -> the keras.applications module whose preprocess_input the model takes.  A
# ``.keras`` file of such a model (e.g. a MobileNetV2 fine-tuned and saved by its user,
# named "mobilenetv2_1.00_224") is recognised by it.  Compared lower-case, whole name.
APPLICATION_MODEL_NAMES = (
    (r"vgg16", "vgg16"), (r"vgg19", "vgg19"),
    (r"resnet(50|101|152)", "resnet"), (r"resnet(50|101|152)v2", "resnet_v2"),
    (r"inception_v3", "inception_v3"), (r"inception_resnet_v2", "inception_resnet_v2"),
    (r"xception", "xception"),
    (r"mobilenet_\d\.\d\d_\d+", "mobilenet"), (r"mobilenetv2_\d\.\d\d_\d+", "mobilenet_v2"),
    (r"mobilenetv3(small|large)", "mobilenet_v3"),
    (r"densenet(121|169|201)", "densenet"),
    (r"efficientnetb[0-7]", "efficientnet"), (r"efficientnetv2-(b[0-3]|s|m|l)", "efficientnet_v2"),
    (r"convnext_(tiny|small|base|large|xlarge)", "convnext"),
    (r"nasnet_(mobile|large)", "nasnet"),
)
# "auto": the application's own preprocess_input (for --model NAME, and for a model file
# whose model name is an application's, APPLICATION_MODEL_NAMES), [0, 1] pixels ("unit")
# for any other model file
PREPROCESS = ("auto", "unit", "raw", "caffe", "tf", "torch")
# what each mode does, as the command line prints it
PREPROCESS_DESCRIPTIONS = {
    "unit": "[0, 1] pixels (x / 255)",
    "raw": "[0, 255] pixels as read",
    "caffe": "caffe (BGR, minus the ImageNet mean)",
    "tf": "tf (x / 127.5 - 1)",
    "torch": "torch ((x / 255 - ImageNet mean) / std)",
}
# what list_images picks up (keras.utils.image_dataset_from_directory's formats, and TIFF/WebP,
# which scikit-image also reads); compared lower-case
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------


class LoadedModel:
    """A model with what it takes to feed and describe it.

    Attributes: ``model`` (the keras.Model), ``name``, ``preprocess`` (float RGB
    pixels in [0, 255] -> the model's input, numpy in and out), ``preprocessing``
    (what ``preprocess`` does and why, in words), ``class_names`` (a list, or None
    when unknown), ``class_ids`` (ImageNet's wnids for an ImageNet model, else None)
    and ``weights_note`` ("" or why the weights are random)."""

    def __init__(self, model, name, preprocess, class_names=None, weights_note="", preprocessing="", class_ids=None):
        self.model, self.name, self.preprocess = model, name, preprocess
        self.class_names = class_names
        self.class_ids = class_ids  # other names of the classes: ImageNet's wnids for ImageNet models
        self.weights_note = weights_note
        self.preprocessing = preprocessing  # what ``preprocess`` does and why it was chosen, in words

    def describe_inputs(self):
        """One line: the preprocessing and the input bounds every method gets, e.g.
        ``"preprocessing keras.applications.vgg16.preprocess_input, bounds low=-123.68 high=151.061"``."""
        low, high = self.bounds
        return f"preprocessing {self.preprocessing or 'as given'}, bounds low={low:g} high={high:g}"

    @property
    def num_classes(self):
        """The size of the model's (first) output."""
        return int(self.model.outputs[0].shape[-1])

    @property
    def bounds(self):
        """``(low, high)``: :func:`input_bounds` of this model's preprocessing."""
        return input_bounds(self.preprocess)

    def image_shape(self, size=None):
        """``(H, W, C)`` the images are resized to: the model's input shape; ``size``
        (an int N for N x N, or (H, W)) where the model takes any size.

        Raises InputError unless the model has one image input (H, W, 1 or 3)."""
        shapes = [tuple(i.shape) for i in self.model.inputs]
        shape = shapes[0][1:] if len(shapes) == 1 else ()
        if len(shape) != 3 or shape[-1] not in (1, 3):
            raise InputError(f"{self.name} does not take images: it needs one input of shape (H, W, 1 or 3), "
                             f"its inputs are {shapes}")
        hw = shape[:2]
        if None in hw:
            if size is None:
                raise InputError(f"{self.name} accepts any image size: pass a size (size=N resizes images "
                                 "to N x N)", param="size")
            hw = (int(size), int(size)) if np.ndim(size) == 0 else tuple(int(s) for s in size)
        return (int(hw[0]), int(hw[1]), int(shape[-1]))


def _load_keras_file(path, unsafe):
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    if path.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        raise InputError(f"cannot load {path}: expected a .keras (or legacy .h5) model file")
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise InputError(f"cannot load model {path}: not a .keras file (a .keras file is a zip archive written "
                         "by model.save)")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as e:  # noqa: BLE001 - one clear line instead of a Keras traceback
        msg = str(e)
        if "safe_mode" in msg or "unsafe" in msg.lower():
            raise InputError(f"{path} contains Python code (e.g. a Lambda layer) that Keras only deserialises "
                             "with safe_mode=False; load it with unsafe=True, and only if you trust the file",
                             param="unsafe") from None
        raise InputError(f"cannot load model {path}: {_first_line(e)}") from None


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


def read_labels(path):
    """Class names from a file: a JSON list, a JSON ``{"idx": [wnid, name]}`` dict
    (Keras's class index), or one name per line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"labels file not found: {path}", param="labels")
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
    raise InputError(f"cannot read class names from {path}: expected a JSON list, a JSON dict "
                     '{"0": [wnid, name], ...} or one name per line', param="labels")


# the seed of the random weights an application gets where ImageNet weights are not
# available (or --weights none): the same weights on every run, so that a stopped dataset
# job resumes (its store records the weights' hash) and the maps reproduce
RANDOM_WEIGHTS_SEED = 1234


def random_application(ctor, seed=RANDOM_WEIGHTS_SEED):
    """``ctor(weights=None)`` with seeded random weights: the same weights on every run
    and in every process (for one Keras version).

    Keras draws the seed of an unseeded initializer from Python's ``random`` module
    (``keras.random.SeedGenerator``'s default seed); that module is seeded with ``seed``
    while the model is built and its state restored after, so nothing else changes."""
    state = random.getstate()
    random.seed(seed)
    try:
        return ctor(weights=None)
    finally:
        random.setstate(state)


def _application(name, weights, log):
    ctor_name, module_name = APPLICATIONS[name]
    ctor = getattr(keras.applications, ctor_name)
    module = getattr(keras.applications, module_name)
    note = ""
    seeded = f"seeded random weights (seed {RANDOM_WEIGHTS_SEED}: the same on every run)"
    if weights == "imagenet":
        try:
            model = ctor(weights="imagenet")
        except Exception as e:  # noqa: BLE001 - no network, a proxy, a corrupt cache...
            log(f"could not get the ImageNet weights of {name} ({_first_line(e)[:160]}); using RANDOM weights, "
                f"seeded (seed {RANDOM_WEIGHTS_SEED}): the same on every run, so a stopped job resumes and the "
                "maps reproduce, but they explain an untrained network")
            model = random_application(ctor)
            note = f"RANDOM weights (ImageNet download failed; {seeded})"
    elif weights in (None, "none"):
        model = random_application(ctor)
        note = f"RANDOM weights (weights 'none'; {seeded})"
    else:
        if not Path(weights).is_file():
            raise InputError(f"weights file not found: {weights}", param="weights")
        model = ctor(weights=None)
        try:
            model.load_weights(weights)
        except Exception as e:  # noqa: BLE001
            raise InputError(f"cannot load weights {weights} into {name}: {_first_line(e)}") from None
    return model, module.preprocess_input, note


def application_module(model_name):
    """The ``keras.applications`` module (``"mobilenet_v2"``) whose model a model named
    ``model_name`` is (:data:`APPLICATION_MODEL_NAMES`: ``"mobilenetv2_1.00_224"``,
    ``"resnet50v2"``, ...), or None."""
    key = str(model_name).lower()
    for pattern, module in APPLICATION_MODEL_NAMES:
        if re.fullmatch(pattern, key):
            return module
    return None


def application_preprocess(model_name):
    """keras.applications' ``preprocess_input`` for a model named like an application's
    (:func:`application_module`), else None."""
    module = application_module(model_name)
    return None if module is None else importlib.import_module(f"keras.applications.{module}").preprocess_input


def _nested_application(model):
    """The name of a keras.applications model nested as the first layer of ``model`` (a
    fine-tuned base, ``Sequential([MobileNetV2(...), Dense(10)])``), or None."""
    layers = [la for la in model.layers if not isinstance(la, keras.layers.InputLayer)]
    first = layers[0] if layers else None
    if isinstance(first, keras.Model) and application_module(first.name):
        return first.name
    return None


def _warn(message):
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def load_model(spec, *, weights="imagenet", unsafe=False, labels=None, preprocess="auto", log=None):
    """Load ``spec``: ``"shapes"`` (the bundled model), a ``keras.applications`` name
    (:data:`APPLICATIONS`) or a path to a ``.keras`` file.

    ``weights`` (applications only): ``"imagenet"`` (where the download fails, random
    weights, said through ``log`` and in ``weights_note``), ``"none"`` or a weights file.
    ``unsafe=True`` loads ``.keras`` files with Python code (Lambda layers): only files
    you trust.  ``labels``: a class-names file (:func:`read_labels`); otherwise ImageNet
    names for 1000-class models and ``<model>.json``'s ``class_names`` for a model file.
    ``preprocess``: one of :data:`PREPROCESS`.  ``log(message)`` receives the notes
    (default: a RuntimeWarning).  Returns a :class:`LoadedModel`."""
    log = _warn if log is None else log
    key = str(spec).lower()
    if key == "shapes":
        if not assets.SHAPES_MODEL.is_file():
            raise InputError(f"the shipped shapes model {assets.SHAPES_MODEL} is missing; create it with "
                             "`python scripts/train_shapes.py`")
        spec, key = assets.SHAPES_MODEL, str(assets.SHAPES_MODEL)
    note, app_pre, how = "", None, ""
    if key in APPLICATIONS and not Path(spec).exists():
        model, app_pre, note = _application(key, weights, log)
        name = key
        how = f"keras.applications.{APPLICATIONS[key][1]}.preprocess_input"
    elif Path(spec).exists() or Path(spec).suffix or os.sep in str(spec):
        model = _load_keras_file(spec, unsafe)
        name = Path(spec).name
        module = application_module(model.name)
        if module is not None:
            app_pre = application_preprocess(model.name)
            how = (f"keras.applications.{module}.preprocess_input (the model is named {model.name!r}, a "
                   f"keras.applications {module} model)")
        elif preprocess == "auto" and _nested_application(model):
            log(f"{name} starts with the keras.applications model {_nested_application(model)!r}; its inputs get "
                "[0, 1] pixels (a model file's default). If that model expects its own preprocess_input, choose "
                "the preprocessing (preprocess='tf', 'caffe', ...)")
    else:
        close = difflib.get_close_matches(key, list(APPLICATIONS) + ["shapes"], n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise InputError(f"unknown model {spec!r}{hint}: pass a path to a .keras file, 'shapes' or one of "
                         f"{', '.join(APPLICATIONS)}", param="model")
    num_classes = int(model.outputs[0].shape[-1])
    if labels is not None:
        names = read_labels(labels)
        if len(names) != num_classes:
            raise InputError(f"{labels} has {len(names)} class names but the model has {num_classes} classes",
                             param="labels")
    elif app_pre is not None or num_classes == 1000:
        names = assets.imagenet_class_names() if num_classes == 1000 else _class_names_beside(spec, num_classes)
    else:
        names = _class_names_beside(spec, num_classes)
    ids = assets.imagenet_wnids() if names is not None and labels is None and num_classes == 1000 else None
    mode = preprocess
    if mode == "auto":
        mode = "app" if app_pre is not None else "unit"
        if mode == "unit":
            how = PREPROCESS_DESCRIPTIONS["unit"] + (" (a model file)" if key != str(assets.SHAPES_MODEL) else "")
    else:
        how = PREPROCESS_DESCRIPTIONS[mode] + " (as asked)" if mode in PREPROCESS_DESCRIPTIONS else mode
    return LoadedModel(model, name, preprocess_fn(mode, app_pre), names, note, how, ids)


def preprocess_fn(mode, app_preprocess=None):
    """The function that maps float RGB pixels in [0, 255] to a model's input.

    ``mode``: ``"unit"`` (x / 255), ``"raw"`` (x), ``"caffe"`` / ``"tf"`` /
    ``"torch"`` (``keras.applications.imagenet_utils.preprocess_input`` modes:
    BGR minus the ImageNet mean; x / 127.5 - 1; (x / 255 - mean) / std), or
    ``"app"`` with ``app_preprocess`` (an application's own ``preprocess_input``).
    Inputs are copied, never changed in place; outputs are float32."""
    if mode == "app":
        if app_preprocess is None:
            raise InputError("preprocess mode 'app' needs the application's preprocess_input function")
        return lambda x: np.asarray(app_preprocess(np.array(x, dtype=np.float32)), dtype=np.float32)
    if mode == "unit":
        return lambda x: (np.asarray(x, np.float32) / 255.0)
    if mode == "raw":
        return lambda x: np.array(x, np.float32)
    if mode in ("caffe", "tf", "torch"):
        return lambda x: np.asarray(imagenet_utils.preprocess_input(np.array(x, np.float32), mode=mode),
                                    np.float32)
    raise InputError(f"unknown preprocess mode {mode!r}; use one of {', '.join(PREPROCESS)}", param="preprocess")


def input_bounds(preprocess):
    """(low, high): the range of the preprocessed pixels, from pixel values 0 and 255
    (caffe: min over channels of 0 - mean = -123.68, max of 255 - mean = 151.061)."""
    lo = preprocess(np.zeros((1, 1, 1, 3), np.float32))
    hi = preprocess(np.full((1, 1, 1, 3), 255.0, np.float32))
    both = np.concatenate([np.ravel(lo), np.ravel(hi)])
    return float(both.min()), float(both.max())


# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------

_READ_HINT = "lrpgraph reads image files with scikit-image: PNG, JPEG, BMP, GIF, TIFF, WebP"


def load_image(path, size, channels=3):
    """Read ``path`` with scikit-image and resize it to ``size`` = (H, W).

    Pixels become floats in [0, 1] first (integers by their type's range, bool
    as 0/1, floats above 1 as 0..255); grey images are repeated to RGB, an alpha
    channel is blended on white (``channels=1`` gives a grey image, ITU-R 601
    luma).  Resizing is anti-aliased with reflected borders.  Returns float32
    pixels in [0, 255], shape (H, W, channels)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    try:
        img = skio.imread(path)
    except Exception as e:  # noqa: BLE001 - every reader error means the same to the user
        raise InputError(f"cannot read image {path}: {_first_line(e)} ({_READ_HINT})") from None
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.float64)
    elif img.dtype.kind in "ui":
        img = img / float(np.iinfo(img.dtype).max)
    elif img.dtype.kind == "f":
        img = img.astype(np.float64)
        img = img / 255.0 if img.size and img.max() > 1.0 else img
    else:
        raise InputError(f"cannot read image {path}: pixel type {img.dtype} is not an image ({_READ_HINT})")
    if img.ndim == 3 and img.shape[-1] == 4:
        img = color.rgba2rgb(img)  # alpha blended on white
    elif img.ndim == 3 and img.shape[-1] == 2:  # grey + alpha
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3 or img.size == 0:
        raise InputError(f"cannot read image {path}: shape {img.shape} is not a grey, RGB or RGBA image "
                         "(an animation or a volume? save one frame as an image)")
    img = img * 255.0
    img = transform.resize(img, tuple(size), mode="reflect", anti_aliasing=True, preserve_range=True)
    if channels == 1:
        img = (img @ np.array([0.299, 0.587, 0.114]))[..., None]
    return np.clip(img, 0.0, 255.0).astype(np.float32)


def load_input(path, loaded, size=None):
    """One image file as the model's input: :func:`load_image` at
    ``loaded.image_shape(size)``, then ``loaded.preprocess``.  ``loaded`` is a
    :class:`LoadedModel`.  Returns float32 ``(H, W, C)`` (stack them for a batch)."""
    h, w, c = loaded.image_shape(size)
    return loaded.preprocess(load_image(path, (h, w), c)[None])[0]


class ImageFolder(NamedTuple):
    """What :func:`list_images` found: ``paths`` (sorted), and with class subfolders
    ``labels`` (int64, index into ``class_names``) and ``class_names`` (the sorted
    subfolder names); both None for a flat folder."""

    paths: list
    labels: np.ndarray | None
    class_names: list | None


def _is_image(p):
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def list_images(folder):
    """The image files of ``folder``, read as ``keras.utils.image_dataset_from_directory``
    reads a folder with ``labels="inferred"``:

    * one subfolder per class (``folder/cat/1.png``, ``folder/dog/2.jpg``): the class
      names are the subfolder names sorted alphabetically, a file's label is the index
      of its subfolder, files are found at any depth below it and listed class by
      class, sorted by path;
    * no subfolders with images: the files of ``folder`` itself, sorted; no labels.

    Files count by extension (:data:`IMAGE_EXTENSIONS`); hidden files and folders
    (``.ipynb_checkpoints``) are skipped.  Raises InputError when the folder does
    not exist, holds no images, or holds both images and class subfolders with images
    (which Keras would silently drop)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"image folder not found: {folder}" + (" (that is a file; pass the folder that holds it)"
                                                                   if folder.is_file() else ""))
    subdirs = sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")),
                     key=lambda d: d.name)
    per_class = []
    for d in subdirs:
        files = []
        for root, dirs, names in os.walk(d, followlinks=True):
            dirs[:] = sorted(x for x in dirs if not x.startswith("."))
            files += [Path(root) / n for n in names if _is_image(Path(root) / n)]
        per_class.append(sorted(files))
    top = sorted(p for p in folder.iterdir() if _is_image(p))
    if any(per_class):
        if top:
            raise InputError(f"{folder} holds both image files ({top[0].name}, ...) and class subfolders with "
                             "images: move the loose files into a class subfolder, or point at a folder that "
                             "holds only images")
        paths = [p for files in per_class for p in files]
        labels = np.concatenate([np.full(len(files), k, np.int64) for k, files in enumerate(per_class)])
        return ImageFolder(paths, labels, [d.name for d in subdirs])
    if not top:
        raise InputError(f"the image folder {folder} is empty: no image files ({', '.join(IMAGE_EXTENSIONS)}) "
                         "in it; put the images in it, or one subfolder of images per class")
    return ImageFolder(top, None, None)


# ---------------------------------------------------------------------------
# methods
# ---------------------------------------------------------------------------


def method_params(name, low, high, params=None):
    """``params`` with ``low``/``high`` (the input bounds) filled in where method ``name``
    takes them and ``params`` does not set them.  An unknown name is an InputError."""
    if name not in METHODS:
        close = difflib.get_close_matches(name, list(METHODS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise InputError(f"unknown method {name!r}{hint}; lrpgraph.methods() lists them", param="method")
    return fill_bounds(name, params, low, high)


def build_method(name, model, low, high, params=None):
    """``create_analyzer(name, model, **params)`` with ``low``/``high`` filled in
    (:func:`method_params`).  An unknown method name or a bad parameter is an InputError."""
    params = method_params(name, low, high, params)
    try:
        return create_analyzer(name, model, **params)
    except (TypeError, ValueError) as e:
        raise InputError(f"method {name!r}: {e}") from None
