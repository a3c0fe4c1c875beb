"""Tests for lrpgraph.viz (matplotlib only, no TensorFlow needed)."""

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from lrpgraph import viz
from lrpgraph.postprocess import reduce_channels

SEISMIC = matplotlib.colormaps["seismic"]


def seismic_rgb(x):
    """matplotlib's seismic colour at position x in [0, 1]."""
    return np.asarray(SEISMIC(x))[:3]


# ---------------------------------------------------------------------------
# channel reduction: lrpgraph.postprocess.reduce_channels, the one implementation viz plots with
# ---------------------------------------------------------------------------


def test_reduce_channels_modes():
    R = np.array([[[1.0, -3.0, 0.5], [2.0, 1.0, -0.5]]])  # (1, 2, 3)
    np.testing.assert_allclose(reduce_channels(R, keepdims=False), [[-1.5, 2.5]])
    np.testing.assert_allclose(reduce_channels(R, "max", keepdims=False), [[1.0, 2.0]])
    np.testing.assert_allclose(reduce_channels(R, "absmax", keepdims=False), [[-3.0, 2.0]])
    np.testing.assert_allclose(reduce_channels(R, "abs", keepdims=False), [[4.5, 3.5]])
    # keepdims (the postprocess steps) keeps a size-1 channel axis with the same values
    np.testing.assert_allclose(reduce_channels(R, "abs")[..., 0], [[4.5, 3.5]])


def test_viz_plots_the_channel_reduction_and_2d_maps_as_given():
    R = np.array([[[1.0, -3.0, 0.5], [2.0, 1.0, -0.5]]])  # (1, 2, 3)
    for how in ("sum", "max", "absmax", "abs"):
        np.testing.assert_allclose(viz.heatmap_rgb(R, reduce=how),
                                   viz.heatmap_rgb(reduce_channels(R, how, keepdims=False)))
    R2 = np.array([[1.0, -2.0]])  # (H, W): no channel axis to reduce
    np.testing.assert_allclose(viz.heatmap_rgb(R2), viz.heatmap_rgb(R2[..., None]))
    np.testing.assert_allclose(viz.heatmap_rgb(R2, reduce="abs"), viz.heatmap_rgb(np.abs(R2)))
    assert not np.allclose(viz.heatmap_rgb(R2, reduce="abs"), viz.heatmap_rgb(R2))


def test_reduce_channels_rejects_bad_input():
    with pytest.raises(ValueError):
        viz.heatmap_rgb(np.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError):
        viz.heatmap_rgb(np.zeros(4))
    with pytest.raises(ValueError, match="mean"):
        viz.heatmap_rgb(np.zeros((2, 2)), reduce="mean")
    with pytest.raises(ValueError, match="mean"):
        reduce_channels(np.zeros((2, 2, 3)), how="mean")
    with pytest.raises(ValueError, match="no channels"):
        reduce_channels(np.zeros((2, 2, 0)))


# ---------------------------------------------------------------------------
# heatmap_rgb
# ---------------------------------------------------------------------------


def test_heatmap_rgb_signs_map_to_red_blue_white():
    # M = 1; +0.5 -> seismic(0.75) = red, -0.5 -> seismic(0.25) = blue, 0 -> white
    R = np.array([[0.5, -0.5], [0.0, 1.0]])
    rgb = viz.heatmap_rgb(R)
    assert rgb.shape == (2, 2, 3)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    red, blue, white = rgb[0, 0], rgb[0, 1], rgb[1, 0]
    assert red[0] > 0.95 and red[1] < 0.05 and red[2] < 0.05
    assert blue[2] > 0.95 and blue[0] < 0.05 and blue[1] < 0.05
    np.testing.assert_allclose(white, 1.0, atol=0.01)
    # and exactly matplotlib's seismic with limits [-1, 1]
    norm = Normalize(-1.0, 1.0)
    for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        np.testing.assert_allclose(rgb[i, j], seismic_rgb(norm(R[i, j])), atol=1e-12)


