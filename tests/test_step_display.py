"""A step's display keeps the window responsive (issue 17 item 6): what can be prepared is prepared in the
worker, the display runs in slices with the event loop turning between them, and a new map reuses the
UMAP canvas' Points layer. Behaviour, not timings (bench_gui_stalls.py measures those)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from napari_reddino._widgets._common import StepWidget
from napari_reddino.progress import run as run_work
from napari_reddino.sample_data import synthetic_smear

pytestmark = pytest.mark.gui

# torch's first import of triton segfaults once napari has loaded Mesa's GL (as in test_segment_widget.py)
pytest.importorskip("cellpose.models")


class Sliced(StepWidget):
    title = "Sliced"
    uses_torch = False

    def __init__(self, viewer):
        super().__init__(viewer)
        self.slices, self.ticks = [], 0

    def work(self):
        return "done"
        yield

    def show(self, result):
        for i in range(3):
            self.slices.append((i, self.ticks, self.worker is not None, threading.current_thread()))
            yield


def test_a_display_in_slices_lets_the_event_loop_turn_and_the_step_ends_after_the_last(make_napari_viewer,
                                                                                       qtbot):
    from qtpy.QtCore import QTimer

    w = Sliced(make_napari_viewer())
    timer = QTimer()
    timer.timeout.connect(lambda: setattr(w, "ticks", w.ticks + 1))
    timer.start(0)
    w.start()
    qtbot.waitUntil(lambda: w.worker is None, timeout=10_000)
    timer.stop()
    assert [s[0] for s in w.slices] == [0, 1, 2]
    assert all(s[3] is threading.main_thread() for s in w.slices)
    assert all(s[2] for s in w.slices)  # the step is still running during every slice...
    assert w.run_button.enabled and not w.cancel_button.enabled  # ...and done after the last
    ticks = [s[1] for s in w.slices]
    assert ticks[0] < ticks[1] < ticks[2]  # the event loop turned between slices


def test_segment_dock_prepares_the_colours_in_the_worker_and_draws_in_slices(make_napari_viewer, qtbot,
                                                                            monkeypatch):
    """The outlines' colour table (napari maps all 65,536 uint16 labels one by one: ~0.3 s) is built in
    work(); the cells layer comes first, its marks and legend in later turns of the event loop."""
    from napari.utils.colormaps.colormap import DirectLabelColormap

    from napari_reddino._widgets.segment import SegmentWidget

    viewer = make_napari_viewer()
    image, _, _ = synthetic_smear(seed=2, shape=(240, 320), n_white=2)
    viewer.add_image(image, name="smear", rgb=True)
    widget = SegmentWidget(viewer)
    widget.backend.value = "threshold"
    widget.prepare()
    result = run_work(widget.work())  # the worker's part, here on the test's thread
    mapped = []
    original = DirectLabelColormap._map_without_cache
    monkeypatch.setattr(DirectLabelColormap, "_map_without_cache",
                        lambda self, values: mapped.append(values.dtype) or original(self, values))
    widget.worker = object()  # as while a worker runs: the step ends with its display's last slice
    widget._on_returned(result)
    cells = viewer.layers["smear cells"]
    assert cells.data.dtype == np.uint16 and "smear cells legend" not in viewer.layers  # first slice only
    widget._on_finished()  # the worker's end arrives while the display still runs
    assert widget.worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    assert "smear cells objects" in viewer.layers and "smear cells legend" in viewer.layers
    assert "white cell" in set(viewer.layers["smear cells objects"].text.values)
    assert mapped == []  # no colour table built on the GUI thread
    assert cells.visible and cells.contour > 0 and cells.colormap.map(1)[3] > 0  # coloured outlines all the same


def test_a_new_map_renames_and_reuses_the_canvas_points_layer(qtbot):
    """Another map (the pipeline's after a pooled UMAP) updates the Points layer in place: removing a napari
    layer costs a full garbage collection on the GUI thread."""
    import pandas as pd

    from napari_reddino._widgets.umap_canvas import UmapCanvas

    canvas = UmapCanvas()
    qtbot.addWidget(canvas)
    rng = np.random.default_rng(0)
    first = canvas.set_points("a cells UMAP", rng.normal(size=(30, 2)), pd.DataFrame({"label": np.arange(30)}),
                              np.ones((30, 4)), 0.1)
    second = canvas.set_points("b cells UMAP", rng.normal(size=(12, 2)), pd.DataFrame({"label": np.arange(12)}),
                               np.ones((12, 4)), 0.2)
    assert second is first and second.name == "b cells UMAP"
    assert len(second.data) == 12 and len(second.features) == 12
    assert [la.name for la in canvas.model.layers].count("b cells UMAP") == 1
    assert "a cells UMAP" not in canvas.model.layers
    canvas.close_canvas()  # napari counts live QtViewers: none may outlive the test


def test_segment_dock_outlines_the_cells_in_the_worker_and_napari_takes_over_after_painting(
        make_napari_viewer, qtbot, monkeypatch):
    """napari outlines a Labels layer (get_contours over the whole image: 0.2-0.35 s of the GUI thread on a
    2560x1920 smear) on every redraw: a segmentation's outlines are computed in work(), the same pixels, for
    the first display and for a re-run's; once the user paints, napari outlines the layer itself again."""
    import napari.layers.labels.labels as napari_labels

    from napari_reddino._widgets.segment import SegmentWidget

    viewer = make_napari_viewer()
    image, _, _ = synthetic_smear(seed=2, shape=(240, 320), n_white=2)
    viewer.add_image(image, name="smear", rgb=True)
    widget = SegmentWidget(viewer)
    widget.backend.value = "threshold"
    outlined = []
    original = napari_labels.get_contours
    monkeypatch.setattr(napari_labels, "get_contours",
                        lambda *a: outlined.append(threading.current_thread()) or original(*a))
    for run in range(2):  # a new layer, then a re-run updating it (drop_border renumbers: other labels)
        widget.drop_border.value = bool(run)
        widget.prepare()
        result = run_work(widget.work())
        widget.worker = object()
        widget._on_returned(result)
        widget._on_finished()
        qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
        cells = viewer.layers["smear cells"]
        assert cells.visible and cells.contour > 0
        assert not any(t is threading.main_thread() for t in outlined)  # never on the GUI thread
        shown = cells._slice.image.view  # what napari draws
        expected = original(np.asarray(cells.data), cells.contour, 0)
        np.testing.assert_array_equal(np.asarray(shown), cells.colormap._data_to_texture(expected))
    label = int(cells.features["label"].iloc[0])
    y, x = np.argwhere(np.asarray(cells.data) == label)[0]
    cells.paint((y, x), 0)  # the user erases a bit: napari's own outlines from now on
    cells.refresh()
    assert any(t is threading.main_thread() for t in outlined)
    np.testing.assert_array_equal(np.asarray(cells._slice.image.view),
                                  cells.colormap._data_to_texture(original(np.asarray(cells.data), cells.contour, 0)))


class Busy(StepWidget):
    """A worker reporting 300 steps as fast as it can, as the segmentation's tiles or the features' batches."""
    title = "Busy"
    uses_torch = False

    def work(self):
        from napari_reddino.progress import Progress

        for i in range(300):
            yield Progress(i, 300, "cells")
        yield Progress(0, 2, "next part")
        return "done"

    def show(self, result):
        pass


def test_a_worker_reporting_fast_repaints_the_bar_a_few_times_not_at_every_step(make_napari_viewer, qtbot):
    """QProgressBar.setValue repaints at once, and with it the window around napari's canvas (tens of ms of the
    GUI thread in software OpenGL): the bar follows a worker at most every 0.2 s, a new message at once."""
    w = Busy(make_napari_viewer())
    values, formats = [], []
    w.progress.setValue = lambda v, original=w.progress.setValue: values.append(v) or original(v)
    w.progress.setFormat = lambda f, original=w.progress.setFormat: formats.append(f) or original(f)
    w.start()
    qtbot.waitUntil(lambda: w.worker is None, timeout=20_000)
    assert 1 <= len(values) < 30
    counted = [f for f in formats if f.endswith("%v/%m")]
    assert counted[0] == "cells %v/%m" and counted[-1] == "next part %v/%m"


def test_the_first_step_freezes_what_the_session_keeps_out_of_full_garbage_collections(make_napari_viewer, qtbot,
                                                                                     monkeypatch):
    """A full garbage collection scanned napari's, Qt's and torch's ~570,000 objects (0.3 s of CPU holding
    Python's lock, the window frozen) at any moment of a step; the first step collects once, then freezes them,
    and each step's end freezes what it made (a session that a layer's removal unfroze, too)."""
    import gc

    import napari_reddino._widgets._common as common

    monkeypatch.setattr(common, "_frozen", False)
    calls = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append("collect") or 0)
    w = Busy(make_napari_viewer())
    w.start()
    qtbot.waitUntil(lambda: w.worker is None, timeout=20_000)
    qtbot.waitUntil(lambda: len(calls) == 4)
    # the first step's worker collects and freezes the session; after the step, what it made (its layers) too
    assert calls == ["collect", "freeze"] * 2
    w.start()
    qtbot.waitUntil(lambda: w.worker is None, timeout=20_000)
    qtbot.waitUntil(lambda: len(calls) == 6)
    assert calls == ["collect", "freeze"] * 3  # the worker's freeze once a session; each step's end after it
    monkeypatch.setattr(gc, "get_freeze_count", lambda: 1)
    monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze"))
    w.viewer.add_image(np.zeros((8, 8)), name="opened before")
    w.viewer.layers.remove("opened before")  # a frozen layer must be freed: everything goes back to the collector
    assert calls[:6] == ["collect", "freeze"] * 3 and "unfreeze" in calls[6:]  # (napari collects on a removal too)
    w.start()  # the next step's end freezes the session again
    qtbot.waitUntil(lambda: w.worker is None, timeout=20_000)
    qtbot.waitUntil(lambda: calls[-1] == "freeze")
    assert calls[-2:] == ["collect", "freeze"] and calls.index("unfreeze") < len(calls) - 2
    monkeypatch.setattr(common, "_frozen", False)
    monkeypatch.setenv("NAPARI_REDDINO_GC_FREEZE", "0")
    before = list(calls)
    assert not common.freeze_long_lived() and calls == before


