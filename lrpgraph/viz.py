"""Plotting helpers for relevance maps.

Conventions (as in the SGLRP paper's ``heatmap()`` helper):

* a relevance map of shape ``(H, W, C)`` is reduced to ``(H, W)`` by summing
  over the channels (``reduce=`` picks another reduction of
  :func:`lrpgraph.postprocess.reduce_channels`);
* colormap ``"seismic"``: red = positive, blue = negative, white = zero;
* symmetric colour limits ``[-M, M]`` with ``M = max|R|`` (``M = 0`` uses
  ``1``, so an all-zero map is white);
* ``interpolation="none"`` and no ticks.

Everything here works on numpy arrays (anything ``np.asarray`` accepts, e.g.
eager TensorFlow tensors) and on explicit :class:`matplotlib.figure.Figure` /
``Axes`` objects.  ``matplotlib.pyplot`` is never imported, so the module is
headless-safe and leaves pyplot's global state alone.  Note that with the
default 256-entry ``seismic`` lookup table a zero value renders as
``(1.0, 0.992, 0.992)``, i.e. white to within 1/128.
"""

from __future__ import annotations

import html
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure

from .postprocess import REDUCTIONS, reduce_channels

__all__ = [
    "heatmap_rgb",
    "plot_heatmap",
    "overlay",
    "plot_overlay",
    "heatmap_grid",
    "explanation_figure",
    "save_figure",
    "figure_to_array",
    "token_colors",
    "token_heatmap",
    "token_html",
]

_SCALES = ("per_map", "per_method", "global")
_SAVE_FORMATS = {".png": "png", ".pdf": "pdf"}


# ---------------------------------------------------------------------------
# array helpers
# ---------------------------------------------------------------------------


def _map_2d(R: Any, how: str = "sum") -> np.ndarray:
    """The 2-D ``(H, W)`` float64 array a relevance map is plotted as.

    ``(H, W, C)`` maps are reduced over the channels with
    :func:`lrpgraph.postprocess.reduce_channels` (``how``: ``"sum"``, the default
    and the LRP convention; ``"max"``; ``"absmax"``; ``"abs"``, the sum of
    ``|R|``) with ``keepdims=False``.  An ``(H, W)`` map is returned as a copy
    (``"abs"``: ``|R|``).  Raises ValueError for any other rank, a map without
    channels, or an unknown ``how``.
    """
    if how not in REDUCTIONS:
        raise ValueError(f"unknown channel reduction {how!r}; expected one of {REDUCTIONS}")
    R = np.asarray(R, dtype=np.float64)
    if R.ndim == 2:
        return np.abs(R) if how == "abs" else R.copy()
    if R.ndim != 3:
        raise ValueError(f"relevance map must have shape (H, W) or (H, W, C), got {R.shape}")
    return reduce_channels(R, how, keepdims=False)


def _get_cmap(cmap: str | Colormap) -> Colormap:
    if isinstance(cmap, Colormap):
        return cmap
    return matplotlib.colormaps[cmap]


def _max_abs(R2: np.ndarray) -> float:
    """Largest finite ``|R|``; 0.0 for empty / all non-finite maps."""
    finite = R2[np.isfinite(R2)]
    if finite.size == 0:
        return 0.0
    return float(np.max(np.abs(finite)))


def _symmetric_limit(R2: np.ndarray, limit: float | None) -> float:
    """``M`` for the colour limits ``[-M, M]``."""
    if limit is not None:
        limit = float(limit)
        if not np.isfinite(limit) or limit <= 0:
            raise ValueError(f"limit must be a positive finite number, got {limit!r}")
        return limit
    M = _max_abs(R2)
    return M if M > 0 else 1.0


