"""The UMAP canvas: a second napari viewer embedded in a dock, with box, shift-click and lasso selection.

napari's own Points "select" mode drags the selected points, and UMAP positions are data, so the points
layer stays in pan_zoom mode and the selection gestures are ours (a viewer-level mouse callback, with
panning switched off while selecting).

The selection is drawn by a layer of our own (yellow rings, as on the smear): napari's highlight is the
user's global highlight colour, by default a blue next to the "normal" class' blue. A legend under the
buttons gives each class' colour and its number of cells.

Above ``POINT_BUDGET`` points (a million cells) the Points layer holds the map's data, features and key
bindings but is hidden, and the view is drawn as a density image with real points only where the view
holds fewer than the budget (``umap_density``); the selection is then the canvas' own sorted array, not
napari's. Either way, listeners connect to ``selection_changed`` and read ``selected_rows()``.
"""

from __future__ import annotations

import time

import numpy as np
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QButtonGroup, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

# Selected cells are ringed in SELECTION_COLOR, here and on the smear; no class colour is near it (the test)
from napari_reddino.style import SELECTION_COLOR, count_text

MODES = {"select": "Box / click", "lasso": "Lasso", "pan_zoom": "Pan / zoom"}
MODE_TIPS = {
    "select": "Drag a box around cells to select them, or click one cell; hold Shift to add to the selection",
    "lasso": "Draw a free outline around the cells to select; hold Shift to add to the selection",
    "pan_zoom": "Drag to move the map, scroll to zoom (the selection is kept)",
}
SELECTION_RING = 1.8  # ring diameter, in point sizes
DRAG_PIXELS = 4
# during a drag the lasso or box outline is redrawn at most every PREVIEW_SECONDS, and at most PREVIEW_SHARE of
# the time (a napari Shapes update and the repaint after it: 0.1-0.3 s here; the mouse moves every ~10 ms)
PREVIEW_SECONDS = 0.1
PREVIEW_SHARE = 0.3
POINT_BUDGET = 50_000  # more points than this: the density image, and real points only where zoomed in
VIEW_MARGIN = 0.5  # the density image and the points shown cover the view and this much of it on each side
VIEW_DELAY_MS = 80  # the view is redrawn once it has settled this long (pan and zoom fire many events)
SELECTED_ALPHA = 0.8  # the density view's selected bins: the classes' colours show faintly through
FRAME_SHARE = 0.95  # of the canvas the framed map fills (as napari's reset_view)
NEAR_PIXELS = 14  # the real points of a zoomed-in big map are drawn at most this many screen pixels across
CLICK_PIXELS = 6  # a click selects the nearest point within this many screen pixels (density view)


