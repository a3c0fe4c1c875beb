"""Speed of the gradient, integrated-gradients and CAM families against a plain
compiled tf.GradientTape gradient of the same logit, measured in the same run.

    python benchmarks/bench_families.py            # VGG16 (weights=None), 224x224, batch 8
    python benchmarks/bench_families.py --small    # a tiny CNN (smoke run, seconds)

Each time is the median of ``--repeats`` calls after one warm-up call (which
traces and compiles).  The analyzers are timed through ``analyze`` (numpy in,
numpy out, Grad-CAM's scikit-image resize included); the reference is a
``tf.function`` returning d z_t / dx for the same batch and targets.  Targets
(issue 4): integrated gradients with 32 steps <= 34x the reference gradient,
Grad-CAM <= 1.2x.  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras  # noqa: E402

import lrpgraph  # noqa: E402


def build(small):
    if small:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(16, 3, activation="relu", padding="same", name="last_conv"),
            keras.layers.MaxPooling2D(2, name="last_pool"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ], name="tiny_cnn")
        return model, (32, 32, 3)
    model = keras.applications.VGG16(weights=None, classifier_activation=None)
    return model, (224, 224, 3)


def timed(fn, repeats):
    fn()  # warm-up: trace and compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="tiny CNN instead of VGG16 (smoke run)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 8, --small: 4)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls (default 5, --small: 2)")
    p.add_argument("--steps", type=int, default=32, help="integrated-gradients steps")
    p.add_argument("--ig-batch-size", type=int, default=64, help="items per compiled chunk for IG")
    args = p.parse_args(argv)
    batch = args.batch or (4 if args.small else 8)
    repeats = args.repeats or (2 if args.small else 5)

    model, shape = build(args.small)
    x = np.random.RandomState(0).uniform(-1, 1, (batch,) + shape).astype("float32")
    logits = model(x).numpy()
    targets = logits.argmax(-1).astype("int32")
    xt, tt = tf.constant(x), tf.constant(targets)

    @tf.function(reduce_retracing=True)
    def tape_gradient(x, t):
        with tf.GradientTape() as tape:
            tape.watch(x)
            zt = tf.gather(model(x, training=False), t, batch_dims=1)
        return tape.gradient(zt, x)

    ref = timed(lambda: tape_gradient(xt, tt).numpy(), repeats)
    rows = [("tf.GradientTape gradient (reference)", ref, None)]
    cases = [
        ("gradient", lrpgraph.create_analyzer("gradient", model), None),
        (f"integrated_gradients (steps={args.steps})",
         lrpgraph.create_analyzer("integrated_gradients", model, steps=args.steps, batch_size=args.ig_batch_size),
         34.0),
        ("gradcam (resize=True)", lrpgraph.create_analyzer("gradcam", model), 1.2),
        ("gradcam (resize=False)", lrpgraph.create_analyzer("gradcam", model, resize=False), None),
    ]
    for name, analyzer, _ in cases:
        rows.append((name, timed(lambda a=analyzer: a.analyze(x, target=targets), repeats), None))

    limits = {name: limit for name, _, limit in cases}
    lines = [f"{model.name}, input {shape}, batch {batch}, median of {repeats} after warm-up "
             f"(TensorFlow {tf.__version__}, {tf.config.list_physical_devices('GPU') and 'GPU' or 'CPU'})",
             "", "| method | time (ms) | x gradient | target |", "|---|---:|---:|---|"]
    ok = True
    for name, t, _ in rows:
        ratio = t / ref
        limit = limits.get(name)
        verdict = ""
        if limit is not None:
            verdict = f"<= {limit}x: {'ok' if ratio <= limit else 'MISSED'}"
            ok &= ratio <= limit
        lines.append(f"| {name} | {t * 1e3:.1f} | {ratio:.2f} | {verdict} |")
    print("\n".join(lines))
    return ok, rows


def main(argv=None):
    ok, _ = run(argv)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
