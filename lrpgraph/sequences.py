"""A sequence task whose decisive steps are known, for recurrent-network explanations.

:func:`pattern_series` draws series of :data:`SEQ_LEN` steps and :data:`CHANNELS`
channels of Gaussian noise with one pattern of :data:`WIDTH` steps planted at a
random position; the pattern sets the class (:data:`CLASS_NAMES`): a bump in
channel 0, a dip in channel 0, or a bump in channel 1.  Only the pattern's steps
decide the class, so an explanation's most relevant step should fall inside it:
:func:`hit_rate`.  ``scripts/train_sequence.py`` trains the shipped
``Bidirectional(LSTM)`` on it (:func:`lrpgraph.assets.load_sequence_model`);
:func:`occlusion_steps` is the perturbation baseline (the logit's drop when one step
is set to zero).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SEQ_LEN", "CHANNELS", "WIDTH", "CLASS_NAMES", "pattern_series", "most_relevant_step", "hit_rate",
           "occlusion_steps"]

SEQ_LEN = 40
CHANNELS = 2
WIDTH = 3
CLASS_NAMES = ("bump_ch0", "dip_ch0", "bump_ch1")
_SHAPE = np.array([0.6, 1.0, 0.6])  # the pattern over its WIDTH steps


def pattern_series(n, seed=0, length=SEQ_LEN, noise=0.5, amplitude=2.0):
    """(x (n, length, CHANNELS) float32, labels (n,) int, positions (n,) int): noise
    N(0, noise^2) plus ``amplitude`` * (0.6, 1, 0.6) (minus for a dip) over steps
    position .. position + WIDTH - 1 of the label's channel."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASS_NAMES), n)
    pos = rng.integers(0, length - WIDTH + 1, n)
    x = rng.normal(0.0, noise, (n, length, CHANNELS))
    for i in range(n):
        channel = 1 if y[i] == 2 else 0
        sign = -1.0 if y[i] == 1 else 1.0
        x[i, pos[i]:pos[i] + WIDTH, channel] += sign * amplitude * _SHAPE
    return x.astype(np.float32), y, pos


def most_relevant_step(maps):
    """The step with the largest relevance summed over the channels: (N, T, C) -> (N,)."""
    maps = np.asarray(maps)
    return np.argmax(maps.sum(axis=-1) if maps.ndim == 3 else maps, axis=1)


def hit_rate(maps, positions, width=WIDTH):
    """The fraction of samples whose most relevant step lies in the pattern."""
    t = most_relevant_step(maps)
    positions = np.asarray(positions)
    return float(np.mean((t >= positions) & (t < positions + width)))


def occlusion_steps(model, x, targets, batch_size=512):
    """Occlusion over steps: (N, T) drops of the target logit when step t (every channel)
    is set to 0 (the noise mean), logit(x) - logit(x with step t zeroed)."""
    x = np.asarray(x, np.float32)
    n, steps = x.shape[:2]
    targets = np.asarray(targets)
    base = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))[np.arange(n), targets]
    drops = np.zeros((n, steps), np.float32)
    for t in range(steps):
        xo = x.copy()
        xo[:, t] = 0.0
        out = np.asarray(model.predict(xo, batch_size=batch_size, verbose=0))
        drops[:, t] = base - out[np.arange(n), targets]
    return drops
