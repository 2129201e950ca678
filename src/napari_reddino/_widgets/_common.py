"""What every step widget shares: a form, Run/Cancel, a progress bar, work off the GUI thread.

A step widget subclasses :class:`StepWidget`, builds its magicgui form in ``__init__``, and implements
``work()`` (a generator run in a napari ``thread_worker``: it yields ``Progress`` and returns a result;
it must not touch layers) and ``show(result)`` (runs on the main thread; adds or updates layers). A ``show``
that is a generator is run in slices, one per turn of the event loop (each ``yield`` ends one), so that the
window repaints and takes clicks between them; the step counts as finished after the last one.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import Container, PushButton
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QProgressBar, QVBoxLayout, QWidget

from napari_reddino.progress import Progress
from napari_reddino._widgets.dock_layout import DockColumn, ScrollForm, join_reddino_tabs, narrow_fields

if TYPE_CHECKING:
    import napari


# Tooltips shared by several docks, worded for the person at the microscope (tests/test_tooltips.py checks
# that every control has one and that none uses the code's own names)
TIPS = {
    "image": "The smear image to work on (a colour or grey image layer; the newest one is picked for you)",
    "backend": "How cells are found. learned (default): by their stain, touching cells split at the cell "
               "centres found by a small trained network shipped with the plugin; threshold: by stain "
               "colour alone, nothing trained; cellpose: Cellpose-SAM, a large general cell finder (slower, "
               "needs its model file)",
    "diameter": "Red-cell diameter in pixels. 0 = measured from the image (works from about 30 to 130 px); "
                "the value found is shown after segmenting.",
    "drop_border": "Leave out the cells cut by the edge of the image (their size and shape would be wrong)",
    "model": "The RedDino model that describes each cell: hf-hub:Snarcy/RedDino-small (fastest), -base or "
             "-large (most detailed); demo: a tiny model shipped for trying the plugin, not for results; or "
             "your own model as local-dir:FOLDER or a .pth / .safetensors weights file",
    "precision": "Number precision of the model's arithmetic. auto: faster half precision where this computer "
                 "runs it natively, else full; fp32: always full precision; bf16: always half precision",
    "cancel": "Stop this step; what the earlier steps made stays in place",
    "cell_resolution": "How much the image is enlarged before the model colours it, so that the colours show "
                       "what is inside each cell. 0 = auto: enough for a red cell to span 6 of the model's "
                       "squares (about 84 px; from the cell size the segmentation measured, else measured "
                       "now); 1 = no enlargement (fastest, one colour square per 14 px); up to 4. The time "
                       "grows with the square of the enlargement",
}


TURN_MS = 1  # see next_turn


def next_turn(fn) -> None:
    """Call ``fn`` on a later turn of the event loop, after the repaint and whatever input is waiting. Not
    ``QTimer.singleShot(0, ...)``: Qt runs that as a posted event, and posted events (a slice, then the repaint
    it asks for, then the next slice ...) run back to back ahead of timers, so a display of several slices froze
    the window as long as all of them together (0.5-0.65 s for a new smear here); a timer of 1 ms waits its turn
    behind the others."""
    QTimer.singleShot(TURN_MS, fn)


def wrap_tooltips(root, width: int = 72) -> None:
    """Break the long one-line tooltips under ``root`` into lines (Qt shows a plain tooltip on one line, as
    wide as the screen)."""
    import textwrap

    from qtpy.QtWidgets import QWidget

    for w in [root, *root.findChildren(QWidget)]:
        text = w.toolTip()
        if text and "\n" not in text and len(text) > width and not text.lstrip().startswith("<"):
            w.setToolTip(textwrap.fill(text, width))


_warm_lock = threading.Lock()
_warm_thread: threading.Thread | None = None


def start_warm_up() -> threading.Thread | None:
    """Compile, once per session and in a background thread, the numba code the first UMAP waits for:
    umap's (seconds; tens of seconds on a fresh install) and napari's for the class colours and the
    canvas' outline layer (a second, and seconds on a fresh install, of the GUI thread). Called when the annotation or pipeline dock opens. A daemon thread, not a napari worker: it
    reports nothing, touches no layer, and quitting napari must not wait for it.
    ``NAPARI_REDDINO_WARM_UMAP=0`` turns it off. Returns the thread (the same one on later calls)."""
    global _warm_thread
    if os.environ.get("NAPARI_REDDINO_WARM_UMAP", "1").strip().lower() in ("0", "false", "no"):
        return None
    with _warm_lock:
        if _warm_thread is None:
            _warm_thread = threading.Thread(target=_warm_up, name="napari-reddino warm-up", daemon=True)
            _warm_thread.start()
        return _warm_thread


def _warm_up() -> None:
    from napari_reddino._widgets.smear_link import warm_class_colours, warm_outline_shapes
    from napari_reddino.embedding import warm_umap

    # what the GUI thread would compile first goes first: ready even for a click at once
    for step in (warm_class_colours, warm_outline_shapes, warm_umap):
        try:
            step()
        except Exception:  # noqa: BLE001 - a warm-up must never disturb the session; the real run reports
            pass


_frozen = False


def freeze_long_lived() -> bool:
    """Once per session, from the first step's worker: collect the garbage, then freeze what is alive (napari,
    Qt, torch, the plugin: ~570,000 objects) so that Python's full garbage collections no longer scan them.
    Each full collection scanned them all: 0.3 s of CPU, in whichever thread triggered it, holding Python's
    lock (so the window froze) at unpredictable moments of a step's display. A frozen object that becomes
    garbage in a cycle is not freed: a napari layer removed later is one (an image opened before the first
    step), so the first removal of a layer gives them all back (:func:`unfreeze_when_a_layer_goes`).
    ``NAPARI_REDDINO_GC_FREEZE=0`` turns it off. Returns whether it froze now."""
    global _frozen
    if _frozen or os.environ.get("NAPARI_REDDINO_GC_FREEZE", "1").strip().lower() in ("0", "false", "no"):
        return False
    _frozen = True
    refreeze()
    return True


def refreeze() -> None:
    """After each step, on a turn of the event loop of its own: collect the garbage of what was made since the
    last freeze, and freeze what lives on (a step's display makes napari layers: ~5,000 objects each). Without
    it the full collections that Python starts by itself scanned everything made since the session's first
    freeze: 0.3 s or more at a random moment of a later display (the first lasso's selection layer froze the
    window 0.8 s so). After a layer's removal gave the frozen objects back, this is a full collection of the
    session (~0.5 s once), which frees the layer. Only once ``freeze_long_lived`` froze the session."""
    if not _frozen:
        return
    import gc

    gc.collect()
    gc.freeze()


_watched: set[int] = set()


def unfreeze_when_a_layer_goes(viewer: "napari.Viewer") -> None:
    """Give the frozen objects (``freeze_long_lived``) back to the garbage collector when a layer leaves
    ``viewer``, so that the layer and its data are freed (the full collections cost as before from then on)."""
    import gc

    layers = getattr(viewer.layers, "__wrapped__", viewer.layers)  # the same list behind napari's proxies
    if id(layers) in _watched:
        return
    _watched.add(id(layers))
    layers.events.removed.connect(lambda *_: gc.get_freeze_count() and gc.unfreeze())


def image_layer_choices(viewer: "napari.Viewer"):
    """(name, layer) of the image layers a step can start from (not the overlays the plugin drew); the
    channel layers of one RGB OME-Zarr count as one image (``levels.ColourLayers``)."""
    from napari.layers import Image

    from napari_reddino._widgets.levels import image_choices
    from napari_reddino.style import is_drawn_layer_name

    return image_choices([layer for layer in viewer.layers
                          if isinstance(layer, Image) and not is_drawn_layer_name(layer.name)])


def follow_image_layers(viewer: "napari.Viewer", combo) -> None:
    """Keep ``combo``'s choices in step with the viewer's image layers; default to the newest one."""
    def refresh(*_):
        combo.reset_choices()
        if combo.value is None and len(combo.choices) > 0:
            combo.value = combo.choices[-1]

    viewer.layers.events.inserted.connect(refresh)
    viewer.layers.events.removed.connect(refresh)
    refresh()


def image_layer_data(layer, level: int = 0):
    """The 2D (gray or RGB) data of an image layer (or ``levels.ColourLayers``), ``level`` of a multiscale one
    (lazy: a dask or zarr array); refuse anything else."""
    from napari_reddino._widgets.levels import check_fits_dock, image_level
    from napari_reddino.images import InputError

    if layer is None:
        raise InputError("Received no image layer; accepted: a 2D gray or RGB image layer in the viewer.")
    data = image_level(layer, level) if layer.multiscale else layer.data
    if layer.multiscale and layer.ndim == 3 and not layer.rgb and data.shape[-1] in (3, 4):
        return data  # napari's builtin reader's (c, y, x) OME-Zarr, channels moved last
    if layer.ndim != 2:  # napari counts an RGB image as 2D
        raise InputError(f"Received image layer {layer.name!r} with shape {tuple(data.shape)}; accepted: a 2D "
                         "gray or RGB image layer.")
    check_fits_dock(layer.name, data.shape)
    return data


def cell_types_box():
    """The "cells analysed" choice shared by the feature and pipeline docks: red cells (default) or every
    object the segmentation found; the value is a tuple of ``segment.types`` names."""
    from magicgui.widgets import ComboBox

    from napari_reddino.segment.types import ANALYSED_DEFAULT, OBJECT_TYPES

    box = ComboBox(label="cells analysed", choices=[("red cells only", ANALYSED_DEFAULT),
                                                   ("every object found", OBJECT_TYPES)], value=ANALYSED_DEFAULT)
    box.tooltip = ("Which of the objects found are described and put on the map: red cells only (white cells, "
                   "platelets, clumps of overlapping cells and artefacts are counted and left out) or every "
                   "object")
    return box


def is_layer_kind(layer, kind: str) -> bool:
    """Whether ``layer`` is a napari layer of ``kind`` ("labels", "Image", ...). isinstance, not the type's
    name: napari hands plugins a viewer whose layers are wrapped in a PublicOnlyProxy."""
    import napari.layers

    cls = getattr(napari.layers, kind[:1].upper() + kind[1:].lower(), None)
    return cls is not None and isinstance(layer, cls)


@contextmanager
def one_refresh(layer, visible: bool | None = None):
    """Set several properties of ``layer`` (data, colormap, contour, scale...) with a single redraw at the
    end: napari redraws a visible layer on each of them, and a Labels layer's redraw (its outlines and
    colours over the whole image) takes about a second of the GUI thread on a 2560x1920 smear. The layer
    is hidden meanwhile (napari does not redraw a hidden layer; showing it redraws it once), within one
    call of the GUI thread, so the screen never shows it hidden. ``visible``: shown or not after (default:
    as it was)."""
    shown = layer.visible if visible is None else visible
    if layer.visible:
        layer.visible = False
    try:
        yield layer
    finally:
        if shown:
            layer.visible = True


def display_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` as napari draws them fastest: uint16 when every label fits (napari maps wider labels to
    colours through a per-pixel dictionary on every redraw, ~0.3 s on a 2560x1920 smear), else unchanged.
    Call it in ``work()``: the copy is off the GUI thread."""
    labels = np.asarray(labels)
    if labels.dtype != np.uint16 and labels.dtype.kind in "iu" and labels.size and \
            labels.min() >= 0 and labels.max() <= np.iinfo(np.uint16).max:
        return labels.astype(np.uint16)
    return labels


