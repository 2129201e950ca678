"""Rows of the pooled cell table ↔ cells on the smear: highlight layers, class colours, click lookup.

Selections are drawn by a look-up table over each source Labels layer (``lut[labels]``), which keeps a
10k-cell selection well under the 200 ms the issue allows.
"""

from __future__ import annotations

import numpy as np

HIGHLIGHT_COLOR = "yellow"
SOURCE_KWARGS = ("scale", "translate")


class SmearLink:
    def __init__(self, viewer, source_layers: list[str], source_of_row: np.ndarray, labels: np.ndarray):
        self.viewer = viewer
        self.sources = list(source_layers)
        self.source_of_row = np.asarray(source_of_row, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self._rows_of_source = [np.flatnonzero(self.source_of_row == s) for s in range(len(self.sources))]
        self._row_lut = []  # per source: label -> row (-1 where no row)
        for s, name in enumerate(self.sources):
            data = self._labels_data(s)
            lut = np.full(int(max(data.max(initial=0), self.labels[self._rows_of_source[s]].max(initial=0))) + 1,
                          -1, dtype=np.int64)
            rows = self._rows_of_source[s]
            lut[self.labels[rows]] = rows
            self._row_lut.append(lut)
        self._shown: list[frozenset | None] = [None] * len(self.sources)

    def _layer(self, s):
        name = self.sources[s]
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _labels_data(self, s) -> np.ndarray:
        layer = self._layer(s)
        return np.asarray(layer.data) if layer is not None else np.zeros((1, 1), np.int32)

    def _put(self, s, suffix: str, data: np.ndarray, contour: int = 0, **create_kwargs):
        """Update the derived Labels layer ``<source> <suffix>`` in place, or add it over the source."""
        name = f"{self.sources[s]} {suffix}"
        if name in self.viewer.layers:
            self.viewer.layers[name].data = data
            return self.viewer.layers[name]
        source = self._layer(s)
        kwargs = {k: getattr(source, k) for k in SOURCE_KWARGS} if source is not None else {}
        active = self.viewer.layers.selection.active
        layer = self.viewer.add_labels(data, name=name, **kwargs, **create_kwargs)
        layer.contour = contour
        if active is not None:  # adding a layer must not steal the user's active layer
            self.viewer.layers.selection.active = active
        return layer

    # --- rows -> smear ----------------------------------------------------------------------------
    def highlight(self, rows) -> None:
        """Outline the cells of ``rows`` on their smears (only sources whose selection changed)."""
        from napari.utils.colormaps import DirectLabelColormap

        rows = np.asarray(sorted(rows), dtype=np.int64)
        for s in range(len(self.sources)):
            if self._layer(s) is None:
                continue
            mine = rows[self.source_of_row[rows] == s] if len(rows) else rows
            key = frozenset(mine.tolist())
            if key == self._shown[s]:
                continue
            self._shown[s] = key
            lut = np.zeros(len(self._row_lut[s]), dtype=np.int32)
            ids = self.labels[mine]
            lut[ids] = ids
            data = self._labels_data(s)
            self._put(s, "selection", lut[np.clip(data, 0, len(lut) - 1)], contour=2, opacity=1.0,
                      colormap=DirectLabelColormap(color_dict={None: HIGHLIGHT_COLOR, 0: "transparent"}))

    def color_cells(self, codes: np.ndarray, colors: dict[int, np.ndarray]) -> None:
        """Paint each row's cell with ``colors[codes[row]]`` (code 0 = unpainted) on ``<source> classes``."""
        from napari.utils.colormaps import DirectLabelColormap

        colormap = DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", **colors})
        for s in range(len(self.sources)):
            if self._layer(s) is None:
                continue
            rows = self._rows_of_source[s]
            lut = np.zeros(len(self._row_lut[s]), dtype=np.int32)
            lut[self.labels[rows]] = np.asarray(codes)[rows]
            data = lut[np.clip(self._labels_data(s), 0, len(lut) - 1)]
            self._put(s, "classes", data, colormap=colormap, opacity=0.6)

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
