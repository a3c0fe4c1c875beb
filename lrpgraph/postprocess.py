"""Post-processing of attribution maps, shared by every method (never applied silently).

Each analyzer (presets, integrated gradients, SmoothGrad, the CAM family,
occlusion) takes ``postprocess=``: None (the default: the raw map), one step
name, a callable ``f(maps) -> maps``, or a list of these applied in order.
The steps (AUCMEDI's post-processing, Schrempf et al. / Mayer et al. 2022,
and iNNvestigate's ``gradient(postprocess=...)``):

===============  ============================================================
``"abs"``        \\|R\\| (iNNvestigate's ``gradient`` postprocess="abs")
``"square"``     R^2 (iNNvestigate's ``gradient`` postprocess="square")
``"relu"``       max(R, 0)
``"sum"``        sum over the channel (last) axis, kept with size 1
``"max"``        max over channels (AUCMEDI's reduction of gradient maps)
``"absmax"``     the signed channel value with the largest magnitude
``"normalize"``  per map min-max scaling to [0, 1]: (R - min) / (max - min);
                 a constant map becomes 0
===============  ============================================================

Channel reductions keep the channel axis (size 1), so every output stays
``(N, ..., C')`` and broadcasts against the input.  The functions work on
numpy arrays and are usable directly on any method's output.
"""

from __future__ import annotations

import numpy as np

__all__ = ["STEPS", "reduce_channels", "normalize", "parse_steps", "apply"]


REDUCTIONS = ("sum", "max", "absmax", "abs")


def reduce_channels(maps, how="sum", keepdims=True):
    """Reduce the channel (last) axis of a map or a batch of maps.

    ``how``: "sum" (LRP's convention, sum_c R_c), "max" (AUCMEDI's for gradients,
    max_c R_c), "absmax" (the signed R_c of largest magnitude) or "abs" (sum_c
    |R_c|, unsigned).  ``keepdims=True`` keeps the axis with size 1 (the
    postprocess steps: the result broadcasts against the input);
    ``keepdims=False`` drops it (:mod:`lrpgraph.viz`: an (H, W, C) map becomes the
    (H, W) image it plots)."""
    maps = np.asarray(maps)
    if how not in REDUCTIONS:
        raise ValueError(f"unknown channel reduction {how!r}; use one of {', '.join(map(repr, REDUCTIONS))}")
    if maps.ndim < 2:
        raise ValueError(f"channel reduction needs maps with a channel axis, got shape {maps.shape}")
    if maps.shape[-1] == 0:
        raise ValueError(f"the maps have no channels: shape {maps.shape}")
    if how == "sum":
        out = maps.sum(axis=-1, keepdims=True)
    elif how == "max":
        out = maps.max(axis=-1, keepdims=True)
    elif how == "abs":
        out = np.abs(maps).sum(axis=-1, keepdims=True)
    else:  # absmax
        idx = np.argmax(np.abs(maps), axis=-1)[..., None]
        out = np.take_along_axis(maps, idx, axis=-1)
    return out if keepdims else out[..., 0]


def normalize(maps, batch_dims=1):
    """Min-max scale each map to [0, 1]: (R - min R) / (max R - min R), per map.

    The first ``batch_dims`` axes index maps (2 for (N, T, ...) multi-target
    output); a constant map becomes all zeros."""
    maps = np.asarray(maps)
    axes = tuple(range(batch_dims, maps.ndim))
    lo = maps.min(axis=axes, keepdims=True)
    span = maps.max(axis=axes, keepdims=True) - lo
    safe = np.where(span > 0, span, 1)
    return np.where(span > 0, (maps - lo) / safe, 0).astype(maps.dtype, copy=False)


STEPS = {
    "abs": lambda m, b: np.abs(m),
    "square": lambda m, b: np.square(m),
    "relu": lambda m, b: np.maximum(m, 0),
    "sum": lambda m, b: reduce_channels(m, "sum"),
    "max": lambda m, b: reduce_channels(m, "max"),
    "absmax": lambda m, b: reduce_channels(m, "absmax"),
    "normalize": lambda m, b: normalize(m, b),
}


def parse_steps(spec):
    """Validate a ``postprocess`` argument; returns it as a tuple of steps (step
    names and callables), empty for None."""
    if spec is None:
        return ()
    steps = spec if isinstance(spec, (list, tuple)) else [spec]
    for s in steps:
        if not (callable(s) or (isinstance(s, str) and s in STEPS)):
            raise ValueError(f"unknown postprocess step {s!r}; use None, one of {sorted(STEPS)}, "
                             "a callable f(maps) -> maps, or a list of these")
    return tuple(steps)


def apply(maps, spec, batch_dims=1):
    """Apply the steps of ``spec`` (see :func:`parse_steps`) in order to numpy ``maps``."""
    for s in parse_steps(spec):
        maps = s(maps) if callable(s) else STEPS[s](maps, batch_dims)
    return maps
