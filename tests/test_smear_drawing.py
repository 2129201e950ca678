"""A smear you can read, driven through the real docks under Xvfb: cells drawn as outlines in their class
(or object type) colour, named rings on the objects that are not red cells, a legend with counts beside
the smear, each cell's own measurements and class on hover, layers updated in place."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from napari_reddino import style
from napari_reddino.sample_data import synthetic_smear

pytestmark = pytest.mark.gui

# torch's first import of triton segfaults once napari has loaded Mesa's GL (both bundle LLVM), so the
# torch stack is imported before any viewer exists (as in test_segment_widget.py).
pytest.importorskip("cellpose.models")


def segment(qtbot, viewer):
    from napari_reddino._widgets.segment import SegmentWidget

    widget = SegmentWidget(viewer)
    widget.start()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    return widget


def centre_of(layer, label):
    """World position of a pixel inside ``label`` (its most interior one)."""
    from scipy import ndimage as ndi

    inside = ndi.distance_transform_edt(layer.data == label)
    return tuple(np.asarray(layer.data_to_world(np.unravel_index(inside.argmax(), inside.shape))))


def colour_of(layer, label):
    return np.asarray(layer.colormap.map(label), float)


def test_segment_dock_draws_outlines_by_type_marks_white_cells_and_a_legend(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image, _, _ = synthetic_smear(seed=2, shape=(240, 320), n_white=2)
    viewer.add_image(image, name="smear", rgb=True, scale=(0.5, 0.5))
    widget = segment(qtbot, viewer)
    cells = viewer.layers["smear cells"]
    table = cells.features
    assert cells.contour == style.CONTOUR_WIDTH and cells.opacity == 1.0  # outlines, not random fills
    wbc = table["label"][table["type"] == "wbc"].to_numpy()
    rbc = table["label"][table["type"] == "rbc"].to_numpy()
    assert len(wbc) >= 1 and len(rbc) >= 15
    for label in wbc:
        np.testing.assert_allclose(colour_of(cells, label), to_rgba(style.TYPE_COLORS["wbc"]), atol=1e-3)
    np.testing.assert_allclose(colour_of(cells, rbc[0]), to_rgba(style.UNANNOTATED_COLOR), atol=1e-3)
    # a named ring on every object that is not a red cell, at its centre, in the smear's coordinates
    marks = viewer.layers["smear cells objects"]
    others = table[table["type"] != "rbc"]
    assert len(marks.data) == len(others) and "white cell" in set(marks.text.values)
    assert tuple(marks.scale) == tuple(cells.scale)
    np.testing.assert_allclose(sorted(marks.data[:, 0]), sorted(others["centroid_y"]))
    # the legend beside the smear counts the red cells and the other objects
    legend = viewer.layers["smear cells legend"]
    words = list(legend.text.values)
    assert f"red cells not annotated {len(rbc)}" in words
    assert any(w.startswith("white cell") and w.endswith(str(len(wbc))) for w in words)
    assert legend.data[:, 1].min() > cells.data.shape[1]  # right of the smear, not over its cells
    # its words scale with the smear like its swatches (in screen points they ran into each other once a
    # 1366x768 window zoomed the smear out), and Home frames the longest of them (an invisible last mark)
    rows = np.diff(legend.data[:-1, 0]).min()
    # napari sizes scaled words in world units, not the layer's pixels: on this 0.5-unit smear they were twice
    # too big (ten times on a slide at 0.1 um per pixel)
    world_rows = rows * legend.scale[0]
    assert legend.text.scaling and 0.3 * world_rows <= legend.text.size <= 0.6 * world_rows
    longest = max(len(w) for w in words)
    assert legend.data[-1, 1] - legend.data[:-1, 1].max() >= 0.5 * rows * longest
    # hovering cell k shows cell k's own measurements (napari took row k: cell k+1's), in a tooltip too
    k = int(rbc[3])
    row = table[table["label"] == k].iloc[0]
    status = cells.get_status(centre_of(cells, k), world=True)
    text = status["coordinates"] if isinstance(status, dict) else status
    from napari.utils.status_messages import format_feature_value

    assert f"label: {k}," in text and f"area: {format_feature_value(row['area'])}," in text, text
    assert viewer.tooltip.visible
    # re-running updates every layer in place
    names = [la.name for la in viewer.layers]
    widget.start()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert [la.name for la in viewer.layers] == names
    assert viewer.layers["smear cells"] is cells and cells.contour == style.CONTOUR_WIDTH


def calls_of(monkeypatch, owner, name, record=lambda *args: True):
    """Wrap ``owner.name`` so that each call appends ``record(*args)`` to the returned list."""
    calls, original = [], getattr(owner, name)

    def wrapper(*args, **kwargs):
        calls.append(record(*args))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


def test_segmenting_draws_the_cells_once_without_napari_mapping_every_pixel(make_napari_viewer, qtbot, monkeypatch):
    """Each redraw of the cells layer (outlines and colours over the whole image) held the GUI thread about
    a second on a 2560x1920 smear, and the dock caused 3 of them (5 on a re-run: data, scale, translate,
    colours, contour each redrew), each mapping every int32 pixel through a dictionary. Now: one redraw,
    of uint16 labels that napari puts on the screen as they are."""
    import napari.utils.colormaps._accelerated_cmap as accelerated
    from napari.layers import Labels

    viewer = make_napari_viewer()
    image, _, _ = synthetic_smear(seed=2, shape=(240, 320), n_white=2)
    viewer.add_image(image, name="smear", rgb=True, scale=(0.5, 0.5))
    redraws = calls_of(monkeypatch, Labels, "_raw_to_displayed", lambda layer, *_: layer.name)
    per_pixel = calls_of(monkeypatch, accelerated, "labels_raw_to_texture_direct", lambda data, *_: data.size)
    widget = segment(qtbot, viewer)
    cells = viewer.layers["smear cells"]
    assert cells.data.dtype == np.uint16 and cells.contour == style.CONTOUR_WIDTH
    assert redraws == ["smear cells"] and max(per_pixel, default=0) < cells.data.size  # (the thumbnail's)
    redraws.clear()
    widget.start()  # a re-run updates the layer in place: one redraw too
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert redraws == ["smear cells"] and max(per_pixel, default=0) < cells.data.size
    assert cells.contour == style.CONTOUR_WIDTH and viewer.layers["smear cells"] is cells
