"""Every preset against iNNvestigate 2.1.2's and Zennit 1.0's outputs on the small_cnn.

Bar (shared/golden/README.md): max |ours - golden| <= 1e-4 * max |golden|, per sample.
The SGLRP/CLRP and integrated-gradients keys are covered by their own test modules.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import lrpgraph
from lrpgraph import rules as R
from lrpgraph.rules.presets import PRESETS

DATA = Path(__file__).parent / "data"
TAGS = ["", "_nb"]


def _innvestigate_keys():
    meta = json.loads((DATA / "small_cnn_out.meta.json").read_text())
    keys = []
    for key in np.load(DATA / "small_cnn_out.npz").files:
        name = meta["params"].get(key, {}).get("innvestigate_name", key)
        if name in PRESETS:  # sglrp/clrp/integrated_gradients: not presets, tested elsewhere
            keys.append(key)
    return keys


INNVESTIGATE_KEYS = _innvestigate_keys()


def per_sample_error(ours, golden):
    return [float(np.abs(o - g).max() / max(np.abs(g).max(), 1e-12)) for o, g in zip(ours, golden)]


@pytest.fixture(scope="module", params=TAGS, ids=["bias", "nobias"])
def setup(request, small_cnn, small_cnn_nb, golden):
    model, x, t = small_cnn if request.param == "" else small_cnn_nb
    out, meta, zen = golden(request.param)
    return model, x, t, out, meta, zen


def test_golden_files_cover_every_preset_family():
    names = {json.loads((DATA / "small_cnn_out.meta.json").read_text())["params"][k].get("innvestigate_name", k)
             for k in INNVESTIGATE_KEYS}
    expected = {"gradient", "input_t_gradient", "guided_backprop", "deconvnet", "lrp.z", "lrp.epsilon",
                "lrp.alpha_1_beta_0", "lrp.alpha_2_beta_1", "lrp.z_plus", "lrp.w_square", "lrp.flat",
                "deep_taylor", "deep_taylor.bounded", "lrp.sequential_preset_a", "lrp.sequential_preset_b",
                "lrp.sequential_preset_a_flat", "lrp.sequential_preset_b_flat"}
    assert expected <= names


@pytest.mark.parametrize("key", INNVESTIGATE_KEYS)
def test_innvestigate_golden(setup, key):
    model, x, t, out, meta, _ = setup
    params = dict(meta["params"][key])
    name = params.pop("innvestigate_name", key)
    mode = params.pop("neuron_selection_mode", "index")
    an = lrpgraph.create_analyzer(name, model, neuron_selection_mode=mode, **params)
    ours = an.analyze(x, target=t)
    golden = out[key]
    assert ours.shape == golden.shape
    assert np.abs(golden).max() > 0
    err = per_sample_error(ours, golden)
    assert max(err) <= 1e-4, err


ZENNIT = {
    "epsilon_plus": ("epsilon_plus", {}),
    "epsilon_plus_flat": ("epsilon_plus_flat", {}),
    "epsilon_alpha2_beta1": ("epsilon_alpha2_beta1", {}),
    "epsilon_gamma_box": ("epsilon_gamma_box", {}),
    "epsilon_1e-6": ("lrp.epsilon", {"epsilon": 1e-6}),
    "epsilon_0.25": ("lrp.epsilon", {"epsilon": 0.25}),
    "zplus": ("lrp.z", {"overrides": {"kind:linear": R.ZPlus(bias="split", stabilizer=1e-6)}}),
    "excitation_backprop": ("lrp.z", {"overrides": {"kind:linear": R.ZPlus(bias="split", stabilizer=1e-6)}}),
    "alpha2beta1": ("lrp.z", {"overrides": {"kind:linear": R.AlphaBeta(2, 1, bias="split", stabilizer=1e-6)}}),
    "guided_backprop": ("guided_backprop", {}),
    "gradient": ("gradient", {}),
}


@pytest.mark.parametrize("key", sorted(ZENNIT))
def test_zennit_golden(setup, key):
    model, x, t, _, _, zen = setup
    name, params = ZENNIT[key]
    np.testing.assert_array_equal(zen["targets"], t)
    ours = lrpgraph.Analyzer(model, name, **params).analyze(x, target=t)
    if key == "gradient":  # Zennit's key starts from the target logit: logit_t * d logit_t / dx
        ours = ours * zen["logits"][np.arange(len(t)), t][:, None, None, None]
    err = per_sample_error(ours, zen[key])
    assert max(err) <= 1e-4, err


def test_epsilon_alpha2_beta1_flat(setup):
    """No Zennit golden for this composite: it must equal epsilon_alpha2_beta1 (golden-checked)
    above conv1, and Flat at conv1: each input gets sum_j R_j / 27 over the 3x3x3 windows it is in."""
    model, x, t, _, _, zen = setup
    above = lrpgraph.Analyzer(model, "epsilon_alpha2_beta1", stop_at="conv1").analyze(x, target=t)
    flat = lrpgraph.Analyzer(model, "epsilon_alpha2_beta1_flat").analyze(x, target=t)
    ones = tf.ones((3, 3, 3, 8))
    want = tf.nn.conv2d_transpose(tf.constant(above / 27.0), ones, x.shape, strides=1, padding="VALID").numpy()
    err = per_sample_error(flat, want)
    assert max(err) <= 1e-5, err
    # the first layer's rule matters: the composite differs from its non-flat parent
    assert max(per_sample_error(flat, zen["epsilon_alpha2_beta1"])) > 1e-2
