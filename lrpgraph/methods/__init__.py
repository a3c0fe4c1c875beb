"""The method families beyond the rule presets, each a :class:`lrpgraph.methods.base.Method`
registered in :data:`lrpgraph.methods.registry.METHODS` when this package is imported:

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
