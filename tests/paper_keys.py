"""The golden files' SGLRP-family keys as analyzers (shared by test_sglrp and test_golden).

Keys: ``sglrp``/``clrp`` (the original code: output ReLU, scaling), ``*.nogate`` (the
paper's formula: raw logits, no scaling), and ``.target``/``.others`` of each (the two
raw passes before the subtraction).  ``ignore_bias``: the Deep Taylor rule the file was
made with (meta ``dt_rules``: "v1" is iNNvestigate 1.0.8.3, bias in z+'s denominator,
``ignore_bias=False``; "v2" is 2.1.2, bias ignored, ``ignore_bias=True``).
"""

import lrpgraph
from lrpgraph.engine import heads as H

PARTS = {("sglrp", "target"): H.sglrp_target, ("sglrp", "others"): H.sglrp_dual,
         ("clrp", "target"): H.clrp_target, ("clrp", "others"): H.clrp_dual}


def is_paper_key(key):
    return key.split(".")[0] in ("sglrp", "clrp")


def ignore_bias_of(meta, key):
    """The ``ignore_bias`` a golden key was made with, from its meta.json."""
    base = key.replace(".target", "").replace(".others", "")
    return {"v1": False, "v2": True}[meta["params"][base]["dt_rules"]]


def paper_analyzer(key, model, ignore_bias, **kw):
    """The analyzer that computes golden key ``key`` (e.g. ``"clrp.nogate.others"``)."""
    parts = key.split(".")
    name, gated = parts[0], "nogate" not in parts
    part = parts[-1] if parts[-1] in ("target", "others") else None
    if part is None:
        scaling = {} if gated else {"output_relu": False, "scaling": False}
        return lrpgraph.create_analyzer(name, model, ignore_bias=ignore_bias, **scaling, **kw)
    return lrpgraph.Analyzer(model, "deep_taylor.bounded", head=PARTS[name, part](output_relu=gated),
                             ignore_bias=ignore_bias, **kw)
