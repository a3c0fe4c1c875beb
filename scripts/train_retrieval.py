"""Train the tiny Llama-style causal LM of the key-value retrieval task (known deciding token).

Trains a KerasHub ``LlamaCausalLM`` (2 layers, hidden 64, 4 query / 2 key-value heads,
SwiGLU 128, the 22-character vocabulary of :mod:`lrpgraph.retrieval`, no preprocessor) on
prompts ``"a=3 b=7 c=1 d=4 b?"`` -> ``7`` (trained on the prompt followed by two more
answered queries, ``"... b?7d?4a?3"``, the loss only at the answers: the tokens after each ``?``), evaluates it on held-out prompts (another seed) and measures there how
often each method's most relevant prompt token is the deciding one (the queried key's
value token): attn_lrp, cp_lrp, input_t_gradient (gradient x input at the embeddings),
integrated gradients on the embeddings, attention rollout read at the explained token,
and chance (1 / prompt length).  Writes

* ``lrpgraph/bundled/retrieval_llama.keras`` -- the model (``lrpgraph.assets.save_bundled``);
* ``lrpgraph/bundled/retrieval_llama.json`` -- seeds, sizes, accuracy, the hit-rate table, wall time.

Usage (from the repository root)::

    python scripts/train_retrieval.py [--seed 0] [--epochs 12] [--n-train 30000] [--n-test 500]

Deterministic for a seed (``keras.utils.set_random_seed`` and TensorFlow op determinism);
a few minutes on 2 CPU cores.
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
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

METHODS = ("attn_lrp", "cp_lrp", "input_t_gradient", "integrated_gradients_embeddings", "attention_rollout")
CONFIG = dict(num_layers=2, num_query_heads=4, num_key_value_heads=2, hidden_dim=64, intermediate_dim=128)


def build(config=CONFIG):
    import keras_hub

    from lrpgraph import retrieval as R

    backbone = keras_hub.models.LlamaBackbone(vocabulary_size=len(R.VOCAB), **config)
    return keras_hub.models.LlamaCausalLM(backbone, preprocessor=None)


def method_maps(lm, x, targets, name, ig_steps=32):
    """(N, T) relevance per prompt token of method ``name`` for the logits ``targets`` at
    the last token."""
    import lrpgraph
    from lrpgraph import retrieval as R

    if name == "integrated_gradients_embeddings":
        return R.embedding_integrated_gradients(lm, x, targets, steps=ig_steps)
    if name == "attention_rollout":
        return R.causal_rollout(lm, x)
    return lrpgraph.create_analyzer(name, lm).analyze(x, target=targets)


def hit_rates(lm, x, positions, targets, methods=METHODS):
    """{method: fraction of prompts whose most relevant token is the deciding one}, plus chance."""
    from lrpgraph import retrieval as R

    out = {m: R.hit_rate(method_maps(lm, x, targets, m), positions, x["padding_mask"]) for m in methods}
    out["chance"] = 1.0 / x["token_ids"].shape[1]
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--n-train", type=int, default=30000)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--queries", type=int, default=3)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out-dir", type=Path, default=ROOT / "lrpgraph" / "bundled")
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf

    from lrpgraph import assets
    from lrpgraph import retrieval as R

    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    t0 = time.time()
    # prompts followed by more answered queries; the loss only at the answers (after each "?")
    x, y, w = R.training_sequences(args.n_train, args.pairs, args.queries, seed=args.seed)
    xt, at, pt = R.make_prompts(args.n_test, args.pairs, seed=args.seed + 1000)
    lm = build()
    lm.compile(optimizer=keras.optimizers.AdamW(args.lr, weight_decay=0.01),
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), weighted_metrics=["accuracy"])
    lm.fit(x, y, sample_weight=w, batch_size=args.batch_size, epochs=args.epochs, validation_split=0.05, verbose=2)
    train_s = time.time() - t0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / "retrieval_llama.keras"
    export = build()  # uncompiled: the archive holds no optimizer state
    export.set_weights(lm.get_weights())
    assets.save_bundled(export, path)
    loaded = assets.load_retrieval_model(path)
    acc = float(np.mean(np.argmax(loaded(xt).numpy()[:, -1], -1) == at))
    rates = hit_rates(loaded, xt, pt, at)
    info = {"seed": args.seed, "test_seed": args.seed + 1000, "epochs": args.epochs, "n_train": args.n_train,
            "n_test": args.n_test, "pairs": args.pairs, "queries": args.queries, "prompt_length": R.prompt_length(args.pairs),
            "lr": args.lr, "batch_size": args.batch_size, "optimizer": "AdamW(weight_decay=0.01)",
            "config": dict(CONFIG, vocabulary_size=len(R.VOCAB)), "vocabulary": list(R.VOCAB),
            "parameters": int(loaded.count_params()), "test_accuracy": acc, "hit_rate": rates,
            "hit_rate_note": "target = the true answer's id at the last token; most relevant token = argmax over "
                             "the prompt of the per-token map; hit = the queried key's value token; "
                             "integrated gradients on the token embeddings (zero baseline, 32 midpoint steps); "
                             "attention rollout = the explained token's row; chance = 1 / prompt length",
            "train_s": round(train_s, 1), "wall_s": round(time.time() - t0, 1)}
    with open(args.out_dir / "retrieval_llama.json", "w") as f:
        json.dump(info, f, indent=2)
    print(json.dumps(info, indent=2))
    return info


if __name__ == "__main__":
    main()
