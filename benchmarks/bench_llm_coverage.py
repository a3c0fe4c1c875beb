"""Coverage of every KerasHub backbone that can be built from a tiny config.

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/bench_llm_coverage.py [--write-docs] [--only NAME ...]

Builds, with random (seeded) weights: every decoder LLM family of lrpgraph.tiny_llm (2 blocks,
hidden 32, 4 query / 2 key-value heads), explained at the last of 8 tokens; and the vision
backbones (ViT, DeiT, DINOv2, SigLIP's and CLIP's vision towers; 2 blocks, hidden 32, 32x32
images) with a Dense(5) head on the first token.  For each it runs ``lrpgraph.coverage`` with
attn_lrp and cp_lrp (epsilon 1e-12, 2 samples) and reports: supported (every node has a rule
in both presets and the rewritten graph reproduces the model's logits to 1e-4), the number of
nodes, cp_lrp's conservation (max |sum R / logit - 1| over the samples, and the nodes that do
not conserve), attn_lrp's sum R / logit, and the seconds for build + coverage.  A backbone
that cannot be built or explained is listed with the error.  ``--write-docs`` replaces the
table between the markers in docs/methods/llms.md (with ``--only``: only those families' rows,
the others kept as they are).
"""

from __future__ import annotations

import argparse
import re
import time
import traceback
from pathlib import Path

import numpy as np

import keras
import keras_hub

import lrpgraph
from lrpgraph.tiny_llm import TINY_LLMS, tiny_causal_lm

DOC = Path(__file__).resolve().parent.parent / "docs" / "methods" / "llms.md"
BEGIN, END = "<!-- bench_llm_coverage: begin -->", "<!-- bench_llm_coverage: end -->"
IMAGE = (32, 32, 3)


def _classifier(encoder, name):
    """encoder(image) -> its first token (or its pooled output) -> Dense(5)."""
    inp = keras.Input(IMAGE, name="image")
    y = encoder({"images": inp} if isinstance(encoder.input, dict) else inp)
    if isinstance(y, dict):
        key = next(k for k in ("sequence_output", "vision_sequence_output", "pooled_output") if k in y)
        y = y[key]
    if len(y.shape) == 3:
        y = y[:, 0, :]
    return keras.Model(inp, keras.layers.Dense(5, name="head")(y), name=name)


def _vision():
    m = keras_hub.models
    small = dict(num_layers=2, num_heads=4, hidden_dim=32)
    return {
        "ViT": lambda: _classifier(m.ViTBackbone(image_shape=IMAGE, patch_size=8, mlp_dim=64, **small), "vit"),
        "DeiT": lambda: _classifier(m.DeiTBackbone(image_shape=IMAGE, patch_size=8, intermediate_dim=64, **small),
                                    "deit"),
        "DINOv2": lambda: _classifier(m.DINOV2Backbone(patch_size=8, intermediate_dim=64, image_shape=IMAGE,
                                                       position_embedding_shape=IMAGE, **small), "dinov2"),
        "SigLIP vision": lambda: _classifier(m.SigLIPVisionEncoder(patch_size=8, intermediate_dim=64,
                                                                   image_shape=IMAGE, **small), "siglip_vision"),
        "CLIP vision": lambda: _classifier(m.CLIPVisionEncoder(patch_size=8, intermediate_dim=64, image_shape=IMAGE,
                                                               **small), "clip_vision"),
    }


