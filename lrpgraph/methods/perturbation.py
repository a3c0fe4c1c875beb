"""Methods that run another method on many perturbed copies of the input:
integrated gradients, SmoothGrad, VarGrad and occlusion.

All perturbed batches are built and analysed inside ONE compiled tf.function:
a ``tf.while_loop`` walks over the (copies x samples) items in chunks of at most
``batch_size`` items, calling the wrapped method's traced body
(:meth:`lrpgraph.Analyzer.traced`) on each chunk and accumulating the
result per sample.  There is never one Python call per step.

Every class here is a :class:`lrpgraph.methods.base.Method`: ``analyze(x, target=None)``
with the shared target semantics (an int, one int per sample, an (N, T) array,
or None for the predicted class at the unperturbed input), numpy maps out.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .analyzer import Analyzer
from .base import Method, check_batch_size, chunked
from .registry import register
from ..rules.presets import PRESETS
from ..targets import resolve_predicted_tf_lazily

__all__ = ["IntegratedGradients", "SmoothGrad", "VarGrad", "Occlusion"]


def _inner_analyzer(model, method, neuron_selection_mode, output, params):
    if not isinstance(method, str) or method not in PRESETS:
        raise ValueError(f"method must be a preset name (one of {', '.join(sorted(PRESETS))}), got {method!r}")
    return Analyzer(model, method, neuron_selection_mode=neuron_selection_mode, output=output, **params)


def _resolve_targets(prepared, inputs, targets, mode):
    """-1 -> the predicted class at the unperturbed inputs (one forward pass, only if needed)."""
    if mode == "all":
        return targets
    return resolve_predicted_tf_lazily(lambda: prepared.forward(inputs), targets)


def _broadcast_reference(ref, xs, what):
    """Per-input reference arrays broadcast to each input's batch shape."""
    refs = ref if isinstance(ref, (list, tuple)) and len(xs) > 1 else [ref] * len(xs)
    if len(refs) != len(xs):
        raise ValueError(f"{what} must have one entry per model input ({len(xs)}), got {len(refs)}")
    out = []
    for i, (r, x) in enumerate(zip(refs, xs)):
        r = np.asarray(r, dtype=x.dtype)
        try:
            out.append(np.ascontiguousarray(np.broadcast_to(r, x.shape)))
        except ValueError:
            raise ValueError(f"{what} has shape {r.shape}, which does not broadcast to the input's shape "
                             f"{x.shape} (input {i}); pass a number, one sample's shape {x.shape[1:]}, or "
                             f"the batch's shape") from None
        if not np.all(np.isfinite(out[-1])):
            raise ValueError(f"{what} contains NaN or Inf values")
    return out


def _check_reference(ref, specs):
    """Early shape check of a reference against the input specs (batch size unknown)."""
    refs = ref if isinstance(ref, (list, tuple)) and len(specs) > 1 else [ref] * len(specs)
    if len(refs) != len(specs):
        raise ValueError(f"reference_inputs must have one entry per model input ({len(specs)}), got {len(refs)}")
    for i, (r, spec) in enumerate(zip(refs, specs)):
        r = np.asarray(r)
        sample = tuple(d or 1 for d in spec.shape[1:])
        shape = r.shape[1:] if r.ndim == len(spec.shape) else r.shape
        try:
            np.broadcast_shapes(shape, sample)
            ok = r.ndim <= len(spec.shape) and np.broadcast_shapes(shape, sample) == sample
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"reference_inputs has shape {r.shape}, which does not broadcast to input {i}'s "
                             f"shape (batch,) + {tuple(spec.shape[1:])}; pass a number, one sample's shape "
                             f"{tuple(spec.shape[1:])}, or the batch's shape")


