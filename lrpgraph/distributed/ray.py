"""Explain a dataset on a Ray cluster: :func:`explain_dataset`.

::

    import lrpgraph.distributed.ray as lray
    att = lray.explain_dataset("model.keras", "lrp.epsilon", (x, labels), "maps.zarr",
                               batch_size=32, num_workers=4, num_gpus=1, address="auto")

The same job as :func:`lrpgraph.explain_dataset`, written into the same store
(byte for byte: the arrays, the job metadata and the layout), by a pool of Ray
actors instead of one process.  A thin facade over :mod:`lrpgraph.data`: the
driver (:func:`lrpgraph.data.driver.drive`, the loop every dataset job runs)
with the Ray executor (:class:`lrpgraph.data.executors.RayExecutor`):

* the driver describes the job (it loads the model once to read the method's
  parameters, the weights fingerprint and the map shape), opens or creates the
  store, and asks it which blocks are missing (a resumed run schedules only those);
* a pool of ``num_workers`` actors (:class:`lrpgraph.data.executors.BlockWriter`,
  ``num_cpus`` / ``num_gpus`` each) each load the model (a ``.keras`` file, or a
  zero-argument factory), build the method once, open the store with
  ``Store.open(path, "r+")``, and for every block index they receive compute its
  arrays (``BlockJob.run_block``) and write them themselves
  (``Store.write_block``: chunks first, marker last).  They return only the block
  index, its sample count, the seconds it took and its reduction partials: the
  driver never holds the maps;
* an actor whose process dies is started again (``max_restarts``) and the block
  it held is retried on it (``max_task_retries``).

Where the data is read.  Numpy arrays travel once through Ray's object store
(the actors slice their blocks, zero-copy); an image folder is read by the actors
(each decodes its own blocks' files, so the folder must be visible on every node,
like the store); a ``tf.data.Dataset`` cannot be sent to other processes, so the
driver reads its missing blocks and sends them through the object store.

The store must be reachable by the driver and every actor under the same path:
a shared file system, or an fsspec URL (``s3://...``, ``gs://...``).  Distinct
blocks write distinct chunk files and markers, so actors never collide.
"""

from __future__ import annotations

import os

from ..data.driver import drive
from ..data.executors import BlockWriter, RayExecutor, build_job, import_ray, load_model
from ..data.sources import make_source
from ..data.spec import JobSpec

__all__ = ["explain_dataset", "BlockWriter", "RayExecutor", "load_model", "import_ray"]


def explain_dataset(model, method, data, store, *, params=None, target="label", batch_size=32, num_workers=2,
                    num_gpus=0, num_cpus=1, address=None, resume=True, overwrite=False, progress=True, reduce=None,
                    dtype="float32", metrics=(), topk=5, skip_invalid=False, n=None, preprocess="auto",
                    image_size=None, id_width=256, reductions=(), max_restarts=3, max_task_retries=3):
    """Explain every sample of ``data`` into the store at ``store`` on a Ray cluster.

    Parameters
    ----------
    model : str or callable
        A ``.keras`` file (readable on the driver and on every node), or a
        zero-argument factory returning the keras model (pickled to the actors;
        it must give the same weights every time: load them, do not initialize
        at random; an actor whose weights differ from the driver's stops with a
        :class:`lrpgraph.data.store.StoreMismatchError`).
    method : str
        A method name (``lrpgraph.methods()``); ``params`` its parameters, as for
        ``lrpgraph.create_analyzer(method, model, **params)``.
    data, store, target, batch_size, resume, overwrite, progress, reduce, dtype, metrics, topk, skip_invalid, n, \
preprocess, image_size, id_width, reductions
        As for :func:`lrpgraph.explain_dataset` (a target callable, a reduction
        must be picklable).  Each actor sends its blocks' reduction partials back;
        the driver merges them.
    num_workers : int
        Actors in the pool (each builds its analyzer once).
    num_gpus, num_cpus : float
        Resources per actor, passed to Ray (``num_gpus=1``: one GPU each).
    address : str, optional
        The Ray cluster (``"auto"``, ``"ray://host:10001"``...); ``"local"``
        starts a new Ray on this machine; None does what ``ray.init()`` does
        (joins the cluster in ``RAY_ADDRESS``, else starts a local one).  A Ray this call starts is shut down at
        the end; one already initialized (``ray.init(...)`` before the call) is
        used as it is.

    Returns
    -------
    lrpgraph.Attributions
        The handle on the store; ``.computed`` lists the blocks this call computed,
        ``.timings`` maps each to the seconds its actor spent on it (read,
        compute, write).

    max_restarts, max_task_retries : int
        Fault tolerance (Ray's actor options): how often a dead actor (its
        process killed, its node lost) is started again, and how often the block
        it held is retried on the restarted actor (-1: without limit).  A block
        the dead actor had already marked written is not written again.

    A failed run (an actor's error, retries run out, Ctrl-C) keeps every block
    already written; rerunning the same call computes only the missing ones.
    """
    import_ray()  # no Ray: the error says how to install it, before anything is read or written
    spec = JobSpec(target=target, batch_size=batch_size, reduce=reduce, dtype=dtype, statistics=metrics,
                   reductions=reductions, topk=topk, skip_invalid=skip_invalid, n=n, preprocess=preprocess,
                   image_size=image_size, id_width=id_width)
    executor = RayExecutor(model, method, params, num_workers=num_workers, num_gpus=num_gpus, num_cpus=num_cpus,
                           address=address, max_restarts=max_restarts, max_task_retries=max_task_retries)
    job = build_job(executor.model, method, params, spec)  # the driver's: the identity, the map shape
    if isinstance(data, (str, os.PathLike)):
        data = os.path.abspath(os.fspath(data))
    source = make_source(data, job.prepared, **spec.source_options())
    return drive(job, source, store, executor, resume=resume, overwrite=overwrite, progress=progress)
