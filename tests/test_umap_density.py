"""The UMAP canvas above its point budget (a million cells): a density image of the map, real points only
where zoomed in, the selection as the canvas' own array (napari's Points selection takes seconds for 10^5).
The budget is set low here: a few thousand points stand for a million."""

import numpy as np
import pytest

pytestmark = pytest.mark.gui

BUDGET = 500


@pytest.fixture
def canvas(qtbot):
    from napari_reddino._widgets.umap_canvas import UmapCanvas

    c = UmapCanvas(point_budget=BUDGET)
    qtbot.addWidget(c)
    c.resize(600, 400)
    c.show()
    qtbot.wait(50)
    yield c
    c.close_canvas()


def two_blobs(n=4000, seed=0):
    """(row, col) points: red ones around (0, 0), blue ones around (0, 40), and their colours."""
    rng = np.random.default_rng(seed)
    side = rng.integers(0, 2, n)
    data = rng.normal(size=(n, 2)).astype(np.float32) * 3 + np.c_[np.zeros(n), side * 40]
    colors = np.where(side[:, None] == 0, [[1, 0, 0, 1]], [[0, 0, 1, 1]]).astype(np.float32)
    return data, colors, side


def test_more_points_than_the_budget_draw_a_density_image_in_their_colours(canvas):
    data, colors, side = two_blobs()
    canvas.set_points("umap", data, None, colors, 0.5)
    # the hidden Points layer holds none of them (napari took seconds to make it with 10^6): the canvas holds them
    assert canvas.big and not canvas.points.visible and len(canvas.points.data) == 0 and len(canvas.data) == len(data)
    assert canvas.density.visible and not canvas.near.visible
    img = canvas.density.data
    assert img.dtype == np.uint8 and img.shape[-1] == 3 + 1 and (img[..., 3] > 0).sum() > 100
    # where each blob lies on the image: pure red, pure blue
    for blob, channel in ((0, 0), (1, 2)):
        centre = np.median(data[side == blob], axis=0)
        r, c = np.floor((centre - canvas.density.translate + canvas.density.scale / 2) / canvas.density.scale)
        pixel = img[int(r), int(c)]
        assert pixel[3] > 0 and pixel[channel] == 255 and pixel[2 - channel] == 0


def test_a_lasso_selects_the_points_inside_it_and_lights_them_on_the_density(canvas, qtbot):
    from napari_reddino._widgets.umap_canvas import points_in_polygon

    data, colors, _ = two_blobs()
    canvas.set_points("umap", data, None, colors, 0.5)
    told = []
    canvas.selection_changed.connect(lambda: told.append(canvas.selected_rows()))
    lasso = np.array([[-6, -6], [-6, 45], [0, 45], [2, 20], [0, -6]], float)
    inside = canvas.select_in_polygon(lasso)
    expected = points_in_polygon(data, lasso)
    assert 500 < len(expected) < len(data) and np.array_equal(np.sort(inside), expected)
    assert np.array_equal(canvas.selected_rows(), expected) and np.array_equal(told[-1], expected)
    assert not canvas.points.selected_data  # napari's selection is not used above the budget
    assert canvas.chosen.visible and canvas.chosen.data[..., 3].any()
    lit = canvas.chosen.data[..., 3] > 0
    assert lit.sum() < (canvas.density.data[..., 3] > 0).sum()  # only the selected part of the map
    canvas.select([0, 1], add=True)
    assert set(canvas.selected_rows()) == set(expected) | {0, 1}
    canvas.select([0], toggle=True)
    assert 0 not in canvas.selected_rows() and 1 in canvas.selected_rows()
    canvas.select([])
    assert not len(canvas.selected_rows()) and not canvas.chosen.visible


def test_zooming_in_shows_the_real_points_with_their_selection_rings(canvas, qtbot):
    data, colors, _ = two_blobs()
    canvas.set_points("umap", data, None, colors, 0.5)
    canvas.select(np.arange(len(data)))
    canvas.camera.center = (0, 40 + 2.5)
    canvas.camera.zoom *= 60  # a corner of the blue blob: fewer points than the budget in view
    qtbot.waitUntil(lambda: canvas.near.visible, timeout=10_000)  # drawn once the view settles
    shown = canvas._near_rows
    assert 0 < len(shown) <= BUDGET and not canvas.density.visible and not canvas.chosen.visible
    np.testing.assert_allclose(canvas.near.data, data[shown], rtol=1e-6)
    np.testing.assert_allclose(canvas.near.face_color, colors[shown])
    assert len(canvas.marks.data) == len(shown)  # every shown point is selected: every one ringed
    # a click selects the nearest point
    canvas.select([canvas.point_at(data[shown[0]])])
    assert list(canvas.selected_rows()) == [shown[0]]
    canvas.frame_points()  # Reset view: the whole map again, as a density image
    qtbot.waitUntil(lambda: canvas.density.visible, timeout=10_000)
    assert not canvas.near.visible


def test_an_ordinary_map_after_a_big_one_is_napari_points_again(canvas):
    data, colors, _ = two_blobs()
    canvas.set_points("umap", data, None, colors, 0.5)
    canvas.set_points("umap", data[:100], None, colors[:100], 0.5)
    assert not canvas.big and canvas.points.visible and len(canvas.points.data) == 100
    assert not canvas.density.visible and not canvas.near.visible
    canvas.select([3, 4])
    assert set(canvas.points.selected_data) == {3, 4} and list(canvas.selected_rows()) == [3, 4]