def heatmap_rgb(
    R: Any,
    cmap: str | Colormap = "seismic",
    reduce: str = "sum",
    limit: float | None = None,
) -> np.ndarray:
    """Colour image of a relevance map.

    An ``(H, W, C)`` map is reduced to 2-D with
    :func:`lrpgraph.postprocess.reduce_channels` (``reduce``), then mapped
    through ``cmap`` with symmetric limits ``[-M, M]``, where ``M = max|R|``
    (``1`` for an all-zero map) unless ``limit`` is given.
    Values beyond ``±limit`` are clipped to the ends of the colormap.
    Non-finite values take the colormap's "bad" colour (black for
    ``seismic``), so they stand out rather than being hidden.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` float64 array with values in ``[0, 1]``.
    """
    R2 = _map_2d(R, reduce)
    M = _symmetric_limit(R2, limit)
    norm = Normalize(vmin=-M, vmax=M, clip=True)
    rgba = _get_cmap(cmap)(norm(np.ma.masked_invalid(R2)))
    return np.asarray(rgba[..., :3], dtype=np.float64)


def _to_display_image(image: Any) -> np.ndarray:
    """Convert an input image to an ``(H, W, 3)`` float array in ``[0, 1]``.

    ``uint8`` is divided by 255, ``bool`` becomes 0/1, floats already in
    ``[0, 1]`` are kept, anything else is min-max normalised (a constant
    image becomes mid-grey).  ``(H, W)`` and ``(H, W, 1)`` are repeated to
    three channels; an alpha channel ``(H, W, 4)`` is dropped.
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4):
        raise ValueError(
            f"image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {np.shape(image)}"
        )
    img = img[..., :3]
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    img = img.astype(np.float64)
    finite = np.isfinite(img)
    if not finite.all():
        img = np.where(finite, img, 0.0)
    lo, hi = (float(img.min()), float(img.max())) if img.size else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0:
        return img
    if hi - lo <= 0:
        return np.full_like(img, 0.5)
    return (img - lo) / (hi - lo)


def overlay(
    image: Any,
    R: Any,
    alpha: float = 0.5,
    cmap: str | Colormap = "seismic",
    reduce: str = "sum",
    limit: float | None = None,
    grayscale: bool = False,
) -> np.ndarray:
    """Blend an input image with the colour heatmap of ``R``.

    ``result = (1 - alpha) * image + alpha * heatmap_rgb(R, ...)``.

    Parameters
    ----------
    image:
        ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` image;
        ``uint8`` (0..255), float in ``[0, 1]``, or any other range (min-max
        normalised for display).
    R:
        Relevance map ``(H, W)`` or ``(H, W, C)`` with the same ``H, W``.
    alpha:
        Heatmap weight in ``[0, 1]``.
    grayscale:
        Convert the image to grey first so the heatmap colours stand out.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` float64 array in ``[0, 1]``.
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = _to_display_image(image)
    heat = heatmap_rgb(R, cmap=cmap, reduce=reduce, limit=limit)
    if img.shape[:2] != heat.shape[:2]:
        raise ValueError(
            f"image spatial shape {img.shape[:2]} does not match relevance map {heat.shape[:2]}"
        )
    if grayscale:
        grey = img @ np.array([0.299, 0.587, 0.114])
        img = np.repeat(grey[..., None], 3, axis=-1)
    return np.clip((1.0 - alpha) * img + alpha * heat, 0.0, 1.0)


# ---------------------------------------------------------------------------
# Axes-level plotting
# ---------------------------------------------------------------------------


