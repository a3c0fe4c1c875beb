"""attn_lrp and cp_lrp on a Llama-style KerasHub causal LM against the compiled gradient.

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/bench_llm.py            # scaled down (default)
    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/bench_llm.py --full     # issue 21's ~100M config

A ``keras_hub.models.LlamaCausalLM`` built from a config with random weights; ``--full`` is
issue 21's ~100M-parameter config (12 blocks, hidden 768, 12 query / 4 key-value heads, MLP
2048, vocabulary 16000), the default a scaled-down one (4 blocks, hidden 384, 6 / 2 heads,
MLP 1024, vocabulary 8000).  128 tokens, batch 4, one target position per sequence (the last
token), the predicted token explained.

The baseline is the compiled gradient of the same logit (the logits at that position: the
KerasHub model's own layers, wrapped by ``causal_lm_model`` with the position input, not
lrpgraph's rewritten graph) w.r.t. the token embeddings, in one tf.function.  Build = the
conversion (``prepare``: graph, rewrite; once per model, shared by the methods, charged to
each) + ``create_analyzer`` + its first call (trace, run) against the gradient's wrapper +
trace + first call.  Steady calls alternate baseline and methods
(``bench_vgg16.round_robin``); the ratio is the median over rounds of method / same-round
baseline.  Memory: the peak above the usage before the call (``lrpgraph.memory.peak_of``:
the allocator's statistics on a GPU, the process's peak resident size on a CPU), per sequence.
Bars (issue 21): time <= 1.5x, memory per sequence <= 2x, build <= 2.5x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras  # noqa: E402
import keras_hub  # noqa: E402

import lrpgraph  # noqa: E402
from bench_vgg16 import round_robin  # noqa: E402
from lrpgraph.engine.ops.keras_hub_llm import causal_lm_model  # noqa: E402
from lrpgraph.memory import peak_of  # noqa: E402

FULL = dict(num_layers=12, hidden_dim=768, num_query_heads=12, num_key_value_heads=4, intermediate_dim=2048,
            vocabulary_size=16000)
SMALL = dict(num_layers=4, hidden_dim=384, num_query_heads=6, num_key_value_heads=2, intermediate_dim=1024,
             vocabulary_size=8000)
BAR_TIME, BAR_MEMORY, BAR_BUILD = 1.5, 2.0, 2.5


def gradient_baseline(lm):
    """The compiled gradient of logit ``t`` at ``position`` w.r.t. the token embeddings."""
    model = causal_lm_model(lm)  # the causal LM with a position input: (N, vocabulary) logits
    table = lm.backbone.token_embedding.embeddings

    @tf.function(autograph=False, reduce_retracing=True)
    def grad(ids, mask, position, t):
        with tf.GradientTape() as tape:
            z = model({"token_ids": ids, "padding_mask": mask, "position": position})
            zt = tf.reduce_sum(z * tf.one_hot(t, tf.shape(z)[-1]), axis=-1)
        g = tape.gradient(zt, table)  # IndexedSlices: one row per token
        return tf.reduce_sum(tf.reshape(g.values, tf.concat([tf.shape(ids), [-1]], 0)), -1)

    return grad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="issue 21's ~100M-parameter config")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--methods", default="attn_lrp,cp_lrp")
    args = ap.parse_args(argv)
    cfg = FULL if args.full else SMALL
    keras.utils.set_random_seed(0)
    lm = keras_hub.models.LlamaCausalLM(keras_hub.models.LlamaBackbone(**cfg), preprocessor=None)
    n_params = lm.count_params()
    rng = np.random.default_rng(0)
    n, t = args.batch, args.tokens
    x = {"token_ids": rng.integers(1, cfg["vocabulary_size"], (n, t)).astype("int32"),
         "padding_mask": np.ones((n, t), "int32")}
    pos = np.full(n, t - 1, "int32")
    t0 = time.perf_counter()
    prepared = lrpgraph.prepare(lm)  # the conversion: cached on lm, every method below uses it
    convert = time.perf_counter() - t0
    targets = prepared.logits(dict(x, position=pos)).argmax(1).astype("int32")
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU threads, devices "
          f"{', '.join(d.device_type for d in tf.config.list_logical_devices())}; LlamaCausalLM {cfg}, "
          f"{n_params / 1e6:.1f}M parameters, {t} tokens, batch {n}, {args.reps} rounds\n", flush=True)

    t0 = time.perf_counter()
    grad = gradient_baseline(lm)
    xs = [tf.constant(x["token_ids"]), tf.constant(x["padding_mask"]), tf.constant(pos), tf.constant(targets)]
    grad(*xs).numpy()
    builds = {"gradient (baseline)": time.perf_counter() - t0}
    calls = {"gradient (baseline)": lambda: grad(*xs).numpy()}
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        t0 = time.perf_counter()
        a = lrpgraph.create_analyzer(m, lm)
        a.analyze(x, targets, position=pos)
        builds[m] = convert + time.perf_counter() - t0
        calls[m] = lambda a=a: a.analyze(x, targets, position=pos)
        print(f"{m}: build + first call {builds[m]:.1f} s (conversion {convert:.1f} s)", flush=True)
    times = round_robin(calls, args.reps)
    peaks = {name: min(peak_of(fn)[1] for _ in range(2)) for name, fn in calls.items()}
    base_t, base_m, base_b = times["gradient (baseline)"], peaks["gradient (baseline)"], builds["gradient (baseline)"]
    print("| method | median s per call | time / gradient | peak MB per sequence | memory / gradient | "
          "build + first call (s) | build / gradient's trace + first call | within the bars |")
    print("|---|---|---|---|---|---|---|---|")
    for name in calls:
        ratio = statistics.median(a / b for a, b in zip(times[name], base_t))
        mem = peaks[name] / n / 2**20
        mratio = peaks[name] / base_m if base_m > 0 else float("nan")
        bratio = builds[name] / base_b
        ok = "" if name.startswith("gradient") else (
            "yes" if ratio <= BAR_TIME and mratio <= BAR_MEMORY and bratio <= BAR_BUILD else "no")
        print(f"| {name} | {statistics.median(times[name]):.2f} | {ratio:.2f} | {mem:.1f} | {mratio:.2f} | "
              f"{builds[name]:.1f} | {bratio:.2f} | {ok} |", flush=True)


if __name__ == "__main__":
    main()
