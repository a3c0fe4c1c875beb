"""Render docs/methods/transformers.png: maps of the shipped shapes ViT.

    python docs/methods/make_transformer_figure.py [--out docs/methods]

Model: ``lrpgraph/bundled/shapes_vit.keras`` (``scripts/train_vit.py``).  Images: one
single-object image per class (``single_object_dataset(60, seed=4242)``, the first of
each class), each explained for its true class with attn_lrp, attn_lrp.gamma,
cp_lrp, attention rollout and gradient x input.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import lrpgraph  # noqa: E402
from lrpgraph import assets, viz  # noqa: E402
from lrpgraph.evaluation import synthetic  # noqa: E402

METHODS = ["attn_lrp", "attn_lrp.gamma", "cp_lrp", "attention_rollout", "input_t_gradient"]


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(Path(__file__).resolve().parent))
    args = p.parse_args(argv)
    model = assets.load_shapes_vit()
    x, y, _ = synthetic.single_object_dataset(60, 64, seed=4242)
    idx = [int(np.flatnonzero(y == c)[0]) for c in range(synthetic.NUM_CLASSES)]
    x, y = x[idx], y[idx]
    maps = {m: lrpgraph.create_analyzer(m, model).analyze(x, y) for m in METHODS}
    fig = viz.heatmap_grid(maps, images=x, row_titles=[synthetic.CLASS_NAMES[t] for t in y], cell_size=1.6)
    print("wrote", viz.save_figure(fig, Path(args.out) / "transformers.png", dpi=80))


if __name__ == "__main__":
    main()
