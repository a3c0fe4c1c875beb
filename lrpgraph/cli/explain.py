"""``lrpgraph methods | explain | demo | check``: the commands that explain single inputs.

::

    lrpgraph methods                          # every method name with a one-line description
    lrpgraph explain IMAGE... [--model M] [--method NAME] [--target N|name] [--out DIR]
    lrpgraph explain --text "some words" --model M.keras [--vocab FILE] [--method attn_lrp]
    lrpgraph explain --text "a prompt" --model llama-tiny|LM.keras --generate 8 [--method attn_lrp]
    lrpgraph demo [--out DIR]                 # the shapes model, a two-object scene, all methods
    lrpgraph check MODEL                      # lrpgraph.check(model): rules per node, logits

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
line repeats that.  Those weights are seeded (:data:`lrpgraph.io.RANDOM_WEIGHTS_SEED`):
the same on every run, so that a stopped ``explain-dataset`` job resumes and the
maps reproduce.  ``--weights none`` asks for the same seeded random weights,
``--weights FILE`` loads a weights file.

``.keras`` files are loaded with ``safe_mode=True``: a file with a Python
``Lambda`` layer is refused unless ``--unsafe`` is given (only for files you
trust: it runs code from the file).

This module parses arguments and prints; the work is in the library:
:mod:`lrpgraph.io` (models, images, preprocessing, class names), :mod:`lrpgraph.targets`,
:mod:`lrpgraph.assets` (the bundled shapes model and ImageNet class index),
:mod:`lrpgraph.viz` (heatmaps) and :mod:`lrpgraph.demo`.  Progress goes to
stderr (``keras.utils.Progbar``: count, rate, ETA), the report to stdout.

Every error (missing or unreadable file, unknown method, model or class name)
prints one ``lrpgraph: error: ...`` line to stderr and exits with status 1; a
bad command line exits with status 2 (:func:`lrpgraph.cli.main`).
"""

from __future__ import annotations

import contextlib
import re
from html import escape as html_escape
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
from skimage import io as skio

from .. import text, tiny_llm, viz
from ..evaluation.check import check
from ..demo import run_demo
from ..errors import InputError
from ..io import build_method, load_image
from ..methods.registry import methods
from .options import add_model_options, add_param_option, load_model, parse_params, parse_target

__all__ = ["add_parsers", "cmd_methods", "cmd_explain", "cmd_explain_text", "cmd_check", "cmd_demo"]


def _slug(s):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(s)).strip("_") or "x"


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


def cmd_methods(args, out):
    ms = methods()
    width = max(map(len, ms))
    for name in sorted(ms):
        print(f"{name.ljust(width)}  {ms[name]}", file=out)
    return 0


def _progress(total):
    """``keras.utils.Progbar`` on stderr (stdout carries the report): count, rate and
    ETA, redrawn in place on a terminal, one final line otherwise."""
    tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
    with contextlib.redirect_stdout(sys.stderr):
        bar = keras.utils.Progbar(total, verbose=1 if tty else 2, unit_name="image")

    def update(done):
        with contextlib.redirect_stdout(sys.stderr):  # Progbar prints to sys.stdout
            bar.update(done)

    return update


def cmd_explain(args, out):
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
    lm = load_model(args, out)
    model = lm.model
    h, w, channels = lm.image_shape(args.size)
    target = parse_target(args.target, lm)
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
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            ex = analyzer.explain(x, target)  # None: the predicted class, resolved by the method
        maps, targets, pred = ex.maps, ex.targets, ex.logits.argmax(-1)
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
            image = pixels[k].round().astype(np.uint8) if channels == 3 else pixels[k, ..., 0] / 255.0
            fig = viz.explanation_figure(
                image, maps[k], title=f"{args.method}: explained {name_of(int(targets[k]))}, predicted "
                                      f"{name_of(int(pred[k]))}")
            viz.save_figure(fig, files[0])
            if args.heatmap:
                files.append(Path(f"{base}_heatmap.png"))
                _imsave(files[-1], viz.heatmap_rgb(maps[k]))
            if args.overlay:
                files.append(Path(f"{base}_overlay.png"))
                _imsave(files[-1], viz.overlay(image, maps[k]))
            if args.npy:
                files.append(Path(f"{base}.npy"))
                np.save(files[-1], maps[k])
            rows.append((p, int(pred[k]), int(targets[k]), files))
        progress(start + len(paths))
    note = f" [{lm.weights_note}]" if lm.weights_note else ""
    print(f"model {lm.name}{note}, method {args.method}, {lm.describe_inputs()}", file=out)
    for p, pr, t, files in rows:
        print(f"{p}: predicted {name_of(pr)}, explained {name_of(t)} -> {', '.join(map(str, files))}", file=out)
    print(f"wrote {len(rows)} heatmap(s) to {out_dir.resolve()}{note}", file=out)
    return 0


