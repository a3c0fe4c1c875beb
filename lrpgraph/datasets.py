"""Deprecated import path, kept for one release: the dataset runner moved to the
package :mod:`lrpgraph.data` (``lrpgraph.explain_dataset`` and
``lrpgraph.open_store`` are unchanged).  What was here, and where it is now:

* ``explain_dataset``, ``open_store``, ``Attributions``: :mod:`lrpgraph.data`
  (``lrpgraph.data.driver``, ``lrpgraph.data.reader``);
* ``METRICS`` / ``register_metric`` (the per-sample numbers stored): renamed
  :data:`lrpgraph.data.statistics.MAP_STATISTICS` /
  :func:`~lrpgraph.data.statistics.register_map_statistic`, to tell them from the
  faithfulness metrics ``lrpgraph.evaluation.METRICS``;
* ``BlockJob``: :mod:`lrpgraph.data.job` (it takes a
  :class:`lrpgraph.data.spec.JobSpec`); ``make_source``: :mod:`lrpgraph.data.sources`;
* ``weights_fingerprint``, ``describe_method``, ``software_versions``:
  :mod:`lrpgraph.data.spec`.
"""

from .data.driver import explain_dataset
from .data.job import BlockJob
from .data.reader import Attributions, LogitsTopK as TopK, open_store
from .data.sources import make_source
from .data.spec import describe_method, software_versions, weights_fingerprint
from .data.statistics import MAP_STATISTICS as METRICS, register_map_statistic as register_metric
from .io import IMAGE_EXTENSIONS

__all__ = ["explain_dataset", "open_store", "Attributions", "BlockJob", "make_source", "METRICS",
           "register_metric", "weights_fingerprint", "describe_method", "software_versions", "IMAGE_EXTENSIONS", "TopK"]
