"""The verification gallery dock under Xvfb, driven with real clicks and keys: thumbnail click → the cell is
selected on the smear and the map, a map selection → the gallery, number keys and V → the annotation file
(class, verified, by, at), the queue of uncertain cells, a reopened project back to the same state."""

import getpass

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_reddino.annotate import read_annotations

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def own_settings(monkeypatch, tmp_path):
    """The gallery's remembered settings in a file of the test's, never the user's."""
    from qtpy.QtCore import QSettings

    from napari_reddino._widgets import gallery

    path = str(tmp_path / "settings.ini")
    monkeypatch.setattr(gallery, "settings", lambda: QSettings(path, QSettings.Format.IniFormat))
    return path


@pytest.fixture
def docks(make_napari_viewer, qtbot, tmp_path):
    """napari with two embedded smears, the gallery opened first, then the annotation dock's map."""
    from test_annotate_widget import CLUSTERS, add_embedded_smear

    viewer = make_napari_viewer(show=True)
    for i, (name, cl) in enumerate(CLUSTERS.items()):
        add_embedded_smear(viewer, name, cl, seed=i)
    _, gallery = viewer.window.add_plugin_dock_widget("napari-reddino", "5. Verification gallery")
    _, dock = viewer.window.add_plugin_dock_widget("napari-reddino", "4. Embedding & annotation")

    def compute():
        dock.project.value = str(tmp_path / "proj")
        dock.n_neighbors.value = 5
        assert dock.start() is not None
        qtbot.waitUntil(lambda: dock.state is not None and dock.worker is None, timeout=180_000)

    compute()
    yield viewer, gallery, dock, compute
    dock.close_canvas()


def thumb_pos(gallery, position):
    return gallery.view.visualRect(gallery.model.index(position)).center()


def click(qtbot, gallery, position, modifier=Qt.KeyboardModifier.NoModifier):
    qtbot.mouseClick(gallery.view.viewport(), Qt.MouseButton.LeftButton, modifier, thumb_pos(gallery, position))


def gallery_rows(gallery):
    return sorted(int(gallery.model.rows[i.row()]) for i in gallery.view.selectionModel().selectedIndexes())


def predict(dock, low_rows=()):
    """Predictions set by hand: each cell its cluster's class, confidence 0.95, ``low_rows`` 0.3 + row/100."""
    from test_annotate_widget import truth

    names = np.array(["normal", "spherocyte", "target"], dtype=object)
    conf = np.full(len(dock.state.table), 0.95, np.float32)
    for r in low_rows:
        conf[r] = 0.3 + r / 100
    dock.state.set_predictions(names[truth(dock)], conf)


def saved(tmp_path):
    df = read_annotations(tmp_path / "proj" / "reddino-annotations.csv")
    return {(i, int(lbl)): (c, bool(v), b) for i, lbl, c, v, b in zip(df["image"], df["label"], df["class"],
                                                                     df["verified"], df["by"])}


def test_the_gallery_follows_the_annotation_dock_opened_after_it(docks):
    viewer, gallery, dock, _ = docks
    assert gallery.state is dock.state and gallery.model.rowCount() == 24
    assert "24 cells, 0 verified" in gallery.status.text()
    assert dock.canvas is not None and gallery.verify_button.isEnabled()
    from napari_reddino._widgets.dock_layout import _dock_of

    window = _dock_of(gallery).parentWidget()  # one tabbed RedDino panel
    assert _dock_of(dock) in window.tabifiedDockWidgets(_dock_of(gallery))


def test_click_selects_on_smear_and_map_and_map_selection_comes_back(docks, qtbot):
    viewer, gallery, dock, _ = docks
    qtbot.waitExposed(gallery.view)
    pts = dock.canvas.points
    click(qtbot, gallery, 3)
    row = int(gallery.model.rows[3])
    assert set(pts.selected_data) == {row}
    image, label = pts.features["image"][row], int(pts.features["label"][row])
    qtbot.waitUntil(lambda: not dock.state.link.pending)  # a smear's first selection layer: on the next turn
    lit = viewer.layers[f"{image} cells"].data[viewer.layers[f"{image} cells selection"].data > 0]
    assert set(np.unique(lit)) == {label}
    click(qtbot, gallery, 5, Qt.KeyboardModifier.ControlModifier)  # Ctrl adds one
    assert set(pts.selected_data) == {row, int(gallery.model.rows[5])}
    # the other way: a selection on the map selects (and scrolls to) those thumbnails
    dock.canvas.select([20, 2, 11])
    assert gallery_rows(gallery) == [2, 11, 20]
    dock.canvas.select([])
    assert gallery_rows(gallery) == []


