"""lrpgraph: layer-wise relevance propagation for Keras 3, compiled into one tf.function.

    import lrpgraph
    analyzer = lrpgraph.create_analyzer("lrp.epsilon", model)
    relevance = analyzer.analyze(x, target=3)

The data path: keras.Model -> :mod:`lrpgraph.graph` (networkx DAG) ->
:mod:`lrpgraph.rewrite` (canonical graph) -> :mod:`lrpgraph.assign` (a rule per
node, from :mod:`lrpgraph.rules`) -> :mod:`lrpgraph.compile` (one tf.function)
-> :class:`lrpgraph.Analyzer` (numpy).
"""

__version__ = "0.1.0"

try:
    import tensorflow as _tf  # noqa: F401
except ImportError as e:  # pragma: no cover
    raise ImportError(
        "lrpgraph needs TensorFlow >= 2.16 (Keras 3). Install one build: "
        "`pip install lrpgraph[cpu]` (tensorflow-cpu) or `pip install lrpgraph[gpu]` (tensorflow[and-cuda])."
    ) from e

from . import ops, rules  # noqa: E402
from .ops import register_layer  # noqa: E402  (custom layers: docs/rules.md, "Custom layers")
from .prepared import Prepared, prepare  # noqa: E402
from .method import Explanation, Method  # noqa: E402
from .analyzer import Analyzer  # noqa: E402  (registers the rule presets)
from . import methods as _families  # noqa: E402,F401  (registers SGLRP/CLRP, CAMs, IG, SmoothGrad, occlusion)
# after the subpackage import, so that ``lrpgraph.methods`` is the listing function
# (iNNvestigate's API); the families stay importable as ``lrpgraph.methods.cam`` etc.
from .registry import create_analyzer, methods  # noqa: E402
from .assign import UnsupportedLayerError  # noqa: E402
from .check import check  # noqa: E402  (lrpgraph.check(model): per-node kinds, rules, logits)
from .graph import to_graph  # noqa: E402
from .rewrite import canonicalize  # noqa: E402
from . import postprocess  # noqa: E402,F401
from . import text  # noqa: E402,F401  (text models and causal LMs: explain_text, explain_generation, relevance_trace)
from . import evaluation  # noqa: E402
from .evaluation import evaluate  # noqa: E402
from .datasets import Attributions, explain_dataset, open_store  # noqa: E402  (datasets into zarr stores)

__all__ = ["Analyzer", "Method", "Explanation", "Prepared", "prepare", "create_analyzer", "methods", "rules", "ops",
           "register_layer", "to_graph", "canonicalize", "check", "UnsupportedLayerError", "evaluate", "evaluation",
           "explain_dataset", "open_store", "Attributions", "__version__"]
