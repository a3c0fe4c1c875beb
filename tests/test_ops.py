"""The op contract (lrpgraph.ops) and the Context rules receive, tested alone."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras import layers as L

import lrpgraph
from lrpgraph.engine import graph as G
from lrpgraph.engine import ops
from lrpgraph.engine.context import Context
from conftest import skip_without_nchw_conv



# the engine's layering (it imports nothing from rules/ or above): tests/test_layout.py


def test_context_is_immutable_with_defaults():
    x = tf.ones((2, 3))
    ctx = Context(ops.Identity(), [x, x], x)
    assert ctx.nonneg == [False, False] and ctx.tile is None and ctx.untiled is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.tile = lambda t: t


class _Spy(lrpgraph.rules.Epsilon):
    """LRP-epsilon that records what the reverse pass put into its Context."""

    seen = []

    def backward(self, ctx, R):
        self.seen.append((ctx.tile is not None, ctx.untiled is not None))
        return super().backward(ctx, R)


def test_reverse_pass_builds_the_tiled_context_in_one_go(relu_mlp):
    model, x = relu_mlp  # 4 samples
    an = lrpgraph.Analyzer(model, "lrp.epsilon", overrides={"d1": _Spy()})
    _Spy.seen.clear()
    an.analyze(x, target=1)
    assert _Spy.seen == [(False, False)]
    _Spy.seen.clear()
    maps = an.analyze(x, target=np.array([[0, 1, 2]] * 4))  # 3 targets per sample: a tiled batch
    assert _Spy.seen == [(True, True)]
    np.testing.assert_allclose(maps[:, 1], an.analyze(x, target=1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_linear_forward_is_bias_free_and_the_op_adds_the_bias_on_its_channel_axis(data_format):
    if data_format == "channels_first":
        skip_without_nchw_conv()
    keras.utils.set_random_seed(3)
    # 5 filters: with as many filters as output columns Keras's own bias_add guesses NHWC
    layer = L.Conv2D(5, 3, data_format=data_format, bias_initializer="glorot_uniform")
    x = tf.random.normal((2, 3, 6, 6) if data_format == "channels_first" else (2, 6, 6, 3))
    y = layer(x)
    op = ops.describe(layer, None, 4)
    assert isinstance(op, ops.Linear) and op.channel_axis == (1 if data_format == "channels_first" else -1)
    z0 = op.forward(x, op.kernel())
    np.testing.assert_allclose(op.add_bias(z0, op.bias()).numpy(), y.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(op([x])[0].numpy(), y.numpy(), rtol=1e-5, atol=1e-5)
    # linear in x: forward(2x) = 2 forward(x); the bias makes the layer itself affine
    np.testing.assert_allclose(op.forward(2 * x, op.kernel()).numpy(), 2 * z0.numpy(), rtol=1e-5, atol=1e-5)
    assert np.abs(y.numpy() - z0.numpy()).max() > 1e-2


def test_separable_conv_is_one_chain_of_two_linears():
    keras.utils.set_random_seed(4)
    layer = L.SeparableConv2D(5, 3, depth_multiplier=2, bias_initializer="glorot_uniform", activation="relu")
    x = tf.random.normal((2, 7, 7, 3))
    y = layer(x)
    op = ops.describe(layer, None, 4)
    (s0, dw), (s1, pw) = op.parts
    assert (op.kind, s0, s1) == ("chain", "", "pointwise")
    assert dw.subkind == "depthwise" and dw.bias is None and pw.bias is not None and pw.activation[0] == "relu"
    np.testing.assert_allclose(op([x])[0].numpy(), y.numpy(), rtol=1e-5, atol=1e-5)


def test_describe_table_kinds():
    a = keras.Input((4, 4, 2))
    h = L.MaxPooling2D(name="maxp")(a)
    m = L.Multiply(name="mul")([h, L.Activation("sigmoid", name="sig")(h)])
    out = L.Concatenate(name="cat")([L.Flatten(name="fl")(m), L.Flatten()(L.AveragePooling2D(2, name="avgp")(a))])
    g = G.to_graph(keras.Model(a, L.Subtract(name="sub")([out, L.Activation("linear", name="lin")(out)])))
    got = {n: (g.nodes[n]["op"].kind, g.nodes[n]["op"].subkind) for n in
           ["maxp", "mul", "sig", "cat", "fl", "avgp", "sub", "lin"]}
    assert got == {"maxp": ("pool_max", None), "mul": ("multiply", None), "sig": ("elementwise", "sigmoid"),
                   "cat": ("concat", None), "fl": ("reshape", "Flatten"), "avgp": ("pool_avg", None),
                   "sub": ("add", "subtract"), "lin": ("reshape", "identity")}
    assert isinstance(g.nodes["lin"]["op"], ops.Identity) and g.nodes["mul"]["op"].gate_slot is None
    assert lrpgraph.engine.rewrite.mark_gates(g).nodes["mul"]["op"].gate_slot == 1
