"""Turn the JSON lines written by tests/test_applications.py into the markdown table
of docs/architectures.md.

    LRPGRAPH_APPS_JSON=benchmarks/apps_results.jsonl make test-apps
    python benchmarks/apps_table.py benchmarks/apps_results.jsonl            # prints the table
    python benchmarks/apps_table.py benchmarks/apps_results.jsonl --write    # and replaces it in the doc

The table lists every application of tests/test_applications.py.APPS: logits
reproduced (max relative difference), each method finite, the z+ conservation
error against the family's stated tolerance; applications without a result yet
are listed as "not run".
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

BEGIN, END = "<!-- apps-table:begin -->", "<!-- apps-table:end -->"


def load(path):
    rows = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["name"]] = row  # the last run of an application wins
    return rows


def table(rows):
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from test_applications import APPS, CONSERVATION_TOL, LOGITS_TOL, METHODS

    short = {"lrp.epsilon": "eps", "lrp.z_plus": "z+", "deep_taylor.bounded": "DT-bounded",
             "lrp.sequential_preset_a_flat": "seq-A-flat", "gradient": "grad", "sglrp": "sglrp"}
    head = ["application", "input", "nodes", f"logits rel. diff (<= {LOGITS_TOL:g})", "Keras float32 noise"] + \
        [short[m] for m in METHODS] + ["z+ conservation error", "tolerance", "seconds"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, (family, size) in APPS.items():
        r = rows.get(name)
        if r is None:
            out.append(f"| {name} | {size}x{size} | | not run |" + " |" * (len(head) - 4))
            continue
        noise = r.get("float32_noise")
        noise = "-" if noise is None else f"{noise:.1e}"
        if r.get("logits_error"):
            logits = f"error: {r['logits_error'][:60]}"
        else:
            d, f64 = r["logits_rel_diff"], r.get("logits_rel_diff_f64")
            if d <= LOGITS_TOL or f64 is None:
                logits = f"{d:.1e} {'ok' if d <= LOGITS_TOL else 'FAIL'}"
            else:  # chaotic in float32 (see the noise column): checked in float64
                logits = f"{d:.1e}; float64: {f64:.1e} {'ok' if f64 <= LOGITS_TOL else 'FAIL'}"
        fin = []
        for m in METHODS:
            v = r["finite"].get(m, "n/a")
            fin.append({True: "finite", False: "FAIL", None: "absent"}.get(v, str(v)))
        tol = CONSERVATION_TOL[family]
        c = r.get("zplus_conservation")
        cons = "-" if c is None else f"{c:.1e} {'ok' if c <= tol else 'FAIL'}"
        out.append(f"| {name} | {size}x{size} | {r['nodes']} | {logits} | {noise} | " + " | ".join(fin) +
                   f" | {cons} | {tol:g} | {r.get('seconds', '')} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("jsonl")
    ap.add_argument("--write", action="store_true", help="replace the table in docs/architectures.md")
    args = ap.parse_args(argv)
    text = table(load(args.jsonl))
    print(text)
    if args.write:
        doc = ROOT / "docs" / "architectures.md"
        body = doc.read_text()
        new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: f"{BEGIN}\n{text}\n{END}", body,
                     flags=re.S)
        doc.write_text(new)


if __name__ == "__main__":
    main()
