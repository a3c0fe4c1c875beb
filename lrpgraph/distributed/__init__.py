"""Running dataset jobs beyond one process.

* :mod:`lrpgraph.distributed.ray`: :func:`lrpgraph.distributed.ray.explain_dataset`
  on a Ray cluster: the dataset runner (:mod:`lrpgraph.data`) with its Ray actor
  executor (needs the ``lrpgraph[ray]`` extra).

The module is imported on use (``import lrpgraph.distributed.ray``), so that
``import lrpgraph`` never needs Ray.
"""
