"""napari's window with the plugin's docks fits a 1366x768 laptop and a 1920x1080 screen: the pipeline dock and
the annotation dock it opens (then every dock) leave the window the screen's size, with the Run buttons, the
class list, the report and the UMAP canvas on screen at a usable size."""

import pytest
from qtpy.QtCore import QPoint, QRect
from qtpy.QtWidgets import QApplication, QDockWidget

from napari_reddino.sample_data import synthetic_smear

pytestmark = pytest.mark.gui

PLUGIN = "napari-reddino"
STEP_DOCKS = ["1. Segment cells", "2. Extract RedDino features", "3. PCA overlay"]
SCREENS = [(1366, 768), (1920, 1080)]
CLASS_ROWS = 6  # classes the list shows at least (all of them where there is room)
REPORT_ROWS = 3  # report rows on screen at least


def settle(qtbot, ms=150):
    for _ in range(5):
        QApplication.processEvents()
    qtbot.wait(ms)


def on_screen(widget, window) -> QRect:
    """The part of ``widget`` that shows in ``window``: clipped by every widget it sits in (a scroll area's
    viewport, a dock, the window); empty when hidden (a tab behind another)."""
    if not widget.isVisible():
        return QRect()
    rect = QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())
    parent = widget.parentWidget()
    while parent is not None and parent is not window:
        rect = rect.intersected(QRect(parent.mapTo(window, QPoint(0, 0)), parent.size()))
        parent = parent.parentWidget()
    return rect.intersected(window.rect())


def reddino_docks(window):
    from napari_reddino._widgets._common import StepWidget

    return [d for d in window.findChildren(QDockWidget) if isinstance(d.widget(), StepWidget) and d.isVisibleTo(window)]


def assert_fits(qtbot, viewer, size, expected_docks):
    from napari_reddino._widgets.annotate import AnnotationWidget

    window = viewer.window._qt_window
    width, height = size
    window.setGeometry(0, 0, width, height)  # what a maximised window is given (no window manager here)
    settle(qtbot)
    frame = window.frameGeometry()
    assert frame.width() <= width and frame.height() <= height, (
        f"window {frame.width()}x{frame.height()} on a {width}x{height} screen (it grows to its docks' minimum)")
    docks = reddino_docks(window)
    assert len(docks) == expected_docks
    for dock in docks:  # each dock, brought to the front (a tab, or where napari put it), shows its Run button
        dock.raise_()
        settle(qtbot, 50)
        button = dock.widget().run_button.native
        shown = on_screen(button, window)
        assert shown.height() == button.height() >= 18 and shown.width() >= 60, (dock.windowTitle(), shown)
    annotation = next(d for d in docks if isinstance(d.widget(), AnnotationWidget))
    annotation.raise_()
    settle(qtbot)
    ann = annotation.widget()
    class_list, report = ann.panel.class_list, ann.panel.report
    rows = on_screen(class_list.viewport(), window).height() / class_list.sizeHintForRow(0)
    assert rows >= min(CLASS_ROWS, class_list.count()), f"{rows:.1f} classes visible"
    report_rows = on_screen(report.viewport(), window).height() / report.rowHeight(0)
    assert report_rows >= REPORT_ROWS, f"{report_rows:.1f} report rows visible"
    assert report.rowCount() >= 1  # the annotations made in the test are in it
    canvas = on_screen(ann.canvas.qt_viewer.canvas.native, window)
    assert canvas.width() >= 0.3 * width and canvas.height() >= 0.25 * height, f"UMAP canvas {canvas}"
    smear = on_screen(viewer.window._qt_viewer.canvas.native, window)
    assert smear.width() >= 0.3 * width and smear.height() >= 0.3 * height, f"smear canvas {smear}"
    assert frame.height() <= height  # nothing above made the window grow again


