"""The files shipped inside the package (``lrpgraph/bundled/``) and how to read them.

* :data:`SHAPES_MODEL`: the small VGG-style CNN trained on the synthetic shapes
  dataset (:mod:`lrpgraph.evaluation.synthetic`, ``scripts/train_shapes.py``): input
  ``(64, 64, 3)`` RGB pixels in :data:`SHAPES_INPUT_RANGE` = [0, 1], six classes
  named :data:`SHAPES_CLASS_NAMES`; ``shapes_cnn.json`` beside it records its
  training metadata (class names, image size, test accuracy).
* :data:`SHAPES_VIT`: a small Vision Transformer (stock Keras layers:
  ``EinsumDense`` patch embedding with a per-position bias, ``MultiHeadAttention``,
  ``LayerNormalization``, GELU MLP, ``GlobalAveragePooling1D``) trained on the same
  data by ``scripts/train_vit.py``; same input and classes as the CNN, outputs
  logits; ``shapes_vit.json`` records its metadata.
* :data:`IMAGENET_INDEX`: Keras's ImageNet class index (``{"0": [wnid, name],
  ...}``, the file ``keras.applications.*.decode_predictions`` downloads),
  bundled so that class names work offline.

Both the command line (:mod:`lrpgraph.io`, :mod:`lrpgraph.cli`) and the demo
(:mod:`lrpgraph.demo`) read the assets from here; neither imports the other.

The two ``.keras`` archives load with every Keras that lrpgraph's Pythons get
(3.12, the newest Keras for Python 3.10, through 3.15): the training scripts save
them with :func:`save_bundled`, which leaves out of ``config.json`` the keys that
newer Keras writes and Keras 3.12 rejects (:data:`NEWER_KERAS_CONFIG_KEYS`, all at
their "off" values, so nothing changes for the newer Keras either).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import keras

from .evaluation import synthetic

__all__ = ["DATA_DIR", "SHAPES_MODEL", "SHAPES_CLASS_NAMES", "SHAPES_INPUT_RANGE", "IMAGENET_INDEX",
           "load_shapes_model", "SHAPES_VIT", "load_shapes_vit", "imagenet_class_names", "imagenet_wnids",
           "NEWER_KERAS_CONFIG_KEYS", "portable_config", "make_portable", "save_bundled",
           "SEQUENCE_MODEL", "load_sequence_model", "RETRIEVAL_MODEL", "load_retrieval_model"]

DATA_DIR = Path(__file__).resolve().parent / "bundled"
SHAPES_MODEL = DATA_DIR / "shapes_cnn.keras"
SHAPES_VIT = DATA_DIR / "shapes_vit.keras"
# the model's output order is the dataset's class order (shapes_cnn.json records the same list)
SHAPES_CLASS_NAMES: tuple[str, ...] = tuple(synthetic.CLASS_NAMES)
# the shapes model reads RGB pixels in [0, 1]: the bounds low/high of bounded Deep Taylor
SHAPES_INPUT_RANGE = (0.0, 1.0)
IMAGENET_INDEX = DATA_DIR / "imagenet_class_index.json"
# Bidirectional(LSTM) on lrpgraph.sequences.pattern_series (scripts/train_sequence.py)
SEQUENCE_MODEL = DATA_DIR / "sequence_lstm.keras"
# KerasHub LlamaCausalLM on lrpgraph.retrieval's key-value prompts (scripts/train_retrieval.py)
RETRIEVAL_MODEL = DATA_DIR / "retrieval_llama.keras"

# Keys that Keras >= 3.13 writes into every object config of its kind (layer or
# initializer) and that Keras 3.12 passes to the constructor as unknown keyword
# arguments (a TypeError / "Unrecognized keyword arguments" at load), each with the
# value that leaves the feature off: the constructor default of the newer Keras and
# what Keras 3.12 does anyway.  Dense / EinsumDense: quantization_config (Keras 3.13);
# MultiHeadAttention: use_gate (3.14), sliding_window (3.15); VarianceScaling
# initializers (GlorotUniform, HeNormal, ...): input_axes, output_axes (3.15).
NEWER_KERAS_CONFIG_KEYS = {
    "quantization_config": None,
    "input_axes": None,
    "output_axes": None,
    "sliding_window": None,
    "use_gate": False,
}


def load_shapes_model(path=None):
    """The shipped shapes CNN (:data:`SHAPES_MODEL`, or ``path``), loaded with
    ``safe_mode=True`` and ``compile=False``.

    Raises FileNotFoundError naming the file and how to recreate it."""
    return _load_bundled(Path(path or SHAPES_MODEL), "the shapes model", "scripts/train_shapes.py")


def load_shapes_vit(path=None):
    """The shipped shapes ViT (:data:`SHAPES_VIT`, or ``path``): input (64, 64, 3) in
    [0, 1], 8x8 patches, logits for :data:`SHAPES_CLASS_NAMES`; loaded with
    ``safe_mode=True`` and ``compile=False``.

    Raises FileNotFoundError naming the file and how to recreate it."""
    return _load_bundled(Path(path or SHAPES_VIT), "the shapes ViT", "scripts/train_vit.py")


def load_sequence_model(path=None):
    """The shipped sequence model (:data:`SEQUENCE_MODEL`, or ``path``): series (N, T, 2)
    of :mod:`lrpgraph.sequences` -> logits for its ``CLASS_NAMES``; ``sequence_lstm.json``
    beside it records the training and the hit-rate table (docs/methods/recurrent.md)."""
    return _load_bundled(Path(path or SEQUENCE_MODEL), "the sequence model", "scripts/train_sequence.py")


def load_retrieval_model(path=None):
    """The shipped key-value retrieval model (:data:`RETRIEVAL_MODEL`, or ``path``): a tiny
    KerasHub ``LlamaCausalLM`` (no preprocessor) over :data:`lrpgraph.retrieval.VOCAB`,
    taking ``{"token_ids", "padding_mask"}`` of :func:`lrpgraph.retrieval.make_prompts`;
    ``retrieval_llama.json`` beside it records the training and the hit-rate table
    (docs/methods/llms.md).  Needs ``keras_hub`` (imported here so that its layers load)."""
    try:
        import keras_hub  # noqa: F401  (registers the KerasHub classes the archive names)
    except ImportError as e:
        raise ImportError("the retrieval model is a KerasHub LlamaCausalLM; install keras-hub to load it") from e
    return _load_bundled(Path(path or RETRIEVAL_MODEL), "the retrieval model", "scripts/train_retrieval.py")


def _load_bundled(path, what, script):
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} is missing; create it with `python {script}`")
    return keras.saving.load_model(path, compile=False, safe_mode=True)


def imagenet_class_names():
    """The 1000 ImageNet class names in Keras's order (index i -> name of class i),
    read from :data:`IMAGENET_INDEX`."""
    index = json.loads(IMAGENET_INDEX.read_text())
    return [index[str(i)][1] for i in range(len(index))]


def imagenet_wnids():
    """The 1000 ImageNet (WordNet) ids in Keras's order (``"n01440764"`` is class 0), the
    names of the class folders of the ImageNet training set; read from :data:`IMAGENET_INDEX`."""
    index = json.loads(IMAGENET_INDEX.read_text())
    return [index[str(i)][0] for i in range(len(index))]


def portable_config(config):
    """A copy of a Keras ``config.json`` object (a nested dict/list, as saved in a
    ``.keras`` archive) without the keys of :data:`NEWER_KERAS_CONFIG_KEYS` in any
    object config (a dict with ``class_name`` and a ``config`` dict), so that Keras
    3.12 reads it; loading it in the newer Keras gives the same model, since every
    key removed holds its default.

    Raises ValueError naming the object and the key when such a key holds another
    value (e.g. a quantized Dense, gated attention): Keras 3.12 cannot build that
    model at all."""
    if isinstance(config, list):
        return [portable_config(v) for v in config]
    if not isinstance(config, dict):
        return config
    out = {k: portable_config(v) for k, v in config.items()}
    inner = out.get("config")
    if "class_name" in out and isinstance(inner, dict):
        for key, off in NEWER_KERAS_CONFIG_KEYS.items():
            if key not in inner:
                continue
            if inner[key] != off:
                name = inner.get("name", out["class_name"])
                raise ValueError(f"{out['class_name']} {name!r} has {key}={inner[key]!r}, which Keras 3.12 (the "
                                 f"newest Keras for Python 3.10) cannot load; build it with {key}={off!r} to "
                                 "ship it, or require a newer Keras")
            del inner[key]
    return out


def make_portable(path):
    """Rewrite the ``.keras`` archive ``path`` in place with :func:`portable_config`
    applied to its ``config.json``; every other member (the weights, the metadata) is
    copied byte for byte."""
    path = Path(path)
    with zipfile.ZipFile(path) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    fd, tmp = tempfile.mkstemp(suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w") as dst:
            for info, data in members:
                if info.filename == "config.json":
                    data = json.dumps(portable_config(json.loads(data))).encode()
                dst.writestr(info, data)
        shutil.copymode(path, tmp)  # mkstemp's file is private (0600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_bundled(model, path):
    """Save ``model`` as a ``.keras`` archive that every Keras from 3.12 on loads
    (``model.save``, then :func:`make_portable`): how the training scripts write
    :data:`SHAPES_MODEL` and :data:`SHAPES_VIT`."""
    model.save(path)
    make_portable(path)
