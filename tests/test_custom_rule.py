"""docs/rules.md's worked example: a user rule in a few lines, attached to one layer."""

import inspect
import re
from pathlib import Path

import numpy as np

import lrpgraph
from lrpgraph import rules

DOC = Path(__file__).parent.parent / "docs" / "rules.md"


# --- the worked example (docs/rules.md has exactly this code) ---
class PositiveEpsilon(rules.BasicRule):
    """Epsilon over positive weights only, bias ignored:
    R_i = x_i * sum_j w+_ij R_j / (z+_j + eps * sign(z+_j)),  z+_j = sum_i x_i w+_ij."""

    def __init__(self, epsilon=0.1):
        self.epsilon = epsilon
        super().__init__(
            input_modifiers=[rules.identity],
            param_modifiers=[rules.ParamMod(kernel=rules.positive, bias=rules.zero)],
            gradient_mapper=lambda R, zs: [R / rules.stabilize(zs[0], epsilon)],
            reducer=lambda xs, cs: xs[0] * cs[0],
        )
# --- end of the worked example ---


W1 = np.array([[1.0, -2, 0.5, 1], [2, 1, -1, 0.5], [-1, 1, 2, -1.5]])
B1 = np.array([0.5, -0.5, 1, 0.25])
W2 = np.array([[1.0, -1], [-0.5, 1], [1.5, 2], [-1, 0.5]])
B2 = np.array([0.25, -0.5])
X = np.array([[1, 2, -1], [2, -1, 1.5], [-0.5, 1, 2]])
T = np.array([0, 1, 1])


def sign1(z):
    return np.where(z >= 0, 1.0, -1.0)


def test_docs_show_this_exact_code():
    text = DOC.read_text()
    block = re.search(r"```python\n(class PositiveEpsilon.*?)```", text, re.S)
    assert block, "docs/rules.md lost its worked example"
    source = inspect.getsource(PositiveEpsilon)
    assert block.group(1).strip() == source.strip()
    assert len(source.strip().splitlines()) < 20


def test_custom_rule_on_one_layer_changes_the_map_as_expected(make_dense_net):
    model = make_dense_net([W1, W2], [B1, B2], name="two_layer")  # layers "d0" (ReLU) and "d1"
    x = X.astype("float32")
    analyzer = lrpgraph.Analyzer(model, "lrp.epsilon", overrides={"d0": PositiveEpsilon(0.5)})
    got = analyzer.analyze(x, target=T)

    # by hand: lrp.epsilon (1e-7) on d1 from the target logit, ReLU passes, then the new rule on d0
    z1 = X @ W1 + B1
    h = np.maximum(z1, 0)
    z2 = h @ W2 + B2
    R0 = np.zeros_like(z2)
    R0[np.arange(3), T] = z2[np.arange(3), T]
    Rh = h * ((R0 / (z2 + 1e-7 * sign1(z2))) @ W2.T)
    wp = np.maximum(W1, 0)
    zp = X @ wp
    want = X * ((Rh / (zp + 0.5 * sign1(zp))) @ wp.T)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())

    # the override touched d0 only: relevance at d0's output is the preset's
    above = lrpgraph.Analyzer(model, "lrp.epsilon", overrides={"d0": PositiveEpsilon(0.5)}, stop_at="d0")
    np.testing.assert_allclose(above.analyze(x, target=T), Rh, rtol=1e-5, atol=1e-6)

    # and it changed the map compared with the plain preset
    plain = lrpgraph.Analyzer(model, "lrp.epsilon").analyze(x, target=T)
    assert np.abs(plain - got).max() > 0.1 * np.abs(plain).max()


def test_custom_rule_by_class_selector_and_rule_listing(make_dense_net):
    model = make_dense_net([W1, W2], [B1, B2], name="two_layer")
    by_name = lrpgraph.Analyzer(model, "lrp.z", overrides={"d0": PositiveEpsilon(0.5)})
    by_re = lrpgraph.Analyzer(model, "lrp.z", overrides=[("re:d[0]", PositiveEpsilon(0.5))])
    assert isinstance(by_name.rules["d0"], PositiveEpsilon) and isinstance(by_re.rules["d0"], PositiveEpsilon)
    assert not isinstance(by_name.rules["d1"], PositiveEpsilon)
    x = X.astype("float32")
    np.testing.assert_array_equal(by_name.analyze(x, T), by_re.analyze(x, T))