def points_in_polygon(points: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Indices of ``points`` (N, 2) inside the closed polygon ``vertices`` (M, 2), same coordinates."""
    from matplotlib.path import Path as MplPath

    vertices = np.asarray(vertices, dtype=float)
    if len(vertices) < 3 or len(points) == 0:
        return np.zeros(0, dtype=int)
    points = np.asarray(points)[:, :2]
    lo, hi = vertices.min(0), vertices.max(0)  # only the points in the outline's box are tested: 10x on 10^6
    box = np.flatnonzero((points[:, 0] >= lo[0]) & (points[:, 0] <= hi[0]) &
                         (points[:, 1] >= lo[1]) & (points[:, 1] <= hi[1]))
    return box[MplPath(vertices).contains_points(points[box].astype(float))]


def box_polygon(a, b) -> np.ndarray:
    (r0, c0), (r1, c1) = a, b
    return np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], dtype=float)


def _rgba(color, n: int) -> np.ndarray:
    """(n, 4) float32 colours from an (n, 4) array or one colour (a name, hex or RGBA)."""
    arr = np.asarray(color) if not isinstance(color, str) else None
    if arr is not None and arr.ndim == 2 and arr.shape == (n, 4):
        return arr.astype(np.float32, copy=False)
    from napari.utils.colormaps.standardize_color import transform_color

    return np.tile(transform_color(color)[:1].astype(np.float32), (n, 1))


class UmapCanvas(QWidget):
    """Embedded viewer holding the UMAP Points layer; ``selection_changed`` fires after each selection."""

    selection_changed = Signal()

    def __init__(self, title: str = "UMAP", point_budget: int | None = None):
        super().__init__()
        from napari.components import ViewerModel
        from napari.qt import QtViewer

        self.model = ViewerModel(title=title)
        self.qt_viewer = QtViewer(self.model, show_welcome_screen=False)
        self.points = None
        self.preview = None
        self.marks = None  # the rings around the selected points
        self._ring_size = 1.0
        # above the point budget (module docstring): the map as arrays, its density image, the selection
        # drawn in the same bins, the real points of a zoomed-in view and which rows they are
        self.point_budget = int(POINT_BUDGET if point_budget is None else point_budget)
        self.big = False
        self.data = self.colors = None
        self._size = 1.0
        self._selected = np.zeros(0, np.int64)
        self.density = self.chosen = self.near = None
        self._features = None
        self._bins = None  # (grid, bin of each point in view, those points) of the density image drawn last
        self._near_rows = np.zeros(0, np.int64)
        self._grid = None
        self._view_timer = QTimer(self)
        self._view_timer.setSingleShot(True)
        self._view_timer.timeout.connect(self.update_view)
        self.mode = "select"
        # the view follows the points (and the canvas' size, which the dock sets after the points arrive)
        # until the user pans or zooms; "Reset view" frames them again
        self.framed = True
        self._framing = False
        self._buttons = QButtonGroup(self)
        row = QHBoxLayout()
        for key, text in MODES.items():
            button = QPushButton(text)
            button.setCheckable(True)
            button.setChecked(key == self.mode)
            button.setToolTip(MODE_TIPS[key])
            button.clicked.connect(lambda _=False, k=key: self.set_mode(k))
            self._buttons.addButton(button)
            row.addWidget(button)
        self.reset_button = QPushButton("Reset view")
        self.reset_button.setToolTip("Zoom the UMAP so that every cell's point is in view")
        self.reset_button.clicked.connect(self.frame_points)
        row.addWidget(self.reset_button)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setToolTip("Colour of each class on the map and on the smear, with its number of cells "
                               "(annotated; + predicted by the classifier). Selected cells are ringed in yellow.")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(row)
        layout.addWidget(self.legend)
        layout.addWidget(self.qt_viewer, 1)
        from napari_reddino._widgets._common import wrap_tooltips

        for w in (self.legend, self.reset_button, *self._buttons.buttons()):  # not napari's own widgets
            wrap_tooltips(w)
        self.model.mouse_drag_callbacks.append(self._on_drag)
        self.camera.events.zoom.connect(self._user_moved)
        self.camera.events.center.connect(self._user_moved)
        self.camera.events.zoom.connect(self._view_moved)
        self.camera.events.center.connect(self._view_moved)

    # --- view -------------------------------------------------------------------------------------
    @property
    def camera(self):
        return self.model.scene.camera if hasattr(self.model, "scene") else self.model.camera  # napari < 0.7

    def frame_points(self) -> None:
        """Fit the view to the points, and keep it fitted as the canvas is resized."""
        self._framing = True
        try:
            if self.big:  # the map's own bounds: the density image covers the view, not the map
                lo, hi = self.data.min(0), self.data.max(0)
                h, w = (max(int(v), 2) for v in self.model.canvas.size)
                self.camera.center = tuple((lo + hi) / 2)
                self.camera.zoom = FRAME_SHARE * min(h / max(hi[0] - lo[0], 1e-9), w / max(hi[1] - lo[1], 1e-9))
            else:
                self.model.reset_view()
        finally:
            self._framing = False
        self.framed = True

    def _user_moved(self, event=None) -> None:
        if not self._framing:
            self.framed = False

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        if self.framed and self.points is not None:
            from qtpy.QtCore import QTimer

            QTimer.singleShot(0, self._refit)  # after the canvas inside has taken its new size

    def _refit(self) -> None:
        if self.framed and self.points is not None and self.qt_viewer is not None:
            self.frame_points()

    # --- legend -----------------------------------------------------------------------------------
    def set_legend(self, entries) -> None:
        """``entries``: (name, colour, annotated, predicted) per class, in order; a class with no cell is left
        out, the unannotated cells (colour of the points without a class) are always shown."""
        from html import escape

        parts = []
        for name, color, annotated, predicted in entries:
            if not annotated and not predicted:
                continue
            words = escape(count_text(name, annotated, predicted)).replace(" ", "&nbsp;")
            parts.append(f'<span style="color:{color}">&#9679;</span>&nbsp;{words}')
        self.legend.setText("&nbsp;&nbsp; ".join(parts))

    # --- layer ------------------------------------------------------------------------------------
    def iter_make_layers(self, big: bool):
        """Make the canvas' layers that are not there yet, one per turn of the event loop (a generator for a
        dock's display slices: napari takes a few tenths of a second to make each); ``set_points`` then only
        fills them."""
        if self.preview is None:
            self.preview = self.model.add_shapes(name="selection outline", edge_color="yellow",
                                                 face_color="transparent", edge_width=self._size / 3)
            yield
        if self.points is not None and self.points not in self.model.layers:
            self.points = None
        if self.points is None:
            self._add_points("UMAP", np.zeros((0, 2)), None, "white", 1.0, visible=False)
            yield
        if self.marks is None:
            self._draw_selection()
            yield
        if big and self.density is None:
            yield from self._iter_big_layers()

    def _add_points(self, name, data, features, face_color, size, visible) -> None:
        colour = {} if face_color is None else {"face_color": face_color}
        self.points = self.model.add_points(data, name=name, features=features, size=size, border_width=0,
                                            visible=visible, **colour)
        self.model.layers.move(self.model.layers.index(self.points), 0)
        # positions are data: whatever switches the layer to napari's add/select (drag) modes, undo it
        self.points.events.mode.connect(self._keep_pan_zoom)
        # no napari highlight (the user's global colour, blue by default, like the "normal" class):
        # the rings of ``marks`` show the selection instead
        self.points.update_highlight_visibility = self._no_napari_highlight
        self._no_napari_highlight(False)
        self.points.selected_data.events.items_changed.connect(self._on_points_selection)

    @property
    def features(self):
        """The map's features, one row per point (above the budget the canvas' own table: the hidden Points
        layer then holds no points)."""
        return self._features if self.big else self.points.features

    def set_points(self, name: str, data: np.ndarray, features, face_color, size: float, draw: bool = True):
        """Create or update the Points layer ``name`` (positions are (row, col) = (-UMAP2, UMAP1)); above
        ``point_budget`` points it holds none (making a Points layer of 10^6 took napari seconds): the view is
        drawn as a density image (``update_view``) from the canvas' own ``data`` and ``features``. ``draw``:
        frame and draw the view now (else the caller's next display slice calls ``frame_points`` and
        ``update_view``)."""
        big = len(data) > self.point_budget
        self.big, self._size = big, float(size)
        for _ in self.iter_make_layers(big):
            pass
        if self.points.name != name:  # another map: renamed and updated in place
            self.points.name = name  # (removing a layer costs napari a full garbage collection: ~1 s)
        self.data = np.asarray(data, dtype=np.float32)
        self.colors = _rgba(face_color, len(self.data))
        self._selected = np.zeros(0, np.int64)
        self._features = features if big else None
        self._bins = None
        self.points.selected_data = set()
        self.points.visible = not big
        self.points.data = np.zeros((0, 2)) if big else data
        if features is not None:
            self.points.features = features.iloc[:0] if big else features
        if not big:
            self.points.face_color = face_color
        self.points.size = size
        self.preview.current_edge_width = size / 3
        self._ring_size = size * SELECTION_RING
        self._put_big_layers(big)
        self._draw_selection()
        self.model.layers.selection.active = self.points
        self.set_mode(self.mode)
        if draw:
            self.frame_points()
            self.update_view()
        return self.points

    def set_colors(self, face_color) -> None:
        """New colours of the points (classes, predictions changed)."""
        if self.points is None:
            return
        self.colors = _rgba(face_color, len(self.data))
        if self.big:
            self.update_view()
        else:
            self.points.face_color = face_color
            self.points.refresh()

    def _iter_big_layers(self):
        """The density image, the selection image and the near points, one per turn of the event loop."""
        blank = np.zeros((1, 1, 4), np.uint8)
        for attr, make in (("density", lambda: self.model.add_image(blank, name="map density", rgb=True)),
                           ("chosen", lambda: self.model.add_image(blank, name="selected density", rgb=True)),
                           # on screen at most NEAR_PIXELS across however far the user zooms in (sizes are in
                           # map units: 20,000 points of 400 px each took software OpenGL minutes to draw)
                           ("near", lambda: self.model.add_points(np.zeros((0, 2)), name="points in view",
                                                                  border_width=0, size=self._size,
                                                                  canvas_size_limits=(2, NEAR_PIXELS)))):
            layer = make()
            layer.visible = False
            setattr(self, attr, layer)
            # above the hidden points, in this order
            self.model.layers.move(self.model.layers.index(layer), self.model.layers.index(self.points) + 1 +
                                   ["density", "chosen", "near"].index(attr))
            yield

    def _put_big_layers(self, big: bool) -> None:
        """Make (above the budget) or empty the density image, the selection image and the near points."""
        if big and self.density is None:
            for _ in self._iter_big_layers():
                pass
        if self.density is not None:
            for layer in (self.density, self.chosen, self.near):
                layer.visible = False
            self._near_rows = np.zeros(0, np.int64)
            self._grid = None

    def _view_rect(self) -> tuple[tuple, tuple]:
        """((row0, row1, col0, col1) in world units, (height, width) in screen pixels) of the view."""
        h, w = (int(v) for v in self.model.canvas.size)
        if h < 2 or w < 2:  # not laid out yet: the whole map
            lo, hi = self.data.min(0), self.data.max(0)
            return (lo[0], hi[0], lo[1], hi[1]), (512, 512)
        cy, cx = self.camera.center[-2:]
        z = float(self.camera.zoom)
        return (cy - h / 2 / z, cy + h / 2 / z, cx - w / 2 / z, cx + w / 2 / z), (h, w)

    def _view_moved(self, event=None) -> None:
        if self.big:
            self._view_timer.start(VIEW_DELAY_MS)  # restarted by each event: drawn once the view settles

    def update_view(self) -> None:
        """Above the budget: draw the view (and a margin around it) as real points when it holds fewer
        than the budget, else as the density image."""
        from napari_reddino._widgets._common import one_refresh
        from napari_reddino._widgets.umap_density import bin_of, density_of, grid, in_rect

        if not self.big or self.qt_viewer is None or self.density is None:
            return
        self._view_timer.stop()  # drawn now: a redraw the view's last move asked for is moot
        (r0, r1, c0, c1), (h, w) = self._view_rect()
        m = VIEW_MARGIN
        rect = (r0 - m * (r1 - r0), r1 + m * (r1 - r0), c0 - m * (c1 - c0), c1 + m * (c1 - c0))
        rows = in_rect(self.data, rect)
        if len(rows) <= self.point_budget:
            self._near_rows, self._grid = rows, None
            with one_refresh(self.near, visible=True):
                self.near.data = self.data[rows]
                self.near.face_color = self.colors[rows] if len(rows) else "white"
                self.near.size = self._size
            self.density.visible = False
        else:
            self._near_rows = np.zeros(0, np.int64)
            self.near.visible = False
            bins, size, origin = self._grid = grid(rect, (h * (1 + 2 * m), w * (1 + 2 * m)))
            key = (bins, size, origin, len(rows))
            if self._bins is None or self._bins[0] != key:  # new colours on the same view: the same bins
                self._bins = (key, *bin_of(self.data, rows, bins, size, origin))
            self._put_image(self.density, density_of(*self._bins[1:], self.colors, bins))
        self._draw_selection()

    def _no_napari_highlight(self, visible=False) -> None:
        from napari.layers import Points

        Points.update_highlight_visibility(self.points, False)

    def _on_points_selection(self, event=None) -> None:
        self._draw_selection()
        self.selection_changed.emit()

    def _draw_selection(self, event=None) -> None:
        """Ring the selected points (a layer above the points that takes no clicks); above the budget, the
        selected points of the view ringed, or the bins holding them lit in the density image."""
        if self.points is None:
            return
        if self.big:
            shown = self._near_rows[np.isin(self._near_rows, self._selected, assume_unique=True)]
            data = self.data[shown] if len(shown) else np.zeros((0, 2))  # (no map yet on a first big one)
            self._draw_chosen()
        else:
            rows = np.array(sorted(self.points.selected_data), dtype=int)
            data = np.asarray(self.points.data)[rows] if len(rows) else np.zeros((0, 2))
        if self.marks is None:
            self.marks = self.model.add_points(data, name="selected cells", face_color="transparent",
                                               border_color=SELECTION_COLOR, border_width=0.22,
                                               border_width_is_relative=True, size=self._ring_size)
            self.model.layers.selection.active = self.points
        elif not (self.big and not len(data) and not len(self.marks.data)):  # (no rings, none to draw: as is)
            self.marks.data = data
            self.marks.size = self._ring_size
            self.marks.border_color = SELECTION_COLOR
            self.marks.face_color = "transparent"
        limits = (2, NEAR_PIXELS * SELECTION_RING) if self.big else (2, 10000)  # capped as the near points
        if tuple(self.marks.canvas_size_limits) != limits:
            self.marks.canvas_size_limits = limits

    def _draw_chosen(self) -> None:
        """The density view's selection: the bins holding a selected point, in the selection colour."""
        from napari_reddino._widgets.umap_density import mask_image
        from napari_reddino.style import rgba

        if self.chosen is None:
            return
        if self._grid is None or not len(self._selected):
            self.chosen.visible = False
            return
        bins, size, origin = self._grid
        colour = np.asarray(rgba(SELECTION_COLOR), np.float32) * (1, 1, 1, SELECTED_ALPHA)
        self._put_image(self.chosen, mask_image(self.data, self._selected, colour, bins, size, origin))

    def _put_image(self, layer, image) -> None:
        """Show ``image`` on the current grid: the data alone when the grid is where the layer is already (a
        new scale or translate makes napari recompute the scene's extent: 0.4 s at 10^6 points here)."""
        from napari_reddino._widgets._common import one_refresh

        _, size, origin = self._grid
        translate = (origin[0] + size[0] / 2, origin[1] + size[1] / 2)
        if layer.visible and layer.data.shape == image.shape and np.allclose(layer.scale[-2:], size) and \
                np.allclose(layer.translate[-2:], translate):
            layer.data = image
            return
        with one_refresh(layer, visible=True):
            layer.data = image
            layer.scale = size
            layer.translate = translate

    def _keep_pan_zoom(self, event=None) -> None:
        if self.points is not None and str(self.points.mode) != "pan_zoom":
            self.points.mode = "pan_zoom"
            self.set_mode(self.mode)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} not in {list(MODES)}")
        self.mode = mode
        for button, key in zip(self._buttons.buttons(), MODES):
            button.setChecked(key == mode)
        pan = mode == "pan_zoom"
        if self.points is not None:
            self.points.mode = "pan_zoom"
            if hasattr(self.points, "mouse_pan"):
                self.points.mouse_pan = pan
        self.camera.mouse_pan = pan

    # --- selection --------------------------------------------------------------------------------
    def selected_rows(self) -> np.ndarray:
        """The selected rows, sorted (int64)."""
        if self.points is None:
            return np.zeros(0, np.int64)
        if self.big:
            return self._selected.copy()
        return np.array(sorted(self.points.selected_data), dtype=np.int64)

    def select(self, indices, add: bool = False, toggle: bool = False) -> None:
        if self.points is None:
            return
        if self.big:
            new = np.unique(np.asarray(indices, dtype=np.int64).ravel())
            if toggle:
                new = np.setxor1d(self._selected, new, assume_unique=True)
            elif add:
                new = np.union1d(self._selected, new)
            self._selected = new
            self._draw_selection()
            self.selection_changed.emit()
            return
        new = {int(i) for i in np.asarray(indices, dtype=int).ravel()}
        if toggle:
            new = set(self.points.selected_data) ^ new
        elif add:
            new |= set(self.points.selected_data)
        self.points.selected_data = new

    def select_in_polygon(self, vertices, add: bool = False) -> np.ndarray:
        """Select the points inside ``vertices`` ((row, col) in the canvas' world coordinates)."""
        if self.points is None:
            return np.zeros(0, dtype=int)
        inside = points_in_polygon(self.data if self.big else self.points.data, vertices)
        self.select(inside, add=add)
        return inside

    def point_at(self, position) -> int | None:
        """The point under ``position`` (world coordinates): napari's own lookup, or above the budget the
        nearest point within ``CLICK_PIXELS`` screen pixels (or its own size)."""
        if not self.big:
            return self.points.get_value(position, world=True)
        from napari_reddino._widgets.umap_density import nearest

        radius = max(self._size / 2, CLICK_PIXELS / max(float(self.camera.zoom), 1e-12))
        return nearest(self.data, position, radius)

    def _show_outline(self, vertices, shape_type: str) -> None:
        if self.preview is None:
            return
        # one update: the shape with its type (data, then shape_type, made the shape twice)
        self.preview.data = [] if vertices is None else [(np.asarray(vertices, dtype=float), shape_type)]
        if self.model.layers.selection.active is not self.points:  # (setting it again is not free)
            self.model.layers.selection.active = self.points

    def _on_drag(self, viewer, event):
        if self.points is None or self.mode == "pan_zoom" or event.button != 1:
            return
        add = "Shift" in event.modifiers
        start_pos = np.asarray(event.pos, dtype=float)
        start = np.asarray(event.position, dtype=float)[-2:]
        path = [start]
        dragged = False
        drawn, cost, timing = 0.0, 0.0, False  # when the outline was last drawn, and what that cost
        yield
        while event.type == "mouse_move":
            now = time.perf_counter()
            if timing:  # the outline's update and the repaint that followed it, until this move came
                cost, timing = now - drawn, False
            here = np.asarray(event.position, dtype=float)[-2:]
            path.append(here)
            dragged = dragged or np.linalg.norm(np.asarray(event.pos) - start_pos) > DRAG_PIXELS
            if dragged and now - drawn >= max(PREVIEW_SECONDS, cost / PREVIEW_SHARE):
                drawn, timing = now, True
                if self.mode == "lasso":
                    self._show_outline(np.array(path), "path")
                else:
                    self._show_outline(box_polygon(start, here), "rectangle")
            yield
        end = np.asarray(event.position, dtype=float)[-2:]
        self._show_outline(None, "path")
        if not dragged:
            hit = self.point_at(event.position)
            if hit is not None:
                self.select([hit], toggle=add)
            elif not add:
                self.select([])
            return
        polygon = np.array(path + [end]) if self.mode == "lasso" else box_polygon(start, end)
        self.select_in_polygon(polygon, add=add)

    # --- teardown ---------------------------------------------------------------------------------
    def close_canvas(self) -> None:
        """Release the embedded viewer (napari counts live QtViewers; tests check that none leak)."""
        self._view_timer.stop()
        if self.qt_viewer is not None:
            self.model.mouse_drag_callbacks.clear()
            self.model.layers.clear()
            self.qt_viewer.close()
            self.qt_viewer.setParent(None)
            self.qt_viewer.deleteLater()
            self.qt_viewer = None
            self.points = self.preview = self.marks = self.density = self.chosen = self.near = None