class Uncounted(StepWidget):
    """A worker with a part it cannot count (a model loading), then a counted one."""
    title = "Uncounted"
    uses_torch = False

    def __init__(self, viewer):
        super().__init__(viewer)
        self.go = threading.Event()

    def work(self):
        from napari_reddino.progress import Progress

        yield Progress(0, 0, "loading model")
        self.go.wait(10)
        yield Progress(1, 2, "cells")
        return "done"

    def show(self, result):
        pass


def test_a_part_without_a_count_shows_its_name_and_seconds_not_qts_busy_animation(make_napari_viewer, qtbot):
    """Qt's busy indicator (a bar of range 0-0) repaints the window about 60 times a second: ~30 % of a core in
    software OpenGL, taken from the step while it runs. The bar says what runs and for how long instead."""
    w = Uncounted(make_napari_viewer())
    w.start()
    assert w.progress.maximum() > 0 and "working" in w.progress.format()
    qtbot.waitUntil(lambda: "loading model" in w.progress.format(), timeout=10_000)
    assert w.progress.maximum() > 0 and w.progress.format().endswith(" s")
    w.go.set()
    qtbot.waitUntil(lambda: w.worker is None, timeout=10_000)
    assert not w._elapsed.isActive()


class SlowSliced(Sliced):
    """Slices that each ask for a slow repaint, as a layer change does in napari (a posted event)."""

    def show(self, result):
        from qtpy.QtCore import QCoreApplication, QEvent, QObject

        class Repaint(QObject):
            def event(self, ev):
                time.sleep(0.03)  # the repaint of the window in software OpenGL
                return True

        self._repaint = Repaint()
        for i in range(3):
            self.slices.append((i, self.ticks))
            time.sleep(0.03)
            QCoreApplication.postEvent(self._repaint, QEvent(QEvent.Type.User))
            yield


