"""lrpgraph: layer-wise relevance propagation for Keras 3, compiled into one tf.function.

    import lrpgraph
    analyzer = lrpgraph.create_analyzer("lrp.epsilon", model)
    relevance = analyzer.analyze(x, target=3)

The package, one floor at a time (docs/architecture.md draws it; ``tests/test_layout.py``
keeps the floors apart):

- ``lrpgraph/engine/``: the data path.  keras.Model -> ``graph`` (one node per layer call)
  -> ``ops/`` (what each node computes, as rules see it) -> ``rewrite`` (canonical graph)
  -> ``prepared`` (once per model) -> ``assign`` (a rule per node) -> ``compile`` (forward,
  head, reverse pass in one tf.function).  Imports nothing above it.
- ``lrpgraph.rules``: the rule library and the presets.  Its source is the top-level
  ``rules/`` folder of the repository (the project's design keeps it there); setuptools
  installs it as ``lrpgraph.rules`` (``package-dir`` in pyproject.toml), and a checkout run
  from its root binds it here (``_rules_from_checkout``).
- ``lrpgraph/methods/``: :class:`Method` (numpy in, numpy out), :class:`Analyzer` (the rule
  presets), the registry of names (:func:`create_analyzer`, :func:`methods`) and the
  families (SGLRP, CAM, perturbation, rollout).
- ``lrpgraph/evaluation/``: faithfulness, robustness, complexity, randomisation,
  localisation and axiomatic metrics (:func:`evaluate`), the two-object benchmark and its
  synthetic shapes, :func:`check`.
- ``lrpgraph/data/``: the dataset runner (:func:`explain_dataset`, :func:`open_store`;
  ``lrpgraph.distributed.ray`` on a Ray cluster); ``lrpgraph.concepts`` (concept relevance,
  CRP) runs on it.
- ``lrpgraph/cli/``: the command line (``lrpgraph ...``), the only package that parses
  arguments.
- the foundation (``targets``, ``errors``) and the helpers (viz, io, text with the LLM
  generation API, assets, sequences, memory, postprocess).
"""

from ._version import __version__  # noqa: F401  (its own module: lrpgraph.data.spec reads it too)

import os as _os
import sys as _sys
from importlib import util as _util

try:
    import tensorflow as _tf  # noqa: F401
except ImportError as e:  # pragma: no cover
    raise ImportError(
        "lrpgraph needs TensorFlow >= 2.16 (Keras 3). Install one build: "
        "`pip install lrpgraph[cpu]` (tensorflow-cpu) or `pip install lrpgraph[gpu]` (tensorflow[and-cuda])."
    ) from e



def _rules_from_checkout():
    """Bind ``lrpgraph.rules`` to the checkout's ``rules/`` when this ``lrpgraph/`` is a checkout's.

    The rule library lives in the top-level ``rules/`` folder (the project's design);
    setuptools installs it as ``lrpgraph.rules`` (``package-dir`` in pyproject.toml), and an
    editable install maps it there.  Python started in the repository root imports the
    checkout's ``lrpgraph/`` before any installed one, and that folder has no ``rules/``
    inside: the rules that belong to it are ``../rules``, loaded here under their package name
    (what an editable install of this checkout gives too).  An installed lrpgraph has
    ``rules/`` inside and is left to the normal import.
    """
    name = f"{__name__}.rules"
    here = _os.path.dirname(_os.path.abspath(__file__))
    folder = _os.path.join(_os.path.dirname(here), "rules")
    init = _os.path.join(folder, "__init__.py")
    if name in _sys.modules or _os.path.isdir(_os.path.join(here, "rules")) or not _os.path.isfile(init) \
            or not _os.path.isfile(_os.path.join(_os.path.dirname(here), "pyproject.toml")):
        return
    spec = _util.spec_from_file_location(name, init, submodule_search_locations=[folder])
    module = _util.module_from_spec(spec)
    _sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del _sys.modules[name]
        raise


_rules_from_checkout()

from .engine import ops  # noqa: E402
from . import rules  # noqa: E402
from .engine.ops import register_layer  # noqa: E402  (custom layers: docs/rules.md, "Custom layers")
from .engine.prepared import Prepared, prepare  # noqa: E402
from .methods.base import Explanation, Method  # noqa: E402
from .methods.analyzer import Analyzer  # noqa: E402  (registers the rule presets)
from . import methods as _families  # noqa: E402,F401  (registers SGLRP/CLRP, CAMs, IG, SmoothGrad, occlusion)
# after the subpackage import, so that ``lrpgraph.methods`` is the listing function
# (iNNvestigate's API); the families stay importable as ``lrpgraph.methods.cam`` etc.
from .methods.registry import create_analyzer, methods  # noqa: E402
from .engine.assign import UnsupportedLayerError  # noqa: E402
from .evaluation.check import check  # noqa: E402  (lrpgraph.check(model): per-node kinds, rules, logits)
from .evaluation.coverage import coverage  # noqa: E402  (lrpgraph.coverage(model): per-node rules and conservation)
from .engine.graph import to_graph  # noqa: E402
from .engine.rewrite import canonicalize  # noqa: E402
from . import postprocess  # noqa: E402,F401
from . import text  # noqa: E402,F401  (text models and causal LMs: explain_text, explain_generation, relevance_trace)
from . import evaluation  # noqa: E402
from .data import Attributions, explain_dataset, open_store  # noqa: E402  (datasets into zarr stores: lrpgraph.data)
from .data.evaluate import evaluate  # noqa: E402  (maps in memory: evaluation.evaluate; a store: data.evaluate)

__all__ = ["Analyzer", "Method", "Explanation", "Prepared", "prepare", "create_analyzer", "methods", "rules", "ops",
           "register_layer", "to_graph", "canonicalize", "check", "coverage", "UnsupportedLayerError", "evaluate", "evaluation",
           "explain_dataset", "open_store", "Attributions", "__version__"]