def cmd_explain_text(args, out):
    """``explain --text``: per-token relevance printed, a token heatmap PNG written
    (the work is :func:`lrpgraph.text.explain_text`); with ``--generate N``, a causal LM's
    generation explained (:func:`cmd_explain_generation`)."""
    if args.generate is not None:
        return cmd_explain_generation(args, out)
    text.import_keras_hub()  # KerasHub models' .keras files need its layers registered
    lm = load_model(args, out)
    target = parse_target(args.target, lm)
    exp = text.explain_text(lm.model, args.text, args.method, vocab=args.vocab, target=target,
                            **parse_params(args.param))
    name_of = (lambda i: f"{i} {lm.class_names[i]}") if lm.class_names else str
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = Path(f"{out_dir / 'text'}_{_slug(args.method)}_{exp.target}.png")
    fig = viz.token_heatmap(exp.tokens, exp.relevance, title=f"{args.method}, class {name_of(exp.target)}")
    viz.save_figure(fig, path)
    print(f"model {lm.name}, method {args.method}, inputs: token ids (no preprocessing): predicted "
          f"{name_of(exp.predicted)}, explained {name_of(exp.target)}", file=out)
    print(exp.table(), file=out)
    print(f"wrote {path}", file=out)
    return 0


def _causal_lm(args, out):
    """(causal LM, tokenizer or None, note) for ``--model`` with ``--generate``: a tiny config
    name (random weights, a character tokenizer) or a ``.keras`` file of a KerasHub CausalLM
    (its preprocessor's tokenizer where it was saved with one)."""
    spec = str(args.model)
    if spec in tiny_llm.TINY_LLMS:
        lm, tok = tiny_llm.tiny_causal_lm(spec)
        note = (f"{spec}: a tiny KerasHub config built here with RANDOM weights (seeded) and a character "
                "tokenizer; its generation is meaningless, the relevance shows the mechanics only")
        print(f"lrpgraph: {note}", file=out)
        return lm, tok, "RANDOM weights"
    if not Path(spec).is_file():
        raise InputError(f"--generate needs a KerasHub causal LM: a .keras file or a tiny config name "
                         f"({', '.join(tiny_llm.TINY_LLMS)}); got {spec!r}", param="model")
    if not text.import_keras_hub():
        raise InputError("--generate needs keras_hub (pip install keras-hub) to load a KerasHub causal LM")
    try:
        lm = keras.saving.load_model(spec, safe_mode=not args.unsafe)
    except Exception as e:  # noqa: BLE001 - any loading failure is the file's problem, said on one line
        raise InputError(f"cannot load {spec} as a Keras model: {type(e).__name__}: {e}", param="model") from None
    if not (hasattr(lm, "generate") and hasattr(lm, "backbone")):
        raise InputError(f"{spec} holds a {type(lm).__name__}, not a KerasHub causal LM (a model with generate() "
                         "and a backbone, e.g. keras_hub.models.LlamaCausalLM)", param="model")
    lm.compile(sampler="greedy")
    return lm, getattr(getattr(lm, "preprocessor", None), "tokenizer", None), ""


def _matrix(e, width=7):
    """The (generated x all tokens) relevance matrix as text, columns headed by the tokens."""
    show = lambda t: repr(t)[1:-1][:width - 1]  # noqa: E731  (spaces and newlines visible)
    head = " " * 10 + "".join(show(t).rjust(width) for t in e.tokens)
    lines = [head]
    for g, row in enumerate(e.relevance):
        label = f"{e.prompt_length + g:>3} {show(e.generated[g])!s:<5}"
        lines.append(label.ljust(10) + "".join(f"{v:+{width}.2f}"[:width] if v else "·".rjust(width) for v in row))
    return "\n".join(lines)


