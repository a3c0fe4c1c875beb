"""The one driver loop of every dataset job, :func:`drive`, and its in-process
facade :func:`explain_dataset` (``lrpgraph.explain_dataset``).

::

    job = BlockJob(method, JobSpec(target="label", batch_size=32, ...))
    source = make_source(data, job.prepared, **job.spec.source_options())
    att = drive(job, source, "maps.zarr", InProcess(job))      # or Mirrored(...), RayExecutor(...)

The driver owns everything that is the same whichever executor computes:

1. check the data (:meth:`BlockJob.check_source`) and hash the weights while the
   first block computes;
2. open or resume the store: an existing one must match the job (its identity,
   layout and block size) unless ``overwrite``; ``resume=False`` refuses it;
3. hand out the blocks still to do: those without their marker, and those not yet
   merged into every reduction (:mod:`lrpgraph.data.reductions`);
4. take each finished block from the executor and write it (in-process
   executors hand back the arrays; Ray actors write their blocks themselves and
   the driver checks that the block is marked written), merge its reduction
   partials, save the reductions (at most every :data:`SAVE_EVERY` seconds, and
   whenever the run ends or stops), advance the progress bar, call ``on_block``;
5. Ctrl-C: the first finishes the block in flight, the second stops at once;
   either way the SIGINT handler found on entry is put back, and the stop
   message says how many blocks are in the store and that rerunning the same
   call resumes.

The store is created when its layout is known: from the first computed block for
in-process executors (no probe), before any block for executors whose workers
write (one zero sample explained for the map shape).
"""

from __future__ import annotations

import bisect
import contextlib
import signal
import sys
import threading
import time

import keras

from .executors import InProcess, Mirrored
from .job import BlockJob
from .reader import Attributions
from .sources import make_source
from .spec import JobSpec, software_versions
from .store import Store, StoreError, StoreExistsError, decode_ids

__all__ = ["explain_dataset", "drive", "run_blocks", "SAVE_EVERY"]

SAVE_EVERY = 30.0  # seconds between two saves of the reductions' running state


class _Interrupt:
    """SIGINT while blocks are computed: finish the block in flight, then stop.
    A second Ctrl-C stops at once (that block is recomputed on resume).  The
    handler found on entry (whatever it was) is restored on exit; a SIGINT ignored
    when the run starts (nohup, a background job of a script) stays ignored."""

    def __init__(self):
        self.requested = False
        self.installed = False
        self.found = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # else Ctrl-C is not ours to catch
            self.found = signal.getsignal(signal.SIGINT)
            if self.found is not signal.SIG_IGN:
                signal.signal(signal.SIGINT, self._handle)
                self.installed = True
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nlrpgraph: interrupted: finishing the block in flight (Ctrl-C again to stop now)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self.installed:
            # None: a handler not installed from Python; the default is the closest we can put back
            signal.signal(signal.SIGINT, signal.SIG_DFL if self.found is None else self.found)
        return False


class _Reductions:
    """The job's reductions: their running states, the blocks in each, saving."""

    def __init__(self, reductions):
        self.items = {r.name: r for r in reductions}
        self.state = {name: None for name in self.items}
        self.blocks = {name: set() for name in self.items}
        self.dirty = False
        self.saved_at = time.monotonic()

    def load(self, store):
        for name in self.items:
            self.state[name], blocks = store.read_reduction(name)
            self.blocks[name] = set(blocks)

    def uncovered(self, b):
        return any(b not in blocks for blocks in self.blocks.values())

    def merge(self, b, partials):
        for name, r in self.items.items():
            if b in self.blocks[name]:
                continue  # merged before (its marker was lost): never twice
            if name not in partials:
                raise StoreError(f"block {b} came back without the partial state of reduction {name!r}")
            s = self.state[name]
            self.state[name] = partials[name] if s is None else r.merge(s, partials[name])
            self.blocks[name].add(b)
            self.dirty = True

    def save(self, store, force=False):
        if self.dirty and (force or time.monotonic() - self.saved_at >= SAVE_EVERY):
            for name in self.items:
                store.write_reduction(name, self.state[name], self.blocks[name])
            self.dirty = False
            self.saved_at = time.monotonic()


def _stop_message(st):
    if st is None:
        return "\nlrpgraph: stopped before the first block was written; nothing was stored."
    left = len(st.missing_blocks())
    return (f"\nlrpgraph: stopped; {st.n_blocks - left} of {st.n_blocks} blocks are in {st.path}. Run the same call "
            f"(or command) again to compute the other {left}; blocks already written are kept.")


