"""The CAM family: CAM, Grad-CAM, Grad-CAM++, Score-CAM and Guided Grad-CAM.

All of them weight the channels A_k of one layer's output (``layer``: a layer
name, or None for the last layer whose output has the input's rank, i.e. the
last 4-D output for images, as AUCMEDI does) and return

    map = sum_k w_k A_k                        (one channel: (N, h, w, 1))

at the layer's resolution (``resize=False``) or upsampled to the input
(``resize=True``, the default: scikit-image ``resize`` with mode "reflect" and
anti-aliasing, as the SGLRP code does).  ``relu=True`` applies max(0, .) to the
final map (after resizing, as the SGLRP code does).  The default is
``relu=False``: the signed map of the SGLRP code and of REFERENCE.md's
formulas; the Grad-CAM paper's map is ``relu=True``.

The gradient methods stop the reverse pass at ``layer`` (a gradient
:class:`lrpgraph.Analyzer` with ``stop_at``), so they cost a forward pass plus the
backward pass of the layers after ``layer``.  Models with several inputs (the
SGLRP code's MultiGradCAM case) get one map per input: for each input the named
layer's call that depends on it (a shared layer called once per input), or with
``layer=None`` the last spatial layer that depends on that input alone; an input
that reaches no such layer gets None.  ``layer`` may also be a list with one
name per input.

``analyze(x, target=None)`` has :meth:`lrpgraph.Analyzer.analyze`'s target
semantics (int, one per sample, (N, T), None = the predicted class).
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import tensorflow as tf
from skimage.transform import resize as _sk_resize

from ..engine import graph as G
from .analyzer import Analyzer
from .base import Method, check_batch_size, chunked
from ..engine.ops import Linear
from .registry import register

__all__ = ["CAM", "GradCAM", "GradCAMPlusPlus", "ScoreCAM", "GuidedGradCAM", "find_cam_layers"]


def _rank(g, n):
    s = G.output_shape(g, n)
    return None if s is None else len(s)


def _spatial_candidates(g, needed):
    return [n for n in G.topo_order(g) if n in needed and G.op(g, n).kind != "input"
            and (_rank(g, n) or 0) >= 3]


def _layer_calls(g, name, needed):
    """Node ids whose output is the output of the Keras layer ``name`` (one per call)."""
    if not isinstance(name, str):
        raise TypeError(f"layer must be a layer name (str) or None, got {type(name).__name__}")
    # the same lookup as stop_at=: a fused activation's node, a folded BatchNorm's Conv
    out = G.layer_output_nodes(g, name, needed)
    if not out:
        cands = _spatial_candidates(g, needed)
        raise ValueError(f"no layer named {name!r} in the model; layers with a spatial output (CAM "
                         f"candidates): {', '.join(cands) or 'none'}")
    return out


def find_cam_layers(g, inputs, needed, layer):
    """One node per model input (None where the input reaches no CAM layer)."""
    descendants = {m: nx.descendants(g, m) for m in inputs}
    names = layer if isinstance(layer, (list, tuple)) else [layer] * len(inputs)
    if len(names) != len(inputs):
        raise ValueError(f"layer has {len(names)} entries but the model has {len(inputs)} inputs")
    out = []
    for m, name in zip(inputs, names):
        rank = _rank(g, m)
        if name is None:
            cands = [n for n in _spatial_candidates(g, needed) if n in descendants[m] and _rank(g, n) == rank]
            alone = [n for n in cands if not any(n in descendants[o] for o in inputs if o != m)]
            pick = (alone or cands or [None])[-1]
        else:
            calls = _layer_calls(g, name, needed)
            mine = [n for n in calls if n in descendants[m]]
            alone = [n for n in mine if not any(n in descendants[o] for o in inputs if o != m)]
            pick = (alone or mine or [None])[0]
            if pick is not None and (_rank(g, pick) or 0) < 3:
                cands = _spatial_candidates(g, needed)
                raise ValueError(f"layer {name!r} has output shape {G.output_shape(g, pick)}: CAM "
                                 "needs a spatial output (batch, ..., channels); layers with one: "
                                 f"{', '.join(cands) or 'none'}")
        out.append(pick)
    if all(p is None for p in out):
        raise ValueError(f"no input of the model reaches a layer with a spatial output for layer={layer!r}; "
                         f"CAM candidates: {', '.join(_spatial_candidates(g, needed)) or 'none'}")
    return out


def _sk_upsample(maps, spatial):
    """scikit-image resize of (N, h, w, 1) maps to (N,) + spatial + (1,), SGLRP's settings."""
    shape = (maps.shape[0],) + tuple(spatial) + (maps.shape[-1],)
    return _sk_resize(maps, shape, mode="reflect", anti_aliasing=True).astype(maps.dtype, copy=False)


