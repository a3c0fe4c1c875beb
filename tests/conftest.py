"""Shared fixtures: the golden small_cnn builder, tiny dense nets, a seeded rng, the ViT test layers,
the NCHW Conv2D probe and the float32 noise bound of tests against stored numbers."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported

import contextlib  # noqa: E402
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


# --- tolerances of tests against stored numbers -----------------------------------------
# float32's unit roundoff: one rounding moves a value by at most this fraction of it.
U32 = 2.0 ** -24
# What rounding adds per layer a map crosses: a layer's sums run over up to a few hundred
# products (576 at small_cnn's fc1), added in the order the kernel picks (oneDNN or Eigen,
# the CPU's vector width), which rounds by about sqrt(n) = 24 ulps of the sum: 32 per layer.
# Measured (float32 maps against a float64 run of the same computation, on the goldens and
# tests/data/remat_reference.npz, TF_ENABLE_ONEDNN_OPTS=0 and =1, AMD EPYC AVX-512): at most
# 9 ulps per layer (2.0e-6 of the max at depth 4), 15 for SGLRP/CLRP's difference of two
# passes on avg_cnn (5.4e-6 at depth 6), which is why those count both passes' depth.
ULPS_PER_LAYER = 32


def float32_noise(depth, runs=1):
    """The largest difference, as a fraction of a map's largest value, that float32 rounding
    alone makes between a float32 map computed through ``depth`` layers and the exact one
    (``runs=1``: against a float64 run or a map stored in float64), or between two float32
    computations of it on different machines and kernels (``runs=2``: against a stored
    float32 map).  ``runs * depth * 32 * 2**-24``: 3.1e-5 at depth 8 with runs=2, so a
    rule changed by 1e-4 of the max (the smallest real change) is still far outside."""
    return runs * depth * ULPS_PER_LAYER * U32


@contextlib.contextmanager
def float64_keras():
    """Keras layers built inside are float64 (floatx and the global dtype policy set to
    float64, as in test_applications.float64_logits_diff); run the analysis inside too:
    some Keras ops take their constants' dtype from floatx."""
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)


def max_error_per_sample(ours, ref):
    """max |ours - ref| / max |ref| of each sample (first axis), as a list."""
    return [float(np.abs(o - r).max() / max(np.abs(r).max(), 1e-30)) for o, r in zip(ours, ref)]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray runtime of two CPUs for a test module (skips where Ray is not installed);
    shut down after the module unless one was running before."""
    ray = pytest.importorskip("ray", reason="the Ray tests need Ray: pip install 'lrpgraph[ray]'")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()
