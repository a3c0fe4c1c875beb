"""What every command of the command line shares, defined once.

* the model options (:func:`add_model_options`: ``--model``, ``--weights``,
  ``--unsafe``, ``--preprocess``, ``--labels``, ``--size``), read back by
  :func:`load_model` (which prints the loader's notes and the preprocessing);
* ``--param NAME=VALUE`` and its keyed forms (:func:`parse_params`,
  :func:`parse_keyed`), parsed from text;
* targets from text (:func:`parse_target`, over :func:`lrpgraph.targets.parse_text`);
* the advice a library error gets: :func:`advice` turns an
  :class:`lrpgraph.errors.InputError`'s ``param`` into the flag that fixes it.

The "fill in low/high" rule (a method's input bounds from the preprocessing) is the
library's, :func:`lrpgraph.methods.registry.fill_bounds`, reached through
:func:`lrpgraph.io.build_method` / :func:`lrpgraph.io.method_params`.
"""

from __future__ import annotations

import ast

from .. import io as lio
from .. import targets as T
from ..errors import InputError

__all__ = ["FLAGS", "advice", "add_model_options", "add_weights_options", "add_param_option", "load_model",
           "parse_value", "parse_params", "parse_keyed", "parse_target", "say"]

# InputError.param (the library's argument) -> the flag that sets it, with its placeholder
FLAGS = {
    "text": ("--text", '"some words"'), "vocab": ("--vocab", "FILE"), "unsafe": ("--unsafe", ""),
    "size": ("--size", "N"), "labels": ("--labels", "FILE"), "target": ("--target", "N|name"),
    "weights": ("--weights", "imagenet|none|FILE"), "model": ("--model", "M"), "method": ("--method", "NAME"),
    "preprocess": ("--preprocess", "MODE"), "params": ("--param", "NAME=VALUE"),
}


def advice(error):
    """The message of a library error for the command line: its text, and where the error
    names the argument that fixes it (``error.param``), the flag that sets it
    (``"...; on the command line: --vocab FILE"``)."""
    msg = str(error)
    flag = FLAGS.get(getattr(error, "param", None))
    if flag is None:
        return msg
    name, placeholder = flag
    value = getattr(error, "value", None)
    spelled = f"{name} {value if value is not None else placeholder}".strip()
    return f"{msg} (on the command line: {spelled})"


def say(out):
    """The loader's ``log``: one ``lrpgraph: ...`` line on ``out``."""
    return lambda msg: print(f"lrpgraph: {msg}", file=out, flush=True)


# ---------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------


def add_weights_options(sp):
    """``--weights`` and ``--unsafe``."""
    sp.add_argument("--weights", default="imagenet",
                    help="keras.applications models: 'imagenet' (default; where the download fails, seeded random "
                         "weights, said on every line), 'none' (seeded random weights) or a weights file")
    sp.add_argument("--unsafe", action="store_true",
                    help="allow .keras files with Python code (Lambda layers): only for files you trust")


def add_model_options(sp, *, model=True, preprocess=True, labels=True, size=True, default="shapes"):
    """The model options: ``--model`` (unless ``model=False``: a positional argument
    instead), ``--weights``, ``--unsafe``, and where the command reads images,
    ``--preprocess``, ``--size``, and ``--labels``."""
    if model:
        sp.add_argument("--model", default=default,
                        help="a .keras file, 'shapes' (the shipped benchmark model, default) or a "
                             f"keras.applications name: {', '.join(lio.APPLICATIONS)}")
    add_weights_options(sp)
    if preprocess:
        sp.add_argument("--preprocess", default="auto", choices=lio.PREPROCESS,
                        help="auto (default): keras.applications' own preprocess_input for an application, also "
                             "for a .keras file whose model is named as the application names it "
                             "(mobilenetv2_1.00_224), [0,1] pixels for other model files; unit: [0,1]; raw: [0,255]; "
                             "caffe/tf/torch: keras.applications.imagenet_utils modes. Every command prints the "
                             "preprocessing and input bounds it uses")
    if size:
        sp.add_argument("--size", type=int, default=None, help="resize to N x N when the model takes any size")
    if labels:
        sp.add_argument("--labels", default=None,
                        help="the model's class names: JSON list, Keras class-index JSON or text (one per line); "
                             "default: ImageNet's for 1000-class models, <model>.json's for a model file")


def add_param_option(sp):
    sp.add_argument("--param", action="append", metavar="NAME=VALUE",
                    help="method parameter, repeatable (e.g. --param epsilon=0.01 --param layer=block5_pool)")


def load_model(args, out, spec=None):
    """:func:`lrpgraph.io.load_model` with the options of :func:`add_model_options`
    (those a command lacks take their defaults); the loader's notes go to ``out``."""
    return lio.load_model(args.model if spec is None else spec, weights=args.weights, unsafe=args.unsafe,
                          labels=getattr(args, "labels", None), preprocess=getattr(args, "preprocess", "auto"),
                          log=say(out))


# ---------------------------------------------------------------------------
# values from text
# ---------------------------------------------------------------------------


def parse_value(text):
    """A command-line value: a Python literal (``0.1``, ``True``, ``(1, 2)``), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_params(items, flag="--param"):
    """``["epsilon=0.01", "layer=conv2"]`` -> ``{"epsilon": 0.01, "layer": "conv2"}``."""
    params = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"{flag} {item!r}: expected NAME=VALUE (e.g. {flag} epsilon=0.01)")
        k, v = item.split("=", 1)
        params[k.strip()] = parse_value(v)
    return params


def parse_keyed(items, flag, sep, example):
    """``["a<sep>b=v", ...]`` -> ``{"a": {"b": v}}`` (``--metric-param aopc.patch=4``,
    ``--method-param gradcam:layer=x``)."""
    out = {}
    for item in items or []:
        head, eq, value = item.partition("=")
        outer, mark, key = head.partition(sep)
        if not eq or not mark or not outer or not key:
            raise InputError(f"{flag} {item!r}: expected {example}")
        out.setdefault(outer.strip(), {})[key.strip()] = parse_value(value)
    return out


def parse_target(text, lm=None, *, keywords=("predicted",)):
    """``--target`` as the library's target (:func:`lrpgraph.targets.parse_text`): None
    for the predicted class, ``"label"`` where ``keywords`` allows it, a class index
    (checked against the model ``lm``, a :class:`lrpgraph.io.LoadedModel`) or a class
    name (``lm``'s class names)."""
    names = None if lm is None else lm.class_names
    n = None if lm is None else lm.num_classes
    return T.parse_text(text, names, n, keywords=keywords)