class _CAMBase(Method):
    """Layer selection, the truncated gradient, resizing and ReLU shared by the family."""

    needs_gradient = True
    supports_all = False
    name = "cam"

    def __init__(self, model, layer=None, *, resize=True, relu=False, neuron_selection_mode="max_activation",
                 output=None, postprocess=None):
        super().__init__(model, neuron_selection_mode=neuron_selection_mode, output=output, postprocess=postprocess)
        prepared = self.prepared
        g = prepared.graph
        needed = prepared.needed
        self.input_nodes = list(prepared.input_nodes)
        self.nodes = find_cam_layers(g, self.input_nodes, needed, layer)
        self.layer = layer
        self.resize, self.relu = bool(resize), bool(relu)
        self.stop = list(dict.fromkeys(n for n in self.nodes if n is not None))
        if self.resize:
            for m, n in zip(self.input_nodes, self.nodes):
                if n is not None and _rank(g, n) != _rank(g, m):
                    raise ValueError(f"resize=True needs layer {n!r} (output {G.output_shape(g, n)}) "
                                     f"to have the rank of its input {G.output_shape(g, m)}; pass "
                                     "resize=False for maps at the layer's resolution")
        # The reverse pass of the gradient stops at the CAM layer(s).
        self.gradient = Analyzer(prepared, "gradient", stop_at=self.stop) if self.needs_gradient else None
        self._fn = tf.function(self._body, input_signature=[list(self.input_specs), tf.TensorSpec([None], tf.int32)],
                               reduce_retracing=True, autograph=False)

    @staticmethod
    def _weighted(acts, weights):
        """sum_k w_k A_k over the channel axis, keeping it: (N, ..., 1)."""
        w = tf.reshape(weights, [-1] + [1] * (len(acts.shape) - 2) + [acts.shape[-1]])
        return tf.reduce_sum(acts * w, axis=-1, keepdims=True)

    def _finish(self, maps_by_node, xs, upsampled=False):
        out = []
        for x, n in zip(xs, self.nodes):
            if n is None:
                out.append(None)
                continue
            m = maps_by_node[self.stop.index(n)]
            if self.resize and not upsampled:
                m = _sk_upsample(m, x.shape[1:-1])
            out.append(np.maximum(m, 0) if self.relu else m)
        return out

    def compute(self, xs, targets):
        maps = self._fn([tf.convert_to_tensor(x) for x in xs], tf.convert_to_tensor(targets))
        return self._finish([m.numpy() for m in maps], xs), None


class GradCAM(_CAMBase):
    """Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks
    via Gradient-based Localization", ICCV 2017):

        w_k = mean_spatial(d z_t / d A_k),   map = sum_k w_k A_k

    (the SGLRP code's GradCAM/MultiGradCAM; the paper's map is ``relu=True``).
    Parameters: ``layer``, ``resize``, ``relu`` (see :mod:`lrpgraph.cam`)."""

    name = "gradcam"

    def _body(self, inputs, targets):
        grads, _, acts = self.gradient.traced(inputs, targets)
        return [self._weighted(a, tf.reduce_mean(g, axis=list(range(1, len(g.shape) - 1))))
                for g, a in zip(grads, acts)]