@pytest.mark.parametrize("size", SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_pipeline_annotation_and_all_docks_fit_the_screen(make_napari_viewer, qtbot, tiny_model_dir, tmp_path,
                                                          monkeypatch, size):
    monkeypatch.setattr("napari_reddino.annotate.FALLBACK_FOLDER", tmp_path)  # never the user's home
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.setGeometry(0, 0, *size)
    image, _, _ = synthetic_smear(seed=1, shape=(240, 320), n_white=1)
    viewer.add_image(image, name="smear", rgb=True)
    _, pipeline = viewer.window.add_plugin_dock_widget(PLUGIN, "Run the whole pipeline")
    pipeline.model.value = f"local-dir:{tiny_model_dir}"
    pipeline.start()
    qtbot.waitUntil(lambda: pipeline.worker is None, timeout=180_000)
    ann = next(d for d in viewer.window.dock_widgets.values() if hasattr(d, "show_embedding"))
    try:
        ann.canvas.select([0, 1, 2])
        ann.assign(0)
        ann.canvas.select([3, 4])
        ann.assign(3)
        assert_fits(qtbot, viewer, size, expected_docks=2)
        steps = [viewer.window.add_plugin_dock_widget(PLUGIN, name)[1] for name in STEP_DOCKS]
        assert_fits(qtbot, viewer, size, expected_docks=5)
        # opened after the run, each step starts from the smear, not from an overlay the plugin drew over it
        # (the selected cells' rings are an image layer too)
        for step in steps:
            assert getattr(step.image.value, "name", step.image.value) == "smear", type(step).__name__
    finally:
        ann.close_canvas()


def test_the_annotation_status_line_has_room_for_a_long_saved_to_path(qtbot):
    """The annotation dock's "saved to <path>" was cut off at 1366x768: at the dock's width it wraps onto three
    lines and the line had room for two. Now three, the whole text is the tooltip, and a path wraps at its
    folders and underscores too; the text reads back as set."""
    from qtpy.QtCore import QRect, Qt
    from qtpy.QtWidgets import QLabel

    from napari_reddino._widgets.annotate_panel import AnnotationPanel
    from napari_reddino.annotate import default_classes

    panel = AnnotationPanel(default_classes())
    qtbot.addWidget(panel)
    status = panel.status
    text = "123 cells, 11 annotated; saved to /tmp/reddino_screenshots_vv97c_ov/reddino-annotations.csv"
    status.setText(text)
    width = 280  # the status line in a narrow annotation dock (1366x768: ~340-360 px; napari lets it narrow)
    needed = status.fontMetrics().boundingRect(QRect(0, 0, width, 10_000), Qt.TextFlag.TextWordWrap,
                                               QLabel.text(status))
    assert needed.height() <= status.minimumHeight() - 2 * status.margin()
    assert status.text() == text and status.toolTip() == text
    assert "reddino_\u200bscreenshots" in QLabel.text(status)  # a place to wrap inside the folder's name


@pytest.mark.parametrize("size", SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_a_step_dock_beside_the_pipeline_is_not_cut_at_its_right_edge(make_napari_viewer, qtbot, size):
    """In the tabbed panel beside the pipeline dock, the segment dock's result line, Cancel button and choice
    boxes ran past the panel's right edge (its form was wider than the panel: the result as one long line, a
    choice box as wide as the longest layer name). Every control now shows whole."""
    from qtpy.QtWidgets import QAbstractButton, QComboBox, QLabel

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.setGeometry(0, 0, *size)
    image, _, _ = synthetic_smear(seed=1, shape=(120, 160))
    viewer.add_image(image, name="smear", rgb=True)
    viewer.window.add_plugin_dock_widget(PLUGIN, "Run the whole pipeline")
    _, seg = viewer.window.add_plugin_dock_widget(PLUGIN, "1. Segment cells")
    settle(qtbot)
    # the step's result, then an image with a long name, once the panel is laid out (as after a segmentation)
    seg.found.value = "123 red cells in 'smear' (also 2 white cells, 4 artefacts); red cells about 39 px across"
    viewer.add_image(image, name="megaloblastic-anemia smear 2026-12-07 ward 7 (field 12 of 40)", rgb=True)
    settle(qtbot)
    dock = next(d for d in reddino_docks(window) if d.widget() is seg)
    dock.raise_()
    settle(qtbot)
    shown = [w for w in seg.findChildren((QAbstractButton, QComboBox, QLabel)) if w.isVisible() and w.width()]
    assert seg.cancel_button.native in shown and seg.found.native in shown
    cut = [(type(w).__name__, w.width(), on_screen(w, window).width()) for w in shown
           if on_screen(w, window).width() < w.width()]
    assert not cut, cut
