"""The concept commands of the ``lrpgraph`` command line (docs/concepts.md).

::

    lrpgraph concepts DATA --model M --layer L|L1,L2|all-conv --out concepts.zarr
        [--method epsilon_plus_flat] [--k 8] [--channels all|3,17] [--target label|predicted|N]
        [--batch-size 32] [--param NAME=VALUE] [--all-devices] [--ray local|ADDRESS --workers N]
    lrpgraph atlas concepts.zarr --channels 3,17 --out atlas.png [--layer L] [--k 4] [--mode relevance|activation]

``concepts`` mines the reference samples (top-k by relevance and by activation)
and the class statistics of every channel of layer L over DATA (a folder of
images with class subfolders, or an .npz with x and y) into a resumable store,
and keeps the receptive-field boxes and what the atlas needs to redraw them
(model, data, method) in ``concepts.npz`` inside the store folder.  ``atlas``
draws the chosen channels' reference samples cropped to their boxes with their
conditional heatmaps.

:func:`add_parsers` adds both subcommands to ``lrpgraph``'s parser.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import matplotlib
import numpy as np
import tensorflow as tf

from ..concepts import ALL_CONV, ConceptExplainer, from_store, reference_samples
from ..concepts_viz import concept_atlas, reference_inputs
from ..data.executors import RayExecutor
from ..data.store import StoreError
from ..errors import InputError
from ..io import input_bounds, load_model, method_params
from ..viz import save_figure
from .options import add_model_options, add_param_option, parse_params

__all__ = ["add_parsers", "cmd_concepts", "cmd_atlas"]

SIDECAR = "concepts.npz"


def _channels(s):
    if s is None or s == "all":
        return "all"
    try:
        return [int(c) for c in s.split(",") if c.strip()]
    except ValueError:
        raise InputError(f"--channels takes 'all' or comma-separated channel indices (3,17), got {s!r}") from None


def _layer(s):
    """--layer: one name, comma-separated names, or all-conv (every conv layer)."""
    if s == "all-conv":
        return ALL_CONV
    names = [v.strip() for v in s.split(",") if v.strip()]
    if not names:
        raise InputError("--layer names no layer; pass a name, names separated by commas, or all-conv")
    return names[0] if len(names) == 1 and "," not in s else names


def _boxes_key(layer):
    return f"boxes__{layer}"


def _target(s):
    if s in ("label", "predicted"):
        return s
    try:
        return int(s)
    except ValueError:
        raise InputError(f"--target must be 'label', 'predicted' or a class index, got {s!r}") from None


def _data(source):
    """An image folder's path, or (x[, y]) from an .npz."""
    p = Path(source)
    if p.is_dir():
        return str(p)
    if p.is_file() and p.suffix == ".npz":
        with np.load(p) as z:
            if "x" not in z:
                raise InputError(f"{p} has no array 'x' (it has {', '.join(z.files)}); save the inputs as x=..., "
                                 "the labels as y=...")
            return (z["x"], z["y"]) if "y" in z else z["x"]
    raise InputError(f"DATA must be a folder of images or an .npz file with x (and y); {p} is neither")


def _actor_model(spec, weights, unsafe):
    """The keras model of ``--model spec`` (the factory each Ray actor calls)."""
    return load_model(spec, weights=weights, unsafe=unsafe).model


def _ray_executor(args, layer, method, params, channels):
    return RayExecutor(functools.partial(_actor_model, args.model, args.weights, args.unsafe), "concepts",
                       {"layer": layer, "base": method, "channels": None if channels == "all" else channels,
                        **params},
                       num_workers=2 if args.workers is None else args.workers, num_gpus=args.gpus_per_worker,
                       address=args.ray)


def cmd_concepts(args, out):
    data = _data(args.source)
    layer = _layer(args.layer)
    channels = _channels(args.channels)
    target = _target(args.target)
    lm = load_model(args.model, weights=args.weights, unsafe=args.unsafe, preprocess=args.preprocess,
                    log=lambda msg: print(f"lrpgraph: {msg}", file=out))
    low, high = input_bounds(lm.preprocess)
    params = method_params(args.method, low, high, parse_params(args.param))
    executor = strategy = None
    if args.ray:
        if args.all_devices:
            raise InputError("--all-devices and --ray exclude each other")
        executor = _ray_executor(args, layer, args.method, params, channels)
    elif args.all_devices:
        strategy = tf.distribute.MirroredStrategy()
    print(f"mining concepts of {args.layer} on {lm.name} with {args.method} into {args.out}", file=out, flush=True)
    try:
        refs = reference_samples(lm.model, data, layer, channels=channels, k=args.k, method=args.method,
                                 target=target, store=args.out, batch_size=args.batch_size, progress=True,
                                 executor=executor, strategy=strategy, preprocess=lm.preprocess, **params)
    except (ValueError, TypeError, StoreError) as e:
        raise InputError(str(e)) from None
    meta = {"model": args.model, "weights": args.weights, "source": os.path.abspath(args.source),
            "method": args.method, "params": params, "layer": args.layer, "target": target,
            "preprocess": args.preprocess, "batch_size": args.batch_size}
    by_layer = refs if isinstance(refs, dict) else {refs.layer: refs}
    boxes = {"boxes": refs.boxes} if not isinstance(refs, dict) else \
        {_boxes_key(name): r.boxes for name, r in by_layer.items()}
    np.savez(os.path.join(args.out, SIDECAR), meta=json.dumps(meta), **boxes)
    for name, r in by_layer.items():
        for c in range(len(r.class_count)):
            if r.class_count[c]:
                top = ", ".join(str(int(v)) for v in r.top_concepts(c, 3))
                print(f"{name}: class {c} ({r.class_count[c]} samples): most relevant channels {top}", file=out)
    n = sum(len(r.channels) for r in by_layer.values())
    print(f"{args.out}: reference samples of {n} channels of {len(by_layer)} layer(s) (k={args.k})", file=out)
    return 0


