"""Shared fixtures: the golden small_cnn builder, tiny dense nets, a seeded rng, the ViT test layers,
the NCHW Conv2D probe and the float32 noise bound of tests against stored numbers."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported

import functools  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402

DATA = Path(__file__).parent / "data"


def build_small_cnn(tag=""):
    """The iNNvestigate golden model (tests/data/small_cnn{tag}_in.npz): (model, x, targets)."""
    d = np.load(DATA / f"small_cnn{tag}_in.npz", allow_pickle=True)
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(2, name="pool1"),
        keras.layers.Conv2D(16, 3, activation="relu", name="conv2"),
        keras.layers.MaxPooling2D(2, name="pool2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(32, activation="relu", name="fc1"),
        keras.layers.Dense(10, name="logits"),
    ], name=f"small_cnn{tag}")
    model.set_weights([d[f"w{i}"] for i in range(8)])
    return model, d["x"].astype("float32"), d["targets"].astype("int64")


def load_golden(tag=""):
    """(iNNvestigate outputs npz, its meta.json dict, Zennit outputs npz) for small_cnn{tag}."""
    out = np.load(DATA / f"small_cnn{tag}_out.npz")
    meta = json.loads((DATA / f"small_cnn{tag}_out.meta.json").read_text())
    zen = np.load(DATA / f"small_cnn{tag}_zennit.npz")
    return out, meta, zen


def dense_net(weights, biases=None, activation="relu", name="dense_net"):
    """A Sequential MLP with the given kernels (list of (in, out) arrays); ReLU between
    layers, a linear last layer.  ``biases`` None means no bias."""
    layers = [keras.Input((np.asarray(weights[0]).shape[0],))]
    for i, w in enumerate(weights):
        last = i == len(weights) - 1
        layers.append(keras.layers.Dense(np.asarray(w).shape[1], use_bias=biases is not None,
                                         activation=None if last else activation, name=f"d{i}"))
    model = keras.Sequential(layers, name=name)
    params = []
    for i, w in enumerate(weights):
        params.append(np.asarray(w, "float32"))
        if biases is not None:
            params.append(np.asarray(biases[i], "float32"))
    model.set_weights(params)
    return model


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def small_cnn():
    return build_small_cnn("")


@pytest.fixture(scope="session")
def small_cnn_nb():
    return build_small_cnn("_nb")


@pytest.fixture
def make_dense_net():
    return dense_net


@pytest.fixture(scope="session")
def relu_mlp():
    """A random 6-16-16-5 ReLU MLP with biases and a batch of 4 inputs."""
    r = np.random.default_rng(1)
    ws = [r.normal(size=s) for s in [(6, 16), (16, 16), (16, 5)]]
    bs = [r.normal(scale=0.1, size=s[1]) for s in [(6, 16), (16, 16), (16, 5)]]
    return dense_net(ws, bs, name="relu_mlp"), r.normal(size=(4, 6)).astype("float32")


@pytest.fixture(scope="session")
def golden():
    """``golden(tag)`` -> (iNNvestigate outputs, meta, Zennit outputs)."""
    return load_golden


@pytest.fixture
def vit_layers():
    """The ViT test layers (tests/vit_layers.py) registered: the class token as a
    concatenated variable, the position table as an added one."""
    import lrpgraph
    from vit_layers import ClassToken, PositionEmbedding

    lrpgraph.register_layer(ClassToken, lambda layer: lrpgraph.ops.variable_concat(layer.token, axis=1))
    lrpgraph.register_layer(PositionEmbedding, lambda layer: lrpgraph.ops.variable_add(layer.pos))
    yield
    lrpgraph.ops.unregister_layer(ClassToken)
    lrpgraph.ops.unregister_layer(PositionEmbedding)


@functools.lru_cache(maxsize=None)
def nchw_conv_missing():
    """Why TensorFlow cannot run an NCHW (channels_first) Conv2D here, or None where it
    can.  Whether it has that kernel depends on the CPU and the build: oneDNN has one,
    TensorFlow's own CPU kernels (TF_ENABLE_ONEDNN_OPTS=0, or a CPU TensorFlow leaves
    oneDNN off on) only do NHWC."""
    import tensorflow as tf

    try:
        tf.nn.conv2d(tf.zeros((1, 2, 4, 4)), tf.zeros((3, 3, 2, 1)), 1, "VALID", data_format="NCHW")
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
        return f"{type(e).__name__}: {e.message.split('}}')[-1].split(' [Op:')[0].strip()}"
    return None


def skip_without_nchw_conv():
    """Skip the calling test where TensorFlow has no NCHW Conv2D kernel (see nchw_conv_missing)."""
    reason = nchw_conv_missing()
    if reason:
        pytest.skip(f"TensorFlow has no NCHW (channels_first) Conv2D kernel on this CPU and build "
                    f"(oneDNN off: TF_ENABLE_ONEDNN_OPTS=0, or a CPU without AVX-512): {reason}")
