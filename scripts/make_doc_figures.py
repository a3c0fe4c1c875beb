"""Render docs/methods/sglrp_figure.png with the library itself.

    python scripts/make_doc_figures.py

The shipped shapes model (lrpgraph/bundled/shapes_cnn.keras) explains one two-object
scene (the first of a fixed set whose two target logits are positive) twice, once for each object as the target: LRP (the SGLRP code's bounded
Deep Taylor), CLRP, SGLRP (the original code's defaults) and SGLRP with the
paper's formula.  The model's input lies in [0, 1], so low=0, high=1.
"""

import os
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import keras  # noqa: E402
import lrpgraph  # noqa: E402
from lrpgraph.evaluation import synthetic  # noqa: E402
from lrpgraph import viz  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def pick_scene(model, seed, n=16):
    """The first of ``n`` scenes whose two objects both have a positive logit (the
    original code's output ReLU gates a target whose logit is <= 0 to an empty map)."""
    scenes = synthetic.two_object_scenes(n, seed=seed)
    logits = lrpgraph.create_analyzer("gradient", model).predict_logits(scenes["x"])
    for i in range(n):
        if np.all(logits[i, scenes["classes"][i]] > 0):
            return scenes["x"][i], scenes["classes"][i]
    raise RuntimeError("no scene with two positive target logits; try another seed")


def main(seed=7, out=ROOT / "docs" / "methods" / "sglrp_figure.png"):
    model = keras.saving.load_model(ROOT / "lrpgraph" / "bundled" / "shapes_cnn.keras")
    image, targets = pick_scene(model, seed)
    x = np.repeat(image[None], 2, axis=0)
    methods = {
        "LRP": lrpgraph.create_analyzer("lrp", model, low=0.0, high=1.0),
        "CLRP": lrpgraph.create_analyzer("clrp", model, low=0.0, high=1.0),
        "SGLRP": lrpgraph.create_analyzer("sglrp", model, low=0.0, high=1.0),
        "SGLRP (paper)": lrpgraph.create_analyzer("sglrp", model, low=0.0, high=1.0,
                                                  output_relu=False, scaling=False),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        maps = {name: a.analyze(x, target=targets) for name, a in methods.items()}
    names = [synthetic.CLASS_NAMES[c] for c in targets]
    fig = viz.heatmap_grid(maps, images=x, row_titles=[f"target: {n}" for n in names])
    print("wrote", viz.save_figure(fig, out))


if __name__ == "__main__":
    main()
