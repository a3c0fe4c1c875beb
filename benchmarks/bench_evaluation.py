"""Speed of lrpgraph.evaluation (issue 13), recorded in docs/performance.md.

1. Region perturbation, K = 49 steps (8x8 regions, uniform baseline) on the shipped
   shapes model, 64 images: lrpgraph's batched scorer (every perturbed copy through
   one compiled function, chunks of --batch-size) against Quantus's pattern, a
   Python loop over samples and steps with one ``model(x)`` call per perturbed
   image, in the same run; the two curves must agree.  Target: >= 10x.
2. Cascading model randomisation on VGG16 (weights=None: 13 conv + 3 dense layers),
   one batch of 8 at 224x224, gradient maps: reported.
3. (issue 24) Every perturbation metric beside its forward-pass floor: the same
   number N x M of copies, already in memory, through the same compiled forward in
   the same chunks (``floor``); the robustness metrics beside the batched
   ``analyze`` of their N x K perturbed copies.  Target: metric / floor <= 1.3.

4. (issue 24) ``--export-quantus PATH.npz``: the shapes model's weights, 16 images,
   their labels, ground-truth masks and ``lrp.epsilon`` maps, with lrpgraph's numbers
   and times for the metrics Quantus shares, for ``benchmarks/bench_quantus.py`` (run
   in its own Keras 2 environment; it does not import lrpgraph).

    python benchmarks/bench_evaluation.py [--repeats 3] [--skip-vgg] [--skip-region] [--floor] [--only NAME]
    python benchmarks/bench_evaluation.py --skip-region --skip-vgg --export-quantus /tmp/quantus_case.npz
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


def _median_time(fn, repeats):
    fn()  # warm-up: tracing
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def _paired_times(a, b, repeats):
    """Median wall and process-CPU seconds of ``a`` and ``b``, run alternately after a
    warm-up of each (alternating spreads the other jobs' load over both)."""
    a()
    b()
    wa, wb, ca, cb = [], [], [], []
    for _ in range(repeats):
        for fn, w, c in ((a, wa, ca), (b, wb, cb)):
            t, p = time.perf_counter(), time.process_time()
            fn()
            w.append(time.perf_counter() - t)
            c.append(time.process_time() - p)
    return [float(np.median(v)) for v in (wa, wb, ca, cb)]


def floor_fn(prepared, batch_size):
    """The floor: the compiled forward of copies that are already built (a tensor of
    M images), in chunks of ``batch_size``, each chunk's target score accumulated --
    the scorer's work without building the copies."""
    import tensorflow as tf

    from lrpgraph.methods.base import chunked

    def body(copies, targets):
        m = tf.shape(copies)[0]

        def make(k, i, valid, c):
            return [tf.gather(copies, k)], k, tf.cast(valid, tf.float64)

        def fold(acc, chunk, j, valid):
            z = tf.cast(tf.gather(prepared.forward(chunk), tf.gather(targets, j), batch_dims=1), tf.float64)
            return acc + tf.math.unsorted_segment_sum(z * valid, j, m)

        return chunked(m, 1, batch_size, make, fold, tf.zeros([m], tf.float64))

    return tf.function(body, autograph=False, reduce_retracing=True)


def resnet18_cifar(seed=0):
    """torchvision's ResNet-18 (7x7/2 stem and max pool, basic blocks 2-2-2-2 of
    64-512 channels) with a 10-class head on 32x32 inputs, as the ROAD paper's CIFAR-10
    runs use it (Rong et al. 2022, experiments/cifar10); random weights: only its cost
    matters here."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)

    def conv_bn(x, filters, kernel, stride):
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False)(x)
        return layers.BatchNormalization()(x)

    inp = keras.Input((32, 32, 3))
    x = layers.ReLU()(conv_bn(inp, 64, 7, 2))
    x = layers.MaxPooling2D(3, 2, padding="same")(x)
    for stage, filters in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if stage and not block else 1
            y = layers.ReLU()(conv_bn(x, filters, 3, stride))
            y = conv_bn(y, filters, 3, 1)
            if stride != 1 or x.shape[-1] != filters:
                x = conv_bn(x, filters, 1, stride)
            x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(10)(x), name="resnet18_cifar")


def bench_floor(args):
    """Each perturbation metric on n shapes images beside its forward-pass floor."""
    import tensorflow as tf

    import lrpgraph
    from lrpgraph import evaluation as E
    from lrpgraph.evaluation import synthetic
    from lrpgraph.assets import load_shapes_model
    from lrpgraph.evaluation import axiomatic as AX, faithfulness_more as FM, robustness as RB

    model = load_shapes_model()
    prepared = lrpgraph.prepare(model)
    n = args.floor_n
    x, y, _ = synthetic.single_object_dataset(n, seed=12345)
    R = lrpgraph.create_analyzer("lrp.epsilon", prepared).analyze(x, target=y)
    bs = args.batch_size
    floor = floor_fn(prepared, bs)
    # name -> (call, copies per image)
    cases = {
        "region_perturbation (K=49, 8x8)": (lambda: E.region_perturbation(prepared, x, R, y, patch=8, steps=49,
                                                                          batch_size=bs), 50),
        "faithfulness_estimate (K=49)": (lambda: FM.faithfulness_estimate(prepared, x, R, y, steps=49,
                                                                         batch_size=bs), 49),
        "monotonicity (K=49)": (lambda: FM.monotonicity(prepared, x, R, y, steps=49, batch_size=bs), 50),
        "monotonicity_correlation (K=10, 5 draws)": (lambda: FM.monotonicity_correlation(
            prepared, x, R, y, steps=10, n_samples=5, batch_size=bs), 50),
        "sensitivity_n (5 sizes x 10 subsets)": (lambda: FM.sensitivity_n(prepared, x, R, y, n_subsets=10,
                                                                           ns=[1, 30, 300, 3000, 9000],
                                                                           batch_size=bs), 50),
        "infidelity (n=50)": (lambda: FM.infidelity(prepared, x, R, y, n=50, batch_size=bs), 50),
        "irof (SLIC, 50 segments)": (lambda: FM.irof(prepared, x, R, y, n_segments=50, batch_size=bs), None),
        "road (10 percentages)": (lambda: FM.road(prepared, x, R, y, percentages=np.arange(5, 100, 10),
                                                  batch_size=bs), 10),
        "non_sensitivity (256 features/step, 2 draws)": (lambda: AX.non_sensitivity(
            prepared, x, R, y, features_in_step=256, n_samples=2, batch_size=bs), 96),
    }
    print(f"\n{n} shapes images (64x64x3), chunks of {bs}; floor = the compiled forward of the same number of "
          "copies already in memory, same chunks")
    print("| metric | copies | metric s | floor s | wall ratio | metric CPU s | floor CPU s | CPU ratio | "
          "target <= 1.3 (CPU) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")

    def row(name, m, times):
        wm, wf, cm, cf = times
        r = cm / cf
        print(f"| {name} | {m} | {wm:.3f} | {wf:.3f} | {wm / wf:.2f} | {cm:.2f} | {cf:.2f} | {r:.2f} | "
              f"{'met' if r <= 1.3 else 'NOT met'} |", flush=True)

    for name, (call, per) in cases.items():
        if args.only and not name.startswith(args.only):
            continue
        if per is None:  # IROF: as many copies as segments + 1, per image
            per = int(np.max(call().n_segments)) + 1
        m = n * per
        copies = tf.constant(np.resize(x, (m,) + x.shape[1:]))
        tg = tf.constant(np.resize(y.astype(np.int32), (m,)))
        row(name, m, _paired_times(call, lambda: floor(copies, tg).numpy(), args.repeats))
    if not args.only or "road".startswith(args.only) or args.only.startswith("road"):
        # ROAD in its paper's CIFAR-10 setting: torchvision's ResNet-18 on 32x32 images
        small = lrpgraph.prepare(resnet18_cifar())
        xs = np.random.default_rng(0).uniform(0, 1, (n, 32, 32, 3)).astype("float32")
        ys = small.logits(xs).argmax(-1)
        rs = lrpgraph.create_analyzer("lrp.epsilon", small).analyze(xs, target=ys)
        m = n * 10
        copies = tf.constant(np.resize(xs, (m,) + xs.shape[1:]))
        tg = tf.constant(np.resize(ys.astype(np.int32), (m,)))
        small_floor = floor_fn(small, bs)
        row("road, the ROAD paper's setting: ResNet-18 at 32x32 (random weights, 10 percentages)", m,
            _paired_times(lambda: FM.road(small, xs, rs, ys, percentages=np.arange(5, 100, 10), batch_size=bs),
                          lambda: small_floor(copies, tg).numpy(), args.repeats))
    if args.only and not "max_sensitivity".startswith(args.only):
        return
    # robustness: against the batched explanations they need
    an = lrpgraph.create_analyzer("lrp.epsilon", prepared)
    k = 10
    pert = np.resize(x, (n * k,) + x.shape[1:])
    tk = np.repeat(y, k)
    row(f"max_sensitivity (n={k}, lrp.epsilon) vs `analyze` of its copies", n * k,
        _paired_times(lambda: RB.max_sensitivity(prepared, x, R, y, method=an, n=k, batch_size=bs),
                      lambda: an.analyze(pert, target=tk, batch_size=bs), args.repeats))


# Quantus 0.6.0's metrics with the settings that match lrpgraph's (benchmarks/bench_quantus.py reads the names)
QUANTUS_CASES = ("region_perturbation", "selectivity", "faithfulness_estimate", "faithfulness_correlation",
                 "monotonicity", "sparseness", "complexity", "pointing_game", "relevance_mass")


def export_quantus(args):
    """The shared case for benchmarks/bench_quantus.py: model weights, data, maps, and
    lrpgraph's per-sample numbers (and median seconds) for :data:`QUANTUS_CASES`."""
    import lrpgraph
    from lrpgraph.assets import load_shapes_model
    from lrpgraph.evaluation import complexity as CX, faithfulness_more as FM, localisation_metrics as LM
    from lrpgraph.evaluation import faithfulness_correlation, region_perturbation, synthetic

    model = load_shapes_model()
    prepared = lrpgraph.prepare(model)
    n = args.floor_n
    x, y, masks = synthetic.single_object_dataset(n, seed=12345)
    R = lrpgraph.create_analyzer("lrp.epsilon", prepared).analyze(x, target=y)
    f_all = int(np.prod(x.shape[1:]))
    bs = args.batch_size
    calls = {
        # Quantus: y0 - y_k after k of 49 8x8 patches (MoRF, baseline 0); lrpgraph: the curve's drops
        "region_perturbation": lambda: (lambda c: c[:, :1] - c[:, 1:])(region_perturbation(
            prepared, x, R, y, patch=8, steps=49, baseline=0.0, batch_size=bs).curve),
        # Quantus: y_k after k of all 64 patches (MoRF, baseline 0)
        "selectivity": lambda: region_perturbation(prepared, x, R, y, patch=8, steps=64, baseline=0.0,
                                                   batch_size=bs).curve[:, 1:],
        # Quantus: features_in_step = 256 (48 groups), baseline 0, logits
        "faithfulness_estimate": lambda: FM.faithfulness_estimate(prepared, x, R, y, steps=f_all // 256,
                                                                  baseline=0.0, batch_size=bs).score,
        # random subsets: compared by time only (Quantus draws its own); 100 subsets of 224 features, baseline 0
        "faithfulness_correlation": lambda: faithfulness_correlation(prepared, x, R, y, n=100, subset_size=224,
                                                                     baseline=0.0, batch_size=bs).correlation,
        # Quantus inserts the baseline again (flat curve, see docs/evaluation.md): time only
        "monotonicity": lambda: FM.monotonicity(prepared, x, R, y, steps=f_all // 256, baseline=0.0,
                                                batch_size=bs).score,
        "sparseness": lambda: CX.sparseness(prepared, x, R, y).score,
        "complexity": lambda: CX.complexity(prepared, x, R, y).score,
        "pointing_game": lambda: LM.pointing_game_metric(prepared, x, R, y, masks=masks).score,
        "relevance_mass": lambda: LM.relevance_mass_metric(prepared, x, R, y, masks=masks).score,
    }
    out = dict(x=x, y=y.astype(np.int64), masks=masks, maps=np.asarray(R, np.float32))
    for layer in model.layers:
        for j, w in enumerate(layer.get_weights()):
            out[f"w/{layer.name}/{j}"] = w
    for name in QUANTUS_CASES:
        calls[name]()  # trace
        times, res = [], None
        for _ in range(args.repeats):
            t = time.perf_counter()
            res = calls[name]()
            times.append(time.perf_counter() - t)
        out[f"lrpgraph/{name}"] = np.asarray(res, np.float64)
        out[f"seconds/{name}"] = np.float64(np.median(times))
        print(f"lrpgraph {name}: {np.median(times):.3f} s", flush=True)
    np.savez(args.export_quantus, **out)
    print(f"wrote {args.export_quantus}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-vgg", action="store_true")
    p.add_argument("--skip-region", action="store_true")
    p.add_argument("--floor", action="store_true", help="the issue-24 metrics beside their forward-pass floor")
    p.add_argument("--floor-n", type=int, default=16)
    p.add_argument("--only", default=None, help="with --floor: only the rows whose name starts with this")
    p.add_argument("--export-quantus", default=None, metavar="PATH.npz",
                   help="write the case benchmarks/bench_quantus.py compares against Quantus 0.6.0")
    args = p.parse_args()
    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, {platform.machine()}, median of {args.repeats} "
          "(the loop: median of max(1, repeats // 2))")
    print("| what | lrpgraph | s | reference | s | speed-up | target |")
    print("|---|---|---:|---|---:|---:|---|")
    if not args.skip_region:
        bench_region_perturbation(args)
    if not args.skip_vgg:
        bench_vgg_randomisation(args)
    if args.floor:
        bench_floor(args)
    if args.export_quantus:
        export_quantus(args)


if __name__ == "__main__":
    main()
