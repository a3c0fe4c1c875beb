"""Sources: the data of a dataset job, read block by block.

One class per input kind, in the manner of Keras's data adapters
(``keras.src.trainers.data_adapters``): each says whether it can handle the data
(:meth:`Source.can_handle`) and turns it into blocks ``(block, x, labels, ids,
valid)`` of ``block_size`` samples, reading only the blocks asked for and
prefetching so that reading overlaps the compute.  :func:`make_source` picks the
first kind that handles the data:

* :class:`TFDataSource`: a ``tf.data.Dataset`` yielding ``x``, ``(x, label)`` or
  ``(x, label, id)``, batched or not (read in order; the blocks before a wanted
  one are read and their ids checked against the store's);
* :class:`FolderSource`: the path of an image folder (files, or one subfolder
  per class giving labels), decoded in parallel by ``tf.data`` with the CLI's
  loader and preprocessed;
* :class:`ArraySource`: numpy ``x`` or ``(x, labels)`` (or a list of per-sample
  arrays).

A new input kind is one more :class:`Source` subclass in :data:`SOURCES`.
"""

from __future__ import annotations

import os
import queue
import re
import threading
from pathlib import Path

import numpy as np
import tensorflow as tf

from ..io import application_preprocess, list_images, load_image, preprocess_fn

__all__ = ["Source", "ArraySource", "FolderSource", "TFDataSource", "SOURCES", "make_source", "prefetch"]


class Source:
    """Blocks of a dataset: ``n`` samples of ``sample_shape``, ``has_labels``,
    ``id_width`` (bytes of the longest id) and ``blocks(block_size, wanted,
    check_done)`` yielding ``(block, x, labels, ids, valid)`` for the wanted
    blocks in increasing order (``valid`` (b,) bool, or None where every sample
    was read; ``check_done(block, ids)`` is called for the blocks read past).
    ``error(i)`` says why sample ``i`` could not be read.

    ``portable``: whether the data may be sent to another process (a Ray actor)
    and read there with :func:`make_source` (arrays and folders: yes;
    a ``tf.data`` pipeline: no, the driver reads its blocks)."""

    kind = "?"
    has_labels = False
    n = 0
    id_width = 1
    sample_shape = None
    portable = True

    @classmethod
    def can_handle(cls, data):
        """Whether this kind of source reads ``data``."""
        raise NotImplementedError

    def blocks(self, block_size, wanted, check_done=None):
        raise NotImplementedError

    def error(self, i):
        return "unreadable"

    def portable_data(self):
        """What :func:`make_source` reads in another process to make this source
        again (only for ``portable`` sources)."""
        raise TypeError(f"a {self.kind} source cannot be sent to another process")