def cmd_atlas(args, out):
    matplotlib.use("Agg")
    side = Path(args.store) / SIDECAR
    if not side.is_file():
        raise InputError(f"{side} not found: draw the atlas of a store written by `lrpgraph concepts`")
    try:
        refs = from_store(args.store, args.mode, layer=args.layer)
    except (ValueError, StoreError) as e:
        raise InputError(str(e)) from None
    if isinstance(refs, dict):
        raise InputError(f"{args.store} holds several layers ({', '.join(refs)}); choose one with --layer")
    with np.load(side, allow_pickle=False) as z:
        key = "boxes" if "boxes" in z else _boxes_key(refs.layer)
        boxes, meta = z[key], json.loads(str(z["meta"]))
    refs.boxes = boxes if args.mode == "relevance" else None  # the boxes are of the relevance references
    channels = _channels(args.channels)
    channels = list(refs.channels[:8]) if channels == "all" else channels
    lm = load_model(meta["model"], weights=meta["weights"], unsafe=args.unsafe, preprocess=meta["preprocess"])
    ex = ConceptExplainer(lm.model, meta["method"], **meta["params"])
    data = _data(meta["source"])
    try:
        samples = reference_inputs(refs, data, ex.prepared, meta["batch_size"], channels, preprocess=lm.preprocess)
        fig = concept_atlas(ex, refs, samples, channels, k=args.k, target=meta["target"])
    except ValueError as e:
        raise InputError(str(e)) from None
    path = save_figure(fig, args.out)
    print(f"atlas of {refs.layer} channels {', '.join(str(int(c)) for c in channels)} -> {path}", file=out)
    return 0


def add_parsers(sub):
    """Add ``concepts`` and ``atlas`` to the ``lrpgraph`` subparsers ``sub``."""
    sp = sub.add_parser("concepts", help="reference samples and class statistics of a layer's channels (CRP)",
                        description="Mine every channel of --layer over DATA: the k samples of largest relevance "
                                    "and of largest activation, the receptive-field box of each, and per class the "
                                    "mean relevance share of every channel. Resumable: rerun to finish.")
    sp.add_argument("source", metavar="DATA", help="a folder of images (class subfolders give labels) or an .npz "
                                                   "file with x (and y)")
    sp.add_argument("--layer", required=True, help="the layer whose channels are the concepts; several separated "
                                                    "by commas, or all-conv (every conv layer), mined in one pass")
    sp.add_argument("--out", required=True, metavar="STORE", help="the store folder (e.g. concepts.zarr)")
    sp.add_argument("--method", default="epsilon_plus_flat", help="a rule preset (default epsilon_plus_flat)")
    sp.add_argument("--k", type=int, default=8, help="reference samples per channel (default 8)")
    sp.add_argument("--channels", default="all", help="'all' (default) or comma-separated channel indices")
    sp.add_argument("--target", default="label", help="label (default), predicted, or a class index")
    sp.add_argument("--batch-size", type=int, default=32, help="samples per block (default 32)")
    add_param_option(sp)
    add_model_options(sp, size=False, labels=False)
    sp.add_argument("--all-devices", action="store_true", help="split each block over this machine's devices")
    sp.add_argument("--ray", metavar="local|ADDRESS", default=None, help="run the blocks on Ray actors")
    sp.add_argument("--workers", type=int, default=None, help="with --ray: the number of actors (default 2)")
    sp.add_argument("--gpus-per-worker", type=float, default=0, help="with --ray: GPUs per actor (default 0)")
    sp.set_defaults(fn=cmd_concepts)

    sp = sub.add_parser("atlas", help="draw reference samples of chosen channels from a concept store (PNG)")
    sp.add_argument("store", metavar="STORE", help="a store written by `lrpgraph concepts`")
    sp.add_argument("--channels", default="all", help="comma-separated channels (default: the first 8)")
    sp.add_argument("--layer", default=None, help="the layer to draw, for a store of several layers")
    sp.add_argument("--out", required=True, metavar="PNG", help="output image (.png or .pdf)")
    sp.add_argument("--k", type=int, default=None, help="reference samples per channel to draw (default all)")
    sp.add_argument("--mode", default="relevance", choices=["relevance", "activation"],
                    help="relevance (default) or activation maximisation")
    sp.add_argument("--unsafe", action="store_true", help="allow .keras files with Python code")
    sp.set_defaults(fn=cmd_atlas)
    return sub
