"""The Gamma presets give Gamma to Dense, EinsumDense and the convolutions only, never to an
added learned constant (issue 19, section 2).

A position table ``x + E`` is a ``variable_add``, a Linear op y = 1 * x + E.  Gamma on it
would compute ``(1 + gamma) x+ + x- + E + gamma E+`` and move relevance between the tokens
and the table; LXT adds the table as a plain tensor and Zennit's Gamma hooks only
``nn.Linear`` and the ``Conv`` modules, so there the add is LRP-0/epsilon with E as a bias.
The tiny model below differs between the old selector (``kind:linear``) and the new one
(``GAMMA_LAYERS``) only at its position table; its map is checked against a float64 numpy
computation of the rules, and the old selector's map against its own reference, so the
test fails on the old selector.
"""

import numpy as np
import pytest

import keras
from keras import layers as L

import lrpgraph
from lrpgraph.rules import Epsilon, Gamma, ZBox
from lrpgraph.rules.presets import GAMMA_LAYERS

GAMMA, EPS = 0.25, 1e-6  # attn_lrp.gamma's defaults


def _stab(z, eps=EPS):
    return z + eps * np.where(z >= 0, 1.0, -1.0)  # z + eps * sign(z), sign(0) = +1


def _pos(a):
    return np.maximum(a, 0.0)


def _neg(a):
    return np.minimum(a, 0.0)


def _gamma_dense(x, w, R, gamma=GAMMA, b=None):
    """Zennit's generalised Gamma on z = x @ w + b, float64: outputs with z > 0 redistribute
    R over x+ up(w) + x- down(w) + up(b), outputs with z < 0 over x+ down(w) + x- up(w) +
    down(b); up(w) = w + gamma w+, down(w) = w + gamma w-."""
    up, down = w + gamma * _pos(w), w + gamma * _neg(w)
    b = np.zeros(w.shape[-1]) if b is None else b
    bu, bd = b + gamma * _pos(b), b + gamma * _neg(b)
    z = x @ w + b
    xp, xn = _pos(x), _neg(x)
    s_pos = np.where(z > 0, R / _stab(xp @ up + xn @ down + bu), 0.0)
    s_neg = np.where(z < 0, R / _stab(xp @ down + xn @ up + bd), 0.0)
    return xp * (s_pos @ up.T + s_neg @ down.T) + xn * (s_pos @ down.T + s_neg @ up.T)


def _model():
    """(2 tokens, 3 features) -> Dense 'proj' -> + position table E -> Flatten -> Dense 'head'."""
    rng = np.random.default_rng(36)  # a seed whose denominators are well away from 0 (_conditioning)
    w1 = rng.normal(size=(3, 2))
    table = rng.normal(size=(2, 2))
    w2 = rng.normal(size=(4, 2))
    E = keras.Variable(table.astype("float32"), name="pos_table")
    inp = keras.Input((2, 3))
    proj = L.Dense(2, use_bias=False, name="proj")
    head = L.Dense(2, use_bias=False, name="head")
    model = keras.Model(inp, head(L.Flatten()(keras.ops.add(proj(inp), E))))
    proj.set_weights([w1.astype("float32")])
    head.set_weights([w2.astype("float32")])
    x = rng.normal(size=(5, 2, 3))
    return model, x.astype("float32"), x, w1, table, w2


def _reference(x, w1, table, w2, target, position_rule):
    """attn_lrp.gamma's map on _model in float64: Gamma on both Dense layers, and
    ``position_rule(h, R_u)`` on the add u = h + E."""
    h = x @ w1
    f = (h + table).reshape(len(x), -1)
    z = f @ w2
    R = np.zeros_like(z)
    R[:, target] = z[:, target]  # the head: the target logit's value
    R_u = _gamma_dense(f, w2, R).reshape(h.shape)
    return _gamma_dense(x, w1, position_rule(h, R_u, table))


def _epsilon_add(h, R_u, table):
    """LRP-epsilon on u = 1 * h + E (E a bias): R_h = h * R_u / (u + eps sign(u))."""
    return h * R_u / _stab(h + table)


def _gamma_add(h, R_u, table):
    """Gamma on u = 1 * h + E, what the old ``kind:linear`` selector gave the table."""
    shape = h.shape
    out = np.zeros_like(h)
    for t in range(shape[1]):
        for d in range(shape[2]):
            out[:, t, d] = _gamma_dense(h[:, t, d:d + 1], np.ones((1, 1)), R_u[:, t, d:d + 1],
                                        b=table[t, d:d + 1])[:, 0]
    return out


def _conditioning(x, w1, table, w2):
    """The smallest |denominator| / (sum of the |terms| in it) over every division of the
    rules on _model, and |z| / sum |x w| of each Dense output (whose sign picks Gamma's
    branch): how much float32 rounding of the terms can be amplified."""
    def dense(x, w):
        up, down = w + GAMMA * _pos(w), w + GAMMA * _neg(w)
        z = x @ w
        d = np.where(z > 0, _pos(x) @ up + _neg(x) @ down, _pos(x) @ down + _neg(x) @ up)
        size = np.abs(x) @ np.maximum(np.abs(up), np.abs(down))
        return min((np.abs(d) / size).min(), (np.abs(z) / (np.abs(x) @ np.abs(w))).min())
    h = x @ w1
    u = h + table
    return min(dense(x, w1), dense(u.reshape(len(x), -1), w2), (np.abs(u) / (np.abs(h) + np.abs(table))).min())


