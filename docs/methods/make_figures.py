"""Render the figures of docs/methods/gradients.md and docs/methods/cam.md with the library.

    python docs/methods/make_figures.py [--out docs/methods]

Model: the shipped ``lrpgraph/bundled/shapes_cnn.keras`` when it exists; otherwise a
tiny global-average-pooling CNN trained here for two epochs on 1200 images of
:mod:`lrpgraph.evaluation.synthetic` (seed 0, about half a minute on 2 CPU cores).  Images:
three two-object scenes (``two_object_scenes(3, seed=11)``), each explained for
its first object's class.  The caption line printed at the end says which model
was used.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import keras  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import lrpgraph  # noqa: E402
from lrpgraph.evaluation import synthetic  # noqa: E402
from lrpgraph import viz  # noqa: E402

SHIPPED = ROOT / "lrpgraph" / "bundled" / "shapes_cnn.keras"


def tiny_model():
    keras.utils.set_random_seed(0)
    x, y, _ = synthetic.single_object_dataset(1200, size=64, seed=0)
    model = keras.Sequential([
        keras.Input((64, 64, 3)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(2, name="pool1"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.MaxPooling2D(2, name="pool2"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(synthetic.NUM_CLASSES, name="logits"),
    ], name="tiny_shapes_gap_cnn")
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    hist = model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    return model, f"tiny GAP CNN trained here (2 epochs, train accuracy {hist.history['accuracy'][-1]:.2f})"


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(Path(__file__).resolve().parent))
    args = p.parse_args(argv)
    if SHIPPED.exists():
        model, what = keras.models.load_model(SHIPPED), "the shipped lrpgraph/bundled/shapes_cnn.keras"
    else:
        model, what = tiny_model()
    scenes = synthetic.two_object_scenes(3, size=64, seed=11)
    x, target = scenes["x"], scenes["classes"][:, 0]
    rows = [f"{synthetic.CLASS_NAMES[t]}" for t in target]

    grad = {
        "gradient": lrpgraph.create_analyzer("gradient", model),
        "input_t_gradient": lrpgraph.create_analyzer("input_t_gradient", model),
        "guided_backprop": lrpgraph.create_analyzer("guided_backprop", model),
        "deconvnet": lrpgraph.create_analyzer("deconvnet", model),
        "integrated_gradients": lrpgraph.create_analyzer("integrated_gradients", model, steps=32),
        "smoothgrad": lrpgraph.create_analyzer("smoothgrad", model, n=32, noise_scale=0.15, seed=0),
        "vargrad": lrpgraph.create_analyzer("vargrad", model, n=32, noise_scale=0.15, seed=0),
        "occlusion": lrpgraph.create_analyzer("occlusion", model, window=8, stride=4, baseline=0.5),
    }
    # The shipped model's last 4-D output (block3_pool) is 2x2: explain at block3_conv2 (16x16).
    layer = "block3_conv2" if any(l.name == "block3_conv2" for l in model.layers) else None
    cams = {name: lrpgraph.create_analyzer(name, model, layer=layer)
            for name in ["gradcam", "gradcampp", "scorecam", "guided_gradcam"]}
    figures = [("gradients.png", grad, model), ("cam.png", cams, model)]
    try:
        cam_model = model
        lrpgraph.create_analyzer("cam", cam_model)
    except ValueError:  # `cam` needs global average pooling + Dense at the end
        cam_model, cam_what = tiny_model()
        what += f"; cam.png's `cam` column: {cam_what}"
    figures.append(("cam_gap.png", {"cam": lrpgraph.create_analyzer("cam", cam_model),
                                    "gradcam": lrpgraph.create_analyzer("gradcam", cam_model)}, cam_model))

    for fname, analyzers, _ in figures:
        maps = {name: a.analyze(x, target=target) for name, a in analyzers.items()}
        fig = viz.heatmap_grid(maps, images=x, row_titles=rows, cell_size=1.6)
        path = viz.save_figure(fig, Path(args.out) / fname, dpi=90)
        print("wrote", path)
    print("model:", what)


if __name__ == "__main__":
    main()
