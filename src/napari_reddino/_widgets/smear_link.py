"""Rows of the pooled cell table ↔ cells on the smear: highlight layers, class colours, click lookup.

A selection is drawn as an additive yellow Image layer ``<labels> selection`` holding the selected cells'
outlines: a look-up table over precomputed outline pixels (``lut[rings]``) and an 8-bit texture upload.
A Labels layer with a direct colormap was ~10x slower (napari maps every pixel through the colormap).
"""

from __future__ import annotations

import numpy as np

HIGHLIGHT_COLOR = "yellow"
SOURCE_KWARGS = ("scale", "translate")


def warm_class_colours() -> None:
    """Compile napari's numba code for a direct label colormap on int32 cell codes (the ``classes`` layer),
    which otherwise takes about a second of the GUI thread the first time the UMAP is shown. napari's
    private API, so any failure only leaves the compile to the first draw."""
    from napari.utils.colormaps import DirectLabelColormap

    cmap = DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: "red", 2: "blue"})
    cmap._data_to_texture(np.arange(16, dtype=np.int32).reshape(4, 4) % 3)


def warm_outline_shapes() -> None:
    """Compile napari's numba code for Shapes (the UMAP canvas' selection outline is one), which napari
    otherwise compiles on the GUI thread when the canvas first appears: seconds on a fresh install."""
    from napari.layers.shapes._accelerated_triangulate_dispatch import warmup_numba_cache

    warmup_numba_cache()


class SmearLink:
    def __init__(self, viewer, source_layers: list[str], source_of_row: np.ndarray, labels: np.ndarray):
        self.viewer = viewer
        self.sources = list(source_layers)
        self.source_of_row = np.asarray(source_of_row, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self._rows_of_source = [np.flatnonzero(self.source_of_row == s) for s in range(len(self.sources))]
        self._row_lut = []  # per source: label -> row (-1 where no row)
        for s in range(len(self.sources)):
            data = self._labels_data(s)
            lut = np.full(int(max(data.max(initial=0), self.labels[self._rows_of_source[s]].max(initial=0))) + 1,
                          -1, dtype=np.int64)
            rows = self._rows_of_source[s]
            lut[self.labels[rows]] = rows
            self._row_lut.append(lut)
        self._shown: list[np.ndarray | None] = [None] * len(self.sources)
        self._wanted = [np.zeros(0, np.int64) for _ in self.sources]
        self._ring_cache: list[np.ndarray | None] = [None] * len(self.sources)
        self._watching: dict = {}
        self._codes: np.ndarray | None = None
        self._colormap = None
        self._classes_stale = [False] * len(self.sources)

    def _layer(self, s):
        name = self.sources[s]
        return self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401 (no .get)

    def _labels_data(self, s) -> np.ndarray:
        layer = self._layer(s)
        return np.asarray(layer.data) if layer is not None else np.zeros((1, 1), np.int32)

    def _put(self, s, suffix: str, data: np.ndarray, kind: str = "labels", **create_kwargs):
        """Update the derived layer ``<source> <suffix>`` in place, or add it over the source."""
        name = f"{self.sources[s]} {suffix}"
        if name in self.viewer.layers:
            self.viewer.layers[name].data = data
            return self.viewer.layers[name]
        source = self._layer(s)
        kwargs = {k: getattr(source, k) for k in SOURCE_KWARGS} if source is not None else {}
        active = self.viewer.layers.selection.active
        layer = getattr(self.viewer, f"add_{kind}")(data, name=name, **kwargs, **create_kwargs)
        if active is not None:  # adding a layer must not steal the user's active layer
            self.viewer.layers.selection.active = active
        return layer

    # --- rows -> smear ----------------------------------------------------------------------------
    def _rings(self, s) -> np.ndarray:
        """Each cell's 2-pixel inner outline carrying its label (0 elsewhere); computed once per source."""
        if self._ring_cache[s] is None:
            from scipy import ndimage as ndi

            labels = self._labels_data(s)
            edge = (ndi.grey_erosion(labels, size=5) != labels) | (ndi.grey_dilation(labels, size=5) != labels)
            self._ring_cache[s] = np.where(edge & (labels > 0), labels, 0).astype(labels.dtype, copy=False)
        return self._ring_cache[s]

    def highlight(self, rows) -> None:
        """Outline the cells of ``rows`` on their smears."""
        rows = np.asarray(rows, dtype=np.int64)
        for s in range(len(self.sources)):
            mine = rows[self.source_of_row[rows] == s] if len(rows) else rows
            self._wanted[s] = np.sort(self.labels[mine])
        self._draw_visible()

    def color_cells(self, codes: np.ndarray, colors: dict[int, np.ndarray]) -> None:
        """Paint each row's cell with ``colors[codes[row]]`` (code 0 = unpainted) on ``<source> classes``."""
        from napari.utils.colormaps import DirectLabelColormap

        self._colormap = DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", **colors})
        self._codes = np.asarray(codes, dtype=np.int32)
        self._classes_stale = [True] * len(self.sources)
        self._draw_visible()

    def _draw_visible(self) -> None:
        """Redraw visible smears now; a hidden smear is redrawn when it is shown (users flip through
        smears one at a time, and redrawing every hidden one would multiply the cost)."""
        for s in range(len(self.sources)):
            layer = self._layer(s)
            if layer is not None and layer.visible:
                self._draw(s)
            elif layer is not None and s not in self._watching:
                self._watching[s] = lambda event=None, s=s: self._draw(s) if self._layer(s).visible else None
                layer.events.visible.connect(self._watching[s])

    def disconnect(self) -> None:
        for s, callback in self._watching.items():
            layer = self._layer(s)
            if layer is not None:
                layer.events.visible.disconnect(callback)
        self._watching.clear()

    def _draw(self, s) -> None:
        if self._codes is not None and self._classes_stale[s]:
            self._classes_stale[s] = False
            rows = self._rows_of_source[s]
            lut = np.zeros(len(self._row_lut[s]), dtype=np.int32)
            lut[self.labels[rows]] = self._codes[rows]
            data = lut[np.clip(self._labels_data(s), 0, len(lut) - 1)]
            self._put(s, "classes", data, colormap=self._colormap, opacity=0.6)
        wanted = self._wanted[s]
        if self._shown[s] is not None and np.array_equal(self._shown[s], wanted):
            return
        self._shown[s] = wanted
        lut = np.zeros(len(self._row_lut[s]), dtype=np.uint8)
        lut[wanted] = 1
        mask = lut[np.clip(self._rings(s), 0, len(lut) - 1)]
        self._put(s, "selection", mask, kind="image", colormap=HIGHLIGHT_COLOR, blending="additive",
                  contrast_limits=(0, 1))

    # --- smear -> rows ----------------------------------------------------------------------------
    def row_at(self, position) -> int | None:
        """The table row of the cell under ``position`` (world coordinates) on a visible source."""
        for s in range(len(self.sources)):
            layer = self._layer(s)
            if layer is None or not layer.visible:
                continue
            value = layer.get_value(position, world=True)
            if isinstance(value, tuple):  # multiscale answers (level, value)
                value = value[-1]
            if value is None or int(value) <= 0 or int(value) >= len(self._row_lut[s]):
                continue
            row = int(self._row_lut[s][int(value)])
            if row >= 0:
                return row
        return None
