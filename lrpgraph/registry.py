"""Methods that are not plain presets (CAM family, integrated gradients, SmoothGrad,
occlusion, SGLRP/CLRP) register a factory here under their name, so that
``create_analyzer(name, model, **params)`` and ``methods()`` list them beside
the presets."""

from __future__ import annotations

FACTORIES = {}


def register(name, doc):
    """Decorator: ``@register("gradcam", "Grad-CAM ...")`` on ``factory(model, **params)``."""

    def deco(factory):
        FACTORIES[name] = (factory, doc)
        return factory

    return deco
