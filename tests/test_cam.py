"""The CAM family against direct tf.GradientTape implementations written here."""

import numpy as np
import pytest
import tensorflow as tf
from skimage.transform import resize as sk_resize

import keras

import lrpgraph

TARGETS = np.array([0, 3, 1])


@pytest.fixture(scope="module")
def gap_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c1")(inp)
    h = keras.layers.MaxPooling2D(2, name="p1")(h)
    h = keras.layers.Conv2D(5, 3, activation="relu", name="c2")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    out = keras.layers.Dense(4, name="out")(h)
    model = keras.Model(inp, out)
    x = np.random.RandomState(0).uniform(-1, 1, (3, 16, 16, 3)).astype("float32")
    return model, x


def _tape(model, layer, x, targets):
    """(A, dz_t/dA, z) at the Keras layer's output."""
    feat = keras.Model(model.inputs[0], [model.get_layer(layer).output, model.outputs[0]])
    with tf.GradientTape() as tape:
        a, z = feat(x)
        zt = tf.gather(z, targets, batch_dims=1)
    return a.numpy(), tape.gradient(zt, a).numpy(), z.numpy()


def ref_gradcam(model, layer, x, t):
    a, g, _ = _tape(model, layer, x, t)
    return (a * g.mean(axis=(1, 2), keepdims=True)).sum(-1, keepdims=True)


def ref_gradcampp(model, layer, x, t):
    a, g, z = _tape(model, layer, x, t)
    denom = 2 * g ** 2 + a.sum(axis=(1, 2), keepdims=True) * g ** 3
    alpha = np.where(denom != 0, g ** 2 / np.where(denom != 0, denom, 1), 0)
    w = (alpha * np.maximum(np.exp(z[np.arange(len(t)), t])[:, None, None, None] * g, 0)).sum(axis=(1, 2))
    return (a * w[:, None, None, :]).sum(-1, keepdims=True)


def ref_cam(model, layer, x, t):
    a, _, _ = _tape(model, layer, x, t)
    w = model.get_layer("out").kernel.numpy()[:, t].T
    return (a * w[:, None, None, :]).sum(-1, keepdims=True)


def ref_scorecam(model, layer, x, t):
    a, _, _ = _tape(model, layer, x, t)
    out = np.zeros(x.shape[:3] + (1,), np.float32)
    for k in range(a.shape[-1]):
        m = tf.image.resize(a[..., k:k + 1], x.shape[1:3], method="bilinear").numpy()
        lo, hi = m.min(axis=(1, 2, 3), keepdims=True), m.max(axis=(1, 2, 3), keepdims=True)
        m = np.where(hi > lo, (m - lo) / np.where(hi > lo, hi - lo, 1), 0)
        s = model(x * m).numpy()[np.arange(len(t)), t]
        out += s[:, None, None, None] * m
    return out


def _close(r, ref, tol=1e-5):
    assert r.shape == ref.shape
    for i in range(len(ref)):
        assert np.abs(r[i] - ref[i]).max() <= tol * max(np.abs(ref[i]).max(), 1e-12), i


@pytest.mark.parametrize("name,ref", [("cam", ref_cam), ("gradcam", ref_gradcam), ("gradcampp", ref_gradcampp)])
def test_against_tape_at_layer_resolution(gap_model, name, ref):
    model, x = gap_model
    a = lrpgraph.create_analyzer(name, model, resize=False)
    assert a.nodes == ["c2/relu"]  # default: the last 4-D output; a fused ReLU is part of the layer
    _close(a.analyze(x, target=TARGETS), ref(model, "c2", x, TARGETS))


def test_scorecam_against_direct_loop(gap_model):
    model, x = gap_model
    a = lrpgraph.create_analyzer("scorecam", model, batch_size=4)  # 15 masked inputs in 4 chunks
    _close(a.analyze(x, target=TARGETS), ref_scorecam(model, "c2", x, TARGETS))


def test_resize_relu_and_named_layer(gap_model):
    model, x = gap_model
    layer_map = ref_gradcam(model, "c1", x, TARGETS)
    r = lrpgraph.create_analyzer("gradcam", model, layer="c1").analyze(x, target=TARGETS)
    up = sk_resize(layer_map, (3, 16, 16, 1), mode="reflect", anti_aliasing=True)
    _close(r, up)
    r = lrpgraph.create_analyzer("gradcam", model, layer="c2", relu=True).analyze(x, target=TARGETS)
    up = sk_resize(ref_gradcam(model, "c2", x, TARGETS), (3, 16, 16, 1), mode="reflect", anti_aliasing=True)
    assert (up < 0).any()
    _close(r, np.maximum(up, 0))


def test_target_semantics(gap_model):
    model, x = gap_model
    a = lrpgraph.create_analyzer("gradcam", model, resize=False)
    pred = model(x).numpy().argmax(-1)
    np.testing.assert_array_equal(a.analyze(x), a.analyze(x, target=pred))
    np.testing.assert_array_equal(a.analyze(x, target=2), a.analyze(x, target=[2, 2, 2]))
    both = a.analyze(x, target=np.stack([TARGETS, pred], 1))
    assert both.shape == (3, 2, 6, 6, 1)
    np.testing.assert_array_equal(both[:, 0], a.analyze(x, target=TARGETS))
    with pytest.raises(ValueError, match="out of range"):
        a.analyze(x, target=4)
    with pytest.raises(ValueError, match="has rank 3"):
        a.analyze(x[0])
    norm = lrpgraph.create_analyzer("gradcam", model, postprocess="normalize").analyze(x)
    assert np.allclose(norm.min(axis=(1, 2, 3)), 0) and np.allclose(norm.max(axis=(1, 2, 3)), 1)


