"""Targets: which class each sample's map explains, parsed and resolved in one place.

The vocabulary, the same for :class:`lrpgraph.Method`, the prepared model's target
validation, the evaluation, the dataset job and every command of the command line:

* ``None`` or ``"predicted"``: the predicted class (the argmax of the logits);
* ``"label"``: the data's label (dataset jobs and the evaluation, where the data has
  labels);
* an int: that class for every sample; a class name (``"zebra"``: case, spaces,
  dashes and underscores do not matter, :func:`class_index`);
* a list of ints or names: several classes for every sample (maps ``(N, T, ...)``);
* an ``(N,)`` array: one class per sample; an ``(N, T)`` array: T per sample;
* a callable ``f(x, labels) -> (b,)`` (dataset jobs: per block).

In an int32 target array :data:`PREDICTED` (-1) stands for "the predicted class"
until it is resolved: :func:`resolve_predicted` in numpy, :func:`resolve_predicted_tf`
(and :func:`resolve_predicted_tf_lazily`) inside a compiled pass.

Parsing: :func:`parse_text` (a command-line or config string), :func:`check_spec`
(a dataset job's spec, checked once), :func:`to_indices` (anything a method takes
-> int32 array), :func:`block_targets` (a dataset job's spec -> one block's targets),
:func:`describe` (the spec as it is stored in a dataset store's job identity) and
:func:`folder_class_indices` (class subfolders -> the model's classes).

Imports only numpy, TensorFlow and :mod:`lrpgraph.errors`, so that every layer of the
package, the engine included, may use it.
"""

from __future__ import annotations

import difflib
import hashlib
import re

import numpy as np
import tensorflow as tf

from .errors import InputError

__all__ = ["PREDICTED", "KEYWORDS", "class_index", "parse_text", "check_spec", "describe", "to_indices",
           "block_targets", "resolve_predicted", "resolve_predicted_tf", "resolve_predicted_tf_lazily",
           "folder_class_indices"]

PREDICTED = -1  # in an int target array: the predicted class, until resolved
KEYWORDS = ("predicted", "label")


def _norm_name(s):
    return re.sub(r"[\s_\-]+", "_", str(s).strip().lower())


def class_index(name, class_names):
    """The index of class ``name`` in ``class_names`` (case, spaces, dashes and
    underscores do not matter); a ValueError with the closest names otherwise."""
    norm = [_norm_name(n) for n in class_names]
    key = _norm_name(name)
    if key in norm:
        return norm.index(key)
    close = difflib.get_close_matches(key, norm, n=3)
    hint = f"; did you mean {', '.join(class_names[norm.index(c)] for c in close)}?" if close else ""
    if not close and len(class_names) <= 30:
        hint = f"; the model's classes: {', '.join(class_names)}"
    raise ValueError(f"unknown class name {name!r}{hint}")


def folder_class_indices(folder_names, class_names, class_ids=None, model="the model"):
    """The model's class index of each class subfolder (:func:`lrpgraph.io.list_images`'s
    ``class_names``), so that "label" targets explain the class a folder names, not
    the folder's position: ``images/tabby/`` -> ImageNet class 281.

    A folder name matches a class name (case, spaces, dashes and underscores do not
    matter; ``tabby``, ``African_elephant``), an id in ``class_ids`` (ImageNet's wnids:
    ``n02123045``) or is a class index (``"281"``).  A name that matches no class, or
    two classes (ImageNet has two "crane"s and two "maillot"s), is an InputError naming
    the folder, the closest class names and the way out (explain the predicted class).
    Returns an int64 array, one index per folder."""
    norm = [_norm_name(n) for n in class_names]
    ids = {str(i).lower(): k for k, i in enumerate(class_ids or ())}
    out = []
    for folder in folder_names:
        key = _norm_name(folder)
        if key in ids:
            out.append(ids[key])
            continue
        hits = [k for k, n in enumerate(norm) if n == key]
        if len(hits) == 1:
            out.append(hits[0])
            continue
        if not hits and re.fullmatch(r"\d+", key) and int(key) < len(class_names):
            out.append(int(key))
            continue
        if hits:
            alt = " or ".join(f"{class_ids[k]} (class {k})" for k in hits) if class_ids else \
                " or ".join(str(k) for k in hits)
            raise InputError(f"class folder {folder!r} names {len(hits)} classes of {model} "
                             f"({', '.join(map(str, hits))}): rename it to one of {alt}, or explain the predicted "
                             "class instead of the folder's", param="target", value="predicted")
        close = difflib.get_close_matches(key, norm, n=3)
        hint = f" (did you mean {', '.join(class_names[norm.index(c)] for c in close)}?)" if close else ""
        example = f"'{class_names[0]}'" + (f" or its id '{class_ids[0]}'" if class_ids else "")
        raise InputError(f"class folder {folder!r} is not a class of {model}{hint}: name each class folder by "
                         f"the model's class name (e.g. {example}) or index, or explain the predicted class "
                         "instead of the folder's", param="target", value="predicted")
    return np.asarray(out, np.int64)


