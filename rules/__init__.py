"""The rule library and the method presets (installed as ``lrpgraph.rules``).

The source is the top-level ``rules/`` folder of the repository, beside ``lrpgraph/``
(the project's design keeps it there); setuptools installs it as ``lrpgraph.rules``
(``package-dir`` in pyproject.toml), and ``lrpgraph/__init__.py`` binds it so when a
checkout is imported from its root (docs/architecture.md).  Rules import only the
engine (:class:`~lrpgraph.engine.context.Context`, ``Rule``, the op descriptions).

- :mod:`~lrpgraph.rules.base`: :class:`BasicRule` (Zennit's modified-gradient step), the
  stabilisers and parameter modifiers;
- :mod:`~lrpgraph.rules.linear`: Epsilon, Z, Z+, Alpha-Beta, Gamma, Flat, W-square, Z^B;
- :mod:`~lrpgraph.rules.structural`: Pass, Gradient, Guided ReLU, DeconvNet ReLU, Gate;
- :mod:`~lrpgraph.rules.attention`, :mod:`~lrpgraph.rules.layernorm`: AttnLRP and CP-LRP;
- :mod:`~lrpgraph.rules.recurrent`: :class:`RecurrentLRP` (LSTM, GRU, SimpleRNN);
- :mod:`~lrpgraph.rules.presets`: every method name's rules, as data.

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
