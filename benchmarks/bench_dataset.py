"""explain_dataset benchmarks (issue 12): pipeline efficiency and streaming memory.

    python benchmarks/bench_dataset.py efficiency               # VGG16 (weights=None) 224x224, batch 8, lrp.epsilon
    python benchmarks/bench_dataset.py efficiency --model shapes --images 256 --batch 32
    python benchmarks/bench_dataset.py memory                   # peak RSS, 500 vs 2000 images (shapes model)

efficiency: a folder of JPEGs (256x256, resized to the model's input by the
loader) is explained twice per round, in alternating order: (a) ``analyze`` on
the same images decoded and preprocessed beforehand and held in memory, one call
per batch (the loop a user writes today; decoding not timed), and (b)
``explain_dataset`` from the folder into a fresh store, end to end (listing,
parallel decoding, preprocessing, analysis, top-k, writing each block, one-off
setup: weights fingerprint and a one-sample shape probe).  The ratio is the
throughput of (b) over (a), median over rounds; the bar is >= 0.9.  "steady"
leaves out (b)'s one-off setup: the time from the first block written to the
last, against (a)'s time for the same number of blocks.  "CPU time" compares the
process CPU seconds of (a) and (b) (all threads): on a shared machine whose load
changes from one round to the next it is the steadier measure of the extra work.

memory: for each image count, a fresh Python process explains a folder of that
many JPEGs into a store and reports its peak RSS (``ru_maxrss``); the bar is the
largest count within 10% of the smallest.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def make_folder(folder, n, size, seed=0):
    """``n`` JPEGs of ``size`` x ``size`` in two class subfolders: smooth random colour fields."""
    from PIL import Image
    from skimage import transform

    rng = np.random.default_rng(seed)
    for i in range(n):
        d = Path(folder) / f"class{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        small = rng.uniform(0, 255, (8, 8, 3))
        img = transform.resize(small, (size, size), order=3, mode="reflect") + rng.normal(0, 12, (size, size, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"img{i:05d}.jpg", quality=90)
    return folder


def build(model_name):
    import keras

    if model_name == "vgg16":
        return keras.applications.VGG16(weights=None, classifier_activation=None)
    if model_name == "shapes":
        from lrpgraph.assets import load_shapes_model

        return load_shapes_model()
    return keras.saving.load_model(model_name)


def pixel_preprocess(model_name):
    if model_name == "vgg16":
        from keras.applications import vgg16

        return lambda px: np.asarray(vgg16.preprocess_input(np.array(px, np.float32)), np.float32)
    return lambda px: np.asarray(px, np.float32) / 255.0


def efficiency(args):
    import tensorflow as tf

    import lrpgraph
    from lrpgraph.io import load_image

    model = build(args.model)
    analyzer = lrpgraph.create_analyzer(args.method, model)
    size = tuple(model.inputs[0].shape[1:3])
    tmp = Path(tempfile.mkdtemp(prefix="bench_dataset_"))
    try:
        folder = make_folder(tmp / "images", args.images, 256)
        paths = sorted((tmp / "images").rglob("*.jpg"))
        pre = pixel_preprocess(args.model)  # what explain_dataset's preprocess="auto" picks for these models
        x = np.stack([pre(load_image(p, size)[None])[0] for p in paths]).astype(np.float32)
        batches = [x[s:s + args.batch] for s in range(0, len(x), args.batch)]
        analyzer.explain(batches[0])  # trace once (both modes share the compiled function)
        print(f"model {args.model} {x.shape[1:]}, {args.method}, {len(paths)} JPEGs, batch {args.batch}; "
              f"TensorFlow {tf.__version__}, {platform.machine()}, {os.cpu_count()} CPU threads", flush=True)
        rows = []
        for r in range(args.reps):
            order = ("pre", "ds") if r % 2 == 0 else ("ds", "pre")
            t = {}
            for mode in order:
                c0 = time.process_time()
                if mode == "pre":
                    stamps = []
                    t0 = time.perf_counter()
                    for b in batches:
                        analyzer.explain(b)
                        stamps.append(time.perf_counter())
                    t["pre"] = stamps[-1] - t0
                    t["pre_steady"] = stamps[-1] - stamps[0]
                    t["pre_cpu"] = time.process_time() - c0
                else:
                    store = tmp / f"store{r}"
                    stamps = []
                    t0 = time.perf_counter()
                    lrpgraph.explain_dataset(analyzer, str(folder), str(store), batch_size=args.batch,
                                             target="predicted", progress=False,
                                             on_block=lambda b, att: stamps.append(time.perf_counter()))
                    t["ds"] = time.perf_counter() - t0
                    t["ds_steady"] = stamps[-1] - stamps[0]
                    t["ds_cpu"] = time.process_time() - c0
                    shutil.rmtree(store)
            rows.append(t)
            print(f"round {r}: preloaded analyze {t['pre']:.2f} s ({len(x) / t['pre']:.2f} img/s), explain_dataset "
                  f"{t['ds']:.2f} s ({len(x) / t['ds']:.2f} img/s): ratio {t['pre'] / t['ds']:.3f}, steady "
                  f"{t['pre_steady'] / t['ds_steady']:.3f}; CPU time {t['pre_cpu']:.1f} s vs {t['ds_cpu']:.1f} s: ratio "
                  f"{t['pre_cpu'] / t['ds_cpu']:.3f}", flush=True)
        ratio = statistics.median(t["pre"] / t["ds"] for t in rows)
        steady = statistics.median(t["pre_steady"] / t["ds_steady"] for t in rows)
        cpu = statistics.median(t["pre_cpu"] / t["ds_cpu"] for t in rows)
        print(f"median ratio (explain_dataset / preloaded analyze throughput): end to end {ratio:.3f}, steady "
              f"{steady:.3f}, by CPU time {cpu:.3f}; bar >= 0.9: {'ok' if ratio >= 0.9 else 'MISS'} (wall), "
              f"{'ok' if cpu >= 0.9 else 'MISS'} (CPU time)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def rss_child(folder, store, model_name, method, batch):
    import lrpgraph

    model = build(model_name)
    analyzer = lrpgraph.create_analyzer(method, model)
    t0 = time.perf_counter()
    att = lrpgraph.explain_dataset(analyzer, folder, store, batch_size=batch, target="predicted", progress=False)
    dt = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"RESULT {len(att)} {peak_kib} {dt:.2f}")


def memory(args):
    counts = [int(c) for c in args.counts.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench_dataset_rss_"))
    try:
        size = 256 if args.model == "vgg16" else 64
        make_folder(tmp / "images", max(counts), size)
        results = []
        for n in counts:
            folder = tmp / f"images{n}"
            for k, p in enumerate(sorted((tmp / "images").rglob("*.jpg"))[:n]):
                dst = folder / p.parent.name / p.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(p, dst)
            out = subprocess.run([sys.executable, __file__, "_rss", str(folder), str(tmp / f"store{n}"),
                                  "--model", args.model, "--method", args.method, "--batch", str(args.batch)],
                                 capture_output=True, text=True, check=True)
            line = [s for s in out.stdout.splitlines() if s.startswith("RESULT")][-1].split()
            results.append((int(line[1]), int(line[2]) / 1024, float(line[3])))
            print(f"{int(line[1])} images: peak RSS {int(line[2]) / 1024:.0f} MiB, {float(line[3]):.1f} s", flush=True)
        base, top = results[0][1], results[-1][1]
        print(f"peak RSS {results[-1][0]} vs {results[0][0]} images: {top / base:.3f}x ({top - base:+.0f} MiB); "
              f"bar within 10%: {'ok' if top <= 1.1 * base else 'MISS'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["efficiency", "memory", "_rss"])
    p.add_argument("folder", nargs="?")
    p.add_argument("store", nargs="?")
    p.add_argument("--model", default=None, help="vgg16 (weights=None), shapes, or a .keras path")
    p.add_argument("--method", default="lrp.epsilon")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--counts", default="500,2000")
    args = p.parse_args(argv)
    if args.what == "efficiency":
        args.model = args.model or "vgg16"
        efficiency(args)
    elif args.what == "memory":
        args.model = args.model or "shapes"
        memory(args)
    else:
        rss_child(args.folder, args.store, args.model, args.method, args.batch)


if __name__ == "__main__":
    main()
