"""The SGLRP paper's methods by name (Iwana, Kuroki, Uchida, "Explaining
Convolutional Neural Networks using Softmax Gradient Layer-wise Relevance
Propagation", ICCV Workshops 2019), with every parameter of the original code.

=================  ===========================================================
name               what it computes
=================  ===========================================================
``sglrp``          bounded Deep Taylor from the softmax gradient:
                   A(y_t(1-y_t)+1e-8 at t) - m * A(y_t y_n at n != t)
``clrp``           bounded Deep Taylor, contrastive: A(z_t at t) - m * A(z_t/(K-1) at n != t)
``sglrp_seq_a``    one pass of the signed softmax gradient on lrp.sequential_preset_a_flat
``sglrp_seq_b``    the same on lrp.sequential_preset_b_flat
``lrp``            the original's LRP: bounded Deep Taylor from the target logit
``lrp_a``/``lrp_b`` lrp.sequential_preset_a_flat / _b_flat from the target logit
``lrp_e``          lrp.epsilon from the target logit
=================  ===========================================================

Defaults reproduce the original code (which made the published figures): an
output ReLU before the head (softmax over max(z, 0); classes with z <= 0 pass
nothing) and scaling on (m = sum A_target / sum A_dual, each map sums to 0).
``output_relu=False, scaling=False`` give the paper's formula (softmax of the raw
logits, m = 1), computed in ONE reverse pass seeded with the difference.
``relu=True`` keeps only positive relevance of the final map.

``ignore_bias`` (``sglrp``, ``clrp``, ``lrp``): the original code ran iNNvestigate
1.0.8.3, whose Deep Taylor puts each hidden layer's bias into z+'s denominator
(alpha 1, beta 0 with bias), and so does the default ``ignore_bias=False``; the bias
then takes its share and relevance is not conserved, so scaled SGLRP/CLRP run the
exact two-seed pass.  ``ignore_bias=True`` is iNNvestigate 2.1.2's rule (the
``deep_taylor.bounded`` preset's default).  The first layer keeps z^B either way.
"""

from __future__ import annotations

import warnings

import numpy as np

from .analyzer import Analyzer
from ..engine.heads import clrp_head, signed_softmax_gradient, sglrp_head
from .registry import register

__all__ = ["SGLRP", "CLRP", "SGLRPSeqA", "SGLRPSeqB", "OriginalLRP"]


class _PaperAnalyzer(Analyzer):
    """An Analyzer with the original code's ``relu`` option and a warning for targets
    whose logit the output ReLU gates to zero."""

    def __init__(self, model, preset, *, method, relu=False, gated=False, contrastive=False, **kw):
        super().__init__(model, preset, **kw)
        self.name = method
        self.relu = relu
        self.gated = gated
        if contrastive and self.num_classes < 2:
            raise ValueError(f"{method} contrasts the target with the other classes: the model needs at least "
                             f"two classes, its output has {self.num_classes}")

    def finalize(self, maps, logits, targets):
        if self.gated and targets.min() >= 0:
            t = targets.reshape(len(logits), -1)
            bad = sorted(set(np.nonzero(np.take_along_axis(logits, t, axis=1) <= 0)[0].tolist()))
            if bad:
                warnings.warn(
                    f"{self.name}: the target logit is <= 0 for sample(s) {bad}; the original code's output "
                    "ReLU gates it, so their maps are all zero. Pass output_relu=False for the paper's formula.",
                    RuntimeWarning, stacklevel=4)
        if self.relu:
            maps = [None if m is None else np.maximum(m, 0) for m in maps]
        return maps


def _contrastive(method, head_factory, model, low, high, relu, scaling, output_relu, ignore_bias, **kw):
    return _PaperAnalyzer(model, "deep_taylor.bounded", method=method, relu=relu, gated=output_relu, contrastive=True,
                          head=head_factory(output_relu=output_relu, scaling=scaling), low=low, high=high,
                          ignore_bias=ignore_bias, **kw)


