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
DEFAULTS = dict(curriculum="2:300,3:300,4:1400", queries=6, lr=3e-3, warmup=200, batch_size=128)


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


def parse_curriculum(text):
    """``"2:300,3:300,4:1200"`` -> ``[(2, 300), (3, 300), (4, 1200)]`` (pairs, optimizer steps)."""
    try:
        stages = [tuple(int(v) for v in item.split(":")) for item in text.split(",")]
    except ValueError:
        stages = None
    if not stages or any(len(st) != 2 or st[0] < 1 or st[1] < 1 for st in stages):
        raise SystemExit(f"--curriculum {text!r}: give pairs:steps stages separated by commas, e.g. 2:300,4:1200")
    return stages


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--curriculum", default=DEFAULTS["curriculum"],
                   help="pairs:steps stages, fewest pairs first (the last stage's pairs is the test's)")
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--queries", type=int, default=DEFAULTS["queries"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--warmup", type=int, default=DEFAULTS["warmup"])
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--layers", type=int, default=CONFIG["num_layers"])
    p.add_argument("--heads", type=int, default=CONFIG["num_query_heads"])
    p.add_argument("--kv-heads", type=int, default=CONFIG["num_key_value_heads"])
    p.add_argument("--hidden", type=int, default=CONFIG["hidden_dim"])
    p.add_argument("--ffn", type=int, default=CONFIG["intermediate_dim"])
    p.add_argument("--no-hit-rates", action="store_true", help="skip the hit-rate table (accuracy only)")
    p.add_argument("--out-dir", type=Path, default=ROOT / "lrpgraph" / "bundled")
    args = p.parse_args(argv)
    stages = parse_curriculum(args.curriculum)
    config = dict(num_layers=args.layers, num_query_heads=args.heads, num_key_value_heads=args.kv_heads,
                  hidden_dim=args.hidden, intermediate_dim=args.ffn)

    import keras
    import tensorflow as tf

    from lrpgraph import assets
    from lrpgraph import retrieval as R

    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    t0 = time.time()
    pairs = stages[-1][0]
    xt, at, pt = R.make_prompts(args.n_test, pairs, seed=args.seed + 1000)
    lm = build(config)
    total = sum(steps for _, steps in stages)
    # linear warmup to lr, then cosine decay to 0 over the remaining steps
    schedule = keras.optimizers.schedules.CosineDecay(0.0, total - args.warmup, alpha=0.0,
                                                      warmup_target=args.lr, warmup_steps=args.warmup)
    lm.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01),
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), weighted_metrics=["accuracy"])
    log = []
    for s, (k, steps) in enumerate(stages):
        # prompts followed by more answered queries; the loss only at the answers (after each "?")
        x, y, w = R.training_sequences(steps * args.batch_size, k, args.queries, seed=args.seed + s)
        hist = lm.fit(x, y, sample_weight=w, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=2)
        xs, a_s, _ = R.make_prompts(500, k, seed=args.seed + 2000 + s)
        stage_acc = float(np.mean(np.argmax(lm(xs).numpy()[:, -1], -1) == a_s))
        log.append({"pairs": k, "steps": steps, "train_accuracy": round(float(hist.history["accuracy"][-1]), 4),
                    "heldout_accuracy": stage_acc, "s": round(time.time() - t0, 1)})
        print(log[-1], flush=True)
    train_s = time.time() - t0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / "retrieval_llama.keras"
    export = build(config)  # uncompiled: the archive holds no optimizer state
    export.set_weights(lm.get_weights())
    assets.save_bundled(export, path)
    loaded = assets.load_retrieval_model(path)
    acc = float(np.mean(np.argmax(loaded(xt).numpy()[:, -1], -1) == at))
    print({"test_accuracy": acc}, flush=True)
    rates = None if args.no_hit_rates else hit_rates(loaded, xt, pt, at)
    info = {"seed": args.seed, "test_seed": args.seed + 1000, "curriculum": [list(st) for st in stages],
            "n_train": total * args.batch_size, "n_test": args.n_test, "pairs": pairs, "queries": args.queries,
            "prompt_length": R.prompt_length(pairs), "lr": args.lr, "warmup": args.warmup,
            "schedule": "linear warmup, then cosine decay to 0", "batch_size": args.batch_size,
            "optimizer": "AdamW(weight_decay=0.01)", "config": dict(config, vocabulary_size=len(R.VOCAB)),
            "vocabulary": list(R.VOCAB), "parameters": int(loaded.count_params()), "stages": log,
            "test_accuracy": acc, "hit_rate": rates,
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