def test_a_timer_runs_between_a_displays_slices_and_their_repaints(make_napari_viewer, qtbot):
    """The slices of a display wait behind timers and input: chained as posted events (``singleShot(0)``) they
    ran back to back with the repaints they asked for, and a 10 ms timer (napari's own, the benchmark's tick)
    did not run for the whole display (0.5-0.65 s for a new smear here)."""
    from qtpy.QtCore import QTimer

    w = SlowSliced(make_napari_viewer())
    timer = QTimer()
    timer.timeout.connect(lambda: setattr(w, "ticks", w.ticks + 1))
    timer.start(10)
    qtbot.wait(50)
    w.start()
    qtbot.waitUntil(lambda: w.worker is None, timeout=10_000)
    timer.stop()
    ticks = [s[1] for s in w.slices]
    assert len(ticks) == 3 and ticks[0] < ticks[1] < ticks[2], ticks


def test_a_drawn_layer_is_added_without_switching_the_users_active_layer(make_napari_viewer):
    """The plugin's marks, legend and selection layers were added as napari adds any layer (made active), then
    the user's layer was made active again: two switches of napari's layer controls, each repainting both
    canvases at once (0.1-0.15 s each here). Now the selection is not touched at all."""
    from napari_reddino._widgets.smear_link import _keep_active

    viewer = make_napari_viewer()
    mine = viewer.add_image(np.zeros((8, 8)), name="the user's")
    viewer.add_image(np.zeros((8, 8)), name="other")
    viewer.layers.selection.active = mine
    switches = []
    viewer.layers.selection.events.active.connect(lambda e: switches.append(e.value))
    added = _keep_active(viewer, lambda: viewer.add_points(np.zeros((1, 2)), name="marks"))
    assert added in viewer.layers and switches == []
    assert viewer.layers.selection.active is mine and set(viewer.layers.selection) == {mine}
    viewer.layers.selection.active = added  # napari's own adding and selecting is unchanged afterwards
    viewer.add_points(np.zeros((1, 2)), name="the user's points")
    assert viewer.layers.selection.active.name == "the user's points"
