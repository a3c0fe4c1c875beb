"""``lrpgraph explain-dataset | show``: the dataset commands of the command line.

::

    lrpgraph explain-dataset SOURCE --model PATH|vgg16|... --method NAME --out STORE
        [--target label|predicted|N] [--batch-size N] [--reduce sum] [--float16]
        [--metrics relevance_sum,positive_share] [--param NAME=VALUE] [--overwrite] [--skip-invalid]
        [--ray local|ADDRESS --workers N]
    lrpgraph show STORE --index I --out PNG [--source SOURCE] [--labels FILE]

``SOURCE`` is a folder of images (one subfolder per class gives the labels) or
a ``.npz`` file with an ``x`` array (and optionally ``y`` labels).  Images are
decoded with the same loader and the model's own preprocessing as
``lrpgraph explain``.  Rerunning the same command after Ctrl-C or a crash
computes only the missing blocks.  ``show`` draws input | heatmap | overlay
(:func:`lrpgraph.viz.explanation_figure`) with the class names, reading the input
from ``--source`` (the heatmap alone without it).

:func:`add_parsers` adds the subcommands to ``lrpgraph``'s parser
(:func:`lrpgraph.cli.build_parser` calls it); :func:`run_job` is where a job is
dispatched (here, on all devices of this machine, or on Ray).
"""

from __future__ import annotations

import functools
import json
import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from .. import assets, viz
from ..data import explain_dataset, open_store
from ..errors import InputError
from ..io import (APPLICATIONS, application_module, build_method, input_bounds, list_images, load_image,
                  method_params, read_labels)
from ..io import load_model as load_model_spec
from ..data.store import StoreError
from ..distributed import ray as lray
from ..targets import folder_class_indices
from .options import add_model_options, add_param_option, load_model, parse_params, parse_target

__all__ = ["add_parsers", "cmd_explain_dataset", "cmd_show", "run_job"]


def _load_source(source):
    """(data, describe) for SOURCE: an image folder path, or arrays from an .npz."""
    p = Path(source)
    if p.is_dir():
        return str(p), f"image folder {p}"
    if p.is_file() and p.suffix == ".npz":
        with np.load(p) as z:
            if "x" not in z:
                raise InputError(f"{p} has no array 'x' (it has {', '.join(z.files)}); save the inputs as x=..., "
                               "the labels as y=...")
            x = z["x"]
            y = z["y"] if "y" in z else None
        return (x if y is None else (x, y)), f"{len(x)} samples from {p}"
    if p.is_file():
        raise InputError(f"{p} is a file; SOURCE is a folder of images or an .npz file with x (and y)")
    raise InputError(f"source not found: {p}")


def _folder_label_targets(data, lm, out):
    """``--target label`` for a folder of class subfolders: the model's class each
    folder names (``images/tabby/`` -> ImageNet class 281; ImageNet ids such as
    ``n02123045`` too), as one target per sample in the data's order; "label" (the
    subfolder's alphabetical index) where the folders are the model's classes in
    order or the model has no class names (said once)."""
    folder = list_images(data)
    if folder.class_names is None:
        return "label"  # the runner says that a flat folder has no labels
    if lm.class_names is None:
        pairs = ", ".join(f"{n}={k}" for k, n in enumerate(folder.class_names[:4]))
        more = ", ..." if len(folder.class_names) > 4 else ""
        print(f"lrpgraph: note: {lm.name} has no class names, so each class folder is explained as the class of "
              f"its alphabetical position ({pairs}{more}); give the model's class names with --labels FILE to "
              "match folders by name", file=out)
        return "label"
    index = folder_class_indices(folder.class_names, lm.class_names, lm.class_ids, model=lm.name)
    if np.array_equal(index, np.arange(len(index))):
        return "label"
    shown = ", ".join(f"{n} -> {k} {lm.class_names[k]}" for n, k in zip(folder.class_names[:4], index))
    print(f"class folders explained as {lm.name}'s classes: {shown}{', ...' if len(index) > 4 else ''}", file=out)
    return index[folder.labels]


def run_job(args, analyzer, data, preprocess, out):
    """Run the explain-dataset job described by ``args``: here, in this process
    (all devices of the machine with --all-devices).  The Ray option
    (``--ray local|ADDRESS --workers N``) dispatches to
    ``lrpgraph.distributed.ray`` from here."""
    if getattr(args, "ray", None):
        return _run_ray(args, data, preprocess, out)
    if getattr(args, "workers", None) is not None:
        raise InputError("--workers N sets the number of Ray actors: pass it with --ray local|ADDRESS")
    strategy = None
    if getattr(args, "all_devices", False):
        strategy = tf.distribute.MirroredStrategy()
    return explain_dataset(
        analyzer, data, args.out, target=args.target, batch_size=args.batch_size, reduce=args.reduce,
        dtype="float16" if args.float16 else "float32", metrics=args.metrics, overwrite=args.overwrite,
        skip_invalid=args.skip_invalid, preprocess=preprocess, strategy=strategy,
        image_size=None if args.size is None else (args.size, args.size), progress=True)


