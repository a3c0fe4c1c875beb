"""The ``lrpgraph`` command line: one package, one module per command group.

::

    lrpgraph methods                          # every method name with a one-line description
    lrpgraph explain IMAGE... [--model M] [--method NAME] [--target N|name] [--out DIR]
    lrpgraph explain --text "some words" --model M.keras [--vocab FILE] [--method attn_lrp]
    lrpgraph demo [--out DIR]                 # the shapes model, a two-object scene, all methods
    lrpgraph check MODEL                      # lrpgraph.check(model): rules per node, logits
    lrpgraph explain-dataset SOURCE --out STORE [--target label|predicted|N|name] ...
    lrpgraph show STORE --index I --out PNG [--source SOURCE]
    lrpgraph evaluate --methods a,b --metrics aopc,deletion [--data SOURCE | --benchmark shapes] --out DIR
    lrpgraph concepts DATA --model M --layer L --out concepts.zarr [--k 8] [--channels all|3,17]
    lrpgraph atlas concepts.zarr --channels 3,17 --out atlas.png
    lrpgraph benchmark xai-tris [--scenarios lin,xor] [--models cnn] [--n-test N] --out DIR

* :mod:`lrpgraph.cli.explain`: ``methods``, ``explain`` (images and ``--text``),
  ``demo``, ``check``;
* :mod:`lrpgraph.cli.dataset`: ``explain-dataset``, ``show`` (docs/datasets.md);
* :mod:`lrpgraph.cli.evaluate`: ``evaluate`` (docs/evaluation.md);
* :mod:`lrpgraph.cli.concepts`: ``concepts``, ``atlas`` (docs/concepts.md);
* :mod:`lrpgraph.cli.benchmark`: ``benchmark xai-tris`` (docs/evaluation.md);
* :mod:`lrpgraph.cli.options`: what they share, defined once (the model options
  ``--model/--weights/--unsafe/--preprocess/--labels/--size``, ``--param``, targets
  from text, and the flag advice a library error gets).

A new command is a module here with an ``add_parsers(sub)`` that
:func:`build_parser` calls.  The commands parse arguments and print; the work is in
the library (:mod:`lrpgraph.io`, :mod:`lrpgraph.targets`, :mod:`lrpgraph.viz`,
:mod:`lrpgraph.text`, the dataset runner, the evaluation).  This is the only
package of lrpgraph that imports argparse.

The library raises :class:`lrpgraph.errors.InputError` in its own terms
(``vocab=FILE``); :func:`main` prints one ``lrpgraph: error: ...`` line with the flag
that fixes it (``--vocab FILE``, :func:`lrpgraph.cli.options.advice`) and exits with
status 1; a bad command line exits with status 2.  ``lrpgraph`` (the console script)
and ``python -m lrpgraph`` run :func:`main`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..errors import InputError
from . import benchmark, concepts, dataset, evaluate, explain
from .options import advice

__all__ = ["main", "build_parser"]


def build_parser():
    """The ``lrpgraph`` argument parser: every command group adds its subcommands."""
    p = argparse.ArgumentParser(prog="lrpgraph", description="LRP, SGLRP, CLRP, gradient and CAM maps for Keras 3 "
                                "models.", epilog="Errors exit with status 1, a bad command line with 2.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    explain.add_parsers(sub)     # methods, explain, demo, check
    evaluate.add_parsers(sub)    # evaluate (docs/evaluation.md)
    dataset.add_parsers(sub)     # explain-dataset, show (docs/datasets.md)
    concepts.add_parsers(sub)    # concepts, atlas (docs/concepts.md)
    benchmark.add_parsers(sub)   # benchmark xai-tris (docs/evaluation.md)
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
    # each analyzer is its own tf.function; TF's "N out of the last N calls ... retracing"
    # warning counts them together and means nothing here
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        return args.fn(args, out)
    except InputError as e:
        print(f"lrpgraph: error: {advice(e)}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"lrpgraph: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lrpgraph: interrupted", file=sys.stderr)
        return 130
