"""Speed of lrpgraph analyzers against a compiled tf.GradientTape gradient, in one run.

    python benchmarks/bench_vgg16.py                      # VGG16, 224x224, batch 1 and 8
    python benchmarks/bench_vgg16.py --small --reps 3     # a tiny CNN (smoke test)

For each batch size: ``--reps`` rounds after a warm-up round, each round timing
the baseline (gradient of the target logit w.r.t. the input, one tf.function) and
every method once; the table gives each method's median time and the median over
rounds of its ratio to the same round's baseline (robust to load changes).  Also
the time to build each analyzer plus its first call (convert, rewrite, compile,
trace, run).  Ratios, not absolute times, are what to compare across machines.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras  # noqa: E402
import lrpgraph  # noqa: E402

DEFAULT_METHODS = [
    "lrp.epsilon", "lrp.z_plus", "deep_taylor.bounded", "lrp.sequential_preset_a",
    "lrp.sequential_preset_b", "lrp.sequential_preset_a_flat", "lrp.sequential_preset_b_flat",
    "sglrp", "clrp", "sglrp_seq_a",
]
BARS = {"lrp.epsilon": 1.3, "lrp.z_plus": 2.0, "deep_taylor.bounded": 2.0, "lrp.sequential_preset_a": 2.0,
        "lrp.sequential_preset_b": 2.0, "lrp.sequential_preset_a_flat": 2.0, "lrp.sequential_preset_b_flat": 2.0,
        "sglrp": 1.6, "clrp": 1.6}


def build_model(small):
    keras.utils.set_random_seed(0)
    if small:
        inp = keras.Input((32, 32, 3))
        h = keras.layers.Conv2D(16, 3, activation="relu", padding="same")(inp)
        h = keras.layers.MaxPooling2D()(h)
        h = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(h)
        h = keras.layers.Flatten()(keras.layers.MaxPooling2D()(h))
        out = keras.layers.Dense(10)(keras.layers.Dense(64, activation="relu")(h))
        return keras.Model(inp, out, name="small_cnn")
    # Logits out, so the baseline and the analyzers explain the same function.
    return keras.applications.VGG16(weights=None, classifier_activation=None)


def gradient_baseline(model):
    """Compiled gradient of the target logit w.r.t. the input (models here end in logits)."""

    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32),
                                  tf.TensorSpec([None], tf.int32)], autograph=False)
    def grad(x, t):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = model(x)
            zt = tf.reduce_sum(z * tf.one_hot(t, tf.shape(z)[-1]), axis=-1)
        return tape.gradient(zt, x)

    return grad


def round_robin(calls, reps):
    """Time every call once per round, for ``reps`` rounds after a warm-up round, so
    that a change in machine load hits all methods alike; name -> list of seconds."""
    for fn in calls.values():
        fn()
    times = {name: [] for name in calls}
    for _ in range(reps):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="a tiny CNN instead of VGG16")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    ap.add_argument("--out", help="also write the markdown report to this file")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", RuntimeWarning)
    model = build_model(args.small)
    grad = gradient_baseline(model)
    methods = [m for m in args.methods.split(",") if m]
    lines = [f"model: {model.name}, input {tuple(model.input_shape[1:])}; TensorFlow {tf.__version__}, "
             f"{platform.machine()}, {os.cpu_count()} CPU threads, devices: "
             f"{', '.join(d.device_type for d in tf.config.list_logical_devices())}", ""]
    rng = np.random.default_rng(0)
    builds = {}
    analyzers = {}
    # TensorFlow's one-off start-up (kernels, thread pools) belongs to no analyzer: pay it first
    model(rng.uniform(-1, 1, (1,) + tuple(model.input_shape[1:])).astype(np.float32), training=False)
    for m in methods:
        x1 = rng.uniform(-1, 1, (1,) + tuple(model.input_shape[1:])).astype(np.float32)
        t0 = time.perf_counter()
        a = lrpgraph.create_analyzer(m, model)
        a.analyze(x1, target=1)
        builds[m] = time.perf_counter() - t0
        analyzers[m] = a
    for b in [int(v) for v in args.batches.split(",")]:
        x = rng.uniform(-1, 1, (b,) + tuple(model.input_shape[1:])).astype(np.float32)
        t = np.arange(b, dtype=np.int32) % 10
        xt, tt = tf.constant(x), tf.constant(t)
        calls = {"gradient (baseline)": lambda: grad(xt, tt).numpy()}
        calls.update({m: (lambda a=analyzers[m]: a.analyze(x, target=t)) for m in methods})
        times = round_robin(calls, args.reps)
        base = times.pop("gradient (baseline)")
        lines += [f"### batch {b}", "",
                  f"compiled gradient: {statistics.median(base) * 1e3:.1f} ms (median of {args.reps})", "",
                  "| method | ms (median) | ratio to gradient (median over rounds) | bar | build + first call (s) |",
                  "|---|---:|---:|---:|---:|"]
        for m in methods:
            ratio = statistics.median(t_m / t_b for t_m, t_b in zip(times[m], base))
            bar = BARS.get(m)
            ok = "" if bar is None else (f"<= {bar}" + (" ok" if ratio <= bar else " MISS"))
            lines.append(f"| {m} | {statistics.median(times[m]) * 1e3:.1f} | {ratio:.2f} | {ok} | {builds[m]:.2f} |")
        lines.append("")
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
