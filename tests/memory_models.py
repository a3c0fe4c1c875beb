"""A small residual CNN and the methods whose maps tests/test_memory.py pins to those
computed before the reverse pass recomputed activations (tests/data/remat_reference.npz)."""

import keras

L = keras.layers

METHODS = {
    "lrp.epsilon": ("lrp.epsilon", {}),
    "lrp.z_plus": ("lrp.z_plus", {}),
    "deep_taylor.bounded": ("deep_taylor.bounded", {}),
    "lrp.alpha_2_beta_1": ("lrp.alpha_2_beta_1", {}),
    "epsilon_gamma_box": ("epsilon_gamma_box", {}),
    "sglrp": ("sglrp", {"output_relu": False}),
    "sglrp.one_pass": ("sglrp", {"output_relu": False, "ignore_bias": True}),
    "clrp": ("clrp", {"output_relu": False}),
    "sglrp.multi": ("sglrp", {"output_relu": False}),
    "gradient": ("gradient", {}),
}


def residual_cnn(seed=0):
    """32x32x3 -> 5 logits: convolutions, a residual Add, max and average pooling, Dense."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((32, 32, 3))
    h = L.Conv2D(8, 3, activation="relu", padding="same")(inp)
    h = L.MaxPooling2D()(L.Conv2D(8, 3, activation="relu", padding="same")(h))
    r = L.Conv2D(8, 3, padding="same")(L.Conv2D(8, 3, activation="relu", padding="same")(h))
    h = L.Activation("relu")(L.Add()([h, r]))
    h = L.AveragePooling2D(2)(L.Conv2D(16, 3, activation="relu", padding="same")(h))
    h = L.Dense(16, activation="relu")(L.Flatten()(h))
    return keras.Model(inp, L.Dense(5)(h))
