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

The maps of a dataset store (``lrpgraph explain-dataset``)::

    lrpgraph evaluate --store maps.zarr --data SOURCE --model shapes --metrics aopc,deletion,sparseness

scores the stored maps block by block (:func:`lrpgraph.data.evaluate.evaluate_store`)
and adds the per-sample columns ``eval_<metric>`` to the store; ``--data`` is the
source the store was made from (checked against it).  Rerunning after Ctrl-C
scores only the missing blocks; ``--overwrite`` computes the columns again.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from .. import evaluation
from ..data.evaluate import evaluate_store
from ..data.store import StoreError
from ..evaluation import synthetic
from ..errors import InputError
from ..evaluation import plots
from ..io import IMAGE_EXTENSIONS, build_method, input_bounds, load_image
from .options import add_model_options, load_model, parse_keyed, parse_target

__all__ = ["add_parsers", "cmd_evaluate", "DEFAULT_METHODS", "DEFAULT_METRICS"]

DEFAULT_METHODS = "lrp.epsilon,lrp.z_plus,sglrp,gradient,input_t_gradient,integrated_gradients,gradcam"
DEFAULT_METRICS = "aopc,deletion,insertion,faithfulness"


def add_parsers(sub):
    """Add the ``evaluate`` subcommand to the ``lrpgraph`` subparsers ``sub``."""
    sp = sub.add_parser("evaluate", help="faithfulness metrics (AOPC, deletion/insertion, faithfulness "
                                         "correlation, randomisation) of several methods: table and figures",
                        description=__doc__.split("::")[0].strip() + " See docs/evaluation.md.")
    sp.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated method names (default {DEFAULT_METHODS})")
    sp.add_argument("--metrics", default=DEFAULT_METRICS,
                    help="comma-separated: aopc (= aopc_morf,aopc_lerf), aopc_morf, aopc_lerf, deletion, insertion, "
                         f"faithfulness, randomisation, all (default {DEFAULT_METRICS})")
    src = sp.add_mutually_exclusive_group()
    src.add_argument("--data", default=None, help="a .npz (x, optional y), a .npy of images or a folder of images")
    src.add_argument("--benchmark", default=None, choices=["shapes"],
                     help="single-object images of the shipped shapes data (the default without --data)")
    sp.add_argument("--store", default=None,
                    help="score the maps of this dataset store (lrpgraph explain-dataset) instead of explaining: "
                         "--data is the source it was made from; the numbers are added to the store as columns "
                         "eval_<metric> (--methods, --n, --target are the store's)")
    sp.add_argument("--overwrite", action="store_true", help="--store: compute the requested columns again")
    sp.add_argument("--n", type=int, default=32, help="number of images (default 32; --data: the first N)")
    sp.add_argument("--seed", type=int, default=12345, help="seed of the --benchmark images (default 12345)")
    sp.add_argument("--target", default=None, help="class index or name for every image, 'label' or 'predicted' "
                                                   "(default: the labels of the data if any, else the predicted "
                                                   "class)")
    sp.add_argument("--metric-param", action="append", metavar="METRIC.NAME=VALUE",
                    help="metric parameter, repeatable (e.g. --metric-param aopc.patch=4)")
    sp.add_argument("--method-param", action="append", metavar="METHOD:NAME=VALUE",
                    help="method parameter, repeatable (e.g. --method-param integrated_gradients:steps=32)")
    sp.add_argument("--batch-size", type=int, default=256, help="perturbed images per compiled step (default 256)")
    sp.add_argument("--out", default="out/evaluation", help="output folder (default ./out/evaluation)")
    add_model_options(sp, size=False)
    sp.set_defaults(fn=cmd_evaluate)
    return sub


def parse_metric_params(items):
    """``["aopc.patch=4", ...]`` -> ``{"aopc": {"patch": 4}}``."""
    return parse_keyed(items, "--metric-param", ".", "METRIC.NAME=VALUE (e.g. aopc.patch=4)")


def parse_method_params(items):
    """``["gradcam:layer=x", ...]`` -> ``{"gradcam": {"layer": "x"}}``."""
    return parse_keyed(items, "--method-param", ":", "METHOD:NAME=VALUE (e.g. gradcam:layer=conv2)")


