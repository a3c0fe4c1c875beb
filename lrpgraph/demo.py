"""``lrpgraph demo`` / ``make demo``: the SGLRP paper's comparison on the shipped
shapes model, offline.

1. One fixed two-object scene (:data:`DEMO_SCENE`) is explained by every method of
   :data:`lrpgraph.evaluation.two_object.PAPER_METHODS`, once per object as the target; the
   grid (rows: target A, target B; columns: input + methods; the SGLRP code's
   heatmap convention) is written to ``<out>/demo_grid.png``.
2. The benchmark metrics on the first ``n_scenes`` scenes of the benchmark's
   scene set (:data:`BENCHMARK_SEED`) are printed as a markdown table and written
   to ``<out>/demo_metrics.md``.
3. The AOPC table of the same methods (:func:`demo_aopc`) goes to ``<out>/demo_aopc.md``.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

from . import evaluation, viz
from .assets import SHAPES_CLASS_NAMES, SHAPES_INPUT_RANGE, load_shapes_model
from .evaluation import synthetic, two_object

__all__ = ["run_demo", "demo_scene", "method_grid", "demo_aopc", "BENCHMARK_SEED", "DEMO_SCENE"]

# scenes of the benchmark (docs/benchmark_two_object.md, tests/test_two_object.py): a seed
# disjoint from the training script's (train 0, test 1000, scenes 2000)
BENCHMARK_SEED = 12345
# the demo's scene: (seed, index) into synthetic.two_object_scenes
DEMO_SCENE = (12345, 0)


def demo_scene(seed=DEMO_SCENE[0], index=DEMO_SCENE[1], size=64):
    """``(x (1, H, W, 3), classes (2,), masks (2, H, W))`` of one benchmark scene."""
    s = synthetic.two_object_scenes(index + 1, size=size, seed=seed)
    return s["x"][index:index + 1], s["classes"][index], s["masks"][index]


def method_grid(analyzers, x, classes, class_names):
    """Figure: rows = the two objects as targets, columns = input + one per method."""
    maps = {}
    for label, a in analyzers.items():
        maps[label] = np.asarray(a.analyze(x, target=np.asarray([classes]))).reshape((2,) + x.shape[1:3] + (-1,))
    rows = [f"target: {class_names[c]}" for c in classes]
    return viz.heatmap_grid(maps, images=np.repeat(x, 2, axis=0), row_titles=rows, cell_size=1.6), maps


def run_demo(out_dir="out", n_scenes=24, out=None, model=None):
    """Write the method grid and the metrics table; returns ``{"grid": path, "table":
    path, "markdown": str, "seconds": float}``."""
    out = sys.stdout if out is None else out
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_shapes_model() if model is None else model
    low, high = SHAPES_INPUT_RANGE
    print(f"lrpgraph demo: shapes model ({model.count_params()} parameters), classes "
          f"{', '.join(SHAPES_CLASS_NAMES)}", file=out)
    analyzers = two_object.paper_methods(model, low=low, high=high)

    x, classes, _ = demo_scene()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fig, _ = method_grid(analyzers, x, classes, SHAPES_CLASS_NAMES)
    grid = viz.save_figure(fig, out_dir / "demo_grid.png", dpi=110)
    print(f"scene {DEMO_SCENE[1]} of seed {DEMO_SCENE[0]}: objects {SHAPES_CLASS_NAMES[classes[0]]} and "
          f"{SHAPES_CLASS_NAMES[classes[1]]}; grid of {len(analyzers)} methods x 2 targets", file=out)

    scenes = synthetic.two_object_scenes(n_scenes, seed=BENCHMARK_SEED)
    result = two_object.evaluate(analyzers, scenes["x"], scenes["classes"], scenes["masks"])
    md = two_object.to_markdown(result)
    header = (f"Two-object benchmark, {n_scenes} scenes (seed {BENCHMARK_SEED}) x 2 targets; the model ranks "
              f"both objects as its top 2 in {result.top2.mean():.0%} of the scenes; target logit <= 0 in "
              f"{(result.target_logits <= 0).mean():.0%} of the (scene, target) pairs.")
    print("\n" + header + "\n\n" + md + "\n", file=out)
    table = out_dir / "demo_metrics.md"
    table.write_text(f"# lrpgraph demo\n\n{header}\n\n{md}\n\nColumns: see lrpgraph/two_object.py.\n")
    aopc = demo_aopc(model, out_dir, out)  # the AOPC table (docs/evaluation.md)
    dt = time.perf_counter() - t0
    print(f"wrote {grid.resolve()}", file=out)
    print(f"wrote {table.resolve()}", file=out)
    print(f"done in {dt:.1f} s", file=out)
    return {"grid": grid, "table": table, "markdown": md, "seconds": dt, "result": result, "aopc": aopc}


def demo_aopc(model, out_dir, out, n=16, patch=4, steps=49, seed=12345):
    """``make demo``'s AOPC table: the benchmark's methods (lrpgraph.evaluation.two_object.PAPER_METHODS)
    on ``n`` single-object shapes images, region perturbation with ``patch`` x ``patch``
    regions, ``steps`` steps and the uniform baseline, MoRF and LeRF (docs/evaluation.md's setting).  Prints the Markdown table and
    writes ``<out_dir>/demo_aopc.md``; returns the :class:`EvaluationTable`."""
    x, y, _ = synthetic.single_object_dataset(n, size=int(model.inputs[0].shape[1]), seed=seed)
    methods = {label: (name, params) for label, (name, params) in two_object.PAPER_METHODS.items()}
    table = evaluation.evaluate(model, x, methods, y, ["aopc"], params={"aopc": {"patch": patch, "steps": steps}},
                                input_range=(0.0, 1.0))
    md = table.to_markdown()
    header = (f"AOPC (Samek et al. 2017), {n} single-object images (seed {seed}), {patch}x{patch} regions, K = {steps} "
              "steps, uniform baseline, target logit; mean ± std (docs/evaluation.md).")
    print("\n" + header + "\n\n" + md + "\n", file=out)
    path = Path(out_dir) / "demo_aopc.md"
    path.write_text(f"# lrpgraph demo: AOPC\n\n{header}\n\n{md}\n")
    print(f"wrote {path.resolve()}", file=out)
    return table
