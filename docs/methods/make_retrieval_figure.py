"""Render docs/methods/retrieval.png: one key-value prompt of the shipped retrieval model.

    python docs/methods/make_retrieval_figure.py [--out docs/methods] [--index 0]

Model: ``lrpgraph/bundled/retrieval_llama.keras`` (``scripts/train_retrieval.py``).  Prompt:
``make_prompts(8, seed=4242)[index]`` (a held-out seed), explained for the model's predicted
next token at the last token (``?``); one :func:`lrpgraph.viz.token_heatmap` row per method
(attn_lrp, cp_lrp, input_t_gradient, integrated gradients on the embeddings, attention rollout).
The deciding token is the queried key's value (the title names its position).
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
sys.path.insert(0, str(ROOT / "scripts"))

from lrpgraph import assets, viz  # noqa: E402
from lrpgraph import retrieval as R  # noqa: E402
from train_retrieval import METHODS, method_maps  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "methods")
    ap.add_argument("--index", type=int, default=0)
    a = ap.parse_args(argv)
    lm = assets.load_retrieval_model()
    x, answers, positions = R.make_prompts(8, seed=4242)
    i = a.index
    xi = {k: v[i:i + 1] for k, v in x.items()}
    pred = np.argmax(lm(xi).numpy()[:, -1], -1)
    tokens = [t if t != " " else "_" for t in R.TOKENIZER.tokens(xi["token_ids"][0])]
    rows = []
    for m in METHODS:
        r = method_maps(lm, xi, pred, m)[0]
        label = {"integrated_gradients_embeddings": "IG (embeddings)"}.get(m, m)
        fig = viz.token_heatmap(tokens, r, title=f"{label}: most relevant = token {int(np.argmax(r))}", width=7.0)
        rows.append(viz.figure_to_array(fig))
    h = sum(r.shape[0] for r in rows)
    w = max(r.shape[1] for r in rows)
    grid = np.concatenate([np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0)), constant_values=255) for r in rows], 0)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w / 100, h / 100))
    fig.suptitle(f"\"{R.TOKENIZER.decode(xi['token_ids'][0])}\" -> predicted "
                 f"{R.TOKENIZER.id_to_token(pred[0])!r}; deciding token {int(positions[i])}", fontsize=9)
    ax = fig.add_axes([0, 0, 1, 0.95])
    ax.imshow(grid)
    ax.axis("off")
    print(viz.save_figure(fig, a.out / "retrieval.png", dpi=100))


if __name__ == "__main__":
    main()
