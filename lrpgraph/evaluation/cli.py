"""``lrpgraph evaluate``: several methods x several faithfulness metrics on one model.

::

    lrpgraph evaluate --model shapes --methods lrp.epsilon,gradient,gradcam \\
        --metrics aopc,deletion,insertion,faithfulness,randomisation --benchmark shapes --n 32 --out out/eval

Writes ``evaluation.md`` (the table, mean +- std over the images, and the figures),
``evaluation.csv`` (the columns), ``evaluation_per_sample.csv`` (one row per
method and image) and the PNG figures of :mod:`lrpgraph.evaluation.plots` to
``--out``.  Data: ``--benchmark shapes`` (single-object images of the shipped
shapes data, seed ``--seed``; targets = the true classes) or ``--data SOURCE``
(a ``.npz`` with ``x`` and optionally ``y``/``targets``, a ``.npy`` of images,
or a folder of image files read like ``lrpgraph explain`` reads them).  Metric
parameters: ``--metric-param aopc.patch=4`` (``aopc`` applies to both orders);
method parameters: ``--method-param gradcam:layer=block3_conv2``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["add_parser", "cmd_evaluate", "DEFAULT_METHODS", "DEFAULT_METRICS", "demo_aopc"]

DEFAULT_METHODS = "lrp.epsilon,lrp.z_plus,sglrp,gradient,input_t_gradient,integrated_gradients,gradcam"
DEFAULT_METRICS = "aopc,deletion,insertion,faithfulness"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def add_parser(sub, model_args=None):
    """Add the ``evaluate`` subcommand to an argparse ``sub``-parsers object."""
    sp = sub.add_parser("evaluate", help="faithfulness metrics (AOPC, deletion/insertion, faithfulness "
                                         "correlation, randomisation) of several methods: table and figures",
                        description=__doc__.split("::")[0].strip() + " See docs/evaluation.md.")
    sp.add_argument("--model", default="shapes", help="a .keras file, 'shapes' (default) or a keras.applications name")
    sp.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated method names (default {DEFAULT_METHODS})")
    sp.add_argument("--metrics", default=DEFAULT_METRICS,
                    help="comma-separated: aopc (= aopc_morf,aopc_lerf), aopc_morf, aopc_lerf, deletion, insertion, "
                         f"faithfulness, randomisation, all (default {DEFAULT_METRICS})")
    src = sp.add_mutually_exclusive_group()
    src.add_argument("--data", default=None, help="a .npz (x, optional y), a .npy of images or a folder of images")
    src.add_argument("--benchmark", default=None, choices=["shapes"],
                     help="single-object images of the shipped shapes data (the default without --data)")
    sp.add_argument("--n", type=int, default=32, help="number of images (default 32; --data: the first N)")
    sp.add_argument("--seed", type=int, default=12345, help="seed of the --benchmark images (default 12345)")
    sp.add_argument("--target", default=None, help="class index for every image (default: the labels of the data "
                                                   "if any, else the predicted class)")
    sp.add_argument("--metric-param", action="append", metavar="METRIC.NAME=VALUE",
                    help="metric parameter, repeatable (e.g. --metric-param aopc.patch=4)")
    sp.add_argument("--method-param", action="append", metavar="METHOD:NAME=VALUE",
                    help="method parameter, repeatable (e.g. --method-param integrated_gradients:steps=32)")
    sp.add_argument("--batch-size", type=int, default=256, help="perturbed images per compiled step (default 256)")
    sp.add_argument("--preprocess", default="auto", help="image folders: as in `lrpgraph explain` (default auto)")
    sp.add_argument("--out", default="out/evaluation", help="output folder (default ./out/evaluation)")
    if model_args is not None:
        model_args(sp)
    else:
        sp.add_argument("--weights", default="imagenet")
        sp.add_argument("--unsafe", action="store_true")
    sp.set_defaults(fn=cmd_evaluate)
    return sp


def _parse_keyed(items, flag, sep, example):
    """``["a<sep>b=v", ...]`` -> ``{"a": {"b": v}}``."""
    from ..io import InputError, parse_value

    out = {}
    for item in items or []:
        head, eq, value = item.partition("=")
        outer, mark, key = head.partition(sep)
        if not eq or not mark or not outer or not key:
            raise InputError(f"{flag} {item!r}: expected {example}")
        out.setdefault(outer.strip(), {})[key.strip()] = parse_value(value)
    return out


def parse_metric_params(items):
    """``["aopc.patch=4", ...]`` -> ``{"aopc": {"patch": 4}}``."""
    return _parse_keyed(items, "--metric-param", ".", "METRIC.NAME=VALUE (e.g. aopc.patch=4)")


def parse_method_params(items):
    """``["gradcam:layer=x", ...]`` -> ``{"gradcam": {"layer": "x"}}``."""
    return _parse_keyed(items, "--method-param", ":", "METHOD:NAME=VALUE (e.g. gradcam:layer=conv2)")


def load_data(args, lm, out):
    """(x, targets or None, description)."""
    from . import synthetic
    from ..io import InputError, load_image

    model = lm.model
    if args.data is None:
        shape = tuple(model.inputs[0].shape[1:])
        if len(shape) != 3 or shape[0] != shape[1] or shape[2] != 3:
            raise InputError(f"--benchmark shapes draws square RGB images; {lm.name} takes {shape}: pass --data")
        x, y, _ = synthetic.single_object_dataset(args.n, size=shape[0], seed=args.seed)
        return x, y, f"{args.n} single-object shapes images (seed {args.seed}), targets = true classes"
    path = Path(args.data)
    if not path.exists():
        raise InputError(f"--data {path}: not found")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:args.n]
        if not files:
            raise InputError(f"--data {path}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        shape = tuple(model.inputs[0].shape[1:])
        x = lm.preprocess(np.stack([load_image(p, shape[:2], shape[-1]) for p in files]))
        return x, None, f"{len(files)} images from {path}"
    if path.suffix == ".npy":
        return np.load(path)[:args.n], None, f"the first {args.n} images of {path}"
    if path.suffix == ".npz":
        d = np.load(path)
        if "x" not in d:
            raise InputError(f"--data {path}: the .npz has no array 'x' (keys: {list(d.keys())})")
        y = next((d[k] for k in ("y", "targets", "labels") if k in d), None)
        return d["x"][:args.n], None if y is None else np.asarray(y)[:args.n].astype(np.int64), \
            f"the first {args.n} images of {path}"
    raise InputError(f"--data {path}: expected a .npz, a .npy or a folder of images")


def cmd_evaluate(args, out):
    from .. import evaluation
    from ..io import InputError, build_method, input_bounds, load_model, resolve_target
    from . import plots

    if args.n < 1:
        raise InputError("--n must be >= 1")
    t0 = time.perf_counter()
    lm = load_model(args.model, weights=args.weights, unsafe=args.unsafe,
                    log=lambda msg: print(msg, file=out))
    try:
        metrics = evaluation.expand_metrics(args.metrics)
    except ValueError as e:
        raise InputError(str(e)) from None
    mparams = parse_metric_params(args.metric_param)
    meth_params = parse_method_params(args.method_param)
    x, y, what = load_data(args, lm, out)
    num_classes = int(lm.model.outputs[0].shape[-1])
    target = resolve_target(args.target, lm.class_names, num_classes)
    targets = y if target is None else np.full(len(x), target)
    low, high = input_bounds(lm.preprocess)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:  # validate names and parameters before the long run
        build_method(m, lm.model, low, high, meth_params.get(m))
    unknown = [m for m in meth_params if m not in methods]
    if unknown:
        raise InputError(f"--method-param for {unknown}, which are not in --methods")
    print(f"lrpgraph evaluate: model {lm.name}{' [' + lm.weights_note + ']' if lm.weights_note else ''}, {what}; "
          f"{len(methods)} methods x metrics {', '.join(metrics)}", file=out)

    def progress(s):
        print(f"  {time.perf_counter() - t0:7.1f} s  {s}", file=sys.stderr)

    try:
        table = evaluation.evaluate(lm.model, x, {m: (m, meth_params.get(m, {})) for m in methods}, targets,
                                    metrics, params=mparams, input_range=(low, high), batch_size=args.batch_size,
                                    progress=progress)
    except (TypeError, ValueError) as e:
        raise InputError(str(e)) from None
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = plots.save_figures(table, out_dir)
    md = table.to_markdown()
    header = (f"Model {lm.name}, {what}; metrics {', '.join(metrics)}"
              + (f", parameters {mparams}" if mparams else "") + "; mean ± std over the images.")
    text = [f"# lrpgraph evaluate\n\n{header}\n\n{md}\n", "Better: (higher) / (lower); definitions: docs/evaluation.md.\n"]
    text += [f"![{p.stem}]({p.name})\n" for p in figures]
    (out_dir / "evaluation.md").write_text("\n".join(text))
    table.to_csv(out_dir / "evaluation.csv")
    table.per_sample_csv(out_dir / "evaluation_per_sample.csv")
    print("\n" + header + "\n\n" + md + "\n", file=out)
    for p in ["evaluation.md", "evaluation.csv", "evaluation_per_sample.csv"] + [f.name for f in figures]:
        print(f"wrote {(out_dir / p).resolve()}", file=out)
    print(f"done in {time.perf_counter() - t0:.1f} s", file=out)
    return 0


def demo_aopc(model, out_dir, out, n=16, patch=4, steps=49, seed=12345):
    """``make demo``'s AOPC table: the benchmark's methods (lrpgraph.evaluation.two_object.PAPER_METHODS)
    on ``n`` single-object shapes images, region perturbation with ``patch`` x ``patch``
    regions, ``steps`` steps and the uniform baseline, MoRF and LeRF (docs/evaluation.md's setting).  Prints the Markdown table and
    writes ``<out_dir>/demo_aopc.md``; returns the :class:`EvaluationTable`."""
    from .. import evaluation
    from . import two_object, synthetic

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