# ---------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------


def parse_text(text, class_names=None, num_classes=None, *, keywords=("predicted",), several=False):
    """A target written as text (a command-line flag, a config value) -> a spec.

    ``None``, ``""`` and ``"predicted"`` -> None (the predicted class); ``"label"`` ->
    ``"label"`` where ``keywords`` allows it; digits -> that class index (checked
    against ``num_classes``); anything else a class name (:func:`class_index` in
    ``class_names``).  With ``several=True`` a comma-separated list (``"3,7"``,
    ``"cat,dog"``) -> a list of indices (several maps per sample).  Bad text is an
    :class:`~lrpgraph.errors.InputError` with ``param="target"``."""
    if text is None:
        return None
    t = str(text).strip()
    if t.lower() in ("", "predicted"):
        return None
    if t.lower() == "label":
        if "label" not in keywords:
            raise InputError("target 'label' explains each sample's label, and this data has no labels: pass a "
                             "class index or name, or 'predicted'", param="target")
        return "label"
    if several and "," in t:
        return [_parse_one(p, class_names, num_classes) for p in t.split(",") if p.strip()]
    return _parse_one(t, class_names, num_classes)


def _parse_one(t, class_names, num_classes):
    t = t.strip()
    if re.fullmatch(r"-?\d+", t):
        i = int(t)
        if i < 0 or (num_classes is not None and i >= num_classes):
            raise InputError(f"target {i} is out of range: the model has {num_classes} classes "
                             f"(0..{num_classes - 1})" if num_classes is not None else
                             f"target {i} is not a class index (0, 1, ...)", param="target")
        return i
    if not class_names:
        raise InputError(f"target {t!r} is a name but the model has no class names; pass a class index or the "
                         "model's class names (labels=FILE)", param="labels")
    try:
        return class_index(t, class_names)
    except ValueError as e:
        raise InputError(str(e), param="target") from None


def check_spec(target):
    """A dataset job's target spec, checked once (before anything is computed):
    ``"label"``, ``"predicted"`` (also None), a class name, an int, a list of ints
    (a tuple is kept), an (N,) or (N, T) array, or a callable."""
    if target is None:
        return "predicted"
    if isinstance(target, str):
        return target  # "label", "predicted" or a class name (checked by the method)
    if isinstance(target, bool):
        raise TypeError("target must be 'label', 'predicted', an int, a list of ints, an array or a callable")
    if isinstance(target, (int, np.integer)) or callable(target):
        return target
    if isinstance(target, (list, tuple)):
        if not target:
            raise ValueError("target=[] names no class; pass 'label', 'predicted' or class indices")
        return tuple(target)
    if isinstance(target, np.ndarray):
        if target.ndim not in (1, 2):
            raise ValueError(f"a target array must be (N,) or (N, T), got shape {target.shape}")
        return target
    raise TypeError(f"target must be 'label', 'predicted', an int, a list of ints (several per sample), an "
                    f"(N,) / (N, T) array or a callable f(x, labels); got {type(target).__name__}")


def describe(target):
    """A checked spec as JSON-able data (a dataset store's job identity): strings and
    ints as they are, a callable by its qualified name, an array by its shape and hash."""
    if isinstance(target, str) or target is None:
        return target
    if callable(target):
        return f"callable {getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
    if isinstance(target, (int, np.integer)):
        return int(target)
    if isinstance(target, (list, tuple)):
        return [t if isinstance(t, str) else int(t) for t in target]
    a = np.asarray(target)
    return f"array {a.shape} sha256 {hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]}"