def test_heatmap_rgb_symmetric_limits():
    # max 1, min -0.1: limits are [-1, 1], so -0.1 is pale blue (seismic(0.45)),
    # not dark blue as it would be with an asymmetric [min, max] normalisation.
    R = np.array([[1.0, -0.1, 0.0]])
    rgb = viz.heatmap_rgb(R)
    np.testing.assert_allclose(rgb[0, 0], seismic_rgb(1.0), atol=1e-12)
    np.testing.assert_allclose(rgb[0, 0], [0.5, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(rgb[0, 1], seismic_rgb(0.45), atol=1e-12)
    pale = rgb[0, 1]
    assert pale[2] == pytest.approx(1.0)
    assert 0.7 < pale[0] < 0.9 and 0.7 < pale[1] < 0.9  # pale, not saturated
    assert np.abs(rgb[0, 1] - seismic_rgb(0.0)).max() > 0.5
    # scaling the map does not change the picture
    np.testing.assert_allclose(viz.heatmap_rgb(R * 37.0), rgb)


def test_heatmap_rgb_limit_override():
    R = np.array([[0.5, -2.0]])
    rgb = viz.heatmap_rgb(R, limit=1.0)
    np.testing.assert_allclose(rgb[0, 0], seismic_rgb(0.75), atol=1e-12)
    np.testing.assert_allclose(rgb[0, 1], seismic_rgb(0.0), atol=1e-12)  # clipped
    with pytest.raises(ValueError):
        viz.heatmap_rgb(R, limit=0.0)


def test_heatmap_rgb_sums_channels():
    R = np.zeros((2, 2, 3))
    R[0, 0] = [1.0, -1.0, 0.0]  # sums to 0 -> white
    R[1, 1] = [0.2, 0.3, 0.5]  # sums to 1 -> max -> dark red
    R[0, 1] = [-0.5, 0.0, 0.0]  # -0.5 -> blue
    rgb = viz.heatmap_rgb(R)
    np.testing.assert_allclose(rgb[0, 0], 1.0, atol=0.01)
    np.testing.assert_allclose(rgb[1, 1], seismic_rgb(1.0), atol=1e-12)
    np.testing.assert_allclose(rgb[0, 1], seismic_rgb(0.25), atol=1e-12)
    # with "absmax" the +1/-1 pixel is no longer white
    assert np.abs(viz.heatmap_rgb(R, reduce="absmax")[0, 0] - 1.0).max() > 0.3


def test_heatmap_rgb_all_zero_is_white():
    rgb = viz.heatmap_rgb(np.zeros((4, 5, 3)))
    assert rgb.shape == (4, 5, 3)
    assert not np.isnan(rgb).any()
    np.testing.assert_allclose(rgb, 1.0, atol=0.01)


# ---------------------------------------------------------------------------
# overlay
# ---------------------------------------------------------------------------


def test_overlay_blends_and_normalises_image():
    R = np.array([[0.5, 0.0]])
    heat = viz.heatmap_rgb(R)
    img_u8 = np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    out = viz.overlay(img_u8, R, alpha=0.25)
    np.testing.assert_allclose(out, 0.75 * img_u8 / 255.0 + 0.25 * heat)
    # any-range float image is min-max normalised -> same result as uint8 version
    img_f = np.array([[[-10.0] * 3, [30.0] * 3]])
    np.testing.assert_allclose(viz.overlay(img_f, R, alpha=0.25), out)
    # grayscale (H, W) image accepted
    assert viz.overlay(np.array([[0.0, 1.0]]), R).shape == (1, 2, 3)
    with pytest.raises(ValueError):
        viz.overlay(np.zeros((3, 3, 3)), R)


# ---------------------------------------------------------------------------
# Axes / Figure helpers
# ---------------------------------------------------------------------------


def test_plot_heatmap_conventions():
    fig = Figure()
    ax = fig.add_subplot()
    R = np.array([[[0.2, 0.2], [-4.0, 1.0]]])  # sums: 0.4, -3.0
    im = viz.plot_heatmap(ax, R, title="t")
    assert im.get_cmap().name == "seismic"
    assert im.get_clim() == (-3.0, 3.0)
    assert im.get_interpolation() == "none"
    assert len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0
    assert ax.get_title() == "t"
    np.testing.assert_allclose(im.get_array(), [[0.4, -3.0]])


def _cell_pixels(fig, arr, ax):
    """Pixels of arr (rendered figure) inside the central half of ax."""
    bb = ax.get_window_extent()
    h = arr.shape[0]
    x0, x1 = bb.x0 + 0.25 * bb.width, bb.x0 + 0.75 * bb.width
    y0, y1 = bb.y0 + 0.25 * bb.height, bb.y0 + 0.75 * bb.height
    rows = slice(int(round(h - y1)), int(round(h - y0)))
    cols = slice(int(round(x0)), int(round(x1)))
    return arr[rows, cols].reshape(-1, arr.shape[-1]).astype(int)


def _is_red(p):
    return (p[:, 0] > 200) & (p[:, 1] < 60) & (p[:, 2] < 60)


def _is_blue(p):
    return (p[:, 2] > 200) & (p[:, 0] < 60) & (p[:, 1] < 60)


def test_heatmap_grid_renders_signs_in_right_cells():
    n, h, w = 2, 8, 8
    pos = np.full((h, w, 3), 0.5 / 3)  # sums to 0.5
    pos[0, 0] = 1.0 / 3  # M = 1 -> the rest sits at seismic(0.75) = red
    neg = -pos
    a = np.stack([pos, neg])  # image 0 positive, image 1 negative
    b = np.stack([neg, np.zeros((h, w, 3))])  # image 0 negative, image 1 zero
    images = np.random.default_rng(0).random((n, h, w, 3))
    fig = viz.heatmap_grid(
        [("method A", a), ("method B", b)], images=images, row_titles=["img0", "img1"]
    )
    assert isinstance(fig, Figure)
    ncols = 3
    assert len(fig.axes) == n * ncols
    w_in, h_in = fig.get_size_inches()
    assert 5 <= w_in <= 7 and 3 <= h_in <= 5  # ~2 inches per cell
    assert [ax.get_title() for ax in fig.axes[:ncols]] == ["input", "method A", "method B"]
    assert fig.axes[0].get_ylabel() == "img0" and fig.axes[ncols].get_ylabel() == "img1"
    for ax in fig.axes:
        assert len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0

    arr = viz.figure_to_array(fig)
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[-1] == 3
    cell = lambda i, j: _cell_pixels(fig, arr, fig.axes[i * ncols + j])  # noqa: E731
    # method A, image 0: red
    assert _is_red(cell(0, 1)).mean() > 0.9
    assert not _is_blue(cell(0, 1)).any()
    # method A, image 1 and method B, image 0: blue
    assert _is_blue(cell(1, 1)).mean() > 0.9
    assert _is_blue(cell(0, 2)).mean() > 0.9
    assert not _is_red(cell(0, 2)).any()
    # method B, image 1: all zero -> white
    assert (cell(1, 2) >= 250).all()
    # RGBA variant
    assert viz.figure_to_array(fig, alpha=True).shape == arr.shape[:2] + (4,)


def test_heatmap_grid_titles_and_validation():
    m = np.zeros((1, 4, 4))
    fig = viz.heatmap_grid({"x": m, "y": m}, col_titles=["X", "Y"])
    assert [ax.get_title() for ax in fig.axes] == ["X", "Y"]
    with pytest.raises(ValueError):
        viz.heatmap_grid({"x": m, "y": np.zeros((2, 4, 4))})
    with pytest.raises(ValueError):
        viz.heatmap_grid({"x": m}, col_titles=["a", "b", "c"])
    with pytest.raises(ValueError):
        viz.heatmap_grid({"x": np.zeros((4, 4))})


def test_heatmap_grid_global_scale():
    big = np.ones((1, 4, 4))
    small = 0.01 * np.ones((1, 4, 4))
    fig = viz.heatmap_grid({"big": big, "small": small}, scale="global")
    assert fig.axes[1].images[0].get_clim() == (-1.0, 1.0)
    fig = viz.heatmap_grid({"big": big, "small": small})
    assert fig.axes[1].images[0].get_clim() == pytest.approx((-0.01, 0.01))


def test_save_figure(tmp_path):
    fig = viz.heatmap_grid({"m": np.random.default_rng(1).normal(size=(1, 4, 4, 3))})
    png = viz.save_figure(fig, tmp_path / "a" / "b" / "fig.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = viz.save_figure(fig, str(tmp_path / "fig.PDF"))
    assert pdf.read_bytes()[:4] == b"%PDF"
    with pytest.raises(ValueError):
        viz.save_figure(fig, tmp_path / "fig.txt")
    assert not (tmp_path / "fig.txt").exists()


def test_explanation_figure_panels_colorbar_and_rows(tmp_path):
    from lrpgraph import viz

    img = np.zeros((6, 8, 3), np.uint8)
    R = np.zeros((6, 8, 3))
    R[1, 1, 0], R[4, 6, 2] = 2.0, -0.5
    fig = viz.explanation_figure(img, R, title="lrp.epsilon: explained 281 tabby")
    assert len(fig.axes) == 4 and fig._suptitle.get_text() == "lrp.epsilon: explained 281 tabby"
    heat = fig.axes[1].images[0]
    assert heat.get_clim() == (-2.0, 2.0) and heat.get_cmap().name == "seismic"
    np.testing.assert_allclose(fig.axes[2].images[0].get_array(), viz.overlay(img, R, grayscale=True))
    assert fig.axes[3].get_ylim() == (-2.0, 2.0)
    # two targets of one input: one row each, one colour bar each; no image: the heatmaps alone
    fig2 = viz.explanation_figure(img, [R, -3 * R], row_titles=["explained 1 a", "explained 2 b"])
    assert len(fig2.axes) == 2 * 3 + 2 and fig2.axes[4].get_title() == "explained 2 b"
    assert fig2.axes[4].images[0].get_clim() == (-6.0, 6.0)
    assert len(viz.explanation_figure(None, R).axes) == 2
    with pytest.raises(ValueError, match="does not match"):
        viz.explanation_figure(np.zeros((5, 5, 3)), R)
    viz.save_figure(fig, tmp_path / "f.png")
