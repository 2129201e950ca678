"""Dock "Verification gallery": every cell's thumbnail, grouped by class, least confident first, to verify and
correct a pre-classified slide cell by cell (as digital-morphology analysers work).

A thin view of the annotation dock's :class:`AnnotationState` (the same store, selection and assign path):
clicking thumbnails selects those cells on the map and the smear, a selection made there selects them here;
number keys assign a class (``AnnotationWidget.assign``), V / Enter verify (``AnnotationState.verify_selected``),
N walks the review queue (``review.review_queue``: first the cells that teach *Train & predict* most, then
low confidence, or a kNN on the same features predicting another class). The thumbnails: ``gallery_view.py``.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_info
from qtpy.QtCore import QItemSelection, QItemSelectionModel, QSettings, QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QComboBox, QDockWidget, QDoubleSpinBox, QGridLayout, QHBoxLayout, QPushButton, QWidget

from napari_reddino import review, style
from napari_reddino._widgets._common import notify_bad_input
from napari_reddino._widgets.dock_layout import DockColumn, WrappedLabel, join_reddino_tabs
from napari_reddino._widgets.gallery_view import ROW_ROLE, CellDelegate, CellModel, CellView
from napari_reddino.images import InputError

VIEW = 1.6  # a thumbnail's side, in the smear's median cell size: every cell of a smear at one magnification
BACKGROUND = 40  # grey where a thumbnail reaches past the image's edge
SHOW = {"all": "every cell", "unverified": "cells not verified", "queue": "the review queue"}
FLOATING = "gallery/floating"  # remembered: the gallery opens in a window of its own


def settings() -> QSettings:
    """The user's Qt settings of napari-reddino (where the gallery remembers being popped out)."""
    return QSettings("napari-reddino", "napari-reddino")