def run_one(name, build):
    t0 = time.perf_counter()
    row = {"family": name}
    try:
        model = build()
        sample = None
        if not name.endswith("-tiny"):
            sample = np.random.default_rng(0).standard_normal((2,) + IMAGE).astype("float32")
        rep = lrpgraph.coverage(model, ("attn_lrp", "cp_lrp"), sample, epsilon=1e-12)
        chk = rep.check
        row["nodes"] = len(rep.nodes)
        row["supported"] = not rep.unsupported and not rep.errors and chk.logits_ok
        classes = sorted({u["class_name"] for u in rep.unsupported})
        why = [f"no op description for {', '.join(classes)} (lrpgraph.register_layer would add one)"] if classes else []
        if not chk.logits_ok:
            why.append(f"logits not reproduced: {chk.logits_rel_diff if chk.logits_error is None else chk.logits_error}")
        why += [f"{p}: {e}" for p, e in rep.errors.items() if not classes]
        row["why"] = "; ".join(why)
        if "cp_lrp" in rep.totals:
            ratio = rep.totals["cp_lrp"]["ratio"]
            row["cp_lrp"] = float(np.max(np.abs(ratio - 1)))
            row["cp_leaks"] = rep.leaks("cp_lrp")
        if "attn_lrp" in rep.totals:
            row["attn_lrp"] = rep.totals["attn_lrp"]["ratio"]
            row["attn_leaks"] = rep.leaks("attn_lrp")
    except Exception as e:  # noqa: BLE001 - a benchmark records why a backbone fails
        row["supported"] = False
        row["why"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        traceback.print_exc()
    row["seconds"] = time.perf_counter() - t0
    return row


def _short(node):
    return node.split("/")[-1]


def _kinds(leaks):
    """Leaking nodes grouped by their last name part without a trailing number."""
    names = sorted({re.sub(r"_\d+$", "", _short(n)) for n in leaks})
    return ", ".join(names) if names else "none"


def table(rows):
    out = ["| family | supported | nodes | cp_lrp: max \\|sum R / logit - 1\\| | cp_lrp: nodes not conserving | "
           "attn_lrp: sum R / logit (2 samples) | attn_lrp: nodes not conserving | seconds |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "nodes" not in r:
            out.append(f"| {r['family']} | no: {r['why']} | | | | | | {r['seconds']:.1f} |")
            continue
        sup = "yes" if r["supported"] else f"no: {r['why']}"
        cp = f"{r['cp_lrp']:.1e}" if "cp_lrp" in r else "-"
        attn = ", ".join(f"{v:.2f}" for v in r["attn_lrp"]) if "attn_lrp" in r else "-"
        out.append(f"| {r['family']} | {sup} | {r['nodes']} | {cp} | {_kinds(r.get('cp_leaks', []))} | {attn} | "
                   f"{_kinds(r.get('attn_leaks', []))} | {r['seconds']:.1f} |")
    return "\n".join(out)


def _merge(old, new, order):
    """The table ``old`` with the rows of ``new`` in place of those of the same family,
    families in ``order`` (then any others ``old`` has)."""
    def rows(md):
        lines = [ln for ln in md.strip().splitlines() if ln.startswith("| ")]
        return lines[0], {ln.split(" | ")[0][2:]: ln for ln in lines[1:]}
    header, kept = rows(old)
    kept.update(rows(new)[1])
    families = [f for f in order if f in kept] + [f for f in kept if f not in order]
    return "\n".join([header, "|---|---|---|---|---|---|---|---|"] + [kept[f] for f in families])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write-docs", action="store_true", help=f"write the table into {DOC}")
    ap.add_argument("--only", nargs="*", help="families to run (default all)")
    args = ap.parse_args()
    builders = {n: (lambda n=n: tiny_causal_lm(n)[0]) for n in TINY_LLMS}
    builders.update(_vision())
    rows = []
    for name, build in builders.items():
        if args.only and name not in args.only:
            continue
        keras.utils.set_random_seed(0)
        rows.append(run_one(name, build))
        print(rows[-1], flush=True)
    md = table(rows)
    print(md)
    if args.write_docs:
        doc = DOC.read_text()
        if BEGIN not in doc:
            raise SystemExit(f"{DOC} has no {BEGIN} marker")
        head, rest = doc.split(BEGIN, 1)
        old, tail = rest.split(END, 1)
        if args.only:
            md = _merge(old, md, list(builders))
        DOC.write_text(f"{head}{BEGIN}\n{md}\n{END}{tail}")
        print(f"wrote the table into {DOC}")


if __name__ == "__main__":
    main()