def cmd_explain_generation(args, out):
    """``explain --text PROMPT --model LM --generate N``: generate N tokens greedily, explain
    each (:func:`lrpgraph.text.explain_generation`), print the relevance matrix and write the
    token heatmap as HTML (the whole generation's span, then one line per generated token)
    and as a PNG."""
    n = int(args.generate)
    if n < 1:
        raise InputError(f"--generate must be a positive number of tokens, got {n}")
    lm, tok, note = _causal_lm(args, out)
    if tok is None:  # no tokenizer: the prompt is ids
        prompt = text.encode(text.tokenize(args.text))
    else:
        try:
            prompt = np.asarray(tok(args.text)).reshape(-1)
        except (ValueError, KeyError) as e:
            raise InputError(f"the prompt cannot be tokenized: {e}", param="text") from None
    method = args.method if args.method != "sglrp" else "attn_lrp"  # the image default means nothing here
    e = text.explain_generation(lm, prompt, len(prompt) + n, method, tokenizer=tok, **parse_params(args.param))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"generation_{_slug(method)}"
    rows = "".join(f"<p>token {e.prompt_length + g} ({_escape(t)}): {e.html(row=g)}</p>\n"
                   for g, t in enumerate(e.generated))
    html = (f"<html><body><h3>{_escape(method)}: relevance of the generation ({note or 'model weights'})</h3>"
            f"<p>{e.html()}</p>\n{rows}</body></html>\n")
    Path(f"{base}.html").write_text(html, encoding="utf-8")
    viz.save_figure(e.figure(title=f"{method}: the whole generation ({len(e.generated)} tokens)"
                             + (f" [{note}]" if note else "")), Path(f"{base}.png"))
    bracket = f" [{note}]" if note else ""
    print(f"model {args.model}{bracket}, method {method}: prompt {e.prompt_length} tokens, generated "
          f"{len(e.generated)}: {''.join(e.generated)!r}", file=out)
    print("relevance (rows: generated tokens, explained at the position before each; columns: every token; "
          "· = zero by causality):", file=out)
    print(_matrix(e), file=out)
    print("row sums: " + ", ".join(f"{v:.3g}" for v in e.relevance.sum(1)) + "; explained logits: "
          + ", ".join(f"{v:.3g}" for v in e.logits), file=out)
    print(f"wrote {base}.html and {base}.png{bracket}", file=out)
    return 0


def _escape(s):
    """HTML-escape ``s``."""
    return html_escape(str(s))


def _imsave(path, rgb):
    skio.imsave(path, (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8), check_contrast=False)


def cmd_check(args, out):
    lm = load_model(args, out)
    report = check(lm.model)
    note = f" [{lm.weights_note}]" if lm.weights_note else ""
    print(f"model {lm.name}{note}: image inputs get {lm.describe_inputs()} (`lrpgraph explain`; --preprocess "
          "changes it)", file=out)
    print(report, file=out)
    return 0 if report.ok else 1


def cmd_demo(args, out):
    run_demo(out_dir=args.out, n_scenes=args.scenes, out=out)
    return 0


def add_parsers(sub):
    """Add ``methods``, ``explain``, ``demo`` and ``check`` to the ``lrpgraph`` subparsers ``sub``."""
    sp = sub.add_parser("methods", help="list every method name with a one-line description")
    sp.set_defaults(fn=cmd_methods)

    sp = sub.add_parser("explain", help="write a heatmap PNG per image",
                        description="Explain images (or --text for a text model): one PNG per image in --out: "
                                    "input | heatmap | overlay with a colour bar (seismic colormap, red positive, "
                                    "blue negative, symmetric limits), titled with the method and the classes.")
    sp.add_argument("images", nargs="*", metavar="IMAGE", help="image files (anything scikit-image reads)")
    sp.add_argument("--text", default=None,
                    help="explain this text with a text model (token ids in): prints one relevance per token "
                         "and writes a token heatmap PNG")
    sp.add_argument("--vocab", default=None,
                    help="with --text: vocabulary file, one token per line (line number = id); without it the "
                         "text is whitespace-separated ids")
    sp.add_argument("--generate", type=int, default=None, metavar="N",
                    help="with --text and a KerasHub causal LM (--model FILE.keras, or a tiny config with RANDOM "
                         f"weights: {', '.join(tiny_llm.TINY_LLMS)}): generate N tokens greedily after the prompt, "
                         "explain each (default method attn_lrp), print the relevance matrix and write "
                         "generation_METHOD.html/.png")
    sp.add_argument("--method", default="sglrp",
                    help="method name (`lrpgraph methods`), default sglrp (attn_lrp with --generate)")
    sp.add_argument("--target", default=None,
                    help="class index or class name (ImageNet names for 1000-class models, the names in "
                         "<model>.json or --labels); default: the predicted class")
    sp.add_argument("--out", default="out", help="output folder (default ./out)")
    add_param_option(sp)
    sp.add_argument("--batch-size", type=int, default=8, help="images per analysis call (default 8)")
    sp.add_argument("--npy", action="store_true", help="also save each map as .npy")
    sp.add_argument("--heatmap", action="store_true",
                    help="also save the bare heatmap at the image's size (_heatmap.png)")
    sp.add_argument("--overlay", action="store_true",
                    help="also save the heatmap blended over the image at the image's size (_overlay.png)")
    add_model_options(sp)
    sp.set_defaults(fn=cmd_explain)

    sp = sub.add_parser("demo", help="the shapes model on a two-object scene: method grid PNG and metrics table")
    sp.add_argument("--out", default="out", help="output folder (default ./out)")
    sp.add_argument("--scenes", type=int, default=24, help="scenes for the metrics table (default 24)")
    sp.set_defaults(fn=cmd_demo)

    sp = sub.add_parser("check", help="print lrpgraph.check(model): op kind and rule per node, logits test")
    sp.add_argument("model", help="a .keras file, 'shapes' or a keras.applications name")
    add_model_options(sp, model=False, size=False, labels=False)
    sp.set_defaults(fn=cmd_check)
    return sub
