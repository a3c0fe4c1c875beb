"""The on-disk store of a dataset's explanations: a zarr group written block by block.

Every writer of a dataset store goes through :class:`Store`: the driver of
:mod:`lrpgraph.data.driver` (for the in-process and MirroredStrategy executors)
and each actor of a Ray job (every actor opens the same store with
:meth:`Store.open` in mode ``"r+"`` and writes its own blocks).  Nothing here
imports TensorFlow.

Layout (``path`` a local folder or any fsspec URL zarr accepts)::

    path/                         zarr group (format 2 with zarr 2.x, 3 with zarr 3.x)
      <array>                     one zarr array per field, first axis = sample,
                                  chunks = (block_size, whole sample): one chunk per block
      _done/<block index>         empty marker file, written LAST for each block
      <column>                    a per-sample column added after the job (eval_<metric>,
                                  lrpgraph.data.evaluate): one (n,) array, one chunk per block
      _columns/<column>/<block>   the column's marker of one block, written LAST
      _reductions/<name>          the running state of one per-job reduction
                                  (lrpgraph.data.reductions): one .npz file holding the
                                  state's arrays and the blocks merged into it, replaced
                                  whole (temporary file + rename) each time it is saved
    group attrs:
      lrpgraph_store  {"format", "n", "block_size", "n_blocks", "arrays": {name: spec}}
                      written last at creation: a group without it is an
                      interrupted creation (no block can be done in it)
      job             what made the store (method, parameters, model, weights
                      fingerprint, target, reduce, dtype...): a rerun must match it
      versions        lrpgraph / TensorFlow / zarr versions (informative only)
      lrpgraph_columns  {column: {"spec": ArraySpec json, "meta": what computed it}}: the
                      columns added after the job (:meth:`Store.add_columns`); the job's
                      own arrays and markers never change when a column is added

Samples ``[i * block_size, min((i + 1) * block_size, n))`` form block ``i``.

Atomicity.  A block spans several arrays, so no single file write makes it whole.
:meth:`Store.write_block` writes every array's chunk of the block first and the
block's marker ``_done/<i>`` last; a block without its marker counts as missing
and is written again in full by the next run.  A kill at any moment therefore
leaves each block whole (marker present) or absent (marker absent, whatever
chunk files it left are overwritten).  The marker is an empty file: it exists or
not, and cannot be half-written.  (zarr's local stores also write each chunk
file to a temporary name and rename it; object stores write objects whole.)

Reductions.  A reduction's state and the list of blocks merged into it are one
file, so they change together.  A block counts as done for the reduction only when
it is in that list; the driver computes (and merges) a block that is marked but not
in the list, and recomputes without merging one that is in the list but not marked,
so a block is never merged twice whatever the order of a kill.

Store state is typed: :class:`StoreError` (an unusable path),
:class:`IncompleteStoreError` (a creation that was interrupted),
:class:`StoreExistsError` (a store where none was expected),
:class:`StoreMismatchError` (a store of another job).

Concurrency.  Distinct blocks touch distinct chunk files and distinct markers,
so several processes (Ray actors) may write distinct blocks of one store at the
same time; the group attributes are written only at creation.

Typical use (what a Ray actor does)::

    store = Store.open(path, mode="r+")
    for i in store.missing_blocks():
        start, stop = store.block_range(i)
        store.write_block(i, {"relevance": maps, "targets": t, ...})  # every array of the store

Identifiers (sample ids, file paths) are stored as zero-padded UTF-8 bytes in a
``(n, width)`` uint8 array, which every zarr version reads the same way:
:func:`encode_ids` / :func:`decode_ids`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass

import numpy as np

__all__ = ["Store", "ArraySpec", "StoreError", "StoreMismatchError", "IncompleteStoreError", "StoreExistsError",
           "encode_ids", "decode_ids", "is_url", "FORMAT"]

FORMAT = 1
_DONE = "_done"
_REDUCTIONS = "_reductions"
_LAYOUT_KEY = "lrpgraph_store"
_COLUMNS = "_columns"
_COLUMNS_KEY = "lrpgraph_columns"


class StoreError(ValueError):
    """A store path that cannot be used (a file, not a store, unwritable)."""


class IncompleteStoreError(StoreError):
    """A store whose creation was interrupted (its layout attribute was never
    written): it holds no results, and a job recreates it when no block is marked."""


class StoreExistsError(StoreError):
    """A store exists where a new one was to be created (pass ``overwrite=True``
    to replace it, or ``resume=True`` to finish it)."""


class StoreMismatchError(StoreError):
    """An existing store was made by a different job (method, parameters, model...)."""


@dataclass(frozen=True)
class ArraySpec:
    """One per-sample field: ``shape`` of one sample (without the sample axis),
    numpy ``dtype`` name and the ``fill`` value of samples not yet written."""

    shape: tuple
    dtype: str
    fill: object = 0

    def to_json(self):
        return {"shape": list(self.shape), "dtype": str(np.dtype(self.dtype)), "fill": self.fill}

    @classmethod
    def from_json(cls, d):
        return cls(tuple(d["shape"]), d["dtype"], d.get("fill", 0))


def is_url(path):
    """True for ``scheme://...`` locations (handled through fsspec); ``file://``
    URLs are local paths."""
    return "://" in str(path) and not str(path).startswith("file://")


def _normalize(path):
    path = str(path)
    return path[len("file://"):] if path.startswith("file://") else path


def encode_ids(ids, width):
    """(len(ids), width) uint8: each id's UTF-8 bytes, zero-padded.  An id longer
    than ``width`` bytes is an error naming it."""
    out = np.zeros((len(ids), width), np.uint8)
    for k, s in enumerate(ids):
        b = s if isinstance(s, bytes) else str(s).encode("utf-8")
        if len(b) > width:
            raise ValueError(f"sample id {b.decode('utf-8', 'replace')!r} is {len(b)} bytes long; the store keeps "
                             f"ids of at most {width} bytes (pass a larger id_width, or shorter ids)")
        out[k, :len(b)] = np.frombuffer(b, np.uint8)
    return out


def decode_ids(a):
    """The strings of an (n, width) uint8 id array (or one (width,) row)."""
    a = np.asarray(a, np.uint8)
    if a.ndim == 1:
        return a.tobytes().rstrip(b"\0").decode("utf-8")
    return [row.tobytes().rstrip(b"\0").decode("utf-8") for row in a]


def _zarr():
    try:
        import zarr  # imported on first use: `import lrpgraph` stays free of zarr's import time
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ImportError("dataset stores need zarr: pip install 'zarr>=2.16'") from e
    return zarr


def _create_array(group, name, shape, chunks, dtype, fill):
    if hasattr(group, "create_array"):  # zarr >= 3
        return group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill, overwrite=True)
    return group.create_dataset(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill,
                                overwrite=True)


class _Folder:
    """A folder of small files inside a store (``_done``, ``_reductions``), on the
    local disk or through fsspec."""

    def __init__(self, path, name):
        self.url = is_url(path)
        if self.url:
            import fsspec  # only for URL stores (an optional dependency of zarr's)

            self.fs, root = fsspec.core.url_to_fs(str(path))
            self.dir = root.rstrip("/") + "/" + name
        else:
            self.dir = os.path.join(str(path), name)

    def read(self, name):
        """The bytes of file ``name``, or None where there is none."""
        p = f"{self.dir}/{name}"
        try:
            if self.url:
                return self.fs.cat_file(p)
            with open(p, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write(self, name, data):
        """Replace file ``name`` by ``data`` whole: a temporary file renamed over it
        (local), one object put (fsspec)."""
        p = f"{self.dir}/{name}"
        if self.url:
            self.fs.makedirs(self.dir, exist_ok=True)
            self.fs.pipe_file(p, data)
            return
        os.makedirs(self.dir, exist_ok=True)
        tmp = f"{p}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, p)

    def remove(self, name):
        p = f"{self.dir}/{name}"
        try:
            self.fs.rm(p) if self.url else os.remove(p)
        except FileNotFoundError:
            pass


class _Markers(_Folder):
    """The ``_done/<i>`` marker files of a store (or those of one added column,
    ``_columns/<name>/<i>``)."""

    def __init__(self, path, name=_DONE):
        super().__init__(path, name)

    def list(self):
        if self.url:
            try:
                names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.dir, detail=False)]
            except FileNotFoundError:
                return set()
        else:
            if not os.path.isdir(self.dir):
                return set()
            names = os.listdir(self.dir)
        return {int(s) for s in names if s.isdigit()}

    def set(self, i):
        p = f"{self.dir}/{int(i)}"
        if self.url:
            self.fs.makedirs(self.dir, exist_ok=True)
            self.fs.pipe_file(p, b"")
        else:
            os.makedirs(self.dir, exist_ok=True)
            with open(p, "wb"):
                pass

    def clear(self, i):
        self.remove(str(int(i)))


def _remove_tree(path):
    if is_url(path):
        import fsspec  # only for URL stores (an optional dependency of zarr's)

        fs, root = fsspec.core.url_to_fs(str(path))
        if fs.exists(root):
            fs.rm(root, recursive=True)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _has_zarr_metadata(path):
    """Whether the local folder ``path`` is a zarr group (format 2 or 3)."""
    return any(os.path.exists(os.path.join(path, f)) for f in (".zgroup", "zarr.json"))


def _check_local_target(path):
    """Errors for a local store path that is a file or a foreign non-empty folder."""
    if os.path.isfile(path):
        raise StoreError(f"store path {path} is a file; a store is a folder: pick a new path (e.g. {path}.zarr)")
    if os.path.isdir(path) and os.listdir(path) and not _has_zarr_metadata(path):
        raise StoreError(f"{path} exists and is not a dataset store (no zarr metadata in it); lrpgraph does not "
                         "write into or delete other folders: pick a new path or remove it yourself")


class Store:
    """A dataset store (see the module docstring for the layout and guarantees).

    Create one with :meth:`create` (or :meth:`open_or_create`), open one with
    :meth:`open`.  ``n`` samples in blocks of ``block_size``; ``arrays`` maps each
    field name to its :class:`ArraySpec`; ``job`` / ``versions`` are the dicts
    stored at creation; ``path`` the location."""

    def __init__(self, path, group, mode):
        self.path = str(path)
        self.group = group
        self.mode = mode
        attrs = dict(group.attrs)
        if _LAYOUT_KEY not in attrs:
            raise IncompleteStoreError(f"{path} is an incomplete store (its creation was interrupted); it holds no "
                                       "results: rerun the job (it recreates the store), or pass overwrite=True")
        layout = attrs[_LAYOUT_KEY]
        if layout.get("format") != FORMAT:
            raise StoreError(f"{path} is a store of format {layout.get('format')}; this lrpgraph reads format "
                             f"{FORMAT}")
        self.n = int(layout["n"])
        self.block_size = int(layout["block_size"])
        self.n_blocks = int(layout["n_blocks"])
        self.arrays = {k: ArraySpec.from_json(v) for k, v in layout["arrays"].items()}
        self.job = attrs.get("job", {})
        self.versions = attrs.get("versions", {})
        self.columns = {k: (ArraySpec.from_json(v["spec"]), v.get("meta", {}))
                        for k, v in attrs.get(_COLUMNS_KEY, {}).items()}
        self._markers = _Markers(path)
        self._column_markers = {k: _Markers(path, f"{_COLUMNS}/{k}") for k in self.columns}
        self._reductions = _Folder(path, _REDUCTIONS)

    # -- construction ------------------------------------------------------------
    @classmethod
    def create(cls, path, *, n, block_size, arrays, job=None, versions=None, overwrite=False):
        """Create a new store at ``path`` (a folder that must not exist or be empty,
        or an lrpgraph store when ``overwrite=True``, which is deleted first).

        Checks the location before writing anything; when creation fails part way
        (disk full, permissions), what it created is removed again."""
        n, block_size = int(n), int(block_size)
        path = _normalize(path)
        if n < 1:
            raise StoreError("a store needs at least one sample (the data is empty)")
        if block_size < 1:
            raise StoreError(f"block_size must be >= 1, got {block_size}")
        path = str(path)
        url = is_url(path)
        existed = False
        if not url:
            _check_local_target(path)
            existed = os.path.isdir(path)
            if existed and os.listdir(path):
                if not overwrite:
                    raise StoreExistsError(f"{path} already holds a store; pass overwrite=True to replace it, or "
                                           "resume=True to finish it")
                _remove_tree(path)
                existed = False
            try:
                os.makedirs(path, exist_ok=True)
                probe = os.path.join(path, ".lrpgraph_write_test")
                with open(probe, "wb"):
                    pass
                os.remove(probe)
            except OSError as e:
                if not existed:
                    shutil.rmtree(path, ignore_errors=True)
                raise StoreError(f"cannot write the store at {path}: {e.strerror or e} (pick a writable location)") \
                    from None
        else:
            import fsspec  # only for URL stores (an optional dependency of zarr's)

            if overwrite:
                _remove_tree(path)
            fs, root = fsspec.core.url_to_fs(path)
            try:
                fs.makedirs(root, exist_ok=True)  # zarr's fsspec store does not create the folder (file://)
            except OSError as e:
                raise StoreError(f"cannot write the store at {path}: {e}") from None
        zarr = _zarr()
        try:
            group = zarr.open_group(path, mode="w")
            for name, spec in arrays.items():
                shape = (n,) + tuple(spec.shape)
                chunks = (block_size,) + tuple(max(1, s) for s in spec.shape)
                _create_array(group, name, shape, chunks, np.dtype(spec.dtype), spec.fill)
            group.attrs.update({
                "job": _jsonable(job or {}),
                "versions": _jsonable(versions or {}),
            })
            # the layout last: its presence says the store was created in full
            group.attrs[_LAYOUT_KEY] = {
                "format": FORMAT, "n": n, "block_size": block_size, "n_blocks": -(-n // block_size),
                "arrays": {k: v.to_json() for k, v in arrays.items()},
            }
        except BaseException:
            if not existed:
                _remove_tree(path)
            raise
        return cls(path, zarr.open_group(path, mode="r+"), "r+")

    @classmethod
    def open(cls, path, mode="r"):
        """Open an existing store: ``mode="r"`` to read, ``"r+"`` to write blocks."""
        path = _normalize(path)
        if not is_url(path):
            if os.path.isfile(path):
                raise StoreError(f"store path {path} is a file, not a store folder")
            if not os.path.isdir(path):
                raise StoreError(f"no store at {path}")
            if not _has_zarr_metadata(path):
                raise StoreError(f"{path} is not a dataset store (no zarr metadata in it)")
        zarr = _zarr()
        try:
            group = zarr.open_group(path, mode=mode)
        except Exception as e:  # noqa: BLE001 - zarr's errors differ between versions
            raise StoreError(f"cannot open the store at {path}: {e}") from None
        return cls(path, group, mode)

    @classmethod
    def open_or_create(cls, path, *, n, block_size, arrays, job=None, versions=None, resume=True,
                       overwrite=False):
        """The store a job writes into: a new one, or the existing one to resume.

        An existing store is resumed when ``resume`` and its ``job`` and layout
        equal the ones given (else :class:`StoreMismatchError` naming every
        difference, unless ``overwrite=True``, which replaces it).  An interrupted
        creation (no layout attribute, no block done) is silently recreated."""
        path = _normalize(path)
        exists = _exists(path)
        if exists and not overwrite:
            try:
                store = cls.open(path, mode="r+")
            except IncompleteStoreError:
                if _Markers(path).list():
                    raise
                return cls.create(path, n=n, block_size=block_size, arrays=arrays, job=job,
                                  versions=versions, overwrite=True)
            if not resume:
                raise StoreExistsError(f"{path} already holds a store; pass resume=True to finish it or "
                                       "overwrite=True to replace it")
            store.check_compatible(n=n, block_size=block_size, arrays=arrays, job=job)
            return store
        return cls.create(path, n=n, block_size=block_size, arrays=arrays, job=job, versions=versions,
                          overwrite=overwrite)

    @classmethod
    def find(cls, path):
        """The existing store at ``path`` opened for writing, or None where there is
        none yet (no folder, an empty one, or an interrupted creation with no block
        written).  A file or a folder that is not a store is an error."""
        path = _normalize(path)
        if not _exists(path):
            return None
        try:
            return cls.open(path, mode="r+")
        except IncompleteStoreError:
            if _Markers(path).list():
                raise
            return None

    def check_compatible(self, *, n=None, block_size=None, arrays=None, job=None):
        """Raise :class:`StoreMismatchError` naming each difference between this
        store and the job about to write into it."""
        diffs = []
        if n is not None and int(n) != self.n:
            diffs.append(f"number of samples: store {self.n}, data {n}")
        if block_size is not None and int(block_size) != self.block_size:
            diffs.append(f"block (batch) size: store {self.block_size}, now {block_size}")
        if arrays is not None:
            want = {k: v.to_json() for k, v in arrays.items()}
            have = {k: v.to_json() for k, v in self.arrays.items()}
            for k in sorted(set(want) | set(have)):
                if _differ(want.get(k), have.get(k)):
                    diffs.append(f"array {k!r}: store {have.get(k)}, now {want.get(k)}")
        if job is not None:
            want, have = _jsonable(job), self.job
            for k in sorted(set(want) | set(have)):
                if _differ(want.get(k), have.get(k)):
                    diffs.append(f"{k}: store {have.get(k)!r}, now {want.get(k)!r}")
        if diffs:
            raise StoreMismatchError(
                f"the store at {self.path} was made by a different job:\n  " + "\n  ".join(diffs) +
                "\nPass overwrite=True (CLI: --overwrite) to replace it, or write to another path.")

    # -- blocks --------------------------------------------------------------------
    def block_range(self, i):
        """(start, stop) sample indices of block ``i``."""
        i = int(i)
        if not 0 <= i < self.n_blocks:
            raise IndexError(f"block {i} out of range: the store has {self.n_blocks} blocks")
        return i * self.block_size, min((i + 1) * self.block_size, self.n)

    def done_blocks(self):
        """Sorted list of the block indices whose marker exists (written in full)."""
        return sorted(b for b in self._markers.list() if 0 <= b < self.n_blocks)

    def missing_blocks(self):
        """Sorted list of the blocks still to write."""
        done = set(self.done_blocks())
        return [b for b in range(self.n_blocks) if b not in done]

    def is_done(self, i):
        return int(i) in self._markers.list()

    @property
    def complete(self):
        return len(self.done_blocks()) == self.n_blocks

    def done_mask(self):
        """(n,) bool: True for the samples of written blocks."""
        mask = np.zeros(self.n, bool)
        for b in self.done_blocks():
            s, e = self.block_range(b)
            mask[s:e] = True
        return mask

    def write_block(self, i, arrays):
        """Write block ``i``: ``arrays`` maps EVERY array name of the store to the
        block's values (first axis = the block's samples).  All chunks are written
        first and the marker last, so the block is whole or absent after a kill."""
        if self.mode == "r":
            raise StoreError(f"the store at {self.path} is open read-only")
        start, stop = self.block_range(i)
        missing = set(self.arrays) - set(arrays)
        extra = set(arrays) - set(self.arrays)
        if missing or extra:
            raise ValueError(f"write_block({i}) needs exactly the store's arrays {sorted(self.arrays)}; "
                             f"missing {sorted(missing)}, unknown {sorted(extra)}")
        checked = {}
        for name, spec in self.arrays.items():
            a = np.asarray(arrays[name])
            want = (stop - start,) + tuple(spec.shape)
            if a.shape != want:
                raise ValueError(f"write_block({i}): array {name!r} has shape {a.shape}, the block needs {want}")
            checked[name] = a.astype(spec.dtype, copy=False)
        self._markers.clear(i)  # a rewrite: the block is not whole while its chunks change
        for name, a in checked.items():
            self.group[name][start:stop] = a
        self._markers.set(i)

    def discard_block(self, i):
        """Mark block ``i`` as missing (its data is rewritten by the next run)."""
        self._markers.clear(i)

    # -- columns added after the job ---------------------------------------------------
    def add_columns(self, columns):
        """Add per-sample columns: ``columns`` maps a new name to ``(ArraySpec, meta)``
        (``meta``: a JSON dict saying what computes it, e.g. the metric and its
        parameters).  A name that exists already with the same spec and meta is
        kept (its written blocks stay); one with another spec or meta is an error
        (:meth:`drop_column` it first).  Each column has its own block markers
        (:meth:`column_done_blocks`), so columns are filled, resumed and redone
        independently of the job's blocks and of each other."""
        if self.mode == "r":
            raise StoreError(f"the store at {self.path} is open read-only")
        new = {}
        for name, (spec, meta) in columns.items():
            _column_name(name)
            if name in self.arrays:
                raise ValueError(f"{name!r} is an array of the job's own; pick another column name")
            meta = _jsonable(meta or {})
            if name in self.columns:
                have_spec, have_meta = self.columns[name]
                if _differ(have_spec.to_json(), spec.to_json()) or _differ(have_meta, meta):
                    raise StoreMismatchError(f"the store at {self.path} has a column {name!r} computed with "
                                             f"{have_meta}; now {meta}. Pass overwrite=True (CLI: --overwrite) to "
                                             "compute it again")
                continue
            new[name] = (spec, meta)
        for name, (spec, meta) in new.items():
            _create_array(self.group, name, (self.n,) + tuple(spec.shape),
                          (self.block_size,) + tuple(max(1, s) for s in spec.shape), np.dtype(spec.dtype), spec.fill)
            self._column_markers[name] = _Markers(self.path, f"{_COLUMNS}/{name}")
            for b in self._column_markers[name].list():  # left by a column of that name dropped half way
                self._column_markers[name].clear(b)
            self.columns[name] = (spec, meta)
        if new:  # the attribute last: a column is known once its array exists
            self.group.attrs[_COLUMNS_KEY] = {k: {"spec": s.to_json(), "meta": m} for k, (s, m) in
                                              self.columns.items()}

    def drop_column(self, name):
        """Forget the column ``name``: its markers first, then its entry (the array
        is replaced when the column is added again)."""
        if name not in self.columns:
            return
        for b in self._column_markers[name].list():
            self._column_markers[name].clear(b)
        del self.columns[name], self._column_markers[name]
        self.group.attrs[_COLUMNS_KEY] = {k: {"spec": s.to_json(), "meta": m} for k, (s, m) in self.columns.items()}

    def column_done_blocks(self, name):
        """Sorted blocks of the column ``name`` written in full (their marker exists)."""
        if name not in self.columns:
            raise KeyError(f"the store has no column {name!r}; it has {sorted(self.columns)}")
        return sorted(b for b in self._column_markers[name].list() if 0 <= b < self.n_blocks)

    def discard_column_block(self, name, i):
        """Mark block ``i`` of the column ``name`` as missing (computed again next time)."""
        self._column_markers[name].clear(i)

    def write_columns(self, i, arrays):
        """Write block ``i`` of the columns in ``arrays`` (name -> the block's
        values): each column's chunk, then its marker (a column's block is whole or
        absent after a kill, as :meth:`write_block`'s)."""
        if self.mode == "r":
            raise StoreError(f"the store at {self.path} is open read-only")
        start, stop = self.block_range(i)
        for name, a in arrays.items():
            if name not in self.columns:
                raise KeyError(f"the store has no column {name!r}; add it first (add_columns)")
            spec = self.columns[name][0]
            a = np.asarray(a)
            want = (stop - start,) + tuple(spec.shape)
            if a.shape != want:
                raise ValueError(f"write_columns({i}): column {name!r} has shape {a.shape}, the block needs {want}")
            self._column_markers[name].clear(i)
            self.group[name][start:stop] = a.astype(spec.dtype, copy=False)
            self._column_markers[name].set(i)

    # -- reductions ----------------------------------------------------------------
    def read_reduction(self, name):
        """``(state, blocks)`` of the reduction ``name``: its state (dict name ->
        numpy array; None before the first save) and the sorted list of the blocks
        merged into it."""
        data = self._reductions.read(_reduction_file(name))
        if data is None:
            return None, []
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        blocks = sorted(int(b) for b in arrays.pop("__blocks__"))
        return (arrays or None), blocks

    def write_reduction(self, name, state, blocks):
        """Save the reduction ``name``: its ``state`` (dict name -> array) and the
        ``blocks`` merged into it, in one file replaced whole."""
        if self.mode == "r":
            raise StoreError(f"the store at {self.path} is open read-only")
        arrays = {k: np.asarray(v) for k, v in (state or {}).items()}
        if "__blocks__" in arrays:
            raise ValueError("a reduction state may not hold an array named '__blocks__'")
        buf = io.BytesIO()
        np.savez(buf, __blocks__=np.asarray(sorted(int(b) for b in blocks), np.int64), **arrays)
        self._reductions.write(_reduction_file(name), buf.getvalue())

    def discard_reduction(self, name):
        """Forget the reduction ``name`` (the next run merges every block again)."""
        self._reductions.remove(_reduction_file(name))

    # -- reading ---------------------------------------------------------------------
    def __getitem__(self, name):
        """The zarr array ``name`` (sliceable like numpy): one of the job's arrays or
        an added column."""
        if name not in self.arrays and name not in self.columns:
            raise KeyError(f"the store has no array {name!r}; it has {sorted(self.arrays) + sorted(self.columns)}")
        return self.group[name]

    def __len__(self):
        return self.n

    def __repr__(self):
        return (f"<Store {self.path}: {self.n} samples, {len(self.done_blocks())}/{self.n_blocks} blocks of "
                f"{self.block_size} written>")


