"""The one table of method names: ``METHODS[name] = (factory, doc)``.

Every method is registered here under its name: the rule presets (by
:mod:`lrpgraph.methods.analyzer`) and the families in :mod:`lrpgraph.methods` (SGLRP/CLRP,
the CAM family, integrated gradients, SmoothGrad, VarGrad, occlusion).
``create_analyzer(name, model, **params)`` builds one, ``methods()`` lists them.
"""

from __future__ import annotations

import inspect

__all__ = ["METHODS", "register", "create_analyzer", "methods", "parameters", "fill_bounds"]

METHODS = {}


def register(name, doc):
    """Decorator: ``@register("gradcam", "Grad-CAM ...")`` on ``factory(model, **params)``
    (a function or a :class:`lrpgraph.methods.base.Method` subclass)."""

    def deco(factory):
        if name in METHODS and METHODS[name][0] is not factory:
            raise ValueError(f"a method named {name!r} is already registered")
        METHODS[name] = (factory, doc)
        return factory

    return deco


def create_analyzer(name, model, **params):
    """``create_analyzer("lrp.epsilon", model, epsilon=0.01)``: iNNvestigate's entry point.

    ``name`` is any name from :func:`methods`; ``model`` a keras.Model or a
    :class:`lrpgraph.Prepared`; ``params`` the method's parameters."""
    try:
        factory = METHODS[name][0]
    except (KeyError, TypeError):
        raise ValueError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}") from None
    return factory(model, **params)


def methods():
    """dict method name -> one-line description."""
    return {name: doc for name, (_, doc) in METHODS.items()}


def parameters(name):
    """The parameter names method ``name`` takes explicitly: a preset's defaults
    (``factory.parameters``), else the factory's named arguments."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    factory = METHODS[name][0]
    if hasattr(factory, "parameters"):
        return set(factory.parameters)
    return {p.name for p in inspect.signature(factory).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "model"}


def fill_bounds(name, params, low, high):
    """A copy of ``params`` with ``low``/``high`` (the range of the model's inputs: the
    bounds of bounded Deep Taylor, LRP, CLRP and SGLRP, the z^B rule) filled in where
    method ``name`` takes them and ``params`` does not set them.  The one place that
    rule lives (the command line, the evaluation and the localisation benchmark use it)."""
    params = dict(params or {})
    accepted = parameters(name)
    for k, v in (("low", low), ("high", high)):
        if k in accepted and k not in params:
            params[k] = v
    return params