def to_indices(target, n, num_classes, class_names=None, *, required=False, token_id=None):
    """(int32 targets, multi) for ``n`` samples: ``target`` an int, a class name, one per
    sample ((n,)), several per sample ((n, T), multi=True), ``"predicted"`` or None
    (:data:`PREDICTED` everywhere; None is an error when ``required``).  Indices are
    checked against ``num_classes``; names need ``class_names``, or ``token_id`` (a
    function token string -> vocabulary id: a causal LM's tokenizer) where there are none."""
    if target is None:
        if required:
            raise ValueError("neuron_selection_mode='index' needs a target: analyze(x, target=...)")
        return np.full(n, PREDICTED, np.int32), False
    if isinstance(target, str) and target == "predicted":
        return np.full(n, PREDICTED, np.int32), False
    t = np.asarray(target)
    if t.dtype.kind in "US":
        if class_names is None and token_id is not None:
            t = np.asarray([token_id(s) for s in t.reshape(-1).tolist()], np.int64).reshape(t.shape)
        elif class_names is None:
            raise TypeError(f"target {t.tolist()!r} is a class name, but the model has no class names; pass "
                            "integer indices or prepare(model, class_names=[...]) (a causal LM: "
                            "prepare(model, tokenizer=...))")
        else:
            t = np.asarray([class_index(s, class_names) for s in t.reshape(-1).tolist()],
                           np.int64).reshape(t.shape)
    if t.dtype.kind not in "iu":
        if t.dtype.kind == "f" and np.all(np.isfinite(t)) and np.all(t == np.round(t)):
            t = t.astype(np.int64)
        else:
            raise TypeError(f"target must be integer class indices (or class names), got dtype {t.dtype}")
    if t.ndim == 0:
        t = np.full(n, int(t))
    if t.ndim > 2 or t.shape[0] != n:
        raise ValueError(f"target must be an int, one int per sample (shape ({n},)) or (N, T) for T "
                         f"targets per sample; got shape {t.shape}")
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(f"target {t.min() if t.min() < 0 else t.max()} is out of range: the model has "
                         f"{num_classes} classes (0..{num_classes - 1})")
    return t.astype(np.int32), t.ndim == 2


def block_targets(spec, x, labels, start, num_classes, invalid, probe=False):
    """One block's targets from a checked dataset spec (:func:`check_spec`), in what a
    method takes: None ("predicted"), the labels ("label": each must be a class of the
    model, except in ``invalid`` samples, which are clipped), an int, a name, the list
    tiled per sample, the block's rows of an array (``start`` is the block's first
    sample; a ``probe`` takes the first rows) or the callable's ``f(x, labels)``."""
    b = len(x)
    t = spec
    if isinstance(t, str):
        if t == "predicted":
            return None
        if t == "label":
            labels = np.asarray(labels)
            bad = np.nonzero(((labels < 0) | (labels >= num_classes)) & ~invalid)[0]
            if len(bad) and not probe:
                raise ValueError(f"sample {start + bad[0]} has label {labels[bad[0]]}, not a class of the model "
                                 f"(0..{num_classes - 1}); target='label' needs a label per "
                                 "sample (or pass target='predicted')")
            return np.clip(labels, 0, num_classes - 1).astype(np.int64)
        return t  # a class name
    if isinstance(t, (int, np.integer)):
        return int(t)
    if isinstance(t, (list, tuple)):
        return np.tile(np.asarray(t)[None], (b, 1))
    if isinstance(t, np.ndarray):
        return t[:b] if probe else t[start:start + b]
    out = np.asarray(t(x, labels))  # callable
    if out.shape[:1] != (b,):
        raise ValueError(f"the target callable returned shape {out.shape} for a block of {b} samples; it must "
                         "return one class per sample ((b,) ints)")
    return out


# ---------------------------------------------------------------------------
# resolving "the predicted class"
# ---------------------------------------------------------------------------


def resolve_predicted(logits, targets):
    """numpy: ``targets`` ((N,) or (N, T) ints) with :data:`PREDICTED` replaced by the
    argmax of ``logits`` ((N, K)), as int32."""
    targets = np.asarray(targets)
    pred = np.asarray(logits).argmax(-1).reshape((-1,) + (1,) * (targets.ndim - 1))
    return np.where(targets < 0, pred, targets).astype(np.int32)


def resolve_predicted_tf(logits, targets):
    """Inside a compiled pass: ``targets`` with :data:`PREDICTED` replaced by
    ``argmax(logits)`` (int32 tensors; ``logits`` (N, K) for (N,) targets)."""
    return tf.where(targets < 0, tf.argmax(logits, axis=-1, output_type=tf.int32), targets)


def resolve_predicted_tf_lazily(logits_fn, targets):
    """As :func:`resolve_predicted_tf`, computing the logits (``logits_fn()``, e.g. a
    forward pass at the unperturbed inputs) only where a target is :data:`PREDICTED`."""
    return tf.cond(tf.reduce_any(targets < 0), lambda: resolve_predicted_tf(logits_fn(), targets),
                   lambda: targets)
