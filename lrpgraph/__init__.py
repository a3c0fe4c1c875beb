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
from .analyzer import Analyzer, create_analyzer, methods  # noqa: E402
from .assign import UnsupportedLayerError  # noqa: E402
from .check import check  # noqa: E402  (lrpgraph.check(model): per-node kinds, rules, logits)
from .graph import to_graph  # noqa: E402
from .rewrite import canonicalize  # noqa: E402
from . import sglrp  # noqa: E402,F401  (registers the SGLRP paper's methods)
from . import cam, postprocess, wrappers  # noqa: E402,F401  (register IG, SmoothGrad, occlusion, CAMs)

__all__ = ["Analyzer", "create_analyzer", "methods", "rules", "ops", "register_layer", "to_graph",
           "canonicalize", "UnsupportedLayerError", "__version__"]
