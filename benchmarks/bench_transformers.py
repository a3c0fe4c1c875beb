"""Speed of attn_lrp / cp_lrp on vision transformers against a compiled gradient, in one run.

    python benchmarks/bench_transformers.py                  # shapes ViT (batch 8) + ViT-B/16 (224x224, batch 8)
    python benchmarks/bench_transformers.py --no-vit-b       # the shipped shapes ViT only

Models: the shipped shapes ViT (``lrpgraph.assets.load_shapes_vit``, 64x64, 8x8
patches, 3 blocks of width 48) and, when keras_hub is importable, a ViT-B/16-sized
``keras_hub.models.ViTImageClassifier`` built from a config with random weights
(224x224, 12 blocks, width 768, 12 heads, MLP 3072, 1000 classes), expanded with
``lrpgraph.engine.ops.keras_hub.expand_vit``.  The baseline is the gradient of the target
logit w.r.t. the input in one tf.function (``bench_vgg16.gradient_baseline``);
rounds alternate baseline and methods (``bench_vgg16.round_robin``), and the ratio is
the median over rounds of method / same-round baseline.  Build = create_analyzer plus
its first call on one sample (convert, rewrite, trace, run).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras  # noqa: E402
import lrpgraph  # noqa: E402
from bench_vgg16 import gradient_baseline, round_robin  # noqa: E402

BAR_RATIO, BAR_BUILD = 1.5, 10.0


def vit_b16():
    import keras_hub

    from lrpgraph.engine.ops.keras_hub import expand_vit

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ViTBackbone(image_shape=(224, 224, 3), patch_size=16, num_layers=12, num_heads=12,
                                            hidden_dim=768, mlp_dim=3072)
    clf = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=1000, activation=None)
    return expand_vit(clf)


def bench(model, methods, batch, reps):
    rng = np.random.default_rng(0)
    shape = tuple(model.input_shape[1:])
    model(rng.random((1,) + shape).astype(np.float32))
    builds, analyzers = {}, {}
    for m in methods:
        t0 = time.perf_counter()
        a = lrpgraph.create_analyzer(m, model)
        a.analyze(rng.random((1,) + shape).astype(np.float32), target=1)
        builds[m], analyzers[m] = time.perf_counter() - t0, a
    grad = gradient_baseline(model)
    x = rng.random((batch,) + shape).astype(np.float32)
    t = (np.arange(batch) % model.output_shape[-1]).astype(np.int32)
    xt, tt = tf.constant(x), tf.constant(t)
    calls = {"gradient (baseline)": lambda: grad(xt, tt).numpy()}
    calls.update({m: (lambda a=analyzers[m]: a.analyze(x, target=t)) for m in methods})
    times = round_robin(calls, reps)
    base = times.pop("gradient (baseline)")
    rows = [f"| gradient (baseline) | {statistics.median(base) * 1e3:.1f} | 1.00 | | |"]
    for m in methods:
        ratio = statistics.median(a / b for a, b in zip(times[m], base))
        ok = "yes" if ratio <= BAR_RATIO and builds[m] <= BAR_BUILD else "no"
        rows.append(f"| {m} | {statistics.median(times[m]) * 1e3:.1f} | {ratio:.2f} | {builds[m]:.1f} | {ok} |")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--methods", default="attn_lrp,cp_lrp")
    ap.add_argument("--no-vit-b", action="store_true", help="skip the ViT-B/16-sized KerasHub model")
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    models = [("shapes ViT (64x64, 8x8 patches, 3 blocks, width 48)", lrpgraph.assets.load_shapes_vit)]
    if not args.no_vit_b:
        models.append(("KerasHub ViT-B/16 config, random weights (224x224, 12 blocks, width 768)", vit_b16))
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {platform.machine()}, {os.cpu_count()} CPU "
          f"threads, devices: {', '.join(d.device_type for d in tf.config.list_logical_devices())}; batch "
          f"{args.batch}, {args.reps} rounds; bar: ratio <= {BAR_RATIO}, build <= {BAR_BUILD} s\n")
    for title, make in models:
        model = make()
        print(f"### {title}\n\n| method | median ms | ratio to gradient | build + first call (s) | within bar |\n"
              "|---|---|---|---|---|")
        print("\n".join(bench(model, methods, args.batch, args.reps)), "\n", flush=True)


if __name__ == "__main__":
    main()
