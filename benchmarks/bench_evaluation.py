"""Speed of lrpgraph.evaluation (issue 13), recorded in docs/performance.md.

1. Region perturbation, K = 49 steps (8x8 regions, uniform baseline) on the shipped
   shapes model, 64 images: lrpgraph's batched scorer (every perturbed copy through
   one compiled function, chunks of --batch-size) against Quantus's pattern, a
   Python loop over samples and steps with one ``model(x)`` call per perturbed
   image, in the same run; the two curves must agree.  Target: >= 10x.
2. Cascading model randomisation on VGG16 (weights=None: 13 conv + 3 dense layers),
   one batch of 8 at 224x224, gradient maps: reported.

    python benchmarks/bench_evaluation.py [--repeats 3] [--skip-vgg]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def quantus_loop(model, x, R, targets, patch, steps, fill):
    """Per sample, per step: perturb in numpy, one model(x) call (Quantus's pixel flipping loop)."""
    n, h, w, _ = x.shape
    gw = w // patch
    curves = np.zeros((n, steps + 1))
    for i in range(n):
        s = R[i].reshape(h // patch, patch, gw, patch, -1).sum(axis=(1, 3, 4)).reshape(-1)
        order = np.argsort(-s, kind="stable")
        img = x[i].copy()
        for k in range(steps + 1):
            if k:
                r = order[k - 1]
                a, b = (r // gw) * patch, (r % gw) * patch
                img[a:a + patch, b:b + patch] = fill[i, a:a + patch, b:b + patch]
            curves[i, k] = float(np.asarray(model(img[None], training=False))[0, targets[i]])
    return curves


def bench_region_perturbation(args):
    import keras

    import lrpgraph
    from lrpgraph.evaluation import synthetic
    from lrpgraph.assets import load_shapes_model
    from lrpgraph.evaluation import baseline_images, region_perturbation

    model = load_shapes_model()
    x, y, _ = synthetic.single_object_dataset(args.n, seed=12345)
    R = lrpgraph.create_analyzer("lrp.epsilon", model).analyze(x, target=y)
    patch, steps = 8, 49
    # the logits (the model ends in a softmax): Quantus would call the logit model
    top = model.layers[-1]
    head = keras.layers.Dense(top.units, name="logits")
    logit_model = keras.Model(model.inputs, head(top.input))
    head.set_weights(top.get_weights())
    kw = dict(patch=patch, steps=steps, baseline="uniform", batch_size=args.batch_size)
    region_perturbation(model, x[:2], R[:2], y[:2], **kw)  # trace once
    t_b = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        res = region_perturbation(model, x, R, y, **kw)
        t_b.append(time.perf_counter() - t)
    fill = baseline_images(x, "uniform", seed=0)
    quantus_loop(logit_model, x[:1], R[:1], y[:1], patch, 2, fill)  # warm-up
    t_l = []
    for _ in range(max(1, args.repeats // 2)):
        t = time.perf_counter()
        ref = quantus_loop(logit_model, x, R, y, patch, steps, fill)
        t_l.append(time.perf_counter() - t)
    diff = float(np.abs(ref - res.curve).max())
    tb, tl = float(np.median(t_b)), float(np.median(t_l))
    print(f"| region perturbation, {args.n} images x {steps + 1} scores ({patch}x{patch} regions) | batched "
          f"(chunks of {args.batch_size}) | {tb:.2f} | per-sample per-step model(x) loop | {tl:.2f} | "
          f"{tl / tb:.1f}x | {'met' if tl / tb >= 10 else 'NOT met'} (>= 10x) |")
    print(f"max |batched - loop| over the curves: {diff:.2e}")
    return tb, tl, diff


def bench_vgg_randomisation(args):
    import keras

    from lrpgraph.evaluation import model_randomisation

    model = keras.applications.VGG16(weights=None)
    x = np.random.default_rng(0).uniform(-120, 150, (8, 224, 224, 3)).astype("float32")
    t = time.perf_counter()
    res = model_randomisation(model, x, None, None, method="gradient", batch_size=8)
    dt = time.perf_counter() - t
    last = {k: float(np.nanmean(v)) for k, v in res.last.items()}
    print(f"| cascading randomisation, VGG16 (weights=None), batch 8, gradient | {len(res.layers)} layers "
          f"({sum(1 for n in res.layers if 'conv' in n)} conv) | {dt:.1f} s in all, {dt / (len(res.layers) + 1):.1f} s "
          f"per map batch | last-step spearman_abs {last['spearman_abs']:.3f}, ssim_abs {last['ssim_abs']:.3f} |")
    return dt


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-vgg", action="store_true")
    args = p.parse_args()
    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, {platform.machine()}, median of {args.repeats} "
          "(the loop: median of max(1, repeats // 2))")
    print("| what | lrpgraph | s | reference | s | speed-up | target |")
    print("|---|---|---:|---|---:|---:|---|")
    bench_region_perturbation(args)
    if not args.skip_vgg:
        bench_vgg_randomisation(args)


if __name__ == "__main__":
    main()
