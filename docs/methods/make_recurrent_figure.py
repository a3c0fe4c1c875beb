"""Render docs/methods/recurrent.png: maps of the shipped sequence model.

    python docs/methods/make_recurrent_figure.py [--out docs/methods]

Model: ``lrpgraph/bundled/sequence_lstm.keras`` (``scripts/train_sequence.py``).  Series: the first
series of each class of ``pattern_series(30, seed=4242)``, each explained for its true class with
lrp.epsilon (Arras et al.'s rule) and integrated gradients; the planted pattern is outlined.
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
from lrpgraph import sequences as S  # noqa: E402

METHODS = ["lrp.epsilon", "integrated_gradients"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "methods")
    a = ap.parse_args(argv)
    model = assets.load_sequence_model()
    x, y, pos = S.pattern_series(30, seed=4242)
    idx = [int(np.flatnonzero(y == k)[0]) for k in range(len(S.CLASS_NAMES))]
    maps = {m: lrpgraph.create_analyzer(m, model).analyze(x[idx], y[idx]) for m in METHODS}
    rows = []
    for j, i in enumerate(idx):
        for m in METHODS:
            fig = viz.time_series_heatmap(x[i], maps[m][j], channel_names=["ch 0", "ch 1"],
                                          marks=[(pos[i], pos[i] + S.WIDTH)],
                                          title=f"{S.CLASS_NAMES[y[i]]}: {m}", width=6.0, channel_height=1.0)
            rows.append(viz.figure_to_array(fig))
    h = max(r.shape[0] for r in rows)
    w = max(r.shape[1] for r in rows)
    pad = lambda r: np.pad(r, ((0, h - r.shape[0]), (0, w - r.shape[1]), (0, 0)), constant_values=255)  # noqa: E731
    grid = np.concatenate([np.concatenate([pad(rows[2 * k]), pad(rows[2 * k + 1])], 1)
                           for k in range(len(idx))], 0)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(grid.shape[1] / 100, grid.shape[0] / 100))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(grid)
    ax.axis("off")
    out = viz.save_figure(fig, a.out / "recurrent.png", dpi=100)
    print(out)


if __name__ == "__main__":
    main()
