"""Every preset against iNNvestigate 2.1.2's and Zennit 1.0's outputs on the small_cnn,
and every key of the avg_cnn golden (average pooling) against our methods.

Bar: max |ours - golden| per sample, as a fraction of the sample's max |golden|, within
float32 noise (conftest.float32_noise): iNNvestigate's goldens are float32 maps made on
another machine (two float32 runs), Zennit's were made in float64 (one).  The golden
README's 1e-4 was the agreement asked for; measured: at most 2.0e-6 (small_cnn) and
6e-6 (avg_cnn's SGLRP/CLRP), TF_ENABLE_ONEDNN_OPTS=0 and =1, so the bound (1.5e-5 to
4.6e-5) also catches a rule that is off by 1e-4 of the max.
small_cnn's SGLRP/CLRP and integrated-gradients keys are covered by their own test modules.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import keras
import lrpgraph
from lrpgraph import rules as R
from lrpgraph.rules.presets import PRESETS
from conftest import float32_noise
from paper_keys import ignore_bias_of, is_paper_key, paper_analyzer

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
# the layers with sums the relevance crosses: conv1, conv2, fc1, logits (max pooling picks)
SMALL_CNN_DEPTH = 4


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
    assert max(err) <= float32_noise(SMALL_CNN_DEPTH, runs=2), err  # float32 golden


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
    assert max(err) <= float32_noise(SMALL_CNN_DEPTH), err  # Zennit's maps were made in float64


def test_epsilon_alpha2_beta1_flat(setup):
    """No Zennit golden for this composite: it must equal epsilon_alpha2_beta1 (golden-checked)
    above conv1, and Flat at conv1: each input gets sum_j R_j / 27 over the 3x3x3 windows it is in."""
    model, x, t, _, _, zen = setup
    above = lrpgraph.Analyzer(model, "epsilon_alpha2_beta1", stop_at="conv1").analyze(x, target=t)
    flat = lrpgraph.Analyzer(model, "epsilon_alpha2_beta1_flat").analyze(x, target=t)
    ones = tf.ones((3, 3, 3, 8))
    want = tf.nn.conv2d_transpose(tf.constant(above / 27.0), ones, x.shape, strides=1, padding="VALID").numpy()
    err = per_sample_error(flat, want)
    assert max(err) <= float32_noise(SMALL_CNN_DEPTH), err  # two float32 computations of one map, one float64
    # the first layer's rule matters: the composite differs from its non-flat parent
    assert max(per_sample_error(flat, zen["epsilon_alpha2_beta1"])) > 1e-2


# ---- avg_cnn: average pooling and global average pooling ---------------------------
# iNNvestigate 2.1.2's outputs on a net with AveragePooling2D and GlobalAveragePooling2D
# (shared/golden/README.md).  Its Deep Taylor family (deep_taylor, deep_taylor.bounded,
# and the SGLRP code's sglrp/clrp, made with the 2.1.2 rule: ignore_bias=True) passes
# relevance through both pooling layers like the gradient; the LRP presets use the
# z-rule there.  Every key of the file is checked.

def build_avg_cnn():
    d = np.load(DATA / "avg_cnn_in.npz", allow_pickle=True)
    model = keras.Sequential([
        keras.Input((24, 24, 3)),
        keras.layers.Conv2D(6, 3, padding="valid", activation="relu", name="conv1"),
        keras.layers.AveragePooling2D(2, name="avg1"),
        keras.layers.Conv2D(12, 3, padding="valid", activation="relu", name="conv2"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(16, activation="relu", name="fc1"),
        keras.layers.Dense(10, name="logits"),
    ], name="avg_cnn")
    model.set_weights([d[f"w{i}"] for i in range(8)])
    return model, d["x"].astype("float32"), d["targets"].astype("int64")


# conv1, avg1, conv2, gap, fc1, logits; SGLRP/CLRP subtract two passes: both count
AVG_CNN_DEPTH = 6
AVG_OUT = np.load(DATA / "avg_cnn_out.npz")
AVG_META = json.loads((DATA / "avg_cnn_out.meta.json").read_text())


@pytest.fixture(scope="module")
def avg_cnn():
    return build_avg_cnn()


def _avg_analyzer(key, model):
    if is_paper_key(key):
        return paper_analyzer(key, model, ignore_bias_of(AVG_META, key))
    params = dict(AVG_META["params"][key])
    name = params.pop("innvestigate_name", key)
    mode = params.pop("neuron_selection_mode", "index")
    if name == "integrated_gradients":  # a wrapper: no neuron_selection_mode
        return lrpgraph.create_analyzer(name, model, **params)
    return lrpgraph.create_analyzer(name, model, neuron_selection_mode=mode, **params)


def test_avg_cnn_logits_match(avg_cnn):
    model, x, t = avg_cnn
    np.testing.assert_array_equal(t, AVG_META["targets"])
    np.testing.assert_allclose(model.predict(x, verbose=0), AVG_META["logits"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("key", AVG_OUT.files)
def test_avg_cnn_golden(avg_cnn, key):
    model, x, t = avg_cnn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # sample 3's target logit is < 0
        ours = _avg_analyzer(key, model).analyze(x, target=t)
    golden = AVG_OUT[key]
    assert ours.shape == golden.shape
    for i in range(len(x)):
        if not np.all(np.isfinite(golden[i])):
            # iNNvestigate's CLRP divides 0 by 0 where the output ReLU gates the target
            # logit; we return zeros (REFERENCE.md)
            assert key == "clrp" and np.all(ours[i] == 0)
            continue
        scale = np.abs(golden[i]).max()
        depth = AVG_CNN_DEPTH * (2 if key.split(".")[0] in ("sglrp", "clrp") and key.split(".")[-1]
                                 not in ("target", "others") else 1)
        bound = float32_noise(depth, runs=2)  # float32 goldens
        assert np.abs(ours[i] - golden[i]).max() <= bound * scale + 1e-12, (key, i, scale)


@pytest.mark.parametrize("key", ["deep_taylor", "deep_taylor.bounded", "sglrp.target"])
def test_avg_cnn_pooling_rule_matters(avg_cnn, key):
    """With the z-rule at the pooling layers the Deep Taylor maps miss the golden by far
    more than the tolerance: the golden pins down the gradient rule there."""
    model, x, t = avg_cnn
    z_at_pools = {"overrides": {"kind:pool_avg": lrpgraph.rules.Z()}}
    if is_paper_key(key):
        an = paper_analyzer(key, model, True, **z_at_pools)
    else:
        params = {k: v for k, v in AVG_META["params"][key].items()
                  if k not in ("innvestigate_name", "neuron_selection_mode")}
        an = lrpgraph.Analyzer(model, key, **z_at_pools, **params)
    ours = an.analyze(x, target=t)
    err = per_sample_error(ours[:3], AVG_OUT[key][:3])  # sample 3: gated, all zero
    assert min(err) > 1e-2, err