def drive(job, source, store, executor, *, resume=True, overwrite=False, progress=True, on_block=None):
    """Run ``job`` (a :class:`lrpgraph.data.job.BlockJob`) over ``source`` (a
    :class:`lrpgraph.data.sources.Source`) into the store at ``store`` with
    ``executor`` (:mod:`lrpgraph.data.executors`); returns the
    :class:`lrpgraph.data.reader.Attributions` handle with ``.computed`` (the
    blocks this call computed, sorted) and ``.timings`` (block -> seconds).
    See the module docstring for what happens, in order."""
    spec = job.spec
    bs = spec.batch_size
    job.check_source(source)
    job.start_fingerprint()  # overlaps the first block
    n_blocks = -(-source.n // bs)
    st = Store.find(store)
    if st is not None and not overwrite:
        if not resume:
            raise StoreExistsError(f"{st.path} already holds a store; pass resume=True to finish it or "
                                   "overwrite=True to replace it")
        job.set_map_shape(st.arrays["relevance"].shape)  # no probe; write_block checks the computed maps
        st.check_compatible(n=source.n, block_size=bs, arrays=job.arrays(source.id_width), job=job.identity)
    else:
        st = None
        if executor.writes_blocks:  # the workers open the store: create it now, the layout from a probe
            st = Store.create(store, n=source.n, block_size=bs, arrays=job.arrays(source.id_width, source.sample_shape),
                              job=job.identity, versions=software_versions(), overwrite=overwrite)
    reductions = _Reductions(spec.reductions)
    if st is not None:
        reductions.load(st)
        done = set(st.done_blocks())
    else:
        done = set()
    todo = [b for b in range(n_blocks) if b not in done or reductions.uncovered(b)]
    att = Attributions(st) if st is not None else None
    computed, timings = [], {}
    if not todo:
        if progress:
            print(f"{st.path}: all {st.n_blocks} blocks already written", flush=True)
        att.computed, att.timings = computed, timings
        return att
    bar = None
    if progress:
        if done:
            print(f"resuming {st.path}: {len(done)} of {n_blocks} blocks already written", flush=True)
        bar = keras.utils.Progbar(sum(min((b + 1) * bs, source.n) - b * bs for b in todo), unit_name="sample")

    def check_done(b, ids):
        """The ids of a block read past (tf.data) must be the stored ones."""
        s = b * bs
        have = decode_ids(st["ids"][s:s + len(ids)])
        if have != list(ids):
            raise ValueError(f"block {b} of the data differs from the store's (sample ids {have[:3]}... in the store, "
                             f"{list(ids)[:3]}... now): the dataset's order changed (shuffled?). Resuming needs the "
                             "same order; pass overwrite=True to start again")

    runs = executor.run(job, source, todo, store=st, write={b for b in todo if b not in done}, check_done=check_done)

    def write(r):
        nonlocal st, att
        b = r.block
        if r.arrays is not None:
            if st is None:
                job.set_map_shape(r.arrays["relevance"].shape[1:])
                st = Store.create(store, n=source.n, block_size=bs, arrays=job.arrays(source.id_width),
                                  job=job.identity, versions=software_versions(), overwrite=overwrite)
                att = Attributions(st)
            if b not in done:
                st.write_block(b, r.arrays)
        elif not st.is_done(b):
            raise StoreError(f"block {b} was reported computed but is not marked written in {st.path}")
        done.add(b)
        reductions.merge(b, r.partials)
        reductions.save(st)
        return att

    def stopped(interrupted):
        _save_quietly(reductions, st)
        if interrupted or (st is not None and executor.writes_blocks):
            print(_stop_message(st), file=sys.stderr, flush=True)

    run_blocks(runs, write, stopped, bar=bar, on_block=on_block)
    reductions.save(st, force=True)
    return att


def run_blocks(runs, write, stopped, *, bar=None, on_block=None):
    """The loop every dataset job runs (the explanations of :func:`drive`, the
    metrics of :func:`lrpgraph.data.evaluate.evaluate_store`): take each finished
    block from ``runs`` (an executor's iterator of
    :class:`lrpgraph.data.executors.Done`), ``write(done) -> Attributions`` it
    into the store, record it in the handle's ``.computed`` / ``.timings``,
    advance ``bar``, call ``on_block(block, attributions)``; Ctrl-C finishes the
    block in flight (:class:`_Interrupt`).  When the loop stops early,
    ``stopped(interrupted)`` runs (save state, say how to resume) and the error
    propagates.  Returns ``(computed, timings)``."""
    computed, timings = [], {}
    count = 0
    with _Interrupt() as intr, contextlib.closing(runs):  # closing: the executor's workers stop with the loop
        try:
            for r in runs:
                att = write(r)
                bisect.insort(computed, r.block)  # Ray finishes blocks in any order
                timings[r.block] = r.seconds
                att.computed, att.timings = computed, timings
                count += r.samples
                if bar is not None:
                    bar.update(count)
                if on_block is not None:
                    on_block(r.block, att)
                if intr.requested:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            stopped(True)
            raise
        except Exception:
            stopped(False)
            raise
    return computed, timings


def _save_quietly(reductions, st):
    """Save the reductions on the way out of a stopped run (a failure to save must
    not hide why it stopped; the blocks not saved are merged again next time)."""
    if st is None:
        return
    try:
        reductions.save(st, force=True)
    except Exception as e:  # noqa: BLE001 - reported, the original error propagates
        print(f"lrpgraph: could not save the reductions ({e}); the next run merges their blocks again",
              file=sys.stderr, flush=True)


def explain_dataset(analyzer, data, store, *, target="label", batch_size=32, resume=True, progress=True,
                    strategy=None, reduce=None, dtype="float32", metrics=(), overwrite=False,
                    skip_invalid=False, n=None, topk=5, preprocess="auto", image_size=None, id_width=256,
                    on_block=None, max_memory=None, reductions=()):
    """Explain every sample of ``data`` with ``analyzer`` into the store at ``store``.

    A thin facade: a :class:`~lrpgraph.data.spec.JobSpec` of the knobs, the
    source (:func:`~lrpgraph.data.sources.make_source`), the executor
    (:class:`~lrpgraph.data.executors.InProcess`, or
    :class:`~lrpgraph.data.executors.Mirrored` with a strategy) and :func:`drive`.

    Parameters
    ----------
    analyzer : lrpgraph.Method
        Any method (``lrpgraph.create_analyzer(name, model, **params)``) of a
        one-input model.
    data : tf.data.Dataset, numpy arrays or an image folder
        A dataset yielding ``x``, ``(x, label)`` or ``(x, label, id)`` (batched or
        not; in a fixed order: resuming relies on it); ``x`` or ``(x, labels)``
        numpy arrays; or the path of a folder of images (one subfolder per class
        gives labels, as in ``keras.utils.image_dataset_from_directory``), decoded
        in parallel by the CLI's loader, resized to the model's input and
        preprocessed with ``preprocess``.
    store : str
        A local folder or fsspec URL for the zarr store (see
        :mod:`lrpgraph.data.store`): one chunk per block of ``batch_size`` samples.
    target : "label", "predicted", int, list of ints, array or callable
        The class explained per sample: the label, the predicted class, one class
        for all, several classes for all (``[3, 7]``: maps (N, 2, ...)), an (N,) or
        (N, T) array in data order, or ``f(x, labels) -> (b,)`` per block.
    batch_size : int
        Samples per block: per analysis call and per stored chunk.
    max_memory : int or str, optional
        A memory budget ("8GB"): each block is analysed in the largest chunks whose
        measured peak fits it (:mod:`lrpgraph.memory`; the per-sample cost is
        measured once per method and input shape).  The stored chunks stay blocks
        of ``batch_size``.
    resume : bool
        Finish an existing store made by the same job (only its missing blocks are
        computed).  With ``False`` an existing store is an error.
    progress : bool
        A ``keras.utils.Progbar`` (rate and ETA) on stdout.
    strategy : tf.distribute.Strategy, optional
        E.g. ``tf.distribute.MirroredStrategy()``: each block is split over the
        replicas inside one compiled call (rule-engine methods).
    reduce : None or "sum"
        "sum" stores (N, H, W) maps summed over the channels.
    dtype : "float32" or "float16"
        The stored maps' dtype (metrics are computed in float32 first).
    metrics : sequence of str
        Per-sample map statistics to store (names in
        :data:`lrpgraph.data.statistics.MAP_STATISTICS`: ``relevance_sum``,
        ``positive_share``, ...), as arrays ``metric_<name>``.
    reductions : sequence of lrpgraph.data.reductions.Reduction
        States merged over the whole dataset and kept in the store, resumable
        like the blocks (``ClassSum()``: the per-class sum of the maps;
        ``TopK(k, score)``: a running top-k per channel); read them back with
        ``att.reductions``.
    overwrite : bool
        Replace an existing store (of any job) instead of resuming it.
    skip_invalid : bool
        Record samples with NaN/Inf inputs (or unreadable image files) as invalid
        (``valid`` False, zero map, target -1) instead of stopping with an error.
    n : int or "count", optional
        The number of samples when the dataset cannot say (cardinality unknown):
        the store is sized up front.  "count" reads the dataset once to count.
    topk : int
        How many of the largest logits (values and indices) to keep per sample.
    preprocess, image_size
        Image folders: ``preprocess`` "auto" (keras.applications' own
        ``preprocess_input`` when the model's name is an application's, [0, 1]
        pixels otherwise), "unit", "raw", "caffe", "tf", "torch" or a function of
        [0, 255] pixels; ``image_size`` (H, W) for models taking any size.
    id_width : int
        Bytes kept per sample id for datasets that yield string ids.
    on_block : callable, optional
        ``on_block(block_index, attributions)`` after each block is written.

    Returns
    -------
    Attributions
        The handle on the store (also :func:`open_store`); ``.computed`` lists the
        blocks this call computed.

    Ctrl-C finishes the block in flight, prints how to resume and raises
    KeyboardInterrupt; rerunning the same call computes only the missing blocks.
    """
    spec = JobSpec(target=target, batch_size=batch_size, reduce=reduce, dtype=dtype, statistics=metrics,
                   reductions=reductions, topk=topk, skip_invalid=skip_invalid, max_memory=max_memory, n=n,
                   preprocess=preprocess, image_size=image_size, id_width=id_width)
    if strategy is None:
        executor = InProcess()
        job = BlockJob(analyzer, spec)
    else:
        executor = Mirrored(strategy)
        job = executor.job(analyzer, spec)
    source = make_source(data, job.prepared, **spec.source_options())
    return drive(job, source, store, executor, resume=resume, overwrite=overwrite, progress=progress,
                 on_block=on_block)
