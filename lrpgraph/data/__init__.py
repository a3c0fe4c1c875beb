"""The dataset wing: explain a whole dataset into a resumable store.

::

    import lrpgraph
    analyzer = lrpgraph.create_analyzer("lrp.epsilon", model)
    att = lrpgraph.explain_dataset(analyzer, dataset, "maps.zarr", batch_size=32)
    att.relevance[10:20]          # numpy, (10, H, W, C)

Four small ideas, one module each (docs/datasets.md, docs/architecture.md):

* :mod:`~lrpgraph.data.spec`: :class:`JobSpec`, the job's knobs, frozen and
  validated once, and the job identity a store records;
* :mod:`~lrpgraph.data.sources`: one :class:`~lrpgraph.data.sources.Source` per
  input kind (numpy, image folder, ``tf.data``) and :func:`make_source`;
* :mod:`~lrpgraph.data.driver`: the one driver loop, :func:`drive` (open or
  resume the store, hand out missing blocks, check what is written, progress,
  Ctrl-C, the stop message), and :func:`explain_dataset`;
* :mod:`~lrpgraph.data.executors`: who computes the blocks (in process,
  MirroredStrategy, Ray actors), each through the same
  :meth:`~lrpgraph.data.job.BlockJob.run_block` (:mod:`~lrpgraph.data.job`).

The evaluation of a store (:mod:`~lrpgraph.data.evaluate`, ``lrpgraph.evaluate(store,
model, data, metrics=...)``) is one more per-block computation on the same loop
(:func:`run_blocks`), written as per-sample columns of the store.

Around them: :mod:`~lrpgraph.data.store` (the zarr store, written block by block,
marker last), :mod:`~lrpgraph.data.reader` (:func:`open_store`,
:class:`Attributions`), :mod:`~lrpgraph.data.statistics` (the per-sample map
statistics stored, :data:`MAP_STATISTICS`) and :mod:`~lrpgraph.data.reductions`
(states merged over the dataset: :class:`ClassSum`, :class:`TopK`).

A new input kind is a Source; a new per-sample number a map statistic; a new
thing computed over the whole dataset a Reduction; a new place to compute an
executor.  None of them is a new driver: :func:`lrpgraph.concepts.reference_samples`
(the concept wing) is a job of this runner whose result is its reductions.
"""

from .driver import drive, explain_dataset, run_blocks
from .evaluate import StoreEvaluation, evaluate_store
from .executors import InProcess, Mirrored, MirroredMethod, RayExecutor
from .job import BlockJob, BlockResult
from .reader import Attributions, LogitsTopK, open_store
from .reductions import Block, ClassSum, Reduction, TopK
from .sources import SOURCES, ArraySource, FolderSource, Source, TFDataSource, make_source
from .spec import JobSpec, describe_method, software_versions, weights_fingerprint
from .statistics import MAP_STATISTICS, register_map_statistic
from .store import (ArraySpec, IncompleteStoreError, Store, StoreError, StoreExistsError, StoreMismatchError,
                    decode_ids, encode_ids)

__all__ = ["explain_dataset", "open_store", "evaluate_store", "StoreEvaluation", "run_blocks", "Attributions", "drive", "JobSpec", "BlockJob", "BlockResult",
           "make_source", "Source", "ArraySource", "FolderSource", "TFDataSource", "SOURCES", "InProcess", "Mirrored",
           "MirroredMethod", "RayExecutor", "Reduction", "Block", "ClassSum", "TopK", "MAP_STATISTICS",
           "register_map_statistic", "Store", "ArraySpec", "StoreError", "StoreMismatchError", "IncompleteStoreError",
           "StoreExistsError", "encode_ids", "decode_ids", "describe_method", "software_versions",
           "weights_fingerprint", "LogitsTopK"]
