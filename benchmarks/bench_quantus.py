"""Quantus 0.6.0 beside lrpgraph on the same model, images and maps (issue 24).

This script runs in its OWN environment with Keras 2 (Quantus 0.6.0 needs
TensorFlow < 2.16); it does NOT import lrpgraph.  The lrpgraph side writes the
shared case (the shapes model's weights, 16 images, labels, ground-truth masks,
``lrp.epsilon`` maps, and lrpgraph's per-sample numbers and median seconds):

    .venv/bin/python benchmarks/bench_evaluation.py --skip-region --skip-vgg --export-quantus /tmp/quantus_case.npz
    python3 -m venv ../quantus-venv
    ../quantus-venv/bin/pip install tensorflow-cpu==2.15.1 quantus==0.6.0
    ../quantus-venv/bin/python benchmarks/bench_quantus.py /tmp/quantus_case.npz [--repeats 3]

Here the same CNN is rebuilt in tf.keras 2 from those weights, each metric of
``QUANTUS`` is run with the settings lrpgraph used (``bench_evaluation.QUANTUS_CASES``),
and a markdown row per metric gives the largest absolute difference of the
per-sample numbers (or why they cannot agree) and both times (median of --repeats
after a warm-up; Quantus's own batching, batch_size 64 >= the 16 images).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def build_model(case):
    """The shipped shapes CNN (docs: lrpgraph.assets.load_shapes_model) in tf.keras 2."""
    import tensorflow as tf

    L = tf.keras.layers
    layers = [L.Conv2D(16, 3, padding="same", activation="relu", name="block1_conv1"),
              L.Conv2D(16, 3, padding="same", activation="relu", name="block1_conv2"),
              L.MaxPooling2D(2, name="block1_pool"),
              L.Conv2D(32, 3, padding="same", activation="relu", name="block2_conv1"),
              L.Conv2D(32, 3, padding="same", activation="relu", name="block2_conv2"),
              L.MaxPooling2D(2, name="block2_pool"),
              L.Conv2D(64, 3, padding="same", activation="relu", name="block3_conv1"),
              L.Conv2D(64, 3, padding="same", activation="relu", name="block3_conv2"),
              L.MaxPooling2D(8, name="block3_pool"),
              L.Flatten(name="flatten"),
              L.Dense(64, activation="relu", name="fc1"),
              L.Dropout(0.0, name="dropout"),
              L.Dense(6, activation="softmax", name="predictions")]
    model = tf.keras.Sequential([tf.keras.Input(case["x"].shape[1:])] + layers)
    for layer in model.layers:
        ws = [case[f"w/{layer.name}/{j}"] for j in range(len(layer.get_weights()))]
        if ws:
            layer.set_weights(ws)
    return model


def quantus_metrics(f_all):
    import quantus as Q

    common = dict(abs=False, normalise=False, disable_warnings=True, display_progressbar=False)
    return {
        "region_perturbation": (Q.RegionPerturbation(patch_size=8, regions_evaluation=49, order="morf",
                                                     perturb_baseline=0.0, **common), "curve"),
        "selectivity": (Q.Selectivity(patch_size=8, perturb_baseline=0.0, **common), "curve"),
        "faithfulness_estimate": (Q.FaithfulnessEstimate(features_in_step=256, perturb_baseline=0.0, **common),
                                  "score"),
        "faithfulness_correlation": (Q.FaithfulnessCorrelation(nr_runs=100, subset_size=224, perturb_baseline=0.0,
                                                               return_aggregate=False, **common),
                                     "random subsets: Quantus draws its own (time only)"),
        "monotonicity": (Q.Monotonicity(features_in_step=256, perturb_baseline=0.0, **common),
                         "Quantus inserts the baseline again, its curve is flat (time only)"),
        "sparseness": (Q.Sparseness(abs=True, normalise=False, disable_warnings=True), "score"),
        "complexity": (Q.Complexity(abs=True, normalise=False, disable_warnings=True), "score"),
        "pointing_game": (Q.PointingGame(abs=False, normalise=False, disable_warnings=True), "score"),
        "relevance_mass": (Q.RelevanceMassAccuracy(abs=False, normalise=False, disable_warnings=True), "score"),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case", help="the .npz written by bench_evaluation.py --export-quantus")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    import quantus
    import tensorflow as tf

    case = dict(np.load(args.case))
    model = build_model(case)
    x, y, maps, masks = case["x"], case["y"], case["maps"], case["masks"]
    # Quantus transposes x_batch to channel-first itself (channel_first=False) but not the maps or masks
    a = np.ascontiguousarray(maps.transpose(0, 3, 1, 2))
    # Quantus's localisation metrics take (N, 1, H, W) masks but flatten the maps per channel x pixel: with
    # 3-channel maps they fail (shapes (16, 12288) and (16, 4096)); they get the maps summed over the channels,
    # which is what lrpgraph's localisation metrics score
    s = masks[:, None].astype(np.float32)
    a1 = np.ascontiguousarray(maps.sum(-1)[:, None])
    print(f"Quantus {quantus.__version__}, TensorFlow {tf.__version__}; {len(x)} images {x.shape[1:]}, "
          f"median of {args.repeats}")
    print("| metric | per-sample numbers | max abs difference | Quantus s | lrpgraph s | Quantus / lrpgraph |")
    print("|---|---|---:|---:|---:|---:|")
    for name, (metric, kind) in quantus_metrics(int(np.prod(x.shape[1:]))).items():
        kw = dict(model=model, x_batch=x, y_batch=y, a_batch=a, channel_first=False, softmax=False,
                  batch_size=64)
        if name in ("pointing_game", "relevance_mass"):
            # relevance mass: Arras et al. (and lrpgraph) score the positive relevance; Quantus's sum(R in mask) /
            # sum(R) is that on R+ (its default abs=True would score |R|)
            kw.update(s_batch=s, a_batch=a1 if name == "pointing_game" else np.maximum(a1, 0))
        try:
            metric(**kw)  # warm-up
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                res = metric(**kw)
                times.append(time.perf_counter() - t)
        except Exception as e:  # noqa: BLE001 - a Quantus failure is a result here
            print(f"| {name} | Quantus fails: {type(e).__name__}: {str(e)[:120]} | - | - | "
                  f"{float(case[f'seconds/{name}']):.3f} | - |", flush=True)
            continue
        ours = case[f"lrpgraph/{name}"]
        tq, tl = float(np.median(times)), float(case[f"seconds/{name}"])
        if kind in ("curve", "score"):
            theirs = np.asarray(res, np.float64).reshape(ours.shape)
            diff = f"{np.nanmax(np.abs(theirs - ours)):.2g}"
            what = "curves" if kind == "curve" else "scores"
        else:
            diff, what = "-", kind
        print(f"| {name} | {what} | {diff} | {tq:.3f} | {tl:.3f} | {tq / tl:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
