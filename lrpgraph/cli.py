"""The ``lrpgraph`` command line.

::

    lrpgraph methods                          # every method name with a one-line description
    lrpgraph explain IMAGE... [--model M] [--method NAME] [--target N|name] [--out DIR]
    lrpgraph explain --text "some words" --model M.keras [--vocab FILE] [--method attn_lrp]
    lrpgraph demo [--out DIR]                 # the shapes model, a two-object scene, all methods
    lrpgraph check MODEL                      # lrpgraph.check(model): rules per node, logits
    lrpgraph evaluate --methods a,b --metrics aopc,deletion [--data SOURCE | --benchmark shapes] --out DIR

``--model`` is a path to a ``.keras`` file, ``shapes`` (the shipped two-object
benchmark model, the default) or a ``keras.applications`` name (``vgg16``,
``resnet50``, ... see ``lrpgraph explain --help``).  Images are read and resized
to the model's input with scikit-image and preprocessed with the model's own
``keras.applications.<module>.preprocess_input`` (``--preprocess`` overrides
this; a ``.keras`` file gets [0, 1] pixels by default).  The bounds ``low`` /
``high`` of bounded Deep Taylor, LRP, CLRP and SGLRP are the range of the
preprocessed pixels (caffe: -123.68 / 151.061, as in the SGLRP paper's code).

ImageNet weights (``--weights imagenet``, the default for application models)
are downloaded by Keras on first use; where the download fails (no network) the
command says so on one line and continues with RANDOM weights, and every output
line repeats that.  ``--weights none`` asks for random weights, ``--weights
FILE`` loads a weights file.

``.keras`` files are loaded with ``safe_mode=True``: a file with a Python
``Lambda`` layer is refused unless ``--unsafe`` is given (only for files you
trust: it runs code from the file).

This module parses arguments and prints; the work is in the library:
:mod:`lrpgraph.io` (models, images, preprocessing, class names, targets),
:mod:`lrpgraph.assets` (the bundled shapes model and ImageNet class index),
:mod:`lrpgraph.viz` (heatmaps) and :mod:`lrpgraph.demo`.  Progress goes to
stderr (``keras.utils.Progbar``: count, rate, ETA), the report to stdout.

Every error (missing or unreadable file, unknown method, model or class name)
prints one ``lrpgraph: error: ...`` line to stderr and exits with status 1; a
bad command line exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np

from .io import (APPLICATIONS, PREPROCESS, InputError, build_method, load_image, load_model, parse_params,
                 resolve_target)

__all__ = ["main", "build_parser"]


def _slug(s):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(s)).strip("_") or "x"


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


def cmd_methods(args, out):
    import lrpgraph

    ms = lrpgraph.methods()
    width = max(map(len, ms))
    for name in sorted(ms):
        print(f"{name.ljust(width)}  {ms[name]}", file=out)
    return 0


def _progress(total):
    """``keras.utils.Progbar`` on stderr (stdout carries the report): count, rate and
    ETA, redrawn in place on a terminal, one final line otherwise."""
    import keras

    tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
    with contextlib.redirect_stdout(sys.stderr):
        bar = keras.utils.Progbar(total, verbose=1 if tty else 2, unit_name="image")

    def update(done):
        with contextlib.redirect_stdout(sys.stderr):  # Progbar prints to sys.stdout
            bar.update(done)

    return update


def cmd_explain(args, out):
    from . import viz

    if args.text is not None:
        if args.images:
            raise InputError("pass either images or --text, not both")
        return cmd_explain_text(args, out)
    if not args.images:
        raise InputError("nothing to explain: pass image files, or --text \"some words\" for a text model")
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise InputError(f"image not found: {missing[0]}" +
                         (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    lm = load_model(args.model, weights=args.weights, unsafe=args.unsafe, labels=args.labels,
                    preprocess=args.preprocess, log=lambda msg: print(f"lrpgraph: {msg}", file=out))
    model = lm.model
    h, w, channels = lm.image_shape(args.size)
    target = resolve_target(args.target, lm.class_names, lm.num_classes)
    low, high = lm.bounds
    analyzer = build_method(args.method, model, low, high, parse_params(args.param))

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name_of = (lambda i: f"{i} {lm.class_names[i]}") if lm.class_names else str
    stems = [Path(p).stem for p in args.images]
    dup = {s for s in stems if stems.count(s) > 1}
    progress = _progress(len(args.images))
    rows, notes = [], []
    for start in range(0, len(args.images), args.batch_size):
        paths = args.images[start:start + args.batch_size]
        pixels = np.stack([load_image(p, (h, w), channels) for p in paths])
        x = lm.preprocess(pixels)
        pred = np.asarray(model(x, training=False)).argmax(-1)
        targets = pred if target is None else np.full(len(paths), target)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            maps = analyzer.analyze(x, target=targets.astype(np.int64))
        for warning in caught:
            msg = str(warning.message).split(" for sample(s)")[0]
            if msg not in notes:
                notes.append(msg)
                print(f"lrpgraph: warning: {warning.message}", file=sys.stderr)
        for k, p in enumerate(paths):
            i = start + k
            stem = f"{i:04d}_{stems[i]}" if stems[i] in dup else stems[i]
            base = out_dir / f"{_slug(stem)}_{_slug(args.method)}_{int(targets[k])}"
            # names like "lrp.epsilon" hold dots: build file names by string, not with_suffix
            files = [Path(f"{base}.png")]
            _imsave(files[0], viz.heatmap_rgb(maps[k]))
            if args.overlay:
                image = pixels[k].astype(np.uint8) if channels == 3 else pixels[k, ..., 0] / 255.0
                files.append(Path(f"{base}_overlay.png"))
                _imsave(files[-1], viz.overlay(image, maps[k]))
            if args.npy:
                files.append(Path(f"{base}.npy"))
                np.save(files[-1], maps[k])
            rows.append((p, int(pred[k]), int(targets[k]), files))
        progress(start + len(paths))
    note = f" [{lm.weights_note}]" if lm.weights_note else ""
    print(f"model {lm.name}{note}, method {args.method}, bounds low={low:g} high={high:g}", file=out)
    for p, pr, t, files in rows:
        print(f"{p}: predicted {name_of(pr)}, explained {name_of(t)} -> {', '.join(map(str, files))}", file=out)
    print(f"wrote {len(rows)} heatmap(s) to {out_dir.resolve()}{note}", file=out)
    return 0


def cmd_explain_text(args, out):
    """``explain --text``: per-token relevance printed, a token heatmap PNG written
    (the work is :func:`lrpgraph.text.explain_text`)."""
    from . import text, viz

    text.import_keras_hub()  # KerasHub models' .keras files need its layers registered
    lm = load_model(args.model, weights=args.weights, unsafe=args.unsafe, labels=args.labels,
                    log=lambda msg: print(f"lrpgraph: {msg}", file=out))
    target = resolve_target(args.target, lm.class_names, lm.num_classes)
    exp = text.explain_text(lm.model, args.text, args.method, vocab=args.vocab, target=target,
                            **parse_params(args.param))
    name_of = (lambda i: f"{i} {lm.class_names[i]}") if lm.class_names else str
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = Path(f"{out_dir / 'text'}_{_slug(args.method)}_{exp.target}.png")
    fig = viz.token_heatmap(exp.tokens, exp.relevance, title=f"{args.method}, class {name_of(exp.target)}")
    viz.save_figure(fig, path)
    print(f"model {lm.name}, method {args.method}: predicted {name_of(exp.predicted)}, explained "
          f"{name_of(exp.target)}", file=out)
    print(exp.table(), file=out)
    print(f"wrote {path}", file=out)
    return 0


def _imsave(path, rgb):
    from skimage import io as skio

    skio.imsave(path, (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8), check_contrast=False)


def cmd_check(args, out):
    from .evaluation.check import check

    lm = load_model(args.model, weights=args.weights, unsafe=args.unsafe,
                    log=lambda msg: print(f"lrpgraph: {msg}", file=out))
    report = check(lm.model)
    if lm.weights_note:
        print(f"model {lm.name} [{lm.weights_note}]", file=out)
    print(report, file=out)
    return 0 if report.ok else 1


def cmd_demo(args, out):
    from .demo import run_demo

    run_demo(out_dir=args.out, n_scenes=args.scenes, out=out)
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="lrpgraph", description="LRP, SGLRP, CLRP, gradient and CAM maps for Keras 3 "
                                "models.", epilog="Errors exit with status 1, a bad command line with 2.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    sp = sub.add_parser("methods", help="list every method name with a one-line description")
    sp.set_defaults(fn=cmd_methods)

    def model_args(sp):
        sp.add_argument("--weights", default="imagenet",
                        help="keras.applications models: 'imagenet' (default; falls back to random weights "
                             "with a message when the download fails), 'none' (random) or a weights file")
        sp.add_argument("--unsafe", action="store_true",
                        help="allow .keras files with Python code (Lambda layers): only for files you trust")

    sp = sub.add_parser("explain", help="write a heatmap PNG per image",
                        description="Explain images (or --text for a text model): one heatmap PNG (seismic "
                                    "colormap, red positive, blue negative, symmetric limits) per image in --out.")
    sp.add_argument("images", nargs="*", metavar="IMAGE", help="image files (anything scikit-image reads)")
    sp.add_argument("--text", default=None,
                    help="explain this text with a text model (token ids in): prints one relevance per token "
                         "and writes a token heatmap PNG")
    sp.add_argument("--vocab", default=None,
                    help="with --text: vocabulary file, one token per line (line number = id); without it the "
                         "text is whitespace-separated ids")
    sp.add_argument("--model", default="shapes",
                    help="a .keras file, 'shapes' (the shipped benchmark model, default) or a "
                         f"keras.applications name: {', '.join(APPLICATIONS)}")
    sp.add_argument("--method", default="sglrp", help="method name (`lrpgraph methods`), default sglrp")
    sp.add_argument("--target", default=None,
                    help="class index or class name (ImageNet names for 1000-class models, the names in "
                         "<model>.json or --labels); default: the predicted class")
    sp.add_argument("--out", default="out", help="output folder (default ./out)")
    sp.add_argument("--labels", default=None, help="class names: JSON list, Keras class-index JSON or text")
    sp.add_argument("--preprocess", default="auto", choices=PREPROCESS,
                    help="auto: keras.applications' own preprocess_input, [0,1] pixels for a model file; "
                         "unit: [0,1]; raw: [0,255]; caffe/tf/torch: keras.applications.imagenet_utils modes")
    sp.add_argument("--size", type=int, default=None, help="resize to N x N when the model takes any size")
    sp.add_argument("--param", action="append", metavar="NAME=VALUE",
                    help="method parameter, repeatable (e.g. --param epsilon=0.01 --param layer=block5_pool)")
    sp.add_argument("--batch-size", type=int, default=8, help="images per analysis call (default 8)")
    sp.add_argument("--npy", action="store_true", help="also save each map as .npy")
    sp.add_argument("--overlay", action="store_true", help="also save the heatmap blended over the image")
    model_args(sp)
    sp.set_defaults(fn=cmd_explain)

    sp = sub.add_parser("demo", help="the shapes model on a two-object scene: method grid PNG and metrics table")
    sp.add_argument("--out", default="out", help="output folder (default ./out)")
    sp.add_argument("--scenes", type=int, default=24, help="scenes for the metrics table (default 24)")
    sp.set_defaults(fn=cmd_demo)

    sp = sub.add_parser("check", help="print lrpgraph.check(model): op kind and rule per node, logits test")
    sp.add_argument("model", help="a .keras file, 'shapes' or a keras.applications name")
    model_args(sp)
    sp.set_defaults(fn=cmd_check)
    from .evaluation.cli import add_parser as add_evaluate_parser  # `lrpgraph evaluate` (docs/evaluation.md)

    add_evaluate_parser(sub, model_args)
    from .dataset_cli import add_parsers as add_dataset_parsers  # explain-dataset, show (docs/datasets.md)

    add_dataset_parsers(sub)
    return p


def main(argv=None, out=None):
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage)."""
    out = sys.stdout if out is None else out
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    if getattr(args, "batch_size", 1) < 1:
        print("lrpgraph: error: --batch-size must be >= 1", file=sys.stderr)
        return 2
    if args.command == "explain" and not args.images and args.text is None:
        print("lrpgraph: error: explain needs image files, or --text \"some words\" for a text model",
              file=sys.stderr)
        return 2
    if getattr(args, "scenes", 1) < 1:
        print("lrpgraph: error: --scenes must be >= 1", file=sys.stderr)
        return 2
    import logging

    # each analyzer is its own tf.function; TF's "N out of the last N calls ... retracing"
    # warning counts them together and means nothing here
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        return args.fn(args, out)
    except (InputError, FileNotFoundError) as e:
        print(f"lrpgraph: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lrpgraph: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
