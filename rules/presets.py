"""Method presets as data: which rule each node gets, and which head starts the pass.

A preset is an ordered list of ``(selector, rule spec)`` pairs; the first
selector that matches a node wins (user overrides come before all of them).
Selectors:

- ``"kind:PATTERN"``: the op kind, or ``kind/subkind``, matched with fnmatch
  (``"kind:linear"``, ``"kind:linear/dense"``, ``"kind:linear/conv*"``);
- ``"class:Name"``: the Keras class name of the node's layer;
- ``"name:layer_name"`` and ``"re:REGEX"``: the node id (layer name);
- ``"first"``: linear nodes fed by a model input through no other linear node;
- a callable ``predicate(node) -> bool`` on a :class:`lrpgraph.engine.assign.NodeInfo`.

A rule spec is ``spec(RuleClass, **kwargs)``; a kwarg given as ``P("name")``
takes the analyzer's parameter ``name`` (e.g. ``epsilon``, ``low``, ``high``), and
``P("name", negate=True)`` its logical negation (``bias=not ignore_bias``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .linear import AlphaBeta, Epsilon, Flat, Gamma, WSquare, Z, ZBox, ZPlus, ZPlusFast
from .attention import Constant, SoftmaxLRP, TokenSum, UniformBilinear, ValueBilinear
from .layernorm import LayerNorm
from .structural import DeconvReLU, Gate, Gradient, GuidedReLU, Pass
from .recurrent import RecurrentLRP

__all__ = ["P", "spec", "Preset", "PRESETS", "get_preset", "GAMMA_LAYERS"]


@dataclass(frozen=True)
class P:
    """A placeholder for an analyzer parameter inside a rule spec (``negate``: pass
    ``not params[name]``)."""

    name: str
    negate: bool = False

    def value(self, params):
        v = params[self.name]
        if not self.negate:
            return v
        if not isinstance(v, (bool, np.bool_)):
            raise TypeError(f"parameter {self.name!r} must be True or False, got {v!r}")
        return not v

    def __str__(self):
        return f"not {self.name}" if self.negate else self.name


@dataclass(frozen=True)
class RuleSpec:
    cls: type
    kwargs: tuple = ()

    def build(self, params):
        kw = {k: (v.value(params) if isinstance(v, P) else v.build(params) if isinstance(v, RuleSpec) else v)
              for k, v in self.kwargs}
        return self.cls(**kw)

    def __repr__(self):
        args = ", ".join(f"{k}={v if isinstance(v, P) else repr(v)}" for k, v in self.kwargs)
        return f"{self.cls.__name__}({args})"


def spec(cls, **kwargs):
    return RuleSpec(cls, tuple(kwargs.items()))


@dataclass(frozen=True)
class Preset:
    """name, one-line doc, ordered rules, the head, default parameters.

    ``head``: 'logit' (the target logit's value), 'logit_relu' (max(logit, 0),
    Deep Taylor), 'one' (1: plain derivatives).  ``multiply_input``: multiply
    the result by the input (input x gradient).
    """

    name: str
    doc: str
    rules: tuple
    head: str = "logit"
    defaults: dict = field(default_factory=dict)
    multiply_input: bool = False
    reference: str = ""


# Transformers under the classic LRP presets: CP-LRP's treatment of attention (Ali et
# al. 2022): a softmax feeding a product (the attention weights) is a constant, the
# product attention.v gives all relevance to the values; a token's relevance is the sum
# over its embedding vector; ops whose output is a constant absorb relevance.
TRANSFORMER_STRUCTURE = (
    ("kind:bilinear", spec(ValueBilinear)),
    ("kind:embedding", spec(TokenSum)),
    ("kind:constant", spec(Constant)),
)

# Relevance through everything that is not a linear layer, for every LRP preset.  A
# softmax elsewhere (mid-graph, not a model output) passes relevance on unchanged; the
# one weighting values in attention.v receives none, ValueBilinear keeps it constant.
LRP_STRUCTURE = TRANSFORMER_STRUCTURE + (
    ("kind:elementwise", spec(Pass)),
    ("kind:noise", spec(Pass)),
    ("kind:softmax", spec(Pass)),
    ("kind:pool_max", spec(Gradient)),      # winner takes all
    ("kind:pool_avg", spec(Z)),             # proportional to contributions
    ("kind:add", spec(Z)),                  # proportional: conserves at residual joins
    ("kind:concat", spec(Gradient)),        # split
    ("kind:reshape", spec(Gradient)),       # re-index
    ("kind:multiply", spec(Gate)),          # all to the value, none to the gate
    ("kind:layernorm", spec(LayerNorm)),    # Ali et al. 2022: sigma held constant
)

# Zennit's composites use its Norm rule (epsilon 1e-6) for sums and average pooling.
ZENNIT_STRUCTURE = (
    ("kind:pool_avg", spec(Epsilon, epsilon=1e-6)),
    ("kind:add", spec(Epsilon, epsilon=1e-6)),
) + LRP_STRUCTURE

# iNNvestigate's Deep Taylor (analyzer/deeptaylor.py) passes relevance through average
# pooling like the gradient: uniformly, 1/pool-size to each input.  It conserves too.
DEEP_TAYLOR_STRUCTURE = (("kind:pool_avg", spec(Gradient)),) + LRP_STRUCTURE

GRADIENT_STRUCTURE = (("kind:*", spec(Gradient)),)

# AttnLRP (Achtibat et al. 2024): softmax rule, uniform rule on the bilinear products,
# identity on element-wise nonlinearities and LayerNorm's normalisation (sigma held
# constant), epsilon on linear layers (``attn_lrp.gamma``: gamma on Dense, EinsumDense and
# the convolutions, GAMMA_LAYERS, for ViTs).
# LayerNorm's beta is a bias of the (linear once sigma is held) layer and absorbs its
# share, as in LXT (gradient x input with sigma detached, beta added after): ``bias=True``.  Dividing by the output without beta instead (``bias=False``) hands
# x * J^T (R / z) on with R proportional to z + beta, amplified where |z| << |beta|.
ATTN_LRP_STRUCTURE = (
    ("kind:softmax", spec(SoftmaxLRP)),
    ("kind:bilinear", spec(UniformBilinear, epsilon=P("epsilon"))),
    ("kind:layernorm", spec(LayerNorm, epsilon=P("epsilon"), bias=True)),
    ("kind:pool_avg", spec(Epsilon, epsilon=P("epsilon"))),
    ("kind:add", spec(Epsilon, epsilon=P("epsilon"))),
) + LRP_STRUCTURE

# CP-LRP (Ali et al. 2022): attention weights constant (no relevance through the softmax,
# all of attention.v's to the values), LayerNorm's scale constant (beta a bias, as above),
# identity on element-wise nonlinearities, epsilon on linear layers.
CP_LRP_STRUCTURE = (
    ("kind:softmax", spec(Constant)),
    ("kind:bilinear", spec(ValueBilinear, epsilon=P("epsilon"))),
    ("kind:layernorm", spec(LayerNorm, epsilon=P("epsilon"), bias=True)),
    ("kind:pool_avg", spec(Epsilon, epsilon=P("epsilon"))),
    ("kind:add", spec(Epsilon, epsilon=P("epsilon"))),
) + LRP_STRUCTURE

ACHTIBAT = "Achtibat et al., ICML 2024"
ALI = "Ali et al., ICML 2022"

BATES = "Bach et al., PLoS ONE 2015"
DTD = "Montavon et al., Pattern Recognition 2017"


def _lrp(name, doc, linear_rules, head="logit", defaults=None, reference=BATES, structure=LRP_STRUCTURE):
    rules = _recurrent_rows(linear_rules) + tuple(linear_rules) + tuple(structure)
    return Preset(name, doc, rules, head, defaults or {}, False, reference)


def _recurrent_rows(linear_rules):
    """LSTM/GRU/SimpleRNN under an LRP preset (rules/recurrent.py, Arras et al. 2017): the
    preset's Dense rule (its rule for every linear op when it has none for Dense) on the
    linear parts, gates signal-take-all; the cell state's split between its summands is
    that rule when it is LRP-epsilon or LRP-0, else LRP-0 (proportional).  z+ assuming
    non-negative inputs becomes z+ (states are signed)."""
    found = [r for sel, r in linear_rules if sel == _DENSE] or [r for sel, r in linear_rules if sel == "kind:linear"]
    if not found:
        return ()
    linear = spec(ZPlus) if found[0].cls is ZPlusFast else found[0]
    split = linear if linear.cls in (Epsilon, Z) else spec(Z)
    return (("kind:recurrent", spec(RecurrentLRP, linear=linear, split=split)),)


def _all_linear(rule):
    return (("kind:linear", rule),)


# Deep Taylor's z+ (alpha 1, beta 0): iNNvestigate 2.1.2 ignores the bias (ignore_bias=True);
# 1.0.8.3, which the SGLRP paper's code ran, puts it in the denominator (ignore_bias=False).
_DT_ZPLUS = spec(ZPlus, bias=P("ignore_bias", negate=True))

_DENSE = "kind:linear/*dense"  # Dense and EinsumDense (transformer projections)
_SEQ_DENSE = (_DENSE, spec(Epsilon, epsilon=P("epsilon")))
_CONV = "kind:linear"  # every other linear op (conv, depthwise, folded batchnorm)

# The layers the Gamma presets give Gamma: Dense, EinsumDense and the convolutions
# (Conv1D/2D/3D, transposed, depthwise, both halves of a separable one; a BatchNorm folded
# into them included), the layers Zennit's Gamma hooks (torch.nn.Linear, the Conv modules).
# Not the other linear ops: an added learned constant (``variable_add``: a position table
# x + E is y = 1 * x + E, which Gamma would turn into (1 + gamma) x+ + x- + E + gamma E+
# and so move relevance between the tokens and the table), a class token, a scale
# (Rescaling, Normalization, a BatchNorm or layer scale that did not fold), a functional
# matmul / einsum with a variable: they keep epsilon, as in LXT, which adds the position
# table as a plain tensor.  ``overrides=[(s, Gamma(...)) for s in GAMMA_LAYERS]`` selects
# the same layers.
GAMMA_LAYERS = ("kind:linear/*dense", "kind:linear/conv*", "kind:linear/depthwise")
_CONV_LAYERS = ("kind:linear/conv*", "kind:linear/depthwise")


def _gamma_on(selectors, stabilizer):
    """``(selector, Gamma(gamma, stabilizer))`` for each selector, then epsilon on every
    other linear op."""
    return tuple((s, spec(Gamma, gamma=P("gamma"), stabilizer=stabilizer)) for s in selectors) + (
        ("kind:linear", spec(Epsilon, epsilon=P("epsilon"))),)


_PRESET_LIST = [
    _lrp("lrp.z", "LRP-0 on every linear layer (gradient x input on ReLU nets)", _all_linear(spec(Z))),
    _lrp("lrp.z_IB", "LRP-0, bias ignored", _all_linear(spec(Z, bias=False))),
    _lrp("lrp.epsilon", "LRP-epsilon on every linear layer",
         _all_linear(spec(Epsilon, epsilon=P("epsilon"), bias_factor=P("bias_factor"))),
         defaults={"epsilon": 1e-7, "bias_factor": 0.0}),
    _lrp("lrp.epsilon_IB", "LRP-epsilon, bias ignored",
         _all_linear(spec(Epsilon, epsilon=P("epsilon"), bias=False)), defaults={"epsilon": 1e-7}),
    _lrp("lrp.z_plus", "LRP-z+ (alpha 1, beta 0, bias ignored)", _all_linear(spec(ZPlus)), reference=DTD),
    _lrp("lrp.z_plus_fast", "LRP-z+ assuming non-negative inputs", _all_linear(spec(ZPlusFast)), reference=DTD),
    _lrp("lrp.alpha_1_beta_0", "LRP-alpha1-beta0 with bias", _all_linear(spec(AlphaBeta, alpha=1, beta=0))),
    _lrp("lrp.alpha_1_beta_0_IB", "LRP-alpha1-beta0, bias ignored",
         _all_linear(spec(AlphaBeta, alpha=1, beta=0, bias=False))),
    _lrp("lrp.alpha_2_beta_1", "LRP-alpha2-beta1 with bias", _all_linear(spec(AlphaBeta, alpha=2, beta=1))),
    _lrp("lrp.alpha_2_beta_1_IB", "LRP-alpha2-beta1, bias ignored",
         _all_linear(spec(AlphaBeta, alpha=2, beta=1, bias=False))),
    _lrp("lrp.w_square", "LRP-w^2 on every linear layer", _all_linear(spec(WSquare)), reference=DTD),
    _lrp("lrp.flat", "LRP-flat on every linear layer", _all_linear(spec(Flat)),
         reference="Lapuschkin et al., Nature Communications 2019"),
    _lrp("deep_taylor", "Deep Taylor: z+ everywhere, from max(logit, 0)", _all_linear(_DT_ZPLUS),
         head="logit_relu", defaults={"ignore_bias": True}, reference=DTD, structure=DEEP_TAYLOR_STRUCTURE),
    _lrp("deep_taylor.bounded", "Deep Taylor with z^B (low, high) on the input layer",
         (("first", spec(ZBox, low=P("low"), high=P("high"))),) + _all_linear(_DT_ZPLUS),
         head="logit_relu", defaults={"low": -1.0, "high": 1.0, "ignore_bias": True}, reference=DTD,
         structure=DEEP_TAYLOR_STRUCTURE),
    _lrp("lrp.sequential_preset_a", "epsilon (0.1) on Dense, alpha1-beta0 on conv",
         (_SEQ_DENSE, (_CONV, spec(AlphaBeta, alpha=1, beta=0))), defaults={"epsilon": 0.1},
         reference="Kohlbrenner et al., IJCNN 2020"),
    _lrp("lrp.sequential_preset_b", "epsilon (0.1) on Dense, alpha2-beta1 on conv",
         (_SEQ_DENSE, (_CONV, spec(AlphaBeta, alpha=2, beta=1))), defaults={"epsilon": 0.1},
         reference="Kohlbrenner et al., IJCNN 2020"),
    _lrp("lrp.sequential_preset_a_flat", "sequential preset A with flat on the input layer",
         (("first", spec(Flat)), _SEQ_DENSE, (_CONV, spec(AlphaBeta, alpha=1, beta=0))),
         defaults={"epsilon": 0.1}, reference="Kohlbrenner et al., IJCNN 2020"),
    _lrp("lrp.sequential_preset_b_flat", "sequential preset B with flat on the input layer",
         (("first", spec(Flat)), _SEQ_DENSE, (_CONV, spec(AlphaBeta, alpha=2, beta=1))),
         defaults={"epsilon": 0.1}, reference="Kohlbrenner et al., IJCNN 2020"),
    # Zennit's composites (Zennit's bias and stabiliser conventions).
    _lrp("epsilon_plus", "Zennit EpsilonPlus: z+ on conv, epsilon on Dense",
         ((_DENSE, spec(Epsilon, epsilon=P("epsilon"))),
          (_CONV, spec(ZPlus, bias="split", stabilizer=1e-6))),
         defaults={"epsilon": 1e-6}, structure=ZENNIT_STRUCTURE, reference="Kohlbrenner et al., IJCNN 2020"),
    _lrp("epsilon_plus_flat", "Zennit EpsilonPlusFlat: flat first, z+ on conv, epsilon on Dense",
         (("first", spec(Flat, stabilizer=1e-6)), (_DENSE, spec(Epsilon, epsilon=P("epsilon"))),
          (_CONV, spec(ZPlus, bias="split", stabilizer=1e-6))),
         defaults={"epsilon": 1e-6}, structure=ZENNIT_STRUCTURE, reference="Kohlbrenner et al., IJCNN 2020"),
    _lrp("epsilon_alpha2_beta1", "Zennit EpsilonAlpha2Beta1: alpha2-beta1 on conv, epsilon on Dense",
         ((_DENSE, spec(Epsilon, epsilon=P("epsilon"))),
          (_CONV, spec(AlphaBeta, alpha=2, beta=1, bias="split", stabilizer=1e-6))),
         defaults={"epsilon": 1e-6}, structure=ZENNIT_STRUCTURE, reference="Kohlbrenner et al., IJCNN 2020"),
    _lrp("epsilon_alpha2_beta1_flat", "Zennit EpsilonAlpha2Beta1Flat: flat first, then epsilon_alpha2_beta1",
         (("first", spec(Flat, stabilizer=1e-6)), (_DENSE, spec(Epsilon, epsilon=P("epsilon"))),
          (_CONV, spec(AlphaBeta, alpha=2, beta=1, bias="split", stabilizer=1e-6))),
         defaults={"epsilon": 1e-6}, structure=ZENNIT_STRUCTURE, reference="Kohlbrenner et al., IJCNN 2020"),
    _lrp("epsilon_gamma_box", "Zennit EpsilonGammaBox: z^B first, gamma on conv, epsilon on Dense",
         (("first", spec(ZBox, low=P("low"), high=P("high"), stabilizer=1e-6)),
          (_DENSE, spec(Epsilon, epsilon=P("epsilon"))))
         + _gamma_on(_CONV_LAYERS, 1e-6),
         defaults={"epsilon": 1e-6, "gamma": 0.25, "low": -1.0, "high": 1.0}, structure=ZENNIT_STRUCTURE,
         reference="Montavon et al., 2019"),
    # Transformers.  attn_lrp is AttnLRP as LXT computes it on any model (LXT gives linear
    # layers the plain gradient, LRP-0; epsilon 1e-6 here).  attn_lrp.gamma is LXT's AttnLRP
    # with Zennit's Gamma on the Linear/Conv layers (GAMMA_LAYERS: not the position-table
    # add); LXT's own ViT recipe, CP-LRP inside the attention with that Gamma, is cp_lrp with
    # overrides=[(s, Gamma(...)) for s in GAMMA_LAYERS] (docs/methods/transformers.md,
    # "Linear rules of ViTs").
    _lrp("attn_lrp", "AttnLRP: softmax rule, uniform rule on q.k and attention.v, epsilon on linear layers",
         _all_linear(spec(Epsilon, epsilon=P("epsilon"))), defaults={"epsilon": 1e-6},
         reference=ACHTIBAT, structure=ATTN_LRP_STRUCTURE),
    _lrp("attn_lrp.gamma", "AttnLRP with gamma on Dense, EinsumDense and conv layers (for ViTs)",
         _gamma_on(GAMMA_LAYERS, P("epsilon")),
         defaults={"epsilon": 1e-6, "gamma": 0.25}, reference=ACHTIBAT, structure=ATTN_LRP_STRUCTURE),
    _lrp("cp_lrp", "CP-LRP: attention weights and LayerNorm scale constant, epsilon on linear layers",
         _all_linear(spec(Epsilon, epsilon=P("epsilon"))), defaults={"epsilon": 1e-9},
         reference=ALI, structure=CP_LRP_STRUCTURE),
    # Gradient family.
    Preset("gradient", "d logit_t / dx (saliency)", GRADIENT_STRUCTURE, head="one",
           reference="Simonyan et al., ICLR workshop 2014"),
    Preset("input_t_gradient", "x * d logit_t / dx", GRADIENT_STRUCTURE, head="one", multiply_input=True,
           reference="Shrikumar et al., 2016"),
    Preset("guided_backprop", "gradient with guided ReLUs, from the target logit",
           (("kind:elementwise", spec(GuidedReLU)),) + GRADIENT_STRUCTURE, head="logit",
           reference="Springenberg et al., ICLR workshop 2015"),
    Preset("deconvnet", "gradient with DeconvNet ReLUs, from the target logit",
           (("kind:elementwise", spec(DeconvReLU)),) + GRADIENT_STRUCTURE, head="logit",
           reference="Zeiler & Fergus, ECCV 2014"),
]

PRESETS = {p.name: p for p in _PRESET_LIST}


def get_preset(name):
    """The :class:`Preset` called ``name`` (ValueError listing the names otherwise)."""
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(sorted(PRESETS))}") from None