class IntegratedGradients(Method):
    """Integrated gradients (Sundararajan, Taly, Yan, "Axiomatic Attribution for
    Deep Networks", ICML 2017), wrapping any preset (default ``"gradient"``).

    With reference x' (``reference_inputs``, alias ``baseline``) and S ``steps``:

    - ``rule="left"`` (iNNvestigate's convention, default):
      IG(x) = (x - x') * (1/S) sum_{k=0}^{S-1} A(x' + (k/S)(x - x'))
      (the end point k = S is not evaluated);
    - ``rule="trapezoid"``: IG(x) = (x - x') * (1/S) sum_{k=0}^{S} c_k A(x' + (k/S)(x - x'))
      with c_0 = c_S = 1/2, else 1 (S + 1 evaluations).

    A is the wrapped method's map (``method="gradient"``: d logit_t / dx).  As S
    grows, sum(IG) approaches logit_t(x) - logit_t(x') (completeness).  Other
    methods are path-averaged and multiplied by (x - x') only if
    ``multiply=True`` (default: True for "gradient" only, since LRP maps are
    attributions already).  The target for -1 / None is the class predicted at x.

    ``reference_inputs``: a number, one sample's shape, or the batch's shape (a
    list with one per input for multi-input models).  ``batch_size`` bounds the
    items per compiled chunk.  Other keyword arguments go to the wrapped preset
    (e.g. ``epsilon``).
    """

    name = "integrated_gradients"

    def __init__(self, model, method="gradient", *, steps=16, reference_inputs=0.0, baseline=None,
                 rule="left", multiply=None, batch_size=64, neuron_selection_mode="max_activation",
                 output=None, postprocess=None, **params):
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        if rule not in ("left", "trapezoid"):
            raise ValueError(f"rule must be 'left' (iNNvestigate's) or 'trapezoid', got {rule!r}")
        if baseline is not None:
            reference_inputs = baseline
        self.steps, self.rule = int(steps), rule
        self.batch_size = check_batch_size(batch_size)
        self.multiply = (method == "gradient") if multiply is None else bool(multiply)
        self.method = method
        super().__init__(model, neuron_selection_mode=neuron_selection_mode, output=output, postprocess=postprocess)
        self.prepared.require_float_inputs(self.name)
        self.inner = _inner_analyzer(self.prepared, method, neuron_selection_mode, output, params)
        self.reference_inputs = reference_inputs
        _check_reference(reference_inputs, self.input_specs)
        k = np.arange(self.steps + (rule == "trapezoid"), dtype=np.float64)
        w = np.ones_like(k)
        if rule == "trapezoid":
            w[0] = w[-1] = 0.5
        self._alphas, self._weights = k / self.steps, w / self.steps
        specs = list(self.input_specs)
        self._fn = tf.function(self._body, input_signature=[specs, specs, tf.TensorSpec([None], tf.int32)],
                               reduce_retracing=True, autograph=False)

    def _body(self, inputs, refs, targets):
        targets = _resolve_targets(self.prepared, inputs, targets, self.neuron_selection_mode)
        n = tf.shape(inputs[0])[0]
        dtype = inputs[0].dtype
        alphas = tf.constant(self._alphas, dtype)
        weights = tf.constant(self._weights, dtype)
        deltas = [x - r for x, r in zip(inputs, refs)]

        def make(k, i, valid, c):
            chunk = []
            for r, d in zip(refs, deltas):
                a = tf.reshape(tf.gather(alphas, k), [-1] + [1] * (len(r.shape) - 1))
                chunk.append(tf.gather(r, i) + tf.cast(a, r.dtype) * tf.gather(d, i))
            return chunk, i, tf.gather(weights, k) * tf.cast(valid, dtype)

        def fold(accs, chunk, i, w):
            maps, _, _ = self.inner.traced(chunk, tf.gather(targets, i))
            return [acc + tf.math.unsorted_segment_sum(
                m * tf.reshape(tf.cast(w, m.dtype), [-1] + [1] * (len(m.shape) - 1)), i, n)
                for acc, m in zip(accs, maps)]

        init = [tf.zeros_like(x) for x in inputs]
        accs = chunked(len(self._alphas), n, self.batch_size, make, fold, init)
        if self.multiply:
            accs = [a * d for a, d in zip(accs, deltas)]
        return accs

    def compute(self, xs, targets):
        refs = _broadcast_reference(self.reference_inputs, xs, "reference_inputs")
        out = self._fn([tf.convert_to_tensor(x) for x in xs], [tf.convert_to_tensor(r) for r in refs],
                       tf.convert_to_tensor(targets))
        return [o.numpy() for o in out], None