LAYER_PROPERTIES = ("scale", "translate", "opacity", "colormap", "blending", "contour")


def _same(a, b) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except (TypeError, ValueError):
        return False


def upsert_layer(viewer: "napari.Viewer", name: str, kind: str, data, **kwargs):
    """Update the layer called ``name`` in place if it exists with the same kind, else add it.
    Re-running a step therefore updates its output instead of piling up new layers; an update is one
    redraw, whatever the number of properties (``one_refresh``), and leaves unchanged properties alone."""
    if name in viewer.layers and is_layer_kind(viewer.layers[name], kind):
        layer = viewer.layers[name]
        with one_refresh(layer, kwargs.pop("visible", None)):
            layer.data = data
            for key, value in kwargs.items():
                if key == "features":
                    layer.features = value
                elif key == "metadata":
                    layer.metadata.update(value)
                elif key in LAYER_PROPERTIES and not (key != "colormap" and _same(getattr(layer, key), value)):
                    setattr(layer, key, value)
        return layer
    later = {k: kwargs.pop(k) for k in ("contour",) if k in kwargs}  # not an add_labels argument
    if not later:
        return getattr(viewer, f"add_{kind}")(data, name=name, **kwargs)
    visible = kwargs.pop("visible", True)
    layer = getattr(viewer, f"add_{kind}")(data, name=name, visible=False, **kwargs)  # drawn once, when shown
    with one_refresh(layer, visible):
        for key, value in later.items():
            setattr(layer, key, value)
    return layer