def _ray_model(spec, weights, unsafe):
    """The keras model of ``--model spec`` (the factory each Ray actor calls)."""
    return load_model_spec(spec, weights=weights, unsafe=unsafe).model


def _run_ray(args, data, preprocess, out):
    """``--ray local|ADDRESS --workers N``: the job on a Ray cluster
    (:func:`lrpgraph.distributed.ray.explain_dataset`); every actor loads the
    model with the CLI's loader and builds the method with the same parameters
    (``low``/``high`` filled in as ``build_method`` fills them)."""
    if args.all_devices:
        raise InputError("--all-devices and --ray exclude each other: a Ray actor uses the devices Ray gives it "
                       "(--workers actors, one GPU each when the cluster has GPUs)")
    workers = 2 if args.workers is None else args.workers
    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    try:
        lray.import_ray()  # Ray: an optional dependency (the lrpgraph[ray] extra)
    except ImportError as e:
        raise InputError(str(e)) from None
    low, high = input_bounds(preprocess)
    params = method_params(args.method, low, high, parse_params(args.param))
    print(f"on Ray ({args.ray}, {workers} workers)", file=out, flush=True)
    return lray.explain_dataset(
        functools.partial(_ray_model, args.model, args.weights, args.unsafe), args.method, data, args.out,
        params=params, target=args.target, batch_size=args.batch_size, num_workers=workers,
        num_gpus=args.gpus_per_worker, address=args.ray, reduce=args.reduce,
        dtype="float16" if args.float16 else "float32", metrics=args.metrics, overwrite=args.overwrite,
        skip_invalid=args.skip_invalid, preprocess=preprocess,
        image_size=None if args.size is None else (args.size, args.size), progress=True)


def cmd_explain_dataset(args, out):
    args.metrics = [m for m in (args.metrics or "").split(",") if m]
    data, what = _load_source(args.source)
    lm = load_model(args, out)
    target = parse_target(args.target, lm, keywords=("label", "predicted"))
    args.target = "predicted" if target is None else target
    if target == "label" and isinstance(data, str):
        args.target = _folder_label_targets(data, lm, out)
    low, high = input_bounds(lm.preprocess)
    analyzer = build_method(args.method, lm.model, low, high, parse_params(args.param))
    note = f" [{lm.weights_note}]" if lm.weights_note else ""
    print(f"explaining {what} with {args.method} on {lm.name}{note} into {args.out}", file=out, flush=True)
    as_is = "" if isinstance(data, str) else " (the .npz's x is used as stored: the preprocessing sets the bounds)"
    print(f"inputs: {lm.describe_inputs()}{as_is}", file=out, flush=True)
    try:
        att = run_job(args, analyzer, data, lm.preprocess, out)
    except InputError:
        raise
    except (ValueError, TypeError, StoreError) as e:
        raise InputError(str(e)) from None
    print(f"{att.store.path}: {len(att)} samples, {len(att.computed)} block(s) computed now, "
          f"{att.store.n_blocks} in all{note}", file=out)
    return 0


def _store_class_names(att, labels):
    """The class names for a store's figure: ``--labels FILE``, else those of the model the
    store names where they are known without loading it (keras.applications models:
    ImageNet's; the bundled shapes model's), else None (indices)."""
    if labels is not None:
        return read_labels(labels)
    model = str(att.store.job.get("model", ""))
    if model in APPLICATIONS or application_module(model):
        return assets.imagenet_class_names()
    if model == _shapes_model_name():
        return list(assets.SHAPES_CLASS_NAMES)
    return None


def _shapes_model_name():
    """The model name inside the bundled shapes model's file (read from its config, no loading)."""
    try:
        with zipfile.ZipFile(assets.SHAPES_MODEL) as z:
            return json.loads(z.read("config.json"))["config"]["name"]
    except (OSError, KeyError, ValueError):
        return None


def _source_image(source, att, i, hw):
    """Sample ``i``'s input from SOURCE (the folder or .npz the store was made from), as
    an image of the map's size ``hw``."""
    p = Path(source)
    if p.is_dir():
        path = p / att.ids[i]
        if not path.is_file():
            raise InputError(f"{path} not found: --source is the folder the store was made from (sample {i} is "
                             f"{att.ids[i]!r} in it)")
        return load_image(path, hw).round().astype(np.uint8)
    data, _ = _load_source(p)
    x = data[0] if isinstance(data, tuple) else data
    return np.asarray(x[i])