class GradCAMPlusPlus(_CAMBase):
    """Grad-CAM++ (Chattopadhay et al., "Grad-CAM++: Generalized Gradient-Based
    Visual Explanations for Deep Convolutional Networks", WACV 2018), in
    keras-explainable's form: with g = d z_t / d A,

        alpha = g^2 / (2 g^2 + sum_spatial(A) g^3)   (0 where the denominator is 0)
        w_k = sum_spatial(alpha_k * relu(exp(z_t) g_k)),   map = sum_k w_k A_k

    (exp(z_t) only scales the map; it overflows float32 for logits above ~88)."""

    name = "gradcampp"

    def _body(self, inputs, targets):
        grads, logits, acts = self.gradient.traced(inputs, targets)
        t = self.prepared.resolve_predicted(logits, targets)
        scale = tf.exp(tf.gather(logits, t, batch_dims=1))
        out = []
        for g, a in zip(grads, acts):
            axes = list(range(1, len(g.shape) - 1))
            g2, g3 = g * g, g * g * g
            a_sum = tf.reduce_sum(a, axis=axes, keepdims=True)
            alpha = tf.math.divide_no_nan(g2, 2.0 * g2 + a_sum * g3)
            s = tf.reshape(scale, [-1] + [1] * (len(g.shape) - 1))
            out.append(self._weighted(a, tf.reduce_sum(alpha * tf.nn.relu(s * g), axis=axes)))
        return out


class CAM(_CAMBase):
    """CAM (Zhou et al., "Learning Deep Features for Discriminative Localization",
    CVPR 2016) for a network ending in GlobalAveragePooling -> Dense (the logits):

        map = sum_k A_k w_kt,   w = the Dense kernel (bias and 1/(h w) left out)

    ``layer`` (default: the last spatial layer) must feed the global average
    pooling; use Grad-CAM for other architectures (on GAP -> Dense it equals CAM
    up to the factor 1/(h w))."""

    needs_gradient = False
    name = "cam"

    def __init__(self, model, layer=None, **kw):
        super().__init__(model, layer, **kw)
        g = self.prepared.graph
        self._dense = {}
        for n in self.stop:
            self._dense[n] = self._dense_after_gap(g, n)

    def _dense_after_gap(self, g, n):
        out_node = self.prepared.output_node
        hint = ("CAM needs the layer to feed GlobalAveragePooling and then the output Dense layer "
                "(Zhou et al. 2016); use 'gradcam' for other architectures")
        cons = G.consumers(g, n)
        if len(cons) != 1 or not G.class_name(g, cons[0][0]).startswith("GlobalAveragePooling"):
            raise ValueError(f"layer {n!r} does not feed a GlobalAveragePooling layer: {hint}")
        v = cons[0][0]
        while True:
            cons = G.consumers(g, v)
            if len(cons) != 1:
                raise ValueError(f"the pooled features of {n!r} feed {len(cons)} layers: {hint}")
            v = cons[0][0]
            if G.op(g, v).kind != "reshape":
                break
        op = G.op(g, v)
        if v != out_node or not isinstance(op, Linear) or op.subkind != "dense":
            raise ValueError(f"the pooled features of {n!r} feed {v!r} ({G.class_name(g, v)}), not the "
                             f"output Dense layer: {hint}")
        return op

    def _body(self, inputs, targets):
        prepared = self.prepared
        values = prepared.activations(inputs)
        t = prepared.resolve_predicted(values[prepared.output], targets)
        out = []
        for n in self.stop:
            kernel = self._dense[n].kernel()
            out.append(self._weighted(values[(n, 0)], tf.transpose(tf.gather(kernel, t, axis=1))))
        return out


def _tf_upsample(m, spatial):
    """Bilinear tf.image.resize of (B, ..., 1) maps with 1 or 2 spatial axes."""
    if len(m.shape) == 4:
        return tf.image.resize(m, spatial, method="bilinear")
    return tf.image.resize(m[:, :, None, :], (spatial[0], 1), method="bilinear")[:, :, 0, :]


def _minmax(m):
    axes = list(range(1, len(m.shape)))
    lo = tf.reduce_min(m, axis=axes, keepdims=True)
    return tf.math.divide_no_nan(m - lo, tf.reduce_max(m, axis=axes, keepdims=True) - lo)