def test_guided_gradcam(gap_model):
    model, x = gap_model
    r = lrpgraph.create_analyzer("guided_gradcam", model).analyze(x, target=TARGETS)
    cam = sk_resize(ref_gradcam(model, "c2", x, TARGETS), (3, 16, 16, 1), mode="reflect", anti_aliasing=True)
    gbp = lrpgraph.create_analyzer("guided_backprop", model).analyze(x, target=TARGETS)
    assert r.shape == x.shape
    _close(r, cam * gbp)


def test_scorecam_one_channel_by_hand():
    keras.utils.set_random_seed(1)
    inp = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(1, 3, padding="same", name="one")(inp)
    out = keras.layers.Dense(3, name="out")(keras.layers.Flatten()(h))
    model = keras.Model(inp, out)
    x = np.random.RandomState(5).uniform(0, 1, (2, 6, 6, 2)).astype("float32")
    a = keras.Model(inp, h)(x).numpy()  # (2, 6, 6, 1): already at the input resolution
    mask = (a - a.min(axis=(1, 2, 3), keepdims=True)) / np.ptp(a, axis=(1, 2, 3), keepdims=True)
    s = model(x * mask).numpy()[[0, 1], [2, 0]]
    expect = s[:, None, None, None] * mask
    r = lrpgraph.create_analyzer("scorecam", model).analyze(x, target=[2, 0])
    _close(r, expect)


def test_multi_input_shared_layer():
    """The SGLRP code's MultiGradCAM case: two image inputs through one shared conv."""
    keras.utils.set_random_seed(2)
    i1, i2 = keras.Input((12, 12, 3), name="left"), keras.Input((8, 8, 3), name="right")
    conv = keras.layers.Conv2D(4, 3, activation="relu", name="shared")
    a1, a2 = conv(i1), conv(i2)
    h = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(a1),
                                    keras.layers.GlobalMaxPooling2D()(a2)])
    out = keras.layers.Dense(3, name="out")(h)
    model = keras.Model([i1, i2], out)
    rng = np.random.RandomState(6)
    x1, x2 = rng.randn(2, 12, 12, 3).astype("float32"), rng.randn(2, 8, 8, 3).astype("float32")
    t = np.array([1, 2])
    feat = keras.Model([i1, i2], [a1, a2, out])
    with tf.GradientTape() as tape:
        f1, f2, z = feat([x1, x2])
        zt = tf.gather(z, t, batch_dims=1)
    g1, g2 = tape.gradient(zt, [f1, f2])
    refs = [(f.numpy() * g.numpy().mean(axis=(1, 2), keepdims=True)).sum(-1, keepdims=True)
            for f, g in ((f1, g1), (f2, g2))]
    for layer in ("shared", None):
        a = lrpgraph.create_analyzer("gradcam", model, layer=layer, resize=False)
        r = a.analyze([x1, x2], target=t)
        assert isinstance(r, list) and len(r) == 2
        _close(r[0], refs[0])
        _close(r[1], refs[1])
    r = lrpgraph.create_analyzer("gradcam", model, layer="shared").analyze([x1, x2], target=t)
    assert r[0].shape == (2, 12, 12, 1) and r[1].shape == (2, 8, 8, 1)
    _close(r[1], sk_resize(refs[1], (2, 8, 8, 1), mode="reflect", anti_aliasing=True))


def test_bad_layers(gap_model):
    model, x = gap_model
    with pytest.raises(ValueError, match=r"no layer named 'conv9'.*candidates\): c1, c1/relu, p1, c2, c2/relu"):
        lrpgraph.create_analyzer("gradcam", model, layer="conv9")
    with pytest.raises(ValueError, match=r"layer 'out' has output shape \(None, 4\): CAM needs a spatial"):
        lrpgraph.create_analyzer("gradcampp", model, layer="out")
    with pytest.raises(ValueError, match="does not feed a GlobalAveragePooling"):
        lrpgraph.create_analyzer("cam", model, layer="c1")
    with pytest.raises(ValueError, match="needs resize=True"):
        lrpgraph.create_analyzer("guided_gradcam", model, resize=False)
    with pytest.raises(ValueError, match="one class per sample"):
        lrpgraph.create_analyzer("scorecam", model, neuron_selection_mode="all")
    dense = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="reaches a layer with a spatial output"):
        lrpgraph.create_analyzer("gradcam", dense)


def test_gradcam_stops_early(gap_model):
    model, _ = gap_model
    a = lrpgraph.create_analyzer("gradcam", model)
    # only the layers after the CAM layer (c2's ReLU output) carry a rule in the truncated
    # reverse pass: exactly these two, not fewer (an empty rule set would mean no pass)
    assert a.nodes == ["c2/relu"] and a.gradient.program.stop == ["c2/relu"]
    assert set(a.gradient.program.rules) == {"gap", "out"}