def cmd_show(args, out):
    try:
        att = open_store(args.store)
        i = int(args.index)
        if not 0 <= i < len(att):
            raise IndexError(f"sample {i} out of range: the store holds {len(att)} samples")
        if not att.done[i]:
            raise ValueError(f"sample {i} is not written yet (its block is missing): resume the job first")
        r = np.asarray(att.relevance[i], np.float32)
    except (ValueError, IndexError, StoreError) as e:
        raise InputError(str(e)) from None
    t = np.atleast_1d(att.targets[i])
    maps = list(r) if len(t) > 1 and r.shape[0] == len(t) else [r]
    names = _store_class_names(att, args.labels)
    name_of = (lambda k: f"{k} {names[k]}" if 0 <= k < len(names) else str(k)) if names else str
    image = None if args.source is None else _source_image(args.source, att, i, maps[0].shape[:2])
    method = (att.store.job.get("method") or {}).get("name", "?")
    pred = int(att.predicted[i])
    title = f"{method}: {att.ids[i]}, predicted {name_of(pred)}"
    fig = viz.explanation_figure(image, maps, title=title, row_titles=[f"explained {name_of(int(k))}" for k in t])
    path = viz.save_figure(fig, args.out)
    targets = ", ".join(name_of(int(k)) for k in t)
    print(f"sample {i} ({att.ids[i]}): target {targets}, predicted {name_of(pred)} -> {path}", file=out)
    if image is None:
        print("(the heatmap alone: pass --source SOURCE, the folder or .npz the store was made from, to draw the "
              "input and the overlay beside it)", file=out)
    return 0


def add_parsers(sub):
    """Add ``explain-dataset`` and ``show`` to the ``lrpgraph`` subparsers ``sub``."""
    sp = sub.add_parser("explain-dataset", help="explain a folder of images (or an .npz) into a resumable store",
                        description="Explain every sample of SOURCE into a zarr store (one chunk per batch). "
                                    "Rerun the same command after Ctrl-C or a crash to compute only the missing "
                                    "blocks.")
    sp.add_argument("source", metavar="SOURCE", help="a folder of images (class subfolders give labels) or an "
                                                     ".npz file with x (and y)")
    sp.add_argument("--method", default="lrp.epsilon", help="method name (`lrpgraph methods`), default lrp.epsilon")
    sp.add_argument("--out", required=True, metavar="STORE", help="the store: a folder (or fsspec URL)")
    sp.add_argument("--target", default="label",
                    help="label (default; needs class subfolders or y: a class folder is the model's class of its "
                         "name, e.g. tabby or n02123045 for ImageNet models), predicted, or a class index")
    sp.add_argument("--batch-size", type=int, default=32, help="samples per block and per analysis (default 32)")
    sp.add_argument("--reduce", choices=["sum"], default=None, help="sum: store (N, H, W) maps")
    sp.add_argument("--float16", action="store_true", help="store the maps in float16")
    sp.add_argument("--metrics", default="", help="comma-separated per-sample metrics: relevance_sum, positive_share")
    add_param_option(sp)
    add_model_options(sp)
    sp.add_argument("--all-devices", action="store_true",
                    help="split each batch over all devices of this machine (tf.distribute.MirroredStrategy)")
    sp.add_argument("--overwrite", action="store_true", help="replace an existing store made by another job")
    sp.add_argument("--skip-invalid", action="store_true",
                    help="record unreadable images and NaN/Inf inputs as invalid instead of stopping")
    sp.add_argument("--ray", metavar="local|ADDRESS", default=None,
                    help="run on Ray with Ray Data: 'local' starts a Ray on this machine, ADDRESS joins a cluster "
                         "('auto', ray://host:10001); needs the lrpgraph[ray] extra and a store path every node "
                         "can reach")
    sp.add_argument("--workers", type=int, default=None,
                    help="with --ray: the number of Ray actors (default 2), each loading the model once")
    sp.add_argument("--gpus-per-worker", type=float, default=0,
                    help="with --ray: GPUs per actor (default 0)")
    sp.set_defaults(fn=cmd_explain_dataset)

    sp = sub.add_parser("show", help="draw one sample's map from a dataset store as a PNG")
    sp.add_argument("store", metavar="STORE", help="a store written by explain-dataset")
    sp.add_argument("--index", type=int, required=True, help="sample index")
    sp.add_argument("--out", required=True, metavar="PNG", help="output image (.png or .pdf)")
    sp.add_argument("--source", default=None, metavar="SOURCE",
                    help="the folder or .npz the store was made from: draws input | heatmap | overlay")
    sp.add_argument("--labels", default=None, help="class names for the titles (JSON list, Keras class-index JSON "
                                                   "or text); default: known for keras.applications and shapes")
    sp.set_defaults(fn=cmd_show)
    return sub
