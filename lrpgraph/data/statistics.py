"""Per-sample map statistics the dataset runner stores: :data:`MAP_STATISTICS`.

A map statistic is one number per stored map, computed from one block's float32
maps before ``reduce`` and the cast to the stored dtype, and stored as the array
``metric_<name>`` (explain_dataset's ``metrics=`` names them; the store keeps that
spelling so that older stores read the same).  They are not the faithfulness
metrics of :mod:`lrpgraph.evaluation` (``evaluation.METRICS``, which score a
method over a batch with perturbations and have their own signature); five of
those, the ones defined per sample (``evaluation.PER_SAMPLE_METRICS``:
``aopc_morf``, ``aopc_lerf``, ``deletion``, ``insertion``, ``faithfulness``), are
registered here as map statistics too, with their default parameters.

A statistic is ``f(maps, x, logits, targets, prepared) -> (b,) or (b, T)``:
``maps`` (b, ...) or (b, T, ...) for T targets per sample (``targets`` then
(b, T)), ``x`` the block's inputs, ``logits`` (b, K), ``prepared`` the method's
:class:`lrpgraph.Prepared` model (for statistics that run it).
"""

from __future__ import annotations

import numpy as np

from ..evaluation import PER_SAMPLE_METRICS

__all__ = ["MAP_STATISTICS", "register_map_statistic", "relevance_sum", "positive_share"]

MAP_STATISTICS = {}


def register_map_statistic(name):
    """Decorator adding ``f(maps, x, logits, targets, prepared)`` to
    :data:`MAP_STATISTICS` under ``name`` (see the module docstring)."""

    def deco(fn):
        if name in MAP_STATISTICS and MAP_STATISTICS[name] is not fn:
            raise ValueError(f"a map statistic named {name!r} is already registered")
        MAP_STATISTICS[name] = fn
        return fn

    return deco


def _map_axes(maps, targets):
    return tuple(range(np.ndim(targets), np.ndim(maps)))


@register_map_statistic("relevance_sum")
def relevance_sum(maps, x, logits, targets, prepared=None):
    """sum_i R_i over the map (conservation: equals the explained logit for
    conservative LRP rules without bias absorption)."""
    return np.sum(maps, axis=_map_axes(maps, targets), dtype=np.float64).astype(np.float32)


@register_map_statistic("positive_share")
def positive_share(maps, x, logits, targets, prepared=None):
    """sum_i max(R_i, 0) / sum_i |R_i| (0 for an all-zero map)."""
    axes = _map_axes(maps, targets)
    pos = np.sum(np.maximum(maps, 0), axis=axes, dtype=np.float64)
    tot = np.sum(np.abs(maps), axis=axes, dtype=np.float64)
    return np.where(tot > 0, pos / np.where(tot > 0, tot, 1), 0).astype(np.float32)


def _evaluation_metric(name):
    def statistic(maps, x, logits, targets, prepared=None):
        if np.ndim(targets) != 1:
            raise ValueError(f"the dataset metric {name!r} scores one target per sample; explain one class per "
                             "sample (target='label', 'predicted' or an int) to store it")
        return PER_SAMPLE_METRICS[name](prepared, x, maps, targets)

    statistic.__name__ = name
    statistic.__doc__ = f"The evaluation metric ``{name}`` (docs/evaluation.md), with its default parameters."
    return statistic


for _name in ("aopc_morf", "aopc_lerf", "deletion", "insertion", "faithfulness"):
    register_map_statistic(_name)(_evaluation_metric(_name))
