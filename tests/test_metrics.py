"""Hand-computed values for lrpgraph.evaluation.localisation."""

import numpy as np
import pytest

from lrpgraph.evaluation.localisation import negative_share, pointing_game, relevance_mass

# Sample 0: positive relevance 3 + 1 + 4 = 8 (3 inside), negative 1 + 2 = 3 (1 inside),
# maximum 4 at (1, 2), at distance sqrt(2) from the nearest mask pixel (0, 1).
# Sample 1: no positive relevance; negative 7 (2 inside); all-equal maximum -> (0, 0).
MAPS = np.array([
    [[3.0, -1.0, 0.0],
     [1.0, -2.0, 4.0]],
    [[-1.0, -1.0, -1.0],
     [-1.0, -1.0, -2.0]],
])
MASKS = np.array([
    [[True, True, False],
     [False, False, False]],
    [[False, False, False],
     [False, False, True]],
])


def test_relevance_mass_hand_computed():
    np.testing.assert_allclose(relevance_mass(MAPS, MASKS), [3 / 8, 0.0])


def test_negative_share_hand_computed():
    np.testing.assert_allclose(negative_share(MAPS, MASKS), [1 / 3, 2 / 7])


def test_pointing_game_hand_computed():
    hits = pointing_game(MAPS, MASKS)
    assert hits.dtype == bool
    assert hits.tolist() == [False, False]
    # sqrt(2) ~ 1.414 from the mask: a miss at tolerance 1, a hit at 1.5
    assert pointing_game(MAPS, MASKS, tolerance=1).tolist() == [False, False]
    assert pointing_game(MAPS, MASKS, tolerance=1.5).tolist() == [True, False]
    # sample 1 points at (0, 0), which is sqrt(1 + 4) ~ 2.24 from (1, 2)
    assert pointing_game(MAPS, MASKS, tolerance=2.2).tolist() == [True, False]
    assert pointing_game(MAPS, MASKS, tolerance=2.3).tolist() == [True, True]


def test_pointing_game_hit_inside_mask():
    maps = np.zeros((1, 4, 4))
    maps[0, 2, 3] = 1.0
    masks = np.zeros((1, 4, 4), dtype=bool)
    masks[0, 2:, 2:] = True
    assert pointing_game(maps, masks).tolist() == [True]
    assert pointing_game(-maps, masks).tolist() == [False]  # argmax is then (0, 0)


def test_channels_are_summed_first():
    # channels cancel in a way that changes the sign of some pixels
    maps4 = np.stack([MAPS + 5.0, np.full_like(MAPS, -5.0)], axis=-1)
    np.testing.assert_allclose(relevance_mass(maps4, MASKS), [3 / 8, 0.0])
    np.testing.assert_allclose(negative_share(maps4, MASKS), [1 / 3, 2 / 7])
    assert pointing_game(maps4, MASKS, tolerance=1.5).tolist() == [True, False]


def test_scale_invariance_and_bounds():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(5, 8, 8))
    masks = rng.random((5, 8, 8)) < 0.3
    masks[:, 0, 0] = True
    mass = relevance_mass(maps, masks)
    np.testing.assert_allclose(relevance_mass(7.5 * maps, masks), mass)
    assert ((mass >= 0) & (mass <= 1)).all()
    # positive and negative parts swap under negation
    np.testing.assert_allclose(negative_share(-maps, masks), mass)
    # complementary masks share all positive relevance
    full = ~masks
    full[:, 0, 0] = False
    np.testing.assert_allclose(relevance_mass(maps, masks) + relevance_mass(maps, full), 1.0)


def test_integer_masks_and_float32_maps_accepted():
    out = relevance_mass(MAPS.astype(np.float32), MASKS.astype(np.uint8))
    np.testing.assert_allclose(out, [3 / 8, 0.0])


@pytest.mark.parametrize("fn", [relevance_mass, negative_share, pointing_game])
def test_errors(fn):
    with pytest.raises(ValueError, match="same"):
        fn(MAPS, MASKS[:, :, :2])
    with pytest.raises(ValueError, match="same"):
        fn(MAPS[:1], MASKS)
    with pytest.raises(ValueError, match="masks must be"):
        fn(MAPS, MASKS[0])
    with pytest.raises(ValueError, match="maps must be"):
        fn(MAPS[0], MASKS)
    nan_maps = MAPS.copy()
    nan_maps[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*\[1\]"):
        fn(nan_maps, MASKS)
    empty = MASKS.copy()
    empty[1] = False
    with pytest.raises(ValueError, match=r"empty.*\[1\]"):
        fn(MAPS, empty)
    with pytest.raises(ValueError, match="boolean"):
        fn(MAPS, MASKS * 2)


def test_pointing_game_bad_tolerance():
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(MAPS, MASKS, tolerance=-1)