def _exists(path):
    if is_url(path):
        import fsspec  # only for URL stores (an optional dependency of zarr's)

        fs, root = fsspec.core.url_to_fs(str(path))
        return fs.exists(root) and bool(fs.ls(root, detail=False))
    if os.path.isfile(path):
        raise StoreError(f"store path {path} is a file; a store is a folder: pick a new path (e.g. {path}.zarr)")
    if os.path.isdir(path) and os.listdir(path):
        _check_local_target(path)
        return True
    return False


def _column_name(name):
    if not name or not all(c.isalnum() or c == "_" for c in name) or name.startswith("_"):
        raise ValueError(f"a column name is letters, digits and '_' (not first), got {name!r}")
    return name


def _reduction_file(name):
    if not name or not all(c.isalnum() or c in "_-." for c in name) or name.startswith("."):
        raise ValueError(f"a reduction name is letters, digits, '_', '-' and '.', got {name!r}")
    return f"{name}.npz"


def _differ(a, b):
    """JSON values compared by their text (so that NaN equals NaN)."""
    return json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True)


def _jsonable(obj):
    """``obj`` as plain JSON types (numpy scalars and arrays, tuples converted);
    round-tripped through json so that stored and fresh values compare equal."""

    def conv(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, (set, frozenset)):
            return sorted(o)
        return repr(o)

    return json.loads(json.dumps(obj, default=conv, sort_keys=True))
