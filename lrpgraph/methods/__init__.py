"""Methods: names and a numpy interface over the engine.

- :mod:`~lrpgraph.methods.base`: :class:`Method`, the base of every method (validation,
  targets, batching, post-processing, ``analyze`` and ``explain``);
- :mod:`~lrpgraph.methods.analyzer`: :class:`Analyzer`, a rule preset compiled by the engine;
- :mod:`~lrpgraph.methods.registry`: ``METHODS``, the one table of names
  (``create_analyzer``, ``methods()``, ``parameters``).

The families beyond the rule presets, each a :class:`Method` registered in ``METHODS``
when this package is imported:

- :mod:`~lrpgraph.methods.sglrp`: the SGLRP paper's methods (SGLRP, CLRP, the original LRP);
- :mod:`~lrpgraph.methods.cam`: CAM, Grad-CAM, Grad-CAM++, Score-CAM, guided Grad-CAM;
- :mod:`~lrpgraph.methods.perturbation`: integrated gradients, SmoothGrad, VarGrad, occlusion;
- :mod:`~lrpgraph.methods.rollout`: attention rollout (transformers).

The rule presets (LRP, Deep Taylor, the gradient family) are :class:`lrpgraph.Analyzer`
objects, registered by :mod:`lrpgraph.methods.analyzer`.
"""

from . import cam, perturbation, rollout, sglrp  # noqa: F401  (register the families)
from .cam import CAM, GradCAM, GradCAMPlusPlus, GuidedGradCAM, ScoreCAM, find_cam_layers  # noqa: F401
from .perturbation import IntegratedGradients, Occlusion, SmoothGrad, VarGrad  # noqa: F401
from .rollout import AttentionRollout  # noqa: F401
from .sglrp import CLRP, SGLRP, OriginalLRP, SGLRPSeqA, SGLRPSeqB  # noqa: F401
