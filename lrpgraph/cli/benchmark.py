"""``lrpgraph benchmark``: ground-truth benchmarks that run offline.

::

    lrpgraph benchmark xai-tris --out bench/
    lrpgraph benchmark xai-tris --scenarios lin,xor --models mlp --methods LRP-eps,Gradient,random \\
        --n-test 16 --n-train 400 --epochs 2 --out bench/quick

``xai-tris`` (:mod:`lrpgraph.evaluation.xai_tris`): tetromino patterns on noise
backgrounds (LIN, MULT, RIGID, XOR scenarios), a tiny CNN and MLP trained here with
a fixed seed, every method's maps scored against the known pattern pixels.  Writes
``xai_tris.md`` (the command, the tables with bootstrap 95% intervals), ``xai_tris.csv``
and ``xai_tris.png`` (example inputs, ground truth and a few methods' maps) to ``--out``.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from ..errors import InputError
from ..evaluation import xai_tris as X

__all__ = ["add_parsers", "cmd_xai_tris"]


def _csv(text):
    return [t.strip() for t in text.split(",") if t.strip()]


def add_parsers(sub):
    """Add ``benchmark xai-tris`` to the ``lrpgraph`` subparsers ``sub``."""
    sp = sub.add_parser("benchmark", help="ground-truth benchmarks that run offline (xai-tris)",
                        description=__doc__.split("::")[0].strip())
    bsub = sp.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    bsub.required = True
    xp = bsub.add_parser("xai-tris", help="XAI-TRIS-style tetromino benchmark: methods ranked by ground-truth "
                                          "localisation and faithfulness, with bootstrap intervals",
                         description=__doc__.split("::")[0].strip() + " See docs/evaluation.md.")
    xp.add_argument("--scenarios", default=",".join(X.SCENARIOS), help=f"comma-separated of {', '.join(X.SCENARIOS)} "
                                                                       "(default all)")
    xp.add_argument("--backgrounds", default="white", help="comma-separated of white, corr (default white)")
    xp.add_argument("--models", default="cnn,mlp", help="comma-separated of cnn, mlp (default both)")
    xp.add_argument("--methods", default=None, help="comma-separated method labels of the table (default all: "
                                                    + ", ".join(X.METHODS) + ")")
    xp.add_argument("--n-train", type=int, default=2000, help="training images per scenario (default 2000)")
    xp.add_argument("--n-test", type=int, default=64, help="test images explained and scored (default 64)")
    xp.add_argument("--size", type=int, default=32, help="image side in pixels, >= 8 (default 32)")
    xp.add_argument("--epochs", type=int, default=None, help="training epochs (default per scenario: "
                                                            + ", ".join(f"{k} {v}" for k, v in X.EPOCHS.items()) + ")")
    xp.add_argument("--seed", type=int, default=0, help="seed of the data, the models and the bootstrap (default 0)")
    xp.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    xp.add_argument("--no-faithfulness", action="store_true", help="skip the AOPC column (localisation only)")
    xp.add_argument("--out", default="bench", help="output folder (default ./bench)")
    xp.set_defaults(fn=cmd_xai_tris)
    return sub


def cmd_xai_tris(args, out=None):
    """Run :func:`lrpgraph.evaluation.xai_tris.run` and write the table, CSV and figure."""
    out = sys.stdout if out is None else out
    for name in ("n_train", "n_test", "n_boot"):
        if getattr(args, name) < 1:
            print(f"lrpgraph: error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if args.size < 8:
        print("lrpgraph: error: --size must be >= 8", file=sys.stderr)
        return 2
    if args.epochs is not None and args.epochs < 1:
        print("lrpgraph: error: --epochs must be >= 1", file=sys.stderr)
        return 2
    try:
        kw = dict(scenarios=_csv(args.scenarios), backgrounds=_csv(args.backgrounds), models=_csv(args.models),
                  methods=None if args.methods is None else _csv(args.methods))
        for what, known in (("scenarios", X.SCENARIOS), ("backgrounds", X.BACKGROUNDS), ("models", ("cnn", "mlp")),
                            ("methods", tuple(X.METHODS))):
            bad = [v for v in (kw[what] or ()) if v not in known]
            if bad or kw[what] == []:
                raise InputError(f"--{what}: unknown {bad or 'empty list'}; known: {', '.join(known)}")
    except InputError as e:
        print(f"lrpgraph: error: {e}", file=sys.stderr)
        return 2
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table = X.run(**kw, n_train=args.n_train, n_test=args.n_test, size=args.size, epochs=args.epochs, seed=args.seed,
                  faithfulness=not args.no_faithfulness, n_boot=args.n_boot,
                  log=lambda line: print(line, file=out, flush=True))
    seconds = time.perf_counter() - t0
    command = "lrpgraph benchmark xai-tris " + " ".join(
        f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in (
            ("scenarios", args.scenarios), ("backgrounds", args.backgrounds), ("models", args.models),
            ("methods", args.methods), ("n_train", args.n_train), ("n_test", args.n_test), ("size", args.size),
            ("epochs", args.epochs), ("seed", args.seed), ("n_boot", args.n_boot), ("out", args.out))
        if v is not None) + (" --no-faithfulness" if args.no_faithfulness else "")
    md = [f"# XAI-TRIS-style benchmark\n", f"Command: `{command}` ({seconds:.0f} s)\n",
          f"Settings: {table.meta}\n",
          "Cells: mean over the test images [percentile-bootstrap 95% interval]; localisation on |R|.\n",
          "## Mean rank per metric over the (scenario, background, model) columns (1 = best)\n",
          table.summary_markdown(), "",
          "## Ranking by relevance mass (mean rank over the columns, 1 = best)\n",
          table.ranking_markdown("mass"), "",
          "## Ranking by localisation AUC\n", table.ranking_markdown("auc"), ""]
    if not args.no_faithfulness:
        md += ["## Ranking by AOPC MoRF (faithfulness)\n", table.ranking_markdown("aopc"), ""]
    md += ["## Every metric per (scenario, background, model)\n", table.to_markdown()]
    (dest / "xai_tris.md").write_text("\n".join(md))
    table.to_csv(dest / "xai_tris.csv")
    figs = []
    for model in table.meta["models"]:
        p = dest / f"xai_tris_{model}.png"
        X.figure(table, p, model=model)
        figs.append(p.name)
    print(f"wrote {dest / 'xai_tris.md'}, xai_tris.csv, {', '.join(figs)} ({seconds:.0f} s)", file=out)
    return 0
