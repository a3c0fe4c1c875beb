"""The prepared model and the one Method interface every method shares."""

import warnings

import keras
import numpy as np
import pytest

import lrpgraph
from lrpgraph.engine import heads as H
from lrpgraph.engine import prepared as P
from lrpgraph.methods.base import Method


@pytest.fixture()
def net(rng):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 2))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inp)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    out = keras.layers.Dense(3, name="out")(h)
    model = keras.Model(inp, out)
    x = rng.uniform(-1, 1, (5, 8, 8, 2)).astype("float32")
    return model, x


def test_a_model_is_converted_once_for_every_method(net, monkeypatch):
    model, x = net
    calls = []
    real = P.G.to_graph
    monkeypatch.setattr(P.G, "to_graph", lambda m: calls.append(m) or real(m))
    a = lrpgraph.create_analyzer("sglrp", model)
    b = lrpgraph.create_analyzer("gradcam", model)
    c = lrpgraph.create_analyzer("integrated_gradients", model)
    assert len(calls) == 1
    assert a.prepared is b.prepared is c.prepared is lrpgraph.prepare(model)
    # another output (or another model) is another conversion
    lrpgraph.prepare(keras.models.clone_model(model))
    assert len(calls) == 2


def test_prepared_logits_equal_the_model(net):
    model, x = net
    p = lrpgraph.prepare(model)
    assert p.num_classes == 3 and p.output_name == model.output_names[0]
    np.testing.assert_allclose(p.logits(x), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p.logits(x, batch_size=2), p.logits(x), rtol=1e-6, atol=1e-7)


def test_targets_by_class_name(net):
    model, x = net
    p = lrpgraph.prepare(model, class_names=["cat", "dog", "zebra"])
    t, multi = p.check_targets("Zebra", 5)
    assert not multi and t.tolist() == [2] * 5
    t, multi = p.check_targets([["cat", "dog"]] * 5, 5)
    assert multi and t.tolist() == [[0, 1]] * 5
    with pytest.raises(ValueError, match="unknown class name .horse.; the model.s classes: cat, dog, zebra"):
        p.check_targets("horse", 5)
    by_name = lrpgraph.create_analyzer("gradient", model).analyze(x, target="dog")
    by_index = lrpgraph.create_analyzer("gradient", model).analyze(x, target=1)
    np.testing.assert_array_equal(by_name, by_index)
    with pytest.raises(ValueError, match="class_names has 2 entries"):
        lrpgraph.prepare(model, class_names=["a", "b"])


