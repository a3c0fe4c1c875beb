"""Train the small Vision Transformer shipped as ``lrpgraph/bundled/shapes_vit.keras``.

A ViT (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021) made only of
stock Keras layers, trained on single-object images from :mod:`lrpgraph.evaluation.synthetic`
(64x64 RGB in [0, 1], six classes), evaluated on a held-out set (another seed), then
written to

* ``lrpgraph/bundled/shapes_vit.keras`` -- the model, saved without optimizer state by
  ``lrpgraph.assets.save_bundled``, so that every Keras from 3.12 on loads it;
* ``lrpgraph/bundled/shapes_vit.json`` -- seeds, sizes, test accuracy, wall time.

Usage (from the repository root)::

    python scripts/train_vit.py [--seed 0] [--epochs 20] [--dim 48] [--depth 3]

Architecture (pre-norm ViT, 8x8 patches -> 64 tokens):

* ``patch_embed``: ``Reshape`` to (8, 8, 8, 8, 3) (patch row, row in patch, patch
  column, column in patch, channel) and one ``EinsumDense`` ``"bhiwjc,ijcd->bhwd"``
  with ``bias_axes="hwd"``: the patch projection E x_p of ViT with a bias per patch
  position and feature, i.e. ViT's learned position embedding E_pos added to the
  projection (b + E_pos are one (8, 8, dim) table).  ``Reshape`` to (64, dim).
* ``depth`` blocks: ``x + MHA(LN(x))``, ``x + Dense(GELU(Dense(LN(x))))``.
* ``LayerNormalization``, ``GlobalAveragePooling1D`` (no class token), ``Dense`` logits.

Deterministic for a seed (``keras.utils.set_random_seed`` and TensorFlow op
determinism); a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrpgraph import assets  # noqa: E402
from lrpgraph.evaluation import synthetic  # noqa: E402

DATA_DIR = ROOT / "lrpgraph" / "bundled"


def build_vit(num_classes: int, size: int = 64, patch: int = 8, dim: int = 32, depth: int = 2,
              heads: int = 4, mlp: int = 64, name: str = "shapes_vit"):
    """The small pre-norm ViT described in the module docstring (stock Keras layers only)."""
    import keras
    from keras import layers as L

    g = size // patch
    inputs = keras.Input((size, size, 3), name="input")
    x = L.Reshape((g, patch, g, patch, 3), name="patches")(inputs)
    x = L.EinsumDense("bhiwjc,ijcd->bhwd", output_shape=(g, g, dim), bias_axes="hwd",
                      name="patch_embed")(x)
    x = L.Reshape((g * g, dim), name="tokens")(x)
    for i in range(depth):
        h = L.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln1")(x)
        h = L.MultiHeadAttention(heads, dim // heads, name=f"block{i}_mha")(h, h)
        x = L.Add(name=f"block{i}_res1")([x, h])
        h = L.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln2")(x)
        h = L.Dense(mlp, activation="gelu", name=f"block{i}_fc1")(h)
        h = L.Dense(dim, name=f"block{i}_fc2")(h)
        x = L.Add(name=f"block{i}_res2")([x, h])
    x = L.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    x = L.GlobalAveragePooling1D(name="gap")(x)
    outputs = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--dim", type=int, default=48)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--mlp", type=int, default=96)
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--out-dir", type=Path, default=DATA_DIR)
    args = p.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()

    t0 = time.perf_counter()
    x_train, y_train, _ = synthetic.single_object_dataset(args.n_train, args.size, seed=args.seed)
    x_test, y_test, _ = synthetic.single_object_dataset(args.n_test, args.size, seed=args.seed + 1000)
    t_data = time.perf_counter() - t0

    arch = dict(size=args.size, patch=args.patch, dim=args.dim, depth=args.depth, heads=args.heads, mlp=args.mlp)
    model = build_vit(synthetic.NUM_CLASSES, **arch)
    steps = args.epochs * int(np.ceil(args.n_train / args.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(args.lr, steps, warmup_target=None)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    t1 = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=2)
    t_train = time.perf_counter() - t1

    pred = model.predict(x_test, batch_size=256, verbose=0).argmax(axis=1)
    test_acc = float((pred == y_test).mean())
    confusion = np.zeros((synthetic.NUM_CLASSES,) * 2, dtype=int)
    np.add.at(confusion, (y_test, pred), 1)

    export = build_vit(synthetic.NUM_CLASSES, **arch)  # uncompiled: no optimizer state
    export.set_weights(model.get_weights())
    args.out_dir.mkdir(parents=True, exist_ok=True)
    model_path = args.out_dir / "shapes_vit.keras"
    assets.save_bundled(export, model_path)  # Keras 3.12 (Python 3.10) reads it too

    info = {
        "model_file": model_path.name,
        "seed": args.seed,
        "class_names": list(synthetic.CLASS_NAMES),
        "image_size": [args.size, args.size, 3],
        "architecture": arch,
        "n_train": args.n_train,
        "n_test": args.n_test,
        "data_seeds": {"train": args.seed, "test": args.seed + 1000},
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "test_accuracy": test_acc,
        "test_confusion_matrix": confusion.tolist(),
        "n_params": int(export.count_params()),
        "data_wall_time_s": round(t_data, 1),
        "train_wall_time_s": round(t_train, 1),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    with open(args.out_dir / "shapes_vit.json", "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print(f"test accuracy: {test_acc:.4f}")
    print(f"train wall time: {t_train:.1f} s; model: {model_path} ({model_path.stat().st_size / 1e6:.2f} MB)")
    return info


if __name__ == "__main__":
    main()