def prefetch(gen, depth=2):
    """Run the generator ``gen`` in a background thread, ``depth`` items ahead."""
    q = queue.Queue(maxsize=depth)
    end = object()
    stop = threading.Event()

    def work():
        try:
            for item in gen:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            q.put((end, e))
            return
        q.put((end, None))

    th = threading.Thread(target=work, daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if isinstance(item, tuple) and len(item) == 2 and item[0] is end:
                if item[1] is not None:
                    raise item[1]
                return
            yield item
    finally:
        stop.set()


class ArraySource(Source):
    """numpy ``x`` or ``(x, labels)`` (a list of per-sample arrays is stacked);
    ids are the sample indices."""

    kind = "arrays"

    @classmethod
    def can_handle(cls, data):
        return not isinstance(data, (str, os.PathLike, tf.data.Dataset))

    @classmethod
    def from_data(cls, data, prepared, **_):
        model_rank = len(prepared.input_specs[0].shape)
        if isinstance(data, tuple) and len(data) == 2 and _rank(data[0]) != model_rank - 1:
            return cls(data[0], data[1], model_rank)  # (x, labels), not two samples
        return cls(data, None, model_rank)

    def __init__(self, x, labels, n_model_rank):
        if isinstance(x, (list, tuple)):
            x = _stack_elements(x)
        x = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
        if x.dtype.kind != "f":
            raise TypeError(f"x has dtype {x.dtype} (element 0 on); the model takes floating-point inputs: apply "
                            "the model's preprocessing and x.astype('float32')")
        if x.ndim != n_model_rank:
            raise ValueError(f"x has shape {x.shape}: element 0 has shape {x.shape[1:]}, rank {x.ndim - 1}; the "
                             f"model takes samples of rank {n_model_rank - 1}")
        self.x = x
        self.n = len(x)
        self.sample_shape = x.shape[1:]
        if labels is not None:
            labels = np.asarray(labels)
            if labels.ndim == 2:  # one-hot
                labels = labels.argmax(-1)
            if labels.shape != (self.n,):
                raise ValueError(f"labels has shape {labels.shape}; it needs one label per sample ({self.n},)")
            if labels.dtype.kind not in "iub":
                raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
            self.has_labels = True
        self.labels = labels
        self.id_width = max(1, len(str(max(self.n - 1, 0))))

    def blocks(self, block_size, wanted, check_done=None):
        def gen():
            for b in wanted:
                s, e = b * block_size, min((b + 1) * block_size, self.n)
                labels = None if self.labels is None else self.labels[s:e]
                yield b, np.ascontiguousarray(self.x[s:e]), labels, [str(i) for i in range(s, e)], None
        return prefetch(gen())

    def portable_data(self):
        return self.x if self.labels is None else (self.x, self.labels)


def _stack_elements(xs):
    """Stack a list of per-sample arrays, naming the first element of another
    shape or dtype."""
    first = np.asarray(xs[0])
    for i, a in enumerate(xs):
        a = np.asarray(a)
        if a.shape != first.shape:
            raise ValueError(f"element {i} has shape {a.shape}; element 0 has {first.shape}: every sample needs "
                             "the same shape (resize them first)")
        if a.dtype.kind != "f":
            raise TypeError(f"element {i} has dtype {a.dtype}; pass floating-point inputs (after the model's "
                            "preprocessing)")
    return np.stack([np.asarray(a) for a in xs])


def _application_preprocess(model):
    """keras.applications' ``preprocess_input`` for a model whose name is an
    application's (``vgg16``, ``mobilenetv2_1.00_224``...), else None
    (:func:`lrpgraph.io.application_preprocess`)."""
    return application_preprocess(model.name)


def _pixel_preprocess(model, preprocess):
    """A function from float RGB pixels in [0, 255] to the model's input: ``"auto"``
    (an application's ``preprocess_input`` for keras.applications models, else
    [0, 1] pixels), a mode of :func:`lrpgraph.io.preprocess_fn`, or a callable."""
    if callable(preprocess):
        return preprocess
    if preprocess in (None, "auto"):
        app = _application_preprocess(model)
        return preprocess_fn("unit") if app is None else preprocess_fn("app", app)
    return preprocess_fn(preprocess)


class FolderSource(Source):
    """An image folder: every image file (one subfolder per class gives labels,
    as in ``keras.utils.image_dataset_from_directory``); ids are the paths
    relative to the folder."""

    kind = "image folder"

    @classmethod
    def can_handle(cls, data):
        return isinstance(data, (str, os.PathLike))

    @classmethod
    def from_data(cls, data, prepared, *, preprocess="auto", image_size=None, **_):
        p = Path(data)
        if p.is_file():
            raise ValueError(f"{p} is a file; data must be a folder of images, numpy arrays or a tf.data.Dataset")
        return cls(p, prepared, preprocess, image_size)

    def __init__(self, folder, prepared, preprocess, image_size):
        self.folder = Path(folder)
        self.paths, labels, self.class_names = list_images(folder)
        self.n = len(self.paths)
        self.has_labels = labels is not None
        self.labels = labels
        shape = tuple(prepared.input_specs[0].shape[1:])
        if len(shape) != 3 or shape[-1] not in (1, 3):
            raise ValueError(f"an image folder feeds models with one (H, W, 1 or 3) image input; "
                             f"{prepared.name!r} takes {shape}")
        size = tuple(shape[:2])
        if image_size is not None:
            size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if None in size:
            raise ValueError(f"{prepared.name!r} accepts any image size: pass image_size=(H, W)")
        self.size, self.channels = size, shape[-1]
        self.sample_shape = size + (self.channels,)
        self.preprocess = _pixel_preprocess(prepared.model, preprocess)
        self.ids = [p.relative_to(self.folder).as_posix() for p in self.paths]
        self.id_width = max(1, max(len(s.encode("utf-8")) for s in self.ids))
        self.errors = {}

    def _load(self, i):
        i = int(i)
        try:
            img = self.preprocess(load_image(self.paths[i], self.size, self.channels)[None])[0]
            return np.asarray(img, np.float32), np.bool_(True)
        except Exception as e:  # noqa: BLE001 - reported per sample by the runner
            self.errors[i] = str(e).splitlines()[0] if str(e) else type(e).__name__
            return np.zeros(self.sample_shape, np.float32), np.bool_(False)

    def blocks(self, block_size, wanted, check_done=None):
        idx = np.concatenate([np.arange(b * block_size, min((b + 1) * block_size, self.n)) for b in wanted])
        shape = self.sample_shape

        @tf.autograph.experimental.do_not_convert
        def load(i):
            img, ok = tf.numpy_function(self._load, [i], (tf.float32, tf.bool), stateful=False)
            img.set_shape(shape)
            ok.set_shape(())
            return i, img, ok

        ds = (tf.data.Dataset.from_tensor_slices(idx.astype(np.int64))
              .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
              .batch(block_size).prefetch(tf.data.AUTOTUNE))
        for b, (i, x, ok) in zip(wanted, ds.as_numpy_iterator()):
            labels = None if self.labels is None else self.labels[i]
            yield b, x, labels, [self.ids[k] for k in i], ok

    def error(self, i):
        return self.errors.get(int(i), "unreadable")

    def portable_data(self):
        return str(self.folder.resolve())


class TFDataSource(Source):
    """A ``tf.data.Dataset`` yielding ``x``, ``(x, label)`` or ``(x, label, id)``,
    batched or not; read in order (it cannot be sent to another process)."""

    kind = "tf.data.Dataset"
    portable = False

    @classmethod
    def can_handle(cls, data):
        return isinstance(data, tf.data.Dataset)

    @classmethod
    def from_data(cls, data, prepared, *, n=None, id_width=256, **_):
        return cls(data, prepared, n, id_width)

    def __init__(self, ds, prepared, n, id_width):
        spec = ds.element_spec
        if isinstance(spec, dict):
            raise TypeError("the dataset yields dicts; map it to x, (x, label) or (x, label, id) tuples")
        parts = spec if isinstance(spec, tuple) else (spec,)
        if not 1 <= len(parts) <= 3:
            raise ValueError(f"the dataset yields {len(parts)}-tuples; explain_dataset reads x, (x, label) or "
                             "(x, label, id)")
        model_rank = len(prepared.input_specs[0].shape)
        xs = parts[0]
        if not isinstance(xs, tf.TensorSpec):
            raise TypeError(f"the dataset's x must be a tensor, got {xs}")
        if not xs.dtype.is_floating:
            raise TypeError(f"the dataset's x elements have dtype {xs.dtype.name} (element 0 on); the model takes "
                            "floating-point inputs after its preprocessing: ds.map(lambda x, *rest: "
                            "(preprocess(tf.cast(x, tf.float32)), *rest))")
        rank = xs.shape.rank
        if rank == model_rank:
            ds = ds.unbatch()
        elif rank != model_rank - 1:
            raise ValueError(f"the dataset's x elements have shape {xs.shape}; the model takes samples of shape "
                             f"{tuple(prepared.input_specs[0].shape[1:])} (or batches of them)")
        card = int(ds.cardinality())
        if n is None:
            if card == tf.data.INFINITE_CARDINALITY:
                raise ValueError("the dataset is infinite (a .repeat()?): take the samples to explain first")
            if card < 0:
                raise ValueError("the dataset's number of samples is unknown (cardinality unknown, e.g. after "
                                 "batch, filter or from_generator), and the store is sized up front: pass "
                                 "n=NUMBER_OF_SAMPLES, or n='count' to read the dataset once to count them")
            n = card
        elif n == "count":
            n = int(ds.reduce(np.int64(0), lambda c, _: c + 1))
        elif card >= 0 and card != n:
            raise ValueError(f"n={n} but the dataset holds {card} samples")
        self.want_shape = tuple(prepared.input_specs[0].shape[1:])
        got = tuple(xs.shape[1:] if rank == model_rank else xs.shape)
        if any(g is not None and w is not None and g != w for g, w in zip(got, self.want_shape)):
            raise ValueError(f"the dataset's x elements have shape {got} (element 0 on); the model takes "
                             f"{self.want_shape}")
        self.n = int(n)
        self.has_labels = len(parts) >= 2
        self.sample_shape = tuple(xs.shape[1:] if rank == model_rank else xs.shape)
        self.id_width = int(id_width)
        self.ds = ds
        self.n_parts = len(parts)
        self.num_classes = prepared.num_classes

    def blocks(self, block_size, wanted, check_done=None):
        want = list(self.want_shape)
        n_parts = self.n_parts

        def checked(i, el):
            el = el if isinstance(el, tuple) else (el,)
            x = el[0]
            shp = tf.shape(x)
            known = [k for k, s in enumerate(want) if s is not None]
            ok = tf.reduce_all(tf.equal(tf.gather(shp, known), [want[k] for k in known]))
            msg = tf.strings.format("lrpgraph-bad-element {} has shape {}", (i, shp))
            with tf.control_dependencies([tf.debugging.Assert(ok, [msg])]):
                x = tf.identity(x)
            x = tf.ensure_shape(x, [None] * len(want))
            label = el[1] if n_parts >= 2 else tf.constant(-1, tf.int64)
            if label.shape.rank == 1:  # one-hot
                label = tf.argmax(label, output_type=tf.int64)
            label = tf.cast(label, tf.int64)
            ident = el[2] if n_parts == 3 else tf.strings.as_string(i)
            if ident.dtype != tf.string:
                ident = tf.strings.as_string(ident)
            return x, label, ident

        ds = self.ds.enumerate().map(checked, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(block_size).prefetch(tf.data.AUTOTUNE)
        wanted_set = set(wanted)
        last = max(wanted)
        it = iter(ds)
        b = 0
        while True:
            try:
                x, labels, ids = next(it)
            except StopIteration:
                break
            except tf.errors.InvalidArgumentError as e:
                m = re.search(r"lrpgraph-bad-element (\d+) has shape \[([^\]]*)\]", str(e))
                if m:
                    got = tuple(int(s) for s in m.group(2).split())
                    raise ValueError(f"element {m.group(1)} of the dataset has shape {got}; the model takes "
                                     f"{tuple(self.want_shape)}") from None
                raise
            ids = [s.decode("utf-8") for s in ids.numpy()]
            expected = min(block_size, self.n - b * block_size)
            if len(ids) != expected:
                got = b * block_size + len(ids)
                if len(ids) > expected:
                    raise ValueError(f"the dataset holds more than the n={self.n} samples the store was sized for "
                                     f"(at least {got})")
                raise ValueError(f"the dataset ended after {got} samples; the store was sized for n={self.n}")
            if b in wanted_set:
                yield b, x.numpy(), labels.numpy(), ids, None
                if b == last:
                    return
            elif check_done is not None:
                check_done(b, ids)
            b += 1
        if b <= last:
            raise ValueError(f"the dataset ended after {b * block_size} samples; the store was sized for n={self.n}")


def _rank(a):
    """The rank of an array, or of a list of per-sample arrays (without stacking it)."""
    if isinstance(a, (list, tuple)):
        return 1 + _rank(a[0]) if len(a) else 1
    return np.ndim(a)


SOURCES = (TFDataSource, FolderSource, ArraySource)  # asked in order: the first that handles the data reads it


def make_source(data, prepared, *, n=None, preprocess="auto", image_size=None, id_width=256):
    """The :class:`Source` for ``data``: a ``tf.data.Dataset`` (yielding x, (x, label)
    or (x, label, id), batched or not), numpy ``x`` or ``(x, labels)``, or the path
    of an image folder (files, or one subfolder per class).  ``prepared`` is the
    method's prepared model (its input shape); ``n`` the number of samples of a
    dataset whose cardinality is unknown ("count": count them); ``preprocess`` and
    ``image_size`` for image folders; ``id_width`` the bytes kept per string id."""
    for kind in SOURCES:
        if kind.can_handle(data):
            return kind.from_data(data, prepared, n=n, preprocess=preprocess, image_size=image_size,
                                  id_width=id_width)
    raise TypeError(f"cannot read data of type {type(data).__name__}: pass numpy arrays, an image folder's path "
                    "or a tf.data.Dataset")
