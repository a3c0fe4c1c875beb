"""Targets: which class each sample's map explains.

Class names are looked up here (:func:`class_index`; case, spaces, dashes and
underscores do not matter), and the class subfolders of an image folder are
matched to a model's classes (:func:`folder_class_indices`).  Imports only numpy,
so that every layer of the package may use it.
"""

from __future__ import annotations

import difflib
import re

import numpy as np

__all__ = ["class_index", "folder_class_indices"]


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
    two classes (ImageNet has two "crane"s and two "maillot"s), is a ValueError naming
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
            raise ValueError(f"class folder {folder!r} names {len(hits)} classes of {model} "
                             f"({', '.join(map(str, hits))}): rename it to one of {alt}, or explain the predicted "
                             "class instead of the folder's")
        close = difflib.get_close_matches(key, norm, n=3)
        hint = f" (did you mean {', '.join(class_names[norm.index(c)] for c in close)}?)" if close else ""
        example = f"'{class_names[0]}'" + (f" or its id '{class_ids[0]}'" if class_ids else "")
        raise ValueError(f"class folder {folder!r} is not a class of {model}{hint}: name each class folder by "
                         f"the model's class name (e.g. {example}) or index, or explain the predicted class "
                         "instead of the folder's")
    return np.asarray(out, np.int64)
