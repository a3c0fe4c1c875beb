"""Speed of lrp.epsilon on ResNet50 and DenseNet121 against a compiled tf.GradientTape
gradient of the same logit, measured in the same run.

    python benchmarks/bench_apps.py                          # 224x224, batch 8
    python benchmarks/bench_apps.py --size 64 --batch 2      # a quick smoke run

Models are built with ``weights=None, classifier_activation=None`` (logits out, so
the baseline and the analyzer explain the same function).  Each time is the median
of ``--reps`` calls after one warm-up call; "build" is the time to construct the
analyzer (graph, rewrite passes, rule assignment, tf.function creation) and
"first call" the warm-up call (trace + graph optimisation + run).  Targets (issue 5):
lrp.epsilon <= 1.5x the compiled gradient, build <= 10 s.  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras  # noqa: E402

import lrpgraph  # noqa: E402

TARGET_RATIO = 1.5
TARGET_BUILD_S = 10.0


def gradient_baseline(model):
    spec = tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32)

    @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.int32)], autograph=False)
    def grad(x, t):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = model(x, training=False)
            zt = tf.reduce_sum(z * tf.one_hot(t, tf.shape(z)[-1]), axis=-1)
        return tape.gradient(zt, x)

    return grad


def median_time(fn, reps):
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), first


def bench(name, size, batch, reps, methods):
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                              classifier_activation=None)
    x = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    t = np.zeros(batch, np.int32)
    grad = gradient_baseline(model)
    xt, tt = tf.constant(x), tf.constant(t)
    base, base_first = median_time(lambda: grad(xt, tt).numpy(), reps)
    rows = [(name, "gradient (tf.GradientTape, compiled)", base, 1.0, None, base_first)]
    for m in methods:
        t0 = time.perf_counter()
        an = lrpgraph.create_analyzer(m, model)
        build = time.perf_counter() - t0
        med, first = median_time(lambda: an.analyze(x, target=t), reps)
        rows.append((name, m, med, med / base, build, first))
    keras.backend.clear_session()
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["ResNet50", "DenseNet121"])
    ap.add_argument("--methods", nargs="+", default=["lrp.epsilon"])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"{args.size}x{args.size}, batch {args.batch}, median of {args.reps} after a warm-up\n")
    print("| model | method | median s | ratio to gradient | build s | first call s | target |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        for model, m, med, ratio, build, first in bench(name, args.size, args.batch, args.reps, args.methods):
            if build is None:
                verdict, build_s = "", "-"
            else:
                ok = ratio <= TARGET_RATIO and build <= TARGET_BUILD_S
                verdict = f"{'met' if ok else 'MISSED'} (<= {TARGET_RATIO}x, build <= {TARGET_BUILD_S:g} s)"
                build_s = f"{build:.2f}"
            print(f"| {model} | {m} | {med:.3f} | {ratio:.2f} | {build_s} | {first:.1f} | {verdict} |", flush=True)


if __name__ == "__main__":
    main()
