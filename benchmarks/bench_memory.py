"""Peak memory of lrpgraph analyses against a compiled tf.GradientTape gradient.

    python benchmarks/bench_memory.py                         # VGG16 and ResNet50, 224x224
    python benchmarks/bench_memory.py --models vgg16 --methods gradient,lrp.z_plus
    python benchmarks/bench_memory.py --small                 # a tiny CNN (smoke test)

Each (model, method, batch size) is measured in a FRESH process, so that one
measurement's allocations cannot hide in another's.  On CPU the figure is the
peak resident set size (VmHWM, reset with /proc/self/clear_refs once the model is
built and has run one plain forward) above the resident set size at that moment:
building the analyzer, tracing and the first call included.  On a GPU it is
``tf.config.experimental.get_memory_info("GPU:0")["peak"]`` after
``reset_memory_stats`` with the model already on the device (chosen
automatically when a GPU is visible).

Per method the table gives the peak at each batch size, the per-sample cost (the
least-squares slope over the batch sizes) and the batch-independent part (the
intercept), and the slope's ratio to the compiled gradient's slope.
``--allocator`` reads TensorFlow's own CPU allocator statistics instead of the RSS
(each child process started with ``TF_CPU_ALLOCATOR_USE_BFC=true``): the bytes
TensorFlow has in use, the same measurement :mod:`lrpgraph.memory` uses for
``batch_size="auto"``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FAMILIES = ["gradient", "lrp.epsilon", "lrp.z_plus", "deep_taylor.bounded", "lrp.alpha_2_beta_1",
            "epsilon_gamma_box", "sglrp", "sglrp@scaling=False", "clrp", "clrp@scaling=False",
            "integrated_gradients", "gradcam"]
BATCHES = (2, 8, 16)


def _status_mb(field):
    """VmRSS / VmHWM of this process from /proc (Linux), MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss():
    """Reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0), so that the
    model's construction, whose temporaries can exceed the analysis, is not the peak."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def build_model(name):
    import keras

    keras.utils.set_random_seed(0)
    if name == "small":
        inp = keras.Input((32, 32, 3))
        h = keras.layers.Conv2D(16, 3, activation="relu", padding="same")(inp)
        h = keras.layers.MaxPooling2D()(h)
        h = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(h)
        h = keras.layers.Flatten()(keras.layers.MaxPooling2D()(h))
        return keras.Model(inp, keras.layers.Dense(10)(keras.layers.Dense(64, activation="relu")(h)),
                           name="small_cnn")
    app = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50}[name]
    return app(weights=None, classifier_activation=None)


def parse_method(spec):
    """'sglrp@scaling=False' -> ('sglrp', {'scaling': False})."""
    name, _, rest = spec.partition("@")
    params = {}
    for item in filter(None, rest.split(",")):
        k, v = item.split("=")
        params[k] = {"True": True, "False": False}.get(v, v)
        if isinstance(params[k], str):
            try:
                params[k] = float(v)
            except ValueError:
                pass
    return name, params


def measure_one(model_name, method, batch):
    """Run in a fresh process: peak memory (MB) of one analysis above the loaded model."""
    import numpy as np
    import tensorflow as tf

    import lrpgraph
    from lrpgraph import memory

    gpu = bool(tf.config.list_physical_devices("GPU"))
    allocator = os.environ.get("TF_CPU_ALLOCATOR_USE_BFC") == "true" and not gpu
    model = build_model(model_name)
    shape = (batch,) + tuple(model.input_shape[1:])
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype("float32")
    model(x[:1])
    if allocator:  # TensorFlow's own CPU allocator statistics (bytes in use, exact)
        return {"model": model_name, "method": method, "batch": batch, "device": "CPU (allocator)",
                "peak_mb": memory.peak_of(lambda: _analyse(model, model_name, method, x))[1] / 2**20}
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
        base = tf.config.experimental.get_memory_info("GPU:0")["current"] / 2**20
    else:
        import gc

        gc.collect()
        reset_peak_rss()
        base = _status_mb("VmRSS")
    _analyse(model, model_name, method, x)
    if gpu:
        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    else:
        peak = _status_mb("VmHWM")
    return {"model": model_name, "method": method, "batch": batch, "peak_mb": peak - base,
            "device": "GPU" if gpu else "CPU"}


def _analyse(model, model_name, method, x):
    import numpy as np
    import tensorflow as tf

    import lrpgraph

    batch = len(x)
    name, params = parse_method(method)
    target = np.zeros(batch, np.int32)
    if name == "gradient_tape":
        @tf.function(autograph=False)
        def grad(x, t):
            with tf.GradientTape() as tape:
                tape.watch(x)
                z = model(x, training=False)
                y = tf.reduce_sum(tf.gather(z, t, batch_dims=1))
            return tape.gradient(y, x)
        grad(tf.constant(x), tf.constant(target)).numpy()
    else:
        if name == "gradcam":
            params.setdefault("layer", {"vgg16": "block5_conv3", "resnet50": "conv5_block3_out"}.get(model_name))
        if name == "integrated_gradients":
            params.setdefault("steps", 8)
            params.setdefault("batch_size", batch)
        an = lrpgraph.create_analyzer(name, model, **params)
        an.analyze(x, target)


def fit(points):
    """Least-squares (slope MB/sample, intercept MB) of peak over batch size."""
    import numpy as np

    b = np.array([p["batch"] for p in points], float)
    m = np.array([p["peak_mb"] for p in points], float)
    slope, intercept = np.polyfit(b, m, 1)
    return float(slope), float(intercept)


def run(models, methods, batches, out, allocator=False):
    rows = []
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true") if allocator else None
    for model_name in models:
        for method in methods:
            for batch in batches:
                cmd = [sys.executable, __file__, "--one", model_name, method, str(batch)]
                res = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if res.returncode != 0:
                    print(f"{model_name} {method} batch {batch}: FAILED\n{res.stderr[-2000:]}", file=sys.stderr)
                    continue
                row = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"{model_name:9s} {method:24s} batch {batch:3d}: {row['peak_mb']:9.1f} MB", file=sys.stderr,
                      flush=True)
    if out:
        with open(out, "w") as f:
            json.dump(rows, f, indent=1)
    print(table(rows))
    return rows


def table(rows):
    lines = []
    for model_name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model_name]
        batches = sorted({r["batch"] for r in mine})
        device = mine[0]["device"]
        base = [r for r in mine if r["method"] == "gradient_tape"] or [r for r in mine if r["method"] == "gradient"]
        base_slope = fit(base)[0] if len(base) >= 2 else None
        lines += [f"\n{model_name} ({device}, peak above the loaded model, MB)\n",
                  "| method | " + " | ".join(f"batch {b}" for b in batches)
                  + " | per sample | batch-independent | per sample / gradient |",
                  "|---" * (len(batches) + 4) + "|"]
        for method in dict.fromkeys(r["method"] for r in mine):
            pts = [r for r in mine if r["method"] == method]
            by_b = {r["batch"]: r["peak_mb"] for r in pts}
            slope, icpt = fit(pts) if len(pts) >= 2 else (float("nan"), float("nan"))
            ratio = f"{slope / base_slope:.2f}x" if base_slope else "-"
            lines.append(f"| {method} | " + " | ".join(f"{by_b.get(b, float('nan')):.0f}" for b in batches)
                         + f" | {slope:.1f} | {icpt:.0f} | {ratio} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--one", nargs=3, metavar=("MODEL", "METHOD", "BATCH"), help=argparse.SUPPRESS)
    p.add_argument("--models", default="vgg16,resnet50")
    p.add_argument("--methods", default=",".join(["gradient_tape"] + FAMILIES),
                   help="comma-separated; NAME@param=value,... for parameters")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--small", action="store_true", help="the tiny CNN instead of the applications")
    p.add_argument("--json", default=None, help="also write the raw rows to this file")
    p.add_argument("--allocator", action="store_true",
                   help="on CPU, read TensorFlow's allocator statistics (TF_CPU_ALLOCATOR_USE_BFC=true) instead of "
                        "the peak RSS: bytes in use, exact, without the C heap's caching")
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(measure_one(a.one[0], a.one[1], int(a.one[2]))))
        return
    models = ["small"] if a.small else a.models.split(",")
    methods = _split_methods(a.methods)
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, python {platform.python_version()}",
          file=sys.stderr)
    run(models, methods, [int(b) for b in a.batches.split(",")], a.json, a.allocator)


def _split_methods(s):
    """Split 'a,b@x=1,y=2,c' on commas that start a new method (not a parameter)."""
    out = []
    for part in s.split(","):
        if out and "=" in part and "@" not in part:
            out[-1] += "," + part
        else:
            out.append(part)
    return out


if __name__ == "__main__":
    main()