def test_number_key_reassigns_verifies_saves_and_moves_on(docks, qtbot, tmp_path):
    viewer, gallery, dock, _ = docks
    qtbot.waitExposed(gallery.view)
    click(qtbot, gallery, 0)
    row = int(gallery.model.rows[0])
    key = (dock.state.table["image"][row], int(dock.state.table["label"][row]))
    qtbot.keyClick(gallery.view, "4")  # the 4th class: spherocyte
    assert saved(tmp_path)[key] == ("spherocyte", True, getpass.getuser())
    assert dock.state.class_column()[row] == "spherocyte"  # the same store as the annotation dock
    assert gallery_rows(gallery) == [int(gallery.model.rows[1])]  # on to the next cell
    assert gallery.verified[row] and "1 verified" in gallery.status.text()
    qtbot.keyClick(gallery.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo: neither class nor tick
    assert key not in saved(tmp_path) and not gallery.verified[row]


def test_verify_stores_the_prediction_and_a_reopened_map_shows_it(docks, qtbot, tmp_path):
    viewer, gallery, dock, compute = docks
    predict(dock)
    qtbot.waitExposed(gallery.view)
    click(qtbot, gallery, 2)
    row = int(gallery.model.rows[2])
    key = (dock.state.table["image"][row], int(dock.state.table["label"][row]))
    qtbot.keyClick(gallery.view, "v")
    assert saved(tmp_path)[key] == (dock.state.prediction[row], True, getpass.getuser())
    assert dock.state.cell_table()["verified"].sum() == 1
    compute()  # the map made again: a new state, read back from the file
    assert gallery.state is dock.state
    new_row = int(np.flatnonzero((dock.state.table["image"] == key[0]) & (dock.state.table["label"] == key[1]))[0])
    assert gallery.verified[new_row] and gallery.verified.sum() == 1


def test_next_starts_with_representative_cells_before_any_prediction(docks, qtbot):
    from test_annotate_widget import truth

    viewer, gallery, dock, _ = docks
    assert "N walks 20 representative cells" in gallery.status.text()
    head = gallery.queue[:20].tolist()
    assert len(set(head)) == 20 and len(set(truth(dock)[head[:6]])) >= 2  # spread over the map's clusters
    gallery.next_button.click()
    assert list(dock.canvas.points.selected_data) == [head[0]]
    qtbot.keyClick(gallery.view, "1")  # annotated: out of the queue
    assert dock.state.class_column()[head[0]] != "" and head[0] not in gallery.queue


def test_next_uncertain_walks_the_least_confident_unverified_cells(docks, qtbot, tmp_path, monkeypatch):
    from napari_reddino import review

    monkeypatch.setattr(review, "BATCH", 0)  # the uncertain part of the queue only
    viewer, gallery, dock, _ = docks
    predict(dock, low_rows=[7, 3, 15])
    assert "3 to verify" in gallery.status.text()
    gallery.next_button.click()
    assert list(dock.canvas.points.selected_data) == [3]  # 0.33, the least confident
    qtbot.keyClick(gallery.view, Qt.Key.Key_Return)  # verify: out of the queue
    assert "2 to verify" in gallery.status.text()
    gallery.next_button.click()
    assert list(dock.canvas.points.selected_data) == [7]
    gallery.next_button.click()  # skipped, not verified: on to the next
    assert list(dock.canvas.points.selected_data) == [15]
    gallery.show_box.setCurrentIndex(gallery.show_box.findData("queue"))
    assert sorted(gallery.model.rows.tolist()) == [7, 15]


def test_a_knn_that_disagrees_puts_a_confident_cell_in_the_queue(docks, qtbot, monkeypatch):
    from test_annotate_widget import truth

    from napari_reddino import review

    monkeypatch.setattr(review, "BATCH", 0)  # the uncertain part of the queue only

    viewer, gallery, dock, _ = docks
    y = truth(dock)
    names = np.array(["normal", "spherocyte", "target"], dtype=object)
    for c in range(3):  # two annotated cells per cluster: what both classifiers learn from
        dock.canvas.select(np.flatnonzero(y == c)[:2])
        dock.assign(names[c])
    prediction = names[y].copy()
    odd = int(np.flatnonzero(y == 0)[3])
    prediction[odd] = "target"  # the classifier says target, sure of it; the cell sits among the normal ones
    dock.state.set_predictions(prediction, np.full(len(y), 0.99, np.float32))
    qtbot.waitUntil(lambda: gallery.knn_worker is None and gallery.second is not None, timeout=60_000)
    assert gallery.second[odd] == "normal"
    assert gallery.queue.tolist() == [odd] and "1 to verify" in gallery.status.text()


def test_thumbnails_and_scroll_bar_have_windows_of_their_own_docked_and_floating(make_napari_viewer, qtbot):
    """Their repaints are then flushed alone, not composed with napari's OpenGL canvases
    (benchmarks/results_gallery.md); floating the dock and docking it back keeps them."""
    viewer = make_napari_viewer(show=True)
    dock, gallery = viewer.window.add_plugin_dock_widget("napari-reddino", "5. Verification gallery")
    main = viewer.window._qt_window.windowHandle()
    for floating in (False, True, False):
        dock.setFloating(floating)
        qtbot.waitUntil(lambda: gallery.view.viewport().isVisible())
        for widget in (gallery.view.viewport(), gallery.view.verticalScrollBar()):
            handle = widget.windowHandle()
            assert handle is not None and handle is not main
        assert gallery.view.viewport().windowHandle().isExposed()


def test_pop_out_floats_the_gallery_and_the_next_one_opens_floating(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    dock, gallery = viewer.window.add_plugin_dock_widget("napari-reddino", "5. Verification gallery")
    qtbot.waitUntil(lambda: gallery.isVisible())
    assert not dock.isFloating() and not gallery.pop_button.isChecked()
    qtbot.mouseClick(gallery.pop_button, Qt.MouseButton.LeftButton)
    assert dock.isFloating() and gallery.pop_button.isChecked()
    viewer.window.remove_dock_widget(dock)
    dock, gallery = viewer.window.add_plugin_dock_widget("napari-reddino", "5. Verification gallery")
    qtbot.waitUntil(lambda: dock.isFloating())
    assert gallery.pop_button.isChecked()
    qtbot.mouseClick(gallery.pop_button, Qt.MouseButton.LeftButton)
    assert not dock.isFloating()
    dock.setFloating(True)  # the dock's own title-bar button: the Pop out button follows
    assert gallery.pop_button.isChecked()
    dock.setFloating(False)
    viewer.window.remove_dock_widget(dock)
    _, gallery = viewer.window.add_plugin_dock_widget("napari-reddino", "5. Verification gallery")
    qtbot.waitUntil(lambda: gallery.isVisible())
    qtbot.wait(50)
    assert not gallery.parentWidget().isFloating() and not gallery.pop_button.isChecked()