@register("sglrp", "SGLRP: bounded Deep Taylor from the softmax gradient, minus its dual (Iwana et al. 2019)")
def SGLRP(model, low=-1.0, high=1.0, relu=False, scaling=True, output_relu=True, ignore_bias=False, **kw):
    """Softmax-Gradient LRP.  R0 = y_t(1-y_t) + 1e-8 at the target, dual y_t y_n at
    the others (y = softmax(max(z, 0)) with ``output_relu``); result
    A(target) - m * A(dual), m = sum A(target) / sum A(dual) with ``scaling``, else 1.
    ``ignore_bias=False``: iNNvestigate 1.0.8.3's Deep Taylor (see the module docstring)."""
    return _contrastive("sglrp", sglrp_head, model, low, high, relu, scaling, output_relu, ignore_bias, **kw)


@register("clrp", "CLRP: bounded Deep Taylor from the target logit, minus its contrastive dual (Gu et al. 2018)")
def CLRP(model, low=-1.0, high=1.0, relu=False, scaling=True, output_relu=True, ignore_bias=False, **kw):
    """Contrastive LRP.  R0 = z_t at the target, dual z_t / (K - 1) at the others;
    result A(target) - m * A(dual) (Gu, Yang, Tresp, ACCV 2018)."""
    return _contrastive("clrp", clrp_head, model, low, high, relu, scaling, output_relu, ignore_bias, **kw)


def _seq(method, preset, model, relu, epsilon, **kw):
    return _PaperAnalyzer(model, preset, method=method, relu=relu, contrastive=True, head=signed_softmax_gradient,
                          epsilon=epsilon, **kw)


@register("sglrp_seq_a", "SGLRPSeqA: signed softmax-gradient head on lrp.sequential_preset_a_flat")
def SGLRPSeqA(model, relu=False, epsilon=0.1, **kw):
    """One pass of R0 = y_t(1-y_t) + 1e-8 at t, -y_t y_n elsewhere (raw logits)
    with the rules of lrp.sequential_preset_a_flat."""
    return _seq("sglrp_seq_a", "lrp.sequential_preset_a_flat", model, relu, epsilon, **kw)


@register("sglrp_seq_b", "SGLRPSeqB: signed softmax-gradient head on lrp.sequential_preset_b_flat")
def SGLRPSeqB(model, relu=False, epsilon=0.1, **kw):
    """As :func:`SGLRPSeqA` on lrp.sequential_preset_b_flat."""
    return _seq("sglrp_seq_b", "lrp.sequential_preset_b_flat", model, relu, epsilon, **kw)


@register("lrp", "the SGLRP code's LRP: bounded Deep Taylor from the target logit (output ReLU)")
def OriginalLRP(model, low=-1.0, high=1.0, relu=False, ignore_bias=False, **kw):
    """The original code's ``LRP`` class: deep_taylor.bounded with the target mask
    (``ignore_bias=False``: iNNvestigate 1.0.8.3's rule, as for :func:`SGLRP`)."""
    return _PaperAnalyzer(model, "deep_taylor.bounded", method="lrp", relu=relu, gated=True, low=low,
                          high=high, ignore_bias=ignore_bias, **kw)


def _wrapper(method, preset, model, relu, **kw):
    return _PaperAnalyzer(model, preset, method=method, relu=relu, **kw)


@register("lrp_a", "the SGLRP code's LRPA: lrp.sequential_preset_a_flat from the target logit")
def LRPA(model, relu=False, **kw):
    return _wrapper("lrp_a", "lrp.sequential_preset_a_flat", model, relu, **kw)


@register("lrp_b", "the SGLRP code's LRPB: lrp.sequential_preset_b_flat from the target logit")
def LRPB(model, relu=False, **kw):
    return _wrapper("lrp_b", "lrp.sequential_preset_b_flat", model, relu, **kw)


@register("lrp_e", "the SGLRP code's LRPE: lrp.epsilon from the target logit")
def LRPE(model, relu=False, **kw):
    return _wrapper("lrp_e", "lrp.epsilon", model, relu, **kw)