class SmoothGrad(Method):
    """SmoothGrad (Smilkov et al., "SmoothGrad: removing noise by adding noise",
    2017), wrapping any preset (default ``"gradient"``):

        SG(x) = (1/n) sum_{j=1}^{n} A(x + e_j),   e_j ~ N(0, sigma^2)

    ``noise_scale`` is sigma relative to each sample's value range:
    sigma = noise_scale * (max(x) - min(x)) (Smilkov et al.'s "noise level";
    they recommend 0.1-0.2).  ``relative=False`` makes ``noise_scale`` the
    absolute standard deviation (what iNNvestigate's ``noise_scale`` meant; its
    2.1.2 code ignores it and always uses 1).  The noise is drawn inside the
    compiled function from ``seed`` (stateless Philox): the same seed, inputs and
    ``batch_size`` give the same maps; ``seed=None`` draws a fresh seed per call.
    Other keyword arguments go to the wrapped preset.
    """

    name = "smoothgrad"

    _reduce = "mean"

    def __init__(self, model, method="gradient", *, n=16, noise_scale=0.15, relative=True, seed=0,
                 batch_size=64, neuron_selection_mode="max_activation", output=None, postprocess=None,
                 augment_by_n=None, **params):
        if augment_by_n is not None:  # iNNvestigate's name
            n = augment_by_n
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n (the number of noisy copies) must be an int >= 1, got {n!r}")
        if not np.isfinite(noise_scale) or noise_scale < 0:
            raise ValueError(f"noise_scale must be a finite number >= 0, got {noise_scale!r}")
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.n, self.noise_scale, self.relative, self.seed = int(n), float(noise_scale), relative, seed
        self.batch_size = check_batch_size(batch_size)
        self.method = method
        super().__init__(model, neuron_selection_mode=neuron_selection_mode, output=output, postprocess=postprocess)
        self.prepared.require_float_inputs(self.name)
        self.inner = _inner_analyzer(self.prepared, method, neuron_selection_mode, output, params)
        specs = list(self.input_specs)
        self._fn = tf.function(self._body, input_signature=[specs, tf.TensorSpec([None], tf.int32),
                                                            tf.TensorSpec([], tf.int64)],
                               reduce_retracing=True, autograph=False)

    def _body(self, inputs, targets, seed):
        targets = _resolve_targets(self.prepared, inputs, targets, self.neuron_selection_mode)
        n = tf.shape(inputs[0])[0]
        sigmas = []
        for x in inputs:
            axes = list(range(1, len(x.shape)))
            s = tf.constant(self.noise_scale, x.dtype)
            if self.relative:
                s = s * (tf.reduce_max(x, axis=axes) - tf.reduce_min(x, axis=axes))
            sigmas.append(s * tf.ones([n], x.dtype))
        n_in = len(inputs)

        def make(k, i, valid, c):
            chunk = []
            for m, (x, s) in enumerate(zip(inputs, sigmas)):
                xi = tf.gather(x, i)
                z = tf.random.stateless_normal(tf.shape(xi), tf.stack([seed, tf.cast(c * n_in + m, tf.int64)]),
                                               dtype=x.dtype)
                chunk.append(xi + z * tf.reshape(tf.gather(s, i), [-1] + [1] * (len(x.shape) - 1)))
            return chunk, i, tf.cast(valid, tf.float64) / self.n

        def fold(accs, chunk, i, w):
            maps, _, _ = self.inner.traced(chunk, tf.gather(targets, i))
            out = []
            for (s1, s2), m in zip(accs, maps):
                m = tf.cast(m, tf.float64)
                wb = tf.reshape(w, [-1] + [1] * (len(m.shape) - 1))
                s1 = s1 + tf.math.unsorted_segment_sum(m * wb, i, n)
                if self._reduce == "var":
                    s2 = s2 + tf.math.unsorted_segment_sum(m * m * wb, i, n)
                out.append((s1, s2))
            return out

        init = [(tf.zeros(tf.shape(x), tf.float64), tf.zeros(tf.shape(x), tf.float64)) for x in inputs]
        accs = chunked(self.n, n, self.batch_size, make, fold, init)
        if self._reduce == "var":
            return [tf.cast(tf.maximum(s2 - s1 * s1, 0.0), x.dtype) for (s1, s2), x in zip(accs, inputs)]
        return [tf.cast(s1, x.dtype) for (s1, _), x in zip(accs, inputs)]

    def compute(self, xs, targets):
        seed = self.seed if self.seed is not None else int(np.random.randint(0, 2**31 - 1))
        out = self._fn([tf.convert_to_tensor(x) for x in xs], tf.convert_to_tensor(targets),
                       tf.constant(seed, tf.int64))
        return [o.numpy() for o in out], None


class VarGrad(SmoothGrad):
    """VarGrad (Adebayo et al., "Local Explanation Methods for Deep Neural Networks
    Lack Sensitivity to Parameter Randomization", 2018): the variance of the
    noisy maps, (1/n) sum_j A(x + e_j)^2 - SG(x)^2, with SmoothGrad's noise and
    parameters (population variance, accumulated in float64)."""

    name = "vargrad"

    _reduce = "var"


