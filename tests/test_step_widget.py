"""The step-widget machinery every dock shares: work off the GUI thread, progress, errors, cancel."""

import threading

import pytest

from napari_reddino.progress import Progress
from napari_reddino._widgets._common import StepWidget
from napari_reddino.images import InputError

pytestmark = pytest.mark.gui


class Probe(StepWidget):
    title = "Probe"

    def __init__(self, viewer, fail=None, steps=3):
        super().__init__(viewer)
        self.fail, self.steps, self.shown, self.work_thread = fail, steps, [], None

    def work(self):
        self.work_thread = threading.current_thread()
        for i in range(self.steps):
            yield Progress(i + 1, self.steps, "probing")
            if self.fail:
                raise self.fail
        return "done"

    def show(self, result):
        self.shown.append((result, threading.current_thread()))


def _errors(monkeypatch):
    from napari.utils import notifications

    seen = []
    monkeypatch.setattr(notifications.notification_manager, "receive_error", lambda *a, **k: seen.append(a[1]))
    monkeypatch.setattr("napari_reddino._widgets._common.show_error", seen.append)
    return seen


def test_work_runs_off_the_gui_thread_and_show_on_it(make_napari_viewer, qtbot):
    w = Probe(make_napari_viewer())
    w.start()
    qtbot.waitUntil(lambda: w.worker is None, timeout=10000)
    assert w.work_thread is not threading.main_thread()
    assert w.shown == [("done", threading.main_thread())]
    assert w.run_button.enabled and not w.cancel_button.enabled and w.worker is None


@pytest.mark.parametrize("exc, expected", [(InputError("Received x; accepted y."), "Received x; accepted y."),
                                           (RuntimeError("boom"), None)])
def test_errors_reported_once_not_reraised(make_napari_viewer, qtbot, monkeypatch, exc, expected):
    seen = _errors(monkeypatch)
    w = Probe(make_napari_viewer(), fail=exc)
    w.start()
    qtbot.waitUntil(lambda: w.worker is None, timeout=10000)
    assert len(seen) == 1 and w.shown == []
    assert seen[0] == expected if expected else seen[0] is exc


def test_bad_input_in_prepare_never_starts_a_worker(make_napari_viewer, monkeypatch):
    seen = _errors(monkeypatch)
    w = Probe(make_napari_viewer())
    w.prepare = lambda: (_ for _ in ()).throw(InputError("Received nothing; accepted an image."))
    assert w.start() is None and w.worker is None and seen == ["Received nothing; accepted an image."]


def test_cancel_stops_before_show(make_napari_viewer, qtbot):
    w = Probe(make_napari_viewer(), steps=10_000_000)
    w.start()
    w.cancel()
    qtbot.waitUntil(lambda: w.worker is None, timeout=10000)
    assert w.shown == [] and w.worker is None


def test_rerun_updates_the_layer_through_the_plugin_proxy(make_napari_viewer):
    """napari hands plugins a PublicOnlyProxy viewer, whose layers' type name is 'PublicOnlyProxy'."""
    import numpy as np
    from napari.utils._proxies import PublicOnlyProxy

    from napari_reddino._widgets._common import upsert_layer
    from napari_reddino._widgets.embed import EmbedWidget

    viewer = PublicOnlyProxy(make_napari_viewer())
    viewer.add_image(np.zeros((8, 8, 3), np.uint8), name="smear", rgb=True)
    first = upsert_layer(viewer, "smear cells", "labels", np.ones((8, 8), np.int32))
    upsert_layer(viewer, "smear cells", "labels", np.full((8, 8), 2, np.int32))
    assert [la.name for la in viewer.layers] == ["smear", "smear cells"]
    assert viewer.layers["smear cells"].data.max() == 2 and first.data.max() == 2  # one layer, updated
    widget = EmbedWidget(viewer)
    assert widget.image.value == "smear" and widget.labels.value == "smear cells"
