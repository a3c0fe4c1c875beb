"""The files shipped inside the package (``lrpgraph/data/``) and how to read them.

* :data:`SHAPES_MODEL`: the small VGG-style CNN trained on the synthetic shapes
  dataset (:mod:`lrpgraph.synthetic`, ``scripts/train_shapes.py``): input
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
"""

from __future__ import annotations

import json
from pathlib import Path

from . import synthetic

__all__ = ["DATA_DIR", "SHAPES_MODEL", "SHAPES_CLASS_NAMES", "SHAPES_INPUT_RANGE", "IMAGENET_INDEX",
           "load_shapes_model", "SHAPES_VIT", "load_shapes_vit", "imagenet_class_names"]

DATA_DIR = Path(__file__).resolve().parent / "data"
SHAPES_MODEL = DATA_DIR / "shapes_cnn.keras"
SHAPES_VIT = DATA_DIR / "shapes_vit.keras"
# the model's output order is the dataset's class order (shapes_cnn.json records the same list)
SHAPES_CLASS_NAMES: tuple[str, ...] = tuple(synthetic.CLASS_NAMES)
# the shapes model reads RGB pixels in [0, 1]: the bounds low/high of bounded Deep Taylor
SHAPES_INPUT_RANGE = (0.0, 1.0)
IMAGENET_INDEX = DATA_DIR / "imagenet_class_index.json"


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


def _load_bundled(path, what, script):
    import keras

    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} is missing; create it with `python {script}`")
    return keras.saving.load_model(path, compile=False, safe_mode=True)


def imagenet_class_names():
    """The 1000 ImageNet class names in Keras's order (index i -> name of class i),
    read from :data:`IMAGENET_INDEX`."""
    index = json.loads(IMAGENET_INDEX.read_text())
    return [index[str(i)][1] for i in range(len(index))]