def test_nan_names_the_sample(net):
    model, x = net
    x = x.copy()
    x[3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN values \(sample\(s\) \[3\]\)"):
        lrpgraph.create_analyzer("lrp.epsilon", model).analyze(x)


@pytest.mark.parametrize("name,params", [
    ("lrp.epsilon", {}), ("sglrp", {"output_relu": False}), ("gradcam", {}), ("integrated_gradients", {"steps": 4}),
    ("smoothgrad", {"n": 2}), ("occlusion", {"window": 4}), ("guided_gradcam", {})])
def test_every_method_has_one_interface(net, name, params):
    """explain() gives the maps analyze() gives, the model's logits and the resolved
    targets; batch_size splits the batch without changing the maps (SmoothGrad's
    noise depends on the chunking, as documented: compared on the shape only)."""
    model, x = net
    method = lrpgraph.create_analyzer(name, model, **params)
    assert isinstance(method, Method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        e = method.explain(x)
        maps = method.analyze(x, batch_size=2)
    np.testing.assert_allclose(e.logits, np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(e.targets, np.asarray(model(x)).argmax(-1))
    assert maps.shape == e.maps.shape and maps.shape[0] == len(x)
    if name != "smoothgrad":
        np.testing.assert_allclose(maps, e.maps, rtol=1e-5, atol=1e-6 * (np.abs(e.maps).max() + 1e-30))
    t = np.array([0, 1, 2, 0, 1])
    two = method.explain(x, np.stack([t, (t + 1) % 3], axis=1))
    assert two.maps.shape[:2] == (len(x), 2) and two.targets.tolist() == np.stack([t, (t + 1) % 3], 1).tolist()


def test_unknown_method_lists_the_table():
    with pytest.raises(ValueError, match="unknown method 'nope'; known: .*gradcam.*lrp.epsilon"):
        lrpgraph.create_analyzer("nope", None)


def test_parameters_of_presets_and_families():
    from lrpgraph.methods.registry import parameters

    assert parameters("lrp.epsilon") == {"epsilon", "bias_factor"}  # bias_factor: Arras et al. 2017 (issue 23)
    assert {"low", "high", "scaling", "output_relu", "relu"} <= parameters("sglrp")
    assert {"layer", "resize", "relu"} <= parameters("gradcam")


class ClipHead(H.Head):
    """A user head that is not a function: its protocol is read, not probed."""

    def seeds(self, logits, targets):
        return H.one_hot(logits, targets) * 3.0


def test_a_head_object_follows_the_protocol(net):
    model, x = net
    three = lrpgraph.Analyzer(model, "lrp.epsilon", head=ClipHead()).analyze(x, 1)
    one = lrpgraph.Analyzer(model, "lrp.epsilon", head="one").analyze(x, 1)
    np.testing.assert_allclose(three, 3 * one, rtol=1e-5, atol=1e-7)
    with pytest.raises(TypeError, match="head must be"):
        lrpgraph.Analyzer(model, "lrp.epsilon", head=3)


@pytest.mark.parametrize("scaling", [False, True])
def test_one_pass_refused_where_a_rule_is_not_linear(rng, scaling):
    """GuidedReLU clips R (not linear): the contrastive head's one-pass form
    A(t - m d) would differ from A(t) - m A(d), so the compiled function runs the
    two seeds as a batch; the result equals two separate analyses."""
    keras.utils.set_random_seed(1)
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="relu", name="d1"),
                          keras.layers.Dense(4, name="logits")])
    x = rng.uniform(0, 1, (6, 6)).astype("float32")
    t = np.array([0, 1, 2, 3, 0, 1])
    over = {"overrides": {"kind:elementwise": lrpgraph.rules.GuidedReLU()}}
    an = lrpgraph.create_analyzer("clrp", m, output_relu=False, scaling=scaling, **over)
    assert not an.program.one_pass
    got = an.analyze(x, target=t)
    a_t = lrpgraph.Analyzer(m, "deep_taylor.bounded", head=H.clrp_target(False), **over).analyze(x, t)
    a_d = lrpgraph.Analyzer(m, "deep_taylor.bounded", head=H.clrp_dual(False), **over).analyze(x, t)
    s_t, s_d = a_t.sum(1, keepdims=True), a_d.sum(1, keepdims=True)
    mult = np.divide(s_t, s_d, out=np.zeros_like(s_t), where=s_d != 0) if scaling else 1.0
    want = a_t - mult * a_d
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    # the one-pass seed gives something else here: the refusal matters
    one = lrpgraph.Analyzer(m, "deep_taylor.bounded", head=lambda z, tg: an.head.one_pass(z, tg), **over)
    assert np.abs(one.analyze(x, t) - want).max() > 1e-3 * np.abs(want).max()


def test_register_layer_after_prepare_converts_again(net):
    """A model prepared before a registration is prepared again after it, so the
    new description is used (the cache is keyed on the registrations too)."""
    model, _ = net
    before = lrpgraph.prepare(model)
    assert lrpgraph.prepare(model) is before

    class Unused(keras.layers.Layer):
        pass

    lrpgraph.register_layer(Unused, lambda layer: lrpgraph.ops.Identity())
    try:
        assert lrpgraph.prepare(model) is not before
    finally:
        lrpgraph.ops.unregister_layer(Unused)