def load_data(args, lm, out):
    """(x, targets or None, description)."""
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
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)[:args.n]
        if not files:
            raise InputError(f"--data {path}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
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


def _store_source(data):
    """The data of ``--data`` for a store: a folder path, ``(x, y)`` or ``x`` of a .npz / .npy."""
    path = Path(data)
    if path.is_dir():
        return str(path)
    if not path.is_file():
        raise InputError(f"--data {path}: not found")
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".npz":
        with np.load(path) as d:
            if "x" not in d:
                raise InputError(f"--data {path}: the .npz has no array 'x' (keys: {list(d.keys())})")
            y = next((d[k] for k in ("y", "labels") if k in d), None)
            return d["x"] if y is None else (d["x"], y)
    raise InputError(f"--data {path}: expected a .npz, a .npy or a folder of images")


def _metrics(args):
    """(metric names, metric parameters) from --metrics and --metric-param."""
    try:
        metrics = evaluation.expand_metrics(args.metrics)
    except ValueError as e:
        raise InputError(str(e)) from None
    return metrics, parse_metric_params(args.metric_param)


def cmd_evaluate_store(args, out):
    """``lrpgraph evaluate --store``: the metrics of a store's maps, into the store."""
    if args.data is None:
        raise InputError("--store needs --data: the source the store was made from (its inputs are not stored)")
    t0 = time.perf_counter()
    lm = load_model(args, out)
    metrics, mparams = _metrics(args)
    print(f"lrpgraph evaluate: the maps of {args.store}, model {lm.name}, data {args.data}; metrics "
          f"{', '.join(metrics)}", file=out, flush=True)
    try:
        table = evaluate_store(args.store, lm.model, _store_source(args.data), metrics, params=mparams,
                               batch_size=args.batch_size, overwrite=args.overwrite, preprocess=lm.preprocess)
    except (TypeError, ValueError, StoreError) as e:
        raise InputError(str(e)) from None
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = table.to_markdown()
    header = (f"The maps of {args.store} ({table.params['n']} samples), model {lm.name}; metrics "
              f"{', '.join(metrics)}" + (f", parameters {mparams}" if mparams else "") + "; mean ± std over the "
              f"samples; per sample: the store's columns {', '.join('eval_' + m for m in table.metric_columns)}.")
    (out_dir / "evaluation.md").write_text(f"# lrpgraph evaluate\n\n{header}\n\n{md}\n")
    table.to_csv(out_dir / "evaluation.csv")
    table.per_sample_csv(out_dir / "evaluation_per_sample.csv")
    print("\n" + header + "\n\n" + md + "\n", file=out)
    for p in ["evaluation.md", "evaluation.csv", "evaluation_per_sample.csv"]:
        print(f"wrote {(out_dir / p).resolve()}", file=out)
    print(f"done in {time.perf_counter() - t0:.1f} s ({len(table.params['computed'])} blocks scored)", file=out)
    return 0


def cmd_evaluate(args, out):
    if args.store is not None:
        return cmd_evaluate_store(args, out)
    if args.n < 1:
        raise InputError("--n must be >= 1")
    t0 = time.perf_counter()
    lm = load_model(args, out)
    metrics, mparams = _metrics(args)
    meth_params = parse_method_params(args.method_param)
    x, y, what = load_data(args, lm, out)
    target = parse_target(args.target, lm, keywords=("label", "predicted"))
    if target == "label" and y is None:
        raise InputError(f"--target label: {what} has no labels; pass a class, or predicted")
    if target == "label" or args.target is None:  # the default: the labels where the data has them
        targets = y
    else:
        targets = None if target is None else np.full(len(x), target)
    low, high = input_bounds(lm.preprocess)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:  # validate names and parameters before the long run
        build_method(m, lm.model, low, high, meth_params.get(m))
    unknown = [m for m in meth_params if m not in methods]
    if unknown:
        raise InputError(f"--method-param for {unknown}, which are not in --methods")
    print(f"lrpgraph evaluate: model {lm.name}{' [' + lm.weights_note + ']' if lm.weights_note else ''}, {what}; "
          f"{len(methods)} methods x metrics {', '.join(metrics)}", file=out)
    as_is = "" if args.data is not None and Path(args.data).is_dir() else \
        " (the images are used as they are: the preprocessing sets the bounds)"
    print(f"inputs: {lm.describe_inputs()}{as_is}", file=out)

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