class Occlusion(Method):
    """Occlusion (Zeiler & Fergus, "Visualizing and Understanding Convolutional
    Networks", ECCV 2014): slide a ``window`` (h, w) with ``stride`` over the
    image, replace it by ``baseline`` in every channel, and record the drop of
    the target logit, d_p = z_t(x) - z_t(x with window p occluded).  Each pixel
    gets the mean of d_p over the windows covering it (0 where none does):

        map(u) = sum_p d_p [u in p] / sum_p [u in p]

    Returns (N, H, W, 1) maps.  Images (N, H, W, C) only, one model input.  All
    occluded copies are scored inside one compiled function in chunks of at most
    ``batch_size``.  ``stride`` defaults to the window (no overlap).
    """

    name = "occlusion"
    supports_all = False

    def __init__(self, model, *, window=8, stride=None, baseline=0.0, batch_size=64,
                 neuron_selection_mode="max_activation", output=None, postprocess=None):
        super().__init__(model, neuron_selection_mode=neuron_selection_mode, output=output, postprocess=postprocess)
        specs = self.input_specs
        if len(specs) != 1 or len(specs[0].shape) != 4:
            raise ValueError("occlusion needs a model with one image input (N, H, W, C); this model's inputs "
                             f"are {[tuple(s.shape) for s in specs]}")
        h, w = specs[0].shape[1:3]
        if h is None or w is None:
            raise ValueError("occlusion needs a fixed input height and width")
        self.window = _pair(window, "window")
        self.stride = self.window if stride is None else _pair(stride, "stride")
        if self.window[0] > h or self.window[1] > w:
            raise ValueError(f"window {self.window} is larger than the input ({h}, {w})")
        if not np.isfinite(baseline):
            raise ValueError(f"baseline must be a finite number, got {baseline!r}")
        self.baseline = float(baseline)
        self.batch_size = check_batch_size(batch_size)
        rows = np.arange(0, h - self.window[0] + 1, self.stride[0])
        cols = np.arange(0, w - self.window[1] + 1, self.stride[1])
        masks = np.zeros((len(rows) * len(cols), h, w, 1), np.float32)
        for a, r in enumerate(rows):
            for b, c in enumerate(cols):
                masks[a * len(cols) + b, r:r + self.window[0], c:c + self.window[1]] = 1
        self._masks = masks
        self._count = masks.sum(axis=0)
        self._fn = tf.function(self._body, input_signature=[list(self.input_specs), tf.TensorSpec([None], tf.int32)],
                               reduce_retracing=True, autograph=False)

    def _body(self, inputs, targets):
        prepared = self.prepared
        x = inputs[0]
        logits = prepared.forward(inputs)
        targets = prepared.resolve_predicted(logits, targets)
        ref = tf.gather(logits, targets, batch_dims=1)
        masks = tf.constant(self._masks, x.dtype)
        n = tf.shape(x)[0]

        def make(p, i, valid, c):
            mk = tf.gather(masks, p)
            return [tf.gather(x, i) * (1 - mk) + self.baseline * mk], i, mk, tf.cast(valid, x.dtype)

        def fold(acc, chunk, i, mk, valid):
            z = prepared.forward(chunk)
            drop = (tf.gather(ref, i) - tf.gather(z, tf.gather(targets, i), batch_dims=1)) * valid
            return acc + tf.math.unsorted_segment_sum(drop[:, None, None, None] * mk, i, n)

        acc = chunked(len(self._masks), n, self.batch_size, make, fold, tf.zeros(tf.concat([tf.shape(x)[:3], [1]], 0), x.dtype))
        count = tf.constant(self._count, x.dtype)
        return [tf.math.divide_no_nan(acc, count)]

    def compute(self, xs, targets):
        out = self._fn([tf.convert_to_tensor(xs[0])], tf.convert_to_tensor(targets))
        return [o.numpy() for o in out], None


def _pair(v, what):
    t = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(t) != 2 or not all(isinstance(a, (int, np.integer)) and a >= 1 for a in t):
        raise ValueError(f"{what} must be a positive int or a pair of positive ints, got {v!r}")
    return tuple(int(a) for a in t)


register("integrated_gradients", "integrated gradients of any method along a path from a reference "
         "(Sundararajan et al. 2017)")(IntegratedGradients)
register("smoothgrad", "mean of a method's maps over Gaussian-noised inputs (Smilkov et al. 2017)")(SmoothGrad)
register("vargrad", "variance of a method's maps over Gaussian-noised inputs (Adebayo et al. 2018)")(VarGrad)
register("occlusion", "drop of the target logit when a sliding window is occluded (Zeiler & Fergus 2014)")(
    Occlusion)
