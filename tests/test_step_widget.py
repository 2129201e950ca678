"""The step-widget machinery every dock shares: work off the GUI thread, progress, errors, cancel."""

import threading

import pytest

from napari_reddino._progress import Progress
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