def _rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("target", [0, 1])
def test_attn_lrp_gamma_keeps_the_position_table_on_epsilon(target):
    model, x32, x, w1, table, w2 = _model()
    an = lrpgraph.create_analyzer("attn_lrp.gamma", model)
    by_subkind = {an.graph.nodes[n]["op"].subkind: r for n, r in an.rules.items()
                  if an.graph.nodes[n]["op"].kind == "linear"}
    assert isinstance(by_subkind["variable_add"], Epsilon) and not isinstance(by_subkind["variable_add"], Gamma)
    assert isinstance(by_subkind["dense"], Gamma)
    ours = an.analyze(x32, target)
    new = _reference(x, w1, table, w2, target, _epsilon_add)
    old = _reference(x, w1, table, w2, target, _gamma_add)
    # float32 against float64: each element is a chain of ~10 float32 roundings (6e-8
    # relative each) through denominators no smaller than 0.15 of the terms they sum, so
    # within 10 * 6e-8 / 0.15 = 4e-6 (measured 1.2e-7); 1e-5 of the maximum.  The old
    # selector's map is 0.12 to 0.18 of the maximum away from the new one.
    assert _conditioning(x, w1, table, w2) > 0.15
    assert _rel_err(ours, new) < 1e-5
    assert _rel_err(old, new) > 0.05
    # the old selector, written as an override, reproduces the old reference: the test
    # above would fail on it
    old_an = lrpgraph.create_analyzer("attn_lrp.gamma", model,
                                      overrides={"kind:linear": Gamma(gamma=GAMMA, stabilizer=EPS)})
    assert _rel_err(old_an.analyze(x32, target), old) < 1e-5


def test_gamma_layers_selects_the_dense_and_conv_layers_only():
    """epsilon_gamma_box: ZBox first, epsilon on Dense, Gamma on the convolutions, epsilon
    on every other linear op (the position table here); attn_lrp.gamma: Gamma on the Dense
    and conv layers, epsilon on the table."""
    E = keras.Variable(np.linspace(-1, 1, 12).reshape(6, 2).astype("float32"))
    inp = keras.Input((6, 1))
    x = L.Conv1D(2, 3, padding="same", name="conv_a")(inp)
    x = keras.ops.add(x, E)
    x = L.Conv1D(2, 3, padding="same", name="conv_b")(x)
    x = L.DepthwiseConv1D(3, padding="same", name="dw")(x)
    model = keras.Model(inp, L.Dense(2, name="head")(L.Flatten()(x)))
    X = np.random.default_rng(3).normal(size=(2, 6, 1)).astype("float32")
    want = {
        "epsilon_gamma_box": {"conv1d": (Gamma, ZBox), "variable_add": (Epsilon,), "depthwise": (Gamma,),
                              "dense": (Epsilon,)},
        "attn_lrp.gamma": {"conv1d": (Gamma,), "variable_add": (Epsilon,), "depthwise": (Gamma,),
                           "dense": (Gamma,)},
    }
    for method, kinds in want.items():
        an = lrpgraph.create_analyzer(method, model)
        seen = set()
        for n, r in an.rules.items():
            op = an.graph.nodes[n]["op"]
            if op.kind != "linear":
                continue
            seen.add(op.subkind)
            assert type(r) in kinds[op.subkind], (method, n, r)
        assert seen == set(kinds), (method, seen)
        assert np.all(np.isfinite(an.analyze(X, 0)))
    # a selector per kind of layer, each matching a subkind the graph has
    assert GAMMA_LAYERS == ("kind:linear/*dense", "kind:linear/conv*", "kind:linear/depthwise")


def test_keras_hub_vit_position_table_is_not_gamma():
    """On KerasHub's ViT attn_lrp.gamma reaches the patch Conv2D, the q/k/v/output
    EinsumDense and the MLP Dense layers, and leaves the position table on epsilon."""
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ViTBackbone(image_shape=(16, 16, 3), patch_size=8, num_layers=1, num_heads=2,
                                            hidden_dim=8, mlp_dim=16)
    model = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=2, activation=None)
    an = lrpgraph.create_analyzer("attn_lrp.gamma", model)
    rules = {}
    for n, r in an.rules.items():
        op = an.graph.nodes[n]["op"]
        if op.kind == "linear":
            rules.setdefault(op.subkind, set()).add(type(r))
    assert rules["variable_add"] == {Epsilon}, rules
    assert rules["conv2d"] == {Gamma} and rules["einsum_dense"] == {Gamma} and rules["dense"] == {Gamma}, rules
    assert set(rules) <= {"variable_add", "variable_concat", "conv2d", "einsum_dense", "dense"}, rules
