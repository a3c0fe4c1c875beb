"""LRP through an LSTM vs the compiled gradient (issue 23).

    .venv/bin/python benchmarks/bench_recurrent.py [--repeats 5] [--units 128] [--steps 200] [--batch 32]

Times (medians over ``--repeats`` calls after one warm-up call):

- ``lrp``: lrpgraph's lrp.epsilon (Arras' rule, ``rules.RecurrentLRP``), the reverse pass over
  time one ``tf.scan`` inside the compiled function;
- ``gradient``: ``tf.GradientTape`` gradient of the target logit w.r.t. the input, in one
  ``tf.function`` (Keras's own LSTM forward);
- ``unrolled``: the same rule as a Python loop over the steps (numpy, vectorised over the
  batch), as Arras' reference code runs it.

Prints one JSON line per quantity and the ratio lrp / gradient.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras  # noqa: E402

import lrpgraph  # noqa: E402


def model_for(units, steps, features, classes=5, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((steps, features))
    return keras.Model(inp, keras.layers.Dense(classes)(keras.layers.LSTM(units)(inp)))


def unrolled_lrp(model, x, target, eps=1e-3):
    """Arras' LSTM rule with bias_factor 0, a Python loop over the steps (numpy, batched)."""
    k, u, b, wy, by = [np.asarray(w, np.float64) for w in model.get_weights()]
    n, steps, _ = x.shape
    hd = u.shape[0]
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h, c = np.zeros((steps + 1, n, hd)), np.zeros((steps + 1, n, hd))
    gates, zg = np.zeros((steps, n, 4 * hd)), np.zeros((steps, n, hd))
    for t in range(steps):
        z = x[:, t] @ k + h[t - 1] @ u + b
        i, f, g, o = sig(z[:, :hd]), sig(z[:, hd:2 * hd]), np.tanh(z[:, 2 * hd:3 * hd]), sig(z[:, 3 * hd:])
        gates[t] = np.concatenate([i, f, g, o], 1)
        zg[t] = z[:, 2 * hd:3 * hd]
        c[t] = f * c[t - 1] + i * g
        h[t] = o * np.tanh(c[t])

    def stab(v):
        return v + np.where(v >= 0, eps, -eps)

    y = h[steps - 1] @ wy + by
    rh = h[steps - 1] * ((y[:, target] / stab(y[:, target]))[:, None] * wy[:, target][None, :])
    rc = np.zeros((n, hd))
    rx = np.zeros(x.shape)
    kg = np.concatenate([k[:, 2 * hd:3 * hd], u[:, 2 * hd:3 * hd]], 0)
    for t in reversed(range(steps)):
        rc = rc + rh
        i, f, g = gates[t, :, :hd], gates[t, :, hd:2 * hd], gates[t, :, 2 * hd:3 * hd]
        s = rc / stab(c[t])
        rc_prev, rg = f * c[t - 1] * s, i * g * s
        inp = np.concatenate([x[:, t], h[t - 1]], 1)
        r_in = inp * ((rg / stab(zg[t])) @ kg.T)
        rx[:, t], rh, rc = r_in[:, :x.shape[2]], r_in[:, x.shape[2]:], rc_prev
    return rx


def median_time(fn, repeats):
    fn()  # warm-up (tracing)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--units", type=int, default=128)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--unrolled-repeats", type=int, default=1)
    a = ap.parse_args(argv)
    model = model_for(a.units, a.steps, a.features)
    x = np.random.default_rng(0).normal(size=(a.batch, a.steps, a.features)).astype("float32")
    an = lrpgraph.create_analyzer("lrp.epsilon", model, epsilon=1e-3)
    targets = np.zeros(a.batch, np.int32)

    @tf.function(input_signature=[tf.TensorSpec([None, a.steps, a.features]), tf.TensorSpec([None], tf.int32)])
    def gradient(xt, t):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = tf.gather(model(xt), t, axis=1, batch_dims=1)
        return tape.gradient(y, xt)

    xt, tt = tf.constant(x), tf.constant(targets)
    res = {"units": a.units, "steps": a.steps, "batch": a.batch, "features": a.features, "repeats": a.repeats,
           "lrp_s": median_time(lambda: an.analyze(x, targets), a.repeats),
           "gradient_s": median_time(lambda: gradient(xt, tt).numpy(), a.repeats)}
    res["ratio"] = res["lrp_s"] / res["gradient_s"]
    res["unrolled_s"] = median_time(lambda: unrolled_lrp(model, x.astype(np.float64), 0), a.unrolled_repeats)
    # the numpy loop computes the same relevance (float64 vs float32: 1e-3 relative)
    ref = unrolled_lrp(model, x.astype(np.float64), 0)
    got = an.analyze(x, targets)
    res["max_rel_diff_vs_unrolled"] = float(np.abs(got - ref).max() / np.abs(ref).max())
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