class GalleryWidget(QWidget):
    tab = "5. Verify"  # its tab in the RedDino panel
    reddino_tab = True  # joins the RedDino panel (dock_layout.join_reddino_tabs)

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.annotation = None  # the annotation dock whose state this shows
        self.state = None
        self.n = 0
        self.verified = np.zeros(0, bool)
        self.second = None  # the kNN's prediction per cell (None: not computed)
        self.queue = np.zeros(0, np.int64)
        self._prediction_seen = None
        self._syncing = False
        self._images: dict = {}
        self._boxes = None
        self.knn_worker = None
        self._tabbed = False

        self.show_box = QComboBox()
        for key, text in SHOW.items():
            self.show_box.addItem(text, key)
        self.show_box.setToolTip("Which cells the gallery shows: every cell, those nobody has verified yet, or "
                                 "the review queue (the cells that teach 'Train & predict' most, then the uncertain ones)")
        self.class_box = QComboBox()
        self.class_box.setToolTip("Show the cells of one class only (the class annotated, else the one "
                                  "predicted), or of every class, one group after another")
        self.verify_button = QPushButton("Verify (V)")
        self.verify_button.setToolTip("Confirm the class of the selected cells as shown (their annotation, else "
                                      "their prediction); keys V or Enter in the gallery. A number key "
                                      "gives them another class and verifies it too")
        self.next_button = QPushButton("Next uncertain (N)")
        self.next_button.setToolTip("Select the next cell to check, on every smear: first 20 that teach "
                                    "'Train & predict' most (cells next to your corrections of the shipped "
                                    "classifier it still gets wrong, then representative cells of the parts of "
                                    "the map with the fewest verified cells), then the cells where two "
                                    "classifiers disagree, then those predicted with the least confidence; "
                                    "verified cells are skipped")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(review.DEFAULT_THRESHOLD)
        self.threshold.setPrefix("uncertain below ")
        self.threshold.setToolTip("A predicted cell is uncertain when the classifier's confidence in its class "
                                  "is below this (0 to 1)")
        self.resort_button = QPushButton("Re-sort")
        self.resort_button.setToolTip("Put the cells back in their groups (a cell you gave another class stays "
                                      "where it is until then, so the gallery does not jump under you)")
        self.pop_button = QPushButton("Pop out")
        self.pop_button.setCheckable(True)
        self.pop_button.setToolTip("Open the gallery in a window of its own, and next time too (click again to "
                                   "dock it back). Without a graphics card it scrolls smoothly there: docked, "
                                   "each frame also redraws napari's window")
        self.status = WrappedLabel("Compute the map in '4. Annotate' (or run the whole pipeline) to fill the "
                                   "gallery.", lines=2)
        self.model = CellModel(self)
        self.view = CellView(self)
        self.view.setModel(self.model)
        self.view.setItemDelegate(CellDelegate(self))
        self.view.setToolTip("The cells, framed in their class colour (solid: annotated, dashed: predicted), "
                             "least confident first; a tick marks a verified cell. Click or drag to select; "
                             "keys 1-9, 0 give a class, V verifies, N goes to the next uncertain cell; "
                             "double-click shows the cell on the smear")
        self.view.selectionModel().selectionChanged.connect(self._on_view_selection)
        self.view.doubleClicked.connect(lambda index: self.focus(index.data(ROW_ROLE)))
        self.show_box.currentIndexChanged.connect(lambda *_: self.resort())
        self.class_box.currentIndexChanged.connect(lambda *_: self.resort())
        self.threshold.valueChanged.connect(lambda *_: self._threshold_changed())
        self.verify_button.clicked.connect(self.verify)
        self.next_button.clicked.connect(self.next_uncertain)
        self.resort_button.clicked.connect(self.resort)
        self.pop_button.clicked.connect(self.set_floating)

        grid = QGridLayout()
        grid.addWidget(self.show_box, 0, 0)
        grid.addWidget(self.class_box, 0, 1)
        grid.addWidget(self.verify_button, 1, 0)
        grid.addWidget(self.next_button, 1, 1)
        grid.addWidget(self.threshold, 2, 0)
        row = QHBoxLayout()
        row.addWidget(self.resort_button)
        row.addWidget(self.pop_button)
        grid.addLayout(row, 2, 1)
        layout = DockColumn(self)
        layout.addLayout(grid)
        layout.addWidget(self.status)
        layout.addWidget(self.view, 1)
        self._set_enabled(False)
        from napari_reddino._widgets.session import annotation_dock

        dock = annotation_dock(napari_viewer)
        if dock is not None:
            self.attach(dock)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        from napari_reddino._widgets._common import wrap_tooltips

        wrap_tooltips(self)
        super().showEvent(event)
        if not self._tabbed:
            self._tabbed = True
            join_reddino_tabs(self)
            dock = self.parentWidget()
            if isinstance(dock, QDockWidget):
                dock.topLevelChanged.connect(self.pop_button.setChecked)
                if settings().value(FLOATING, False, type=bool):
                    QTimer.singleShot(0, lambda: self.set_floating(True))

    def set_floating(self, on: bool) -> None:
        """Float the gallery's dock in a window of its own (``on``) or dock it back; remembered."""
        settings().setValue(FLOATING, bool(on))
        dock = self.parentWidget()
        if isinstance(dock, QDockWidget) and dock.isFloating() != bool(on):
            dock.setFloating(bool(on))
            if on and dock.screen() is not None:  # tall enough to browse, on the screen
                screen = dock.screen().availableGeometry()
                w, h = max(dock.width(), 460), min(max(dock.height(), 800), screen.height() - 40)
                dock.resize(w, h)
                dock.move(max(screen.left(), min(dock.x(), screen.right() - 20 - w)),
                          max(screen.top(), min(dock.y(), screen.bottom() - 40 - h)))
        self.pop_button.setChecked(bool(on))

    def _set_enabled(self, on: bool) -> None:
        for w in (self.verify_button, self.next_button, self.resort_button, self.show_box, self.class_box):
            w.setEnabled(on)

    # --- following the annotation dock ----------------------------------------------------------------
    def attach(self, dock) -> None:
        """Show the map of the annotation ``dock`` (and every later one it computes)."""
        self.annotation = dock
        if self._on_state not in dock.state_listeners:
            dock.state_listeners.append(self._on_state)
        self._on_state(dock.state)

    def _on_state(self, state) -> None:
        old = self.state
        if old is not None:
            if self._refreshed in old.listeners:
                old.listeners.remove(self._refreshed)
            try:
                old.canvas.selection_changed.disconnect(self._on_points_selection)
            except (TypeError, ValueError, RuntimeError):
                pass
        self.state = state
        self.second, self._prediction_seen = None, None
        self._images, self._boxes = {}, None
        self.model.clear_cache()
        if state is None:
            self.n = 0
            self.model.set_rows([])
            self._set_enabled(False)
            return
        self.n = len(state.table)
        self._hex = {c.name: c.color for c in state.classes}
        self._image_of = state.table["image"].to_numpy()
        state.listeners.append(self._refreshed)
        state.canvas.selection_changed.connect(self._on_points_selection)
        self._set_enabled(True)
        self._refreshed()

    def _refreshed(self) -> None:
        """The state changed (a class, a verification, new predictions): repaint; re-sort only when the
        predictions are new (a reassigned cell stays in place until 'Re-sort')."""
        state = self.state
        self.cls, self.verified = state.class_column(), state.verified_column()
        self.shown = review.shown_class(self.cls, state.prediction)
        if state.prediction is not self._prediction_seen:
            self._prediction_seen = state.prediction
            self.second = None
            self._start_second_opinion()
            self._fill_class_box()
            self.resort()
        else:
            self._update_queue()
            self.view.viewport().update()

    def _fill_class_box(self) -> None:
        current = self.class_box.currentData()
        self.class_box.blockSignals(True)
        self.class_box.clear()
        self.class_box.addItem("every class", None)
        names = [c.name for c in self.state.classes]
        present = set(self.shown)
        for name in names + sorted(present - set(names) - {""}):
            if name in present:
                self.class_box.addItem(f"{name} ({int((self.shown == name).sum())})", name)
        if "" in present:
            self.class_box.addItem(f"no class ({int((self.shown == '').sum())})", "")
        i = self.class_box.findData(current)
        self.class_box.setCurrentIndex(max(i, 0))
        self.class_box.blockSignals(False)

    # --- what is shown ------------------------------------------------------------------------------
    def resort(self) -> None:
        """Lay the cells out again: the chosen cells, grouped by class, least confident first."""
        if self.state is None:
            return
        state = self.state
        self.cls, self.verified = state.class_column(), state.verified_column()
        self.shown = review.shown_class(self.cls, state.prediction)
        self._update_queue()
        mode, only_class = self.show_box.currentData(), self.class_box.currentData()
        if mode == "queue":
            rows, starts = self.queue, {}
            if only_class is not None:
                rows = rows[self.shown[rows] == only_class]
        else:
            keep = ~self.verified if mode == "unverified" else np.ones(self.n, bool)
            if only_class is not None:
                keep &= self.shown == only_class
            parts = review.groups(self.cls, state.prediction, state.confidence,
                                  [c.name for c in state.classes], only=keep)
            rows = np.concatenate([r for _, r in parts]) if parts else np.zeros(0, np.int64)
            starts, at = {}, 0
            for name, r in parts:
                starts[at] = f"{name or 'no class'} ({len(r)})"
                at += len(r)
        self.model.set_rows(rows, starts)
        self._pos = np.full(self.n, -1, np.int64)
        self._pos[rows] = np.arange(len(rows))
        self._on_points_selection()

    def _update_queue(self) -> None:
        state = self.state
        self.queue = review.review_queue(state.prediction, state.confidence, self.verified, self.second,
                                         self.threshold.value(), features=state.X, annotated=self.cls,
                                         prior=None if state.prior is None else state.prior[0],
                                         batch=review.BATCH)
        first = min(len(self.queue), review.BATCH)
        if np.isnan(state.confidence).all():
            left = (f"no predictions yet: N walks {first} representative cells to annotate first; 'Train & "
                    "predict' in '4. Annotate' gives every cell a class to verify")
        else:
            second = ("; second opinion (kNN) coming" if self.knn_worker is not None else
                      "; no second opinion (it needs annotated cells of 2 classes)" if self.second is None else "")
            left = (f"{len(self.queue)} to verify: first the {first} that teach 'Train & predict' most, then the "
                    f"uncertain ones{second}")
        self.status.setText(f"{self.n} cells, {int(self.verified.sum())} verified; {left}")

    def _threshold_changed(self) -> None:
        if self.state is None:
            return
        self._update_queue()
        if self.show_box.currentData() == "queue":
            self.resort()

    def colour_of(self, row: int) -> tuple[QColor, bool]:
        """The frame of a cell: its class colour, and whether a person gave the class (else it is a
        prediction's, faded)."""
        name = self.shown[row]
        colour = QColor(self._hex.get(name, style.UNANNOTATED_COLOR))
        annotated = self.cls[row] != ""
        if not annotated and name:
            colour.setAlphaF(0.55)
        return colour, annotated

    def describe(self, row: int) -> str:
        state = self.state
        image, label = state.table["image"].iloc[row], int(state.table["label"].iloc[row])
        lines = [f"{image}, cell {label}"]
        if self.cls[row]:
            lines.append(f"class: {self.cls[row]} (annotated)")
        if state.prediction[row]:
            lines.append(f"predicted: {state.prediction[row]} ({state.confidence[row]:.2f})")
        if self.second is not None and self.second[row] and self.second[row] != state.prediction[row]:
            lines.append(f"second opinion (kNN): {self.second[row]}")
        done = state.store.verification(image, label)
        lines.append(f"verified by {done[0]} at {done[1]}" if done else "not verified")
        return "\n".join(lines)

    # --- thumbnails -----------------------------------------------------------------------------------
    def crop(self, row: int) -> np.ndarray:
        """A square around the cell, from its image (uint8 RGB), at one magnification per smear (a
        microcyte looks small beside a normal cell), larger only for a cell that would not fit."""
        from napari_reddino.images import to_rgb_uint8

        image = self._image_of[row]
        data = self._images.get(image)
        if data is None:
            from napari_reddino._widgets.levels import cells_shape, image_pixels

            pixels = image_pixels(self.viewer, image, cells_shape(self.viewer, image))  # a slide: its cells' level
            data = to_rgb_uint8(np.asarray(pixels)) if pixels is not None else np.zeros((1, 1, 3), np.uint8)
            self._images[image] = data
        y0, x0, y1, x1 = self.boxes()[row]
        side = int(self._sides[row])
        ya, xa = int(round((y0 + y1 - side) / 2)), int(round((x0 + x1 - side) / 2))
        out = np.full((side, side, 3), BACKGROUND, np.uint8)
        h, w = data.shape[:2]
        src = data[max(0, ya):min(h, ya + side), max(0, xa):min(w, xa + side)]
        oy, ox = max(0, ya) - ya, max(0, xa) - xa
        out[oy:oy + src.shape[0], ox:ox + src.shape[1]] = src
        return out

    def boxes(self) -> np.ndarray:
        """(N, 4) int box (y0, x0, y1, x1) per row: from the cell table, else from the cells layers."""
        if self._boxes is None:
            table = self.state.table
            cols = ["bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]
            if all(c in table.columns for c in cols) and table[cols].notna().all().all():
                self._boxes = table[cols].to_numpy(np.int64)
            else:
                self._boxes = self._boxes_from_labels()
            size = np.maximum(self._boxes[:, 2] - self._boxes[:, 0], self._boxes[:, 3] - self._boxes[:, 1])
            self._sides = np.zeros(len(size), np.int64)
            for image in np.unique(self._image_of):
                mine = self._image_of == image
                typical = VIEW * float(np.median(size[mine]))
                self._sides[mine] = np.maximum(np.ceil(typical), size[mine] + 4)
            self._sides = np.maximum(self._sides, 1)
        return self._boxes

    def _boxes_from_labels(self) -> np.ndarray:
        from scipy import ndimage as ndi

        state, out = self.state, np.zeros((self.n, 4), np.int64)
        link = state.link
        for s, name in enumerate(link.sources):
            if name not in self.viewer.layers:
                continue
            found = ndi.find_objects(np.asarray(self.viewer.layers[name].data).astype(np.int64))
            for row in np.flatnonzero(link.source_of_row == s):
                lbl = int(link.labels[row])
                box = found[lbl - 1] if 0 < lbl <= len(found) else None
                if box is not None:
                    out[row] = (box[0].start, box[1].start, box[0].stop, box[1].stop)
        return out

    # --- selection, both ways -------------------------------------------------------------------------
    def _on_view_selection(self, *_):
        if self._syncing or self.state is None:
            return
        rows = [int(self.model.rows[i.row()]) for i in self.view.selectionModel().selectedIndexes()]
        self._syncing = True
        try:
            self.state.canvas.select(rows)
        finally:
            self._syncing = False

    def _on_points_selection(self, *_):
        """Select here what is selected on the map or the smear, and scroll to it."""
        if self._syncing or self.state is None:
            return
        rows = self.state.selected_rows()
        pos = np.sort(self._pos[rows[rows < self.n]]) if len(rows) else np.zeros(0, np.int64)
        pos = pos[pos >= 0]
        selection = QItemSelection()
        if len(pos):
            breaks = np.flatnonzero(np.diff(pos) != 1)
            for a, b in zip(np.r_[pos[0], pos[breaks + 1]], np.r_[pos[breaks], pos[-1]]):
                selection.select(self.model.index(int(a)), self.model.index(int(b)))
        self._syncing = True
        try:
            flags = QItemSelectionModel.SelectionFlag.ClearAndSelect
            self.view.selectionModel().select(selection, flags)
            if len(pos):
                self.view.selectionModel().setCurrentIndex(self.model.index(int(pos[0])),
                                                           QItemSelectionModel.SelectionFlag.NoUpdate)
                self.view.scrollTo(self.model.index(int(pos[0])))
        finally:
            self._syncing = False

    def select_rows(self, rows) -> None:
        """Select these table rows everywhere (gallery, map, smear)."""
        self.state.canvas.select(rows)

    # --- actions (also what the tests drive) ------------------------------------------------------------
    def _need_state(self):
        if self.state is None:
            raise InputError("Received an action before any map; accepted: compute the map in '4. Annotate' "
                             "(or run the whole pipeline) first.")
        return self.state

    def _safely(self, fn, *args):
        return notify_bad_input(fn, *args)

    def assign(self, cls) -> int | None:
        """Give the selected cells class ``cls`` (index or name; None clears) through the annotation dock,
        then move on to the next cell when one was selected."""
        def run():
            self._need_state()
            single = self._single()
            changed = self.annotation.assign(cls)
            if changed and single is not None:
                self._step_from(single)
            return changed
        return self._safely(run)

    def verify(self, *_) -> int | None:
        def run():
            state = self._need_state()
            rows = state.selected_rows()
            if not len(rows):
                raise InputError("Received no selected cell to verify; accepted: click cells in the gallery, "
                                 "on the map or on the smear first.")
            single = self._single()
            changed = state.verify_selected()
            unclassed = int((self.shown[rows] == "").sum())
            if unclassed:
                show_info(f"{unclassed} selected cell(s) have neither a class nor a prediction: give them a "
                          "class with a number key instead")
            if single is not None:
                self._step_from(single)
            return changed
        return self._safely(run)

    def undo(self):
        return self._safely(lambda: self.annotation.undo())

    def next_uncertain(self, *_) -> int | None:
        """Select the next cell of the review queue (on every smear) and show it on its smear."""
        def run():
            self._need_state()
            self._update_queue()
            current = self._single()
            row = review.next_in_queue(self.queue, current)
            if row is None:
                show_info("No cell left in the queue: every cell is verified")
                return None
            if self._pos[row] < 0:  # not in the gallery as filtered now: show every cell
                self.show_box.setCurrentIndex(self.show_box.findData("all"))
                self.class_box.setCurrentIndex(0)
            self.select_rows([row])
            self.focus(row)
            return row
        return self._safely(run)

    def _single(self) -> int | None:
        rows = self.state.selected_rows() if self.state is not None else []
        return int(rows[0]) if len(rows) == 1 else None

    def _step_from(self, row: int) -> None:
        """After deciding one cell: select the next one in the gallery (or the next uncertain one)."""
        if self.show_box.currentData() == "queue":
            self.next_uncertain()
            return
        at = int(self._pos[row])
        if 0 <= at < len(self.model.rows) - 1:
            self.select_rows([int(self.model.rows[at + 1])])

    def focus(self, row) -> None:
        """Centre the smear on the cell of ``row`` and show its smear (hiding the session's other smears)."""
        if row is None or self.state is None:
            return
        link = self.state.link
        s = int(link.source_of_row[row])
        name = link.sources[s]
        if name not in self.viewer.layers:
            return
        layer = self.viewer.layers[name]
        if not layer.visible:
            images = set(self.state.table["image"])
            for t, other in enumerate(link.sources):
                if other in self.viewer.layers:
                    self.viewer.layers[other].visible = t == s
            for image in images:
                if image in self.viewer.layers:
                    self.viewer.layers[image].visible = image == self.state.table["image"].iloc[row]
        y0, x0, y1, x1 = self.boxes()[row]
        centre = np.array([(y0 + y1) / 2, (x0 + x1) / 2]) * np.asarray(layer.scale[-2:]) + np.asarray(
            layer.translate[-2:])
        self.viewer.camera.center = tuple(centre)
        self.view.setFocus()

    # --- the second opinion -------------------------------------------------------------------------
    def _start_second_opinion(self) -> None:
        """A kNN trained on the same annotated cells, in a worker; where it predicts another class than the
        classifier, the cell joins the queue."""
        from napari.qt.threading import create_worker

        from napari_reddino.classify import fit_predict

        state = self.state
        if np.isnan(state.confidence).all() or self.knn_worker is not None:
            return
        annotated = state.class_column()
        if len(set(annotated[annotated != ""])) < 2:
            return

        def done(result):
            if self.state is state and state.prediction is self._prediction_seen:
                self.second = result[0]
                self._update_queue()
                if self.show_box.currentData() == "queue":
                    self.resort()

        def finished():
            self.knn_worker = None
            if self.state is state:
                self._update_queue()
            elif self.state is not None and self.second is None:  # a new map came meanwhile: its own kNN
                self._start_second_opinion()

        self.knn_worker = create_worker(fit_predict, state.X, annotated, "knn", _start_thread=False,
                                        _connect={"returned": done, "errored": lambda exc: None,
                                                  "finished": finished})
        try:  # a failure only means no second opinion: nothing to report
            self.knn_worker.errored.disconnect(self.knn_worker._relay_error)
        except (AttributeError, TypeError, RuntimeError):
            pass
        self.knn_worker.start()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if self.annotation is not None and self._on_state in self.annotation.state_listeners:
            self.annotation.state_listeners.remove(self._on_state)
        self._on_state(None)
        super().closeEvent(event)


def open_galleries(viewer) -> list[GalleryWidget]:
    """The verification gallery docks open in ``viewer``'s window."""
    window = getattr(viewer, "window", None)
    docks = getattr(window, "dock_widgets", None) or {}
    return [d for d in docks.values() if isinstance(d, GalleryWidget)]
