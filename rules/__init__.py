"""The rule library and the method presets (installed as ``lrpgraph.rules``).

Every rule is one short class over :class:`~lrpgraph.rules.base.BasicRule`'s
modified-gradient step (linear ops) or a direct ``backward`` (structural ops).
A user's rule is written the same way; see docs/rules.md.
"""

from .base import (KEEP, BasicRule, Context, ParamMod, Rule, identity, negative, ones, positive,
                   safe_divide, square, stabilize, vjp, zero)
from .linear import (AlphaBeta, Bounded, Epsilon, Flat, Gamma, WSquare, Z, ZBox, ZPlus, ZPlusFast,
                     proportional)
from .presets import PRESETS, P, Preset, get_preset, spec
from .structural import DeconvReLU, Gate, Gradient, GuidedReLU, Pass
from .layernorm import LayerNorm
from .recurrent import RecurrentLRP
from .attention import Constant, SoftmaxLRP, TokenSum, UniformBilinear, ValueBilinear, bilinear_share

__all__ = [
    "Rule", "BasicRule", "Context", "ParamMod", "KEEP", "identity", "positive", "negative", "ones",
    "square", "zero", "stabilize", "safe_divide", "vjp", "proportional",
    "Z", "Epsilon", "AlphaBeta", "ZPlus", "ZPlusFast", "Gamma", "WSquare", "Flat", "ZBox", "Bounded",
    "Pass", "Gradient", "GuidedReLU", "DeconvReLU", "Gate", "LayerNorm",
    "SoftmaxLRP", "UniformBilinear", "ValueBilinear", "Constant", "TokenSum", "bilinear_share",
    "RecurrentLRP",
    "Preset", "PRESETS", "P", "spec", "get_preset",
]