def _clean_axes(ax) -> None:
    """No ticks, no spines (axis labels stay usable)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def plot_heatmap(
    ax,
    R: Any,
    title: str | None = None,
    cmap: str | Colormap = "seismic",
    reduce: str = "sum",
    limit: float | None = None,
    colorbar: bool = False,
    **imshow_kw: Any,
):
    """Draw a relevance map on a matplotlib ``Axes``.

    Uses ``imshow`` with ``cmap`` (default ``"seismic"``), symmetric limits
    ``[-M, M]`` (``M = max|R|``, ``1`` if zero, or ``limit``),
    ``interpolation="none"`` and no ticks.  ``(H, W, C)`` maps are reduced
    with :func:`lrpgraph.postprocess.reduce_channels` (``reduce``).  Extra
    keyword arguments go to ``ax.imshow`` (and may override the defaults).  With
    ``colorbar=True`` a colourbar is added next to the axes.

    Returns
    -------
    matplotlib.image.AxesImage
    """
    R2 = _map_2d(R, reduce)
    M = _symmetric_limit(R2, limit)
    kw = dict(cmap=_get_cmap(cmap), vmin=-M, vmax=M, interpolation="none")
    kw.update(imshow_kw)
    im = ax.imshow(R2, **kw)
    _clean_axes(ax)
    if title is not None:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax)
    return im


def plot_overlay(
    ax,
    image: Any,
    R: Any,
    title: str | None = None,
    alpha: float = 0.5,
    cmap: str | Colormap = "seismic",
    reduce: str = "sum",
    limit: float | None = None,
    grayscale: bool = False,
    **imshow_kw: Any,
):
    """Draw :func:`overlay` of ``image`` and ``R`` on a matplotlib ``Axes``.

    Returns the ``AxesImage``; extra keyword arguments go to ``ax.imshow``.
    """
    blended = overlay(
        image, R, alpha=alpha, cmap=cmap, reduce=reduce, limit=limit, grayscale=grayscale
    )
    kw = dict(interpolation="none")
    kw.update(imshow_kw)
    im = ax.imshow(blended, **kw)
    _clean_axes(ax)
    if title is not None:
        ax.set_title(title)
    return im


# ---------------------------------------------------------------------------
# Figure-level helpers
# ---------------------------------------------------------------------------


def _as_batch(name: str, arr: Any) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim not in (3, 4):
        raise ValueError(
            f"maps[{name!r}] must have shape (N, H, W, C) or (N, H, W), got {a.shape}"
        )
    return a


def heatmap_grid(
    maps: Mapping[str, Any] | Sequence[tuple[str, Any]],
    images: Any = None,
    row_titles: Sequence[str] | None = None,
    col_titles: Sequence[str] | None = None,
    cmap: str | Colormap = "seismic",
    reduce: str = "sum",
    limit: float | None = None,
    scale: str = "per_map",
    image_title: str = "input",
    cell_size: float = 2.0,
    dpi: float = 100,
) -> Figure:
    """Grid figure of relevance maps: one row per image, one column per method.

    Parameters
    ----------
    maps:
        ``{method_name: array}`` or a list of ``(method_name, array)``; each
        array is ``(N, H, W, C)`` or ``(N, H, W)`` and all share the same
        ``N``.  Column order follows the dict / list order.
    images:
        Optional ``(N, H, W, 3)`` (or ``(N, H, W)`` / ``(N, H, W, 1)``)
        inputs, shown as the first column (display-normalised as in
        :func:`overlay`).
    row_titles:
        ``N`` labels, drawn as the y-label of the first column.
    col_titles:
        Column titles, shown above the first row.  Either one per method
        (the input column keeps ``image_title``) or one per column including
        the input column.  Defaults to the method names.
    cmap, reduce:
        As in :func:`plot_heatmap`.
    limit:
        Fixed colour limit ``M`` for every cell (overrides ``scale``).
    scale:
        How ``M`` is chosen when ``limit`` is None: ``"per_map"`` (each cell
        its own ``max|R|``, the paper convention), ``"per_method"`` (shared
        within a column) or ``"global"`` (shared by all cells).
    cell_size:
        Size of one cell in inches.
    dpi:
        Figure resolution.

    Returns
    -------
    matplotlib.figure.Figure
        Uses the Agg canvas and constrained layout.  ``fig.axes`` are in
        row-major order: ``fig.axes[i * ncols + j]`` is row ``i`` (image
        ``i``), column ``j`` (the input column first if ``images`` is given).
    """
    if scale not in _SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {_SCALES}")
    items = list(maps.items()) if isinstance(maps, Mapping) else list(maps)
    if not items:
        raise ValueError("maps is empty")
    names: list[str] = []
    arrays: list[np.ndarray] = []
    for item in items:
        try:
            name, arr = item
        except (TypeError, ValueError):
            raise ValueError("maps must be a dict or a list of (title, array) pairs") from None
        names.append(str(name))
        arrays.append(_as_batch(str(name), arr))
    n = arrays[0].shape[0]
    for name, a in zip(names, arrays):
        if a.shape[0] != n:
            raise ValueError(
                f"all maps must have the same number of images: {names[0]!r} has {n}, "
                f"{name!r} has {a.shape[0]}"
            )
    if n == 0:
        raise ValueError("maps contain no images (N == 0)")

    imgs = None
    if images is not None:
        imgs = np.asarray(images)
        if imgs.ndim not in (3, 4) or imgs.shape[0] != n:
            raise ValueError(
                f"images must have shape (N, H, W[, C]) with N == {n}, got {imgs.shape}"
            )

    n_methods = len(arrays)
    ncols = n_methods + (1 if imgs is not None else 0)

    if col_titles is None:
        titles = ([image_title] if imgs is not None else []) + names
    else:
        col_titles = [str(t) for t in col_titles]
        if len(col_titles) == ncols:
            titles = col_titles
        elif imgs is not None and len(col_titles) == n_methods:
            titles = [image_title] + col_titles
        else:
            raise ValueError(
                f"col_titles has {len(col_titles)} entries; expected {n_methods} or {ncols}"
            )
    if row_titles is not None:
        row_titles = [str(t) for t in row_titles]
        if len(row_titles) != n:
            raise ValueError(f"row_titles has {len(row_titles)} entries; expected {n}")

    # 2-D maps, computed once (also needed for shared limits).
    reduced = [[_map_2d(a[i], reduce) for i in range(n)] for a in arrays]
    limits: list[list[float | None]]
    if limit is not None:
        limits = [[limit] * n for _ in arrays]
    elif scale == "per_map":
        limits = [[None] * n for _ in arrays]
    elif scale == "per_method":
        limits = []
        for col in reduced:
            M = max(_max_abs(r) for r in col)
            limits.append([M if M > 0 else 1.0] * n)
    else:  # global
        M = max(_max_abs(r) for col in reduced for r in col)
        limits = [[M if M > 0 else 1.0] * n for _ in arrays]

    fig = Figure(figsize=(cell_size * ncols, cell_size * n), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.01, hspace=0.01)
    axes = fig.subplots(n, ncols, squeeze=False)
    for i in range(n):
        for j in range(ncols):
            ax = axes[i, j]
            title = titles[j] if i == 0 else None
            if imgs is not None and j == 0:
                ax.imshow(_to_display_image(imgs[i]), interpolation="none")
                _clean_axes(ax)
                if title is not None:
                    ax.set_title(title)
            else:
                k = j - (1 if imgs is not None else 0)
                plot_heatmap(ax, reduced[k][i], title=title, cmap=cmap, limit=limits[k][i])
            if j == 0 and row_titles is not None:
                ax.set_ylabel(row_titles[i])
    return fig


def explanation_figure(
    image: Any,
    R: Any,
    title: str | None = None,
    row_titles: Sequence[str] | None = None,
    cmap: str | Colormap = "seismic",
    reduce: str = "sum",
    limit: float | None = None,
    alpha: float = 0.5,
    cell_size: float = 2.6,
    dpi: float = 100,
) -> Figure:
    """One explanation as a figure: input | heatmap | overlay, with a colour bar.

    ``image``: the input as :func:`overlay` takes it (``None``: the heatmap alone,
    for a map whose input is not at hand); ``R``: its relevance map ``(H, W[, C])``,
    or a list of maps of the same input (several targets: one row each).  The
    heatmap uses :func:`plot_heatmap`'s conventions (``seismic``, red positive,
    blue negative, white zero, symmetric limits ``[-M, M]`` with ``M = max|R|``
    per row unless ``limit``), the overlay :func:`overlay` with the same limits,
    and one colour bar per row shows ``[-M, M]`` (as in the SGLRP paper's figures).
    ``title`` goes above the figure (e.g. the method and the explained class),
    ``row_titles`` above each row's heatmap (e.g. one class name per target).

    Returns an Agg :class:`~matplotlib.figure.Figure`; ``fig.axes`` holds, per row,
    the input, heatmap and overlay axes (only the heatmap without an image), then
    the colour bars' axes.
    """
    maps = list(R) if isinstance(R, (list, tuple)) else [R]
    if not maps:
        raise ValueError("R is empty: pass a map, or a list of maps of the same input")
    rows = [_map_2d(m, reduce) for m in maps]
    if row_titles is not None:
        row_titles = [str(t) for t in row_titles]
        if len(row_titles) != len(rows):
            raise ValueError(f"row_titles has {len(row_titles)} entries; there are {len(rows)} maps")
    img = None if image is None else _to_display_image(image)
    if img is not None and any(r.shape != img.shape[:2] for r in rows):
        raise ValueError(f"image spatial shape {img.shape[:2]} does not match the map(s) "
                         f"{sorted({r.shape for r in rows})}")
    ncols = 1 if img is None else 3
    fig = Figure(figsize=(cell_size * ncols + 0.9, cell_size * len(rows) + (0.5 if title else 0.2)), dpi=dpi,
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    images = []
    for i, R2 in enumerate(rows):
        M = _symmetric_limit(R2, limit)
        heat_title = row_titles[i] if row_titles is not None else "relevance"
        if img is None:
            im = plot_heatmap(axes[i, 0], R2, title=heat_title, cmap=cmap, limit=M)
        else:
            axes[i, 0].imshow(img, interpolation="none")
            _clean_axes(axes[i, 0])
            axes[i, 0].set_title("input")
            im = plot_heatmap(axes[i, 1], R2, title=heat_title, cmap=cmap, limit=M)
            plot_overlay(axes[i, 2], img, R2, title="overlay", alpha=alpha, cmap=cmap, limit=M, grayscale=True)
        images.append(im)
    for i, im in enumerate(images):  # after all panels, so that the image axes come first in fig.axes
        fig.colorbar(im, ax=list(axes[i]), shrink=0.9, label="relevance")
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: float = 100) -> pathlib.Path:
    """Save ``fig`` as PNG or PDF, chosen by the file extension.

    Parent directories are created.  The figure is trimmed with
    ``bbox_inches="tight"``.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        If the extension is not ``.png`` or ``.pdf`` (case-insensitive).
    """
    path = pathlib.Path(path)
    fmt = _SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"unsupported figure format {path.suffix!r} for {str(path)!r}; use .png or .pdf"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=dpi, bbox_inches="tight")
    return path


def figure_to_array(fig: Figure, alpha: bool = False) -> np.ndarray:
    """Render ``fig`` with Agg and return its pixels.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(H, W, 3)`` (RGB), or ``(H, W, 4)`` (RGBA)
        with ``alpha=True``; row 0 is the top of the figure.  A figure whose
        canvas is not Agg-based is rendered on a temporary Agg canvas and its
        original canvas is restored.
    """
    canvas = fig.canvas
    restore = None
    if not isinstance(canvas, FigureCanvasAgg):
        restore = canvas
        canvas = FigureCanvasAgg(fig)
    try:
        canvas.draw()
        buf = np.array(canvas.buffer_rgba(), dtype=np.uint8, copy=True)
    finally:
        if restore is not None:
            fig.set_canvas(restore)
    return buf if alpha else buf[..., :3].copy()


# ---------------------------------------------------------------------------
# text: one colour per token
# ---------------------------------------------------------------------------


def _token_relevance(tokens: Sequence[str], relevance: Any) -> np.ndarray:
    r = np.asarray(relevance, dtype=np.float64)
    if r.ndim != 1 or r.shape[0] != len(tokens):
        raise ValueError(
            f"relevance must be one value per token: {len(tokens)} tokens, relevance of shape {r.shape}. "
            "Pass one sample's map, e.g. maps[0], and the tokens it was computed for"
        )
    return r


def token_colors(
    relevance: Any, cmap: str | Colormap = "seismic", limit: float | None = None
) -> np.ndarray:
    """``(L, 3)`` RGB colours in ``[0, 1]`` of one relevance value per token, with the
    image heatmaps' conventions: ``seismic``, symmetric limits ``[-M, M]``,
    ``M = max|R|`` unless ``limit`` is given (red positive, blue negative, white zero)."""
    r = np.asarray(relevance, dtype=np.float64).reshape(-1)
    M = _symmetric_limit(r, limit)
    rgba = _get_cmap(cmap)(Normalize(vmin=-M, vmax=M, clip=True)(np.ma.masked_invalid(r)))
    return np.asarray(rgba[:, :3], dtype=np.float64)


def _ink(rgb: np.ndarray) -> str:
    """Black text on light backgrounds, white on dark ones."""
    return "black" if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 0.5 else "white"


def token_heatmap(
    tokens: Sequence[str],
    relevance: Any,
    cmap: str | Colormap = "seismic",
    limit: float | None = None,
    title: str | None = None,
    width: float = 8.0,
    fontsize: float = 12.0,
    colorbar: bool = True,
) -> Figure:
    """A figure of the tokens, each on a box coloured by its relevance.

    ``tokens``: the L token strings; ``relevance``: L values (one sample's map of a text
    model, e.g. ``analyze(ids)[0]``).  Colours as :func:`token_colors` (``seismic``,
    symmetric limits, red positive, blue negative, white zero); the tokens flow left to
    right and wrap at ``width`` inches.  The token texts are ``fig.texts`` (in order;
    a title comes after them), each with its coloured ``get_bbox_patch()``.  Save with
    :func:`save_figure`.
    """
    tokens = [str(t) for t in tokens]
    r = _token_relevance(tokens, relevance)
    colors = token_colors(r, cmap, limit)
    M = _symmetric_limit(r, limit)
    fig = Figure(figsize=(width, 1.0))
    canvas = FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    dpi = fig.dpi
    line_h = 2.0 * fontsize / 72.0 * dpi  # pixels per line
    pad = 0.4 * fontsize / 72.0 * dpi
    x, line, placed = pad, 0, []
    for tok, rgb in zip(tokens, colors):
        t = fig.text(0, 0, tok, fontsize=fontsize, color=_ink(rgb), ha="left", va="baseline",
                     bbox=dict(boxstyle="square,pad=0.2", facecolor=tuple(rgb), edgecolor="0.8", linewidth=0.5))
        w = t.get_window_extent(renderer).width
        if x + w + pad > width * dpi and x > pad:
            x, line = pad, line + 1
        placed.append((t, x, line))
        x += w + 1.5 * pad  # the box reaches 0.2 em beyond the text on each side
    n_lines = line + 1
    right = max(x0 + t.get_window_extent(renderer).width for t, x0, _ in placed) + pad
    fig_w = width if n_lines > 1 else min(width, max(right, 3.0 * dpi) / dpi)  # one line: as wide as its tokens
    height = (n_lines + (1.0 if colorbar else 0.3) + (0.8 if title else 0.0)) * line_h / dpi
    fig.set_size_inches(fig_w, height)
    H = height * dpi
    top = (0.8 * line_h if title else 0.0) + 0.6 * line_h
    for t, x0, ln in placed:
        t.set_position((x0 / (fig_w * dpi), 1.0 - (top + ln * line_h) / H))
    if title:
        fig.text(0.5, 1.0 - 0.45 * line_h / H, title, ha="center", va="center", fontsize=fontsize)
    if colorbar:
        cax = fig.add_axes((0.3, 0.25 * line_h / H, 0.4, 0.25 * line_h / H))
        sm = ScalarMappable(norm=Normalize(vmin=-M, vmax=M), cmap=_get_cmap(cmap))
        cb = fig.colorbar(sm, cax=cax, orientation="horizontal")
        cb.ax.tick_params(labelsize=0.7 * fontsize)
    return fig


def token_html(
    tokens: Sequence[str], relevance: Any, cmap: str | Colormap = "seismic", limit: float | None = None
) -> str:
    """The tokens as an HTML fragment, each a ``<span>`` whose background is its colour
    (:func:`token_colors`) and whose ``title`` is its relevance; the text is escaped."""
    tokens = [str(t) for t in tokens]
    r = _token_relevance(tokens, relevance)
    spans = []
    for tok, val, rgb in zip(tokens, r, token_colors(r, cmap, limit)):
        c = "#%02x%02x%02x" % tuple(int(round(255 * v)) for v in rgb)
        spans.append(f'<span style="background-color:{c};color:{_ink(rgb)};padding:0 2px" '
                     f'title="{val:.4g}">{html.escape(tok)}</span>')
    return '<div style="line-height:1.8">' + " ".join(spans) + "</div>"


# ---- time series (recurrent models, issue 23) -------------------------------------------

def time_series_heatmap(
    series: Any,
    relevance: Any,
    channel_names: Sequence[str] | None = None,
    cmap: str | Colormap = "seismic",
    limit: float | None = None,
    title: str | None = None,
    width: float = 8.0,
    channel_height: float = 1.4,
    marks: Sequence[tuple[float, float]] = (),
) -> Figure:
    """A figure of one multichannel series with its relevance as colour, per step and channel.

    ``series`` and ``relevance``: (T, C) (one sample of a model's (N, T, C) input and map) or
    (T,) for one channel.  One row of axes per channel: the step's relevance is the colour
    of the band behind the step (``seismic``, limits ``[-M, M]``, ``M = max|R|`` over all
    channels unless ``limit``: red positive, blue negative, white zero), the series is the
    black line over it.  ``marks``: (start, stop) step intervals outlined in every row (the
    known decisive steps of a synthetic task).  The axes are ``fig.axes`` (one per channel,
    then the colour bar); each row's band is its ``images[0]``.  Save with :func:`save_figure`.
    """
    x = np.asarray(series, dtype=np.float64)
    r = np.asarray(relevance, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if r.ndim == 1:
        r = r[:, None]
    if x.ndim != 2 or r.shape != x.shape:
        raise ValueError(f"time_series_heatmap needs series and relevance of one shape (T, C) or (T,); got "
                         f"{np.shape(series)} and {np.shape(relevance)} (pass one sample: maps[i], x[i])")
    steps, channels = x.shape
    names = list(channel_names) if channel_names is not None else [f"channel {c}" for c in range(channels)]
    if len(names) != channels:
        raise ValueError(f"channel_names has {len(names)} names for {channels} channels")
    M = _symmetric_limit(r, limit)
    cm = _get_cmap(cmap)
    fig = Figure(figsize=(width, channel_height * channels + (0.4 if title else 0.1)))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(channels, 2, width_ratios=[40, 1], hspace=0.15, wspace=0.03)
    axes = [fig.add_subplot(grid[c, 0]) for c in range(channels)]
    for c, ax in enumerate(axes):
        lo, hi = float(np.min(x[:, c])), float(np.max(x[:, c]))
        pad = 0.1 * (hi - lo) if hi > lo else 1.0
        ax.imshow(r[None, :, c], aspect="auto", cmap=cm, norm=Normalize(-M, M), interpolation="none",
                  extent=(-0.5, steps - 0.5, lo - pad, hi + pad))
        ax.plot(np.arange(steps), x[:, c], color="black", linewidth=1.0)
        for start, stop in marks:
            ax.axvspan(start - 0.5, stop - 0.5, fill=False, edgecolor="0.2", linestyle="--", linewidth=1.0)
        ax.set_xlim(-0.5, steps - 0.5)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_ylabel(names[c], fontsize=9)
        ax.tick_params(labelsize=8)
        if c < channels - 1:
            ax.set_xticklabels([])
    axes[-1].set_xlabel("step", fontsize=9)
    cax = fig.add_subplot(grid[:, 1])
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=Normalize(-M, M), cmap=cm), cax=cax)
    cax.tick_params(labelsize=8)
    if title:
        axes[0].set_title(title, fontsize=10)
    return fig


__all__.append("time_series_heatmap")