class ScoreCAM(_CAMBase):
    """Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for
    Convolutional Neural Networks", CVPR workshops 2020):

        M_k = minmax(upsample(A_k)) in [0, 1],   s_k = z_t(x * M_k),
        map = sum_k s_k M_k

    upsampled bilinearly (``tf.image.resize``) to the input; ``softmax=True``
    scores with the softmax probability instead of the logit.  The N x K masked
    inputs are scored inside one compiled function in chunks of at most
    ``batch_size``.  ``resize=False`` returns sum_k s_k minmax(A_k) at the
    layer's resolution (the same scores).  Other inputs of a multi-input model
    are left unmasked."""

    needs_gradient = False
    name = "scorecam"

    def __init__(self, model, layer=None, *, batch_size=64, softmax=False, **kw):
        self.batch_size = check_batch_size(batch_size)
        self.softmax = bool(softmax)
        super().__init__(model, layer, **kw)
        g = self.prepared.graph
        for m, n in zip(self.input_nodes, self.nodes):
            if n is not None and (_rank(g, n) != _rank(g, m) or _rank(g, m) not in (3, 4)):
                raise ValueError(f"Score-CAM masks input {m!r} (shape {G.output_shape(g, m)}) with "
                                 f"layer {n!r}'s channels (shape {G.output_shape(g, n)}): both need "
                                 "1 or 2 spatial axes")

    def _body(self, inputs, targets):
        prepared = self.prepared
        values = prepared.activations(inputs)
        t = prepared.resolve_predicted(values[prepared.output], targets)
        n_samples = tf.shape(inputs[0])[0]
        out = []
        for n in self.stop:
            acts = values[(n, 0)]
            slots = [i for i, node in enumerate(self.nodes) if node == n]
            spatial = inputs[slots[0]].shape[1:-1]
            k_channels = acts.shape[-1]

            def make(k, i, valid, c, acts=acts, slots=slots, spatial=spatial):
                a = tf.gather(tf.gather(acts, i), k, axis=-1, batch_dims=1)[..., None]
                mask = _minmax(_tf_upsample(a, spatial))
                chunk = [tf.gather(x, i) * mask if j in slots else tf.gather(x, i) for j, x in enumerate(inputs)]
                shown = mask if self.resize else _minmax(a)
                return chunk, i, shown, tf.cast(valid, mask.dtype)

            def fold(acc, chunk, i, shown, valid):
                z = prepared.forward(chunk)
                if self.softmax:
                    z = tf.nn.softmax(z, axis=-1)
                s = tf.gather(z, tf.gather(t, i), batch_dims=1) * valid
                s = tf.reshape(s, [-1] + [1] * (len(shown.shape) - 1))
                return acc + tf.math.unsorted_segment_sum(s * shown, i, n_samples)

            size = list(spatial) if self.resize else list(acts.shape[1:-1])
            init = tf.zeros(tf.concat([[n_samples], size, [1]], 0), acts.dtype)
            out.append(chunked(k_channels, n_samples, self.batch_size, make, fold, init))
        return out

    def compute(self, xs, targets):
        maps = self._fn([tf.convert_to_tensor(x) for x in xs], tf.convert_to_tensor(targets))
        return self._finish([m.numpy() for m in maps], xs, upsampled=True), None


class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM (Selvaraju et al. 2017; the SGLRP code's GuidedGradCAM):
    the Grad-CAM map upsampled to the input (``relu`` applies to it) times the
    guided backpropagation map (``guided_backprop``, from the target logit).
    Returns maps shaped like the input."""

    name = "guided_gradcam"

    def __init__(self, model, layer=None, *, resize=True, **kw):
        if not resize:
            raise ValueError("guided_gradcam multiplies by an input-sized map: it needs resize=True")
        super().__init__(model, layer, resize=True, **kw)
        self.guided = Analyzer(self.prepared, "guided_backprop", neuron_selection_mode=self.neuron_selection_mode)

    def compute(self, xs, targets):
        cams, _ = super().compute(xs, targets)
        gbp, logits = self.guided.compute(xs, targets)
        return [None if c is None else c * g for c, g in zip(cams, gbp)], logits


register("cam", "CAM: the output Dense layer's weights on the channels before global average pooling "
         "(Zhou et al. 2016)")(CAM)
register("gradcam", "Grad-CAM: channels weighted by their mean gradient (Selvaraju et al. 2017)")(GradCAM)
register("gradcampp", "Grad-CAM++: channels weighted by positive gradients with alpha weights "
         "(Chattopadhay et al. 2018)")(GradCAMPlusPlus)
register("scorecam", "Score-CAM: channels weighted by the score of the input masked by them "
         "(Wang et al. 2020)")(ScoreCAM)
register("guided_gradcam", "Guided Grad-CAM: upsampled Grad-CAM times guided backprop "
         "(Selvaraju et al. 2017)")(GuidedGradCAM)