class StepFailed(Exception):
    """Carries a RuntimeError out of a worker (see ``StepWidget._guarded_work``)."""


class StepWidget(QWidget):
    """Base of the step docks. Subclasses fill ``self.form`` and implement ``work`` and ``show``."""

    title = "Run"
    tab = ""  # the dock's tab in the RedDino panel, short enough for five tabs side by side
    run_tip = "Run this step on the choices above"
    uses_torch = True  # False for a step that never reaches torch: it need not wait for torch's import

    def __init__(self, napari_viewer: "napari.Viewer"):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.form = Container(labels=True)
        self.run_button = PushButton(text=self.title)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.run_button.tooltip = self.run_tip
        self.cancel_button.tooltip = TIPS["cancel"]
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self._elapsed = QTimer(self)  # while the worker reports no count: its message and the seconds spent
        self._elapsed.setInterval(1000)
        self._elapsed.timeout.connect(self._show_elapsed)
        self._started_at, self._shown_at, self._shown_message, self._uncounted = time.monotonic(), 0.0, None, ""
        self.body = QWidget()  # in a scroll area: a long dock scrolls instead of growing napari's window
        layout = DockColumn(self.body)
        layout.addWidget(self.form.native)
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False)
        layout.addWidget(buttons.native)
        layout.addWidget(self.progress)
        layout.addStretch(1)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(ScrollForm(self.body))
        self._tabbed = False
        self._slices = None  # the display's slices still to run (``show`` as a generator)
        self._finish_after_slices = False

    def add_below(self, widget: QWidget, stretch: int = 0) -> None:
        """Add ``widget`` under the Run buttons; with ``stretch`` it takes the height the dock has to spare
        (else the empty space stays at the bottom)."""
        layout = self.body.layout()
        layout.insertWidget(layout.count() - 1, widget, stretch)
        if stretch:
            layout.setStretch(layout.count() - 1, 0)

    # --- to implement -------------------------------------------------------------------------
    def work(self):  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    def show(self, result) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        wrap_tooltips(self)  # once the subclass has set them all; cheap and idempotent
        narrow_fields(self)
        super().showEvent(event)
        if not self._tabbed:  # once, when napari first shows the dock: later the user arranges the docks
            self._tabbed = True
            join_reddino_tabs(self)

    def prepare(self):
        """Read inputs from the form on the main thread before the worker starts; return False to abort."""
        return True

    # --- machinery ----------------------------------------------------------------------------
    def start(self, *_):
        from napari_reddino.images import InputError

        if self.worker is not None:
            return None
        try:
            if self.prepare() is False:
                return None
        except InputError as exc:
            show_error(str(exc))
            return None
        # errored must be connected at creation, else superqt re-raises the error in the Qt loop as well
        self.worker = create_worker(self._guarded_work, _start_thread=False, _connect={
            "yielded": self._on_progress, "returned": self._on_returned, "errored": self._on_error,
            "finished": self._on_finished})
        try:  # napari's notifying workers also relay errors; _on_error reports them, once
            self.worker.errored.disconnect(self.worker._relay_error)
        except (AttributeError, TypeError, RuntimeError):
            pass
        unfreeze_when_a_layer_goes(self.viewer)  # before the worker may freeze the session's objects
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self._started_at, self._shown_at, self._shown_message = time.monotonic(), 0.0, None
        self._show_uncounted("working…")
        self.progress.setVisible(True)
        self.worker.start()
        return self.worker

    def _guarded_work(self):
        # superqt takes a RuntimeError raised in a generator worker for "worker deleted": it only warns and
        # never emits errored/finished, which would leave this dock stuck. torch raises RuntimeError often.
        from napari_reddino.runtime import import_torch

        try:
            if getattr(self, "uses_torch", True):  # cellpose, the ViT, PCA: hide a useless triton first
                import_torch()
            freeze_long_lived()  # torch imported: the bulk of what a session keeps
            return (yield from self.work())
        except RuntimeError as exc:
            raise StepFailed(f"{type(exc).__name__}: {exc}") from exc

    def cancel(self, *_):
        if self.worker is not None:
            self.worker.quit()
            show_info(f"{self.title}: cancelled")

    PROGRESS_EVERY_S = 0.2  # the bar's refresh at most this often (a new message at once)

    def _show_uncounted(self, message: str) -> None:
        """A step part with no count: the bar empty, with the part's name and the seconds spent, refreshed
        once a second. Not Qt's busy indicator: its animation repaints the whole window about 60 times a
        second, in software OpenGL ~30 % of a core taken from the step itself for as long as it runs."""
        self._uncounted = message
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self._show_elapsed()
        self._elapsed.start()

    def _show_elapsed(self) -> None:
        seconds = int(time.monotonic() - self._started_at)
        self.progress.setFormat(f"{self._uncounted} {seconds} s")

    def _on_progress(self, p):
        """Show a worker's ``Progress``. A bar's new value repaints it at once (QProgressBar.setValue), which
        repaints the window around napari's canvas (tens of ms each in software OpenGL): a worker yielding
        per batch or tile would keep the GUI thread busy, so the bar follows at most every 0.2 s."""
        if not isinstance(p, Progress):
            return
        if not p.total:  # a part with no count ("loading model"): its name, once
            if p.message and p.message != self._shown_message:
                self._shown_message = p.message
                self._show_uncounted(p.message)
            return
        self._elapsed.stop()
        now, message = time.monotonic(), p.message or ""
        if message == self._shown_message and p.done < p.total and now - self._shown_at < self.PROGRESS_EVERY_S:
            return
        self._shown_at, self._shown_message = now, message
        if self.progress.maximum() != p.total:
            self.progress.setRange(0, p.total)
        self.progress.setValue(p.done)
        if message:
            self.progress.setFormat(f"{message} %v/%m")

    def _on_returned(self, result):
        try:
            shown = self.show(result)
        except Exception as exc:  # noqa: BLE001 - a failed display must not crash napari
            self._on_error(exc)
            return
        if inspect.isgenerator(shown):
            self._slices = shown
            self._next_slice()

    def _next_slice(self):
        """Run the display's next slice, then let the event loop turn before the one after."""
        try:
            next(self._slices)
        except StopIteration:
            self._slices = None
        except Exception as exc:  # noqa: BLE001 - a failed display must not crash napari
            self._slices = None
            self._on_error(exc)
        if self._slices is not None:
            next_turn(self._next_slice)
        elif self._finish_after_slices:
            self._finish_after_slices = False
            try:
                self._on_finished()
            except RuntimeError:  # the dock was closed during its display: no button to enable
                pass

    def _on_error(self, exc):
        from napari.utils.notifications import notification_manager

        from napari_reddino.images import InputError

        if isinstance(exc, InputError):  # bad input: the one-line message says it all
            show_error(str(exc))
        else:  # a bug or a resource problem: keep the traceback in the notification's details
            exc = exc.__cause__ if isinstance(exc, StepFailed) and exc.__cause__ else exc
            notification_manager.receive_error(type(exc), exc, exc.__traceback__)

    def _on_finished(self):
        if self._slices is not None:  # the display is still going: the step ends with its last slice
            self._finish_after_slices = True
            return
        self.worker = None
        self._elapsed.stop()
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        self.progress.setVisible(False)
        next_turn(refreeze)


def show_at_once(shown) -> None:
    """Run a ``show`` that may be a generator to its end, now (where nothing may wait for the event loop)."""
    if inspect.isgenerator(shown):
        for _ in shown:
            pass


def notify_bad_input(fn, *args):
    """``fn(*args)``, or None with the one-line message of a bad input (``InputError``) as a notification: what a
    button or a key of a dock calls."""
    from napari_reddino.images import InputError

    try:
        return fn(*args)
    except InputError as exc:
        show_error(str(exc))
        return None
