"""Dock "Segment cells": an image layer → Labels layer ``<image> cells`` with a per-cell features table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox, LineEdit, SpinBox
from napari.utils.notifications import show_info

from napari_reddino._widgets._common import (
    StepWidget, follow_image_layers, image_layer_choices, image_layer_data, upsert_layer)

if TYPE_CHECKING:
    import napari


class SegmentWidget(StepWidget):
    title = "Segment cells"

    def __init__(self, napari_viewer: "napari.Viewer"):
        super().__init__(napari_viewer)
        self.image = ComboBox(label="image", choices=lambda *_: image_layer_choices(self.viewer), nullable=True)
        self.backend = ComboBox(label="method", choices=["threshold", "cellpose"], value="threshold")
        self.backend.tooltip = "threshold: stain colour + watershed, no weights, fast; cellpose: Cellpose-SAM"
        self.diameter = FloatSpinBox(label="cell diameter (px, 0 = auto)", min=0, max=1000, value=0)
        self.drop_border = CheckBox(label="drop cells touching the border", value=False)
        self.cp_model = LineEdit(label="cellpose model", value="cpsam")
        self.cp_model.tooltip = "a cellpose model name (cpsam, cpsam_v2, ...) found in its model folder"
        self.cp_weights = FileEdit(label="cellpose weights file", mode="r", nullable=True)
        self.cp_download = CheckBox(label="download the model if missing", value=False)
        self.flow_threshold = FloatSpinBox(label="flow threshold", min=0, max=3, step=0.05, value=0.4)
        self.cellprob_threshold = FloatSpinBox(label="cell probability threshold", min=-6, max=6, step=0.25,
                                               value=0.0)
        self.min_size = SpinBox(label="min size (px)", min=0, max=100000, value=15)
        self.precision = ComboBox(label="precision", choices=["auto", "fp32", "bf16"], value="auto")
        self._cellpose_widgets = [self.cp_model, self.cp_weights, self.cp_download, self.flow_threshold,
                                  self.cellprob_threshold, self.min_size, self.precision]
        self.form.extend([self.image, self.backend, self.diameter, self.drop_border, *self._cellpose_widgets])
        self.backend.changed.connect(self._show_backend_options)
        self._show_backend_options()
        self._job = None
        follow_image_layers(napari_viewer, self.image)

    def _show_backend_options(self, *_):
        for w in self._cellpose_widgets:
            w.visible = self.backend.value == "cellpose"

    def prepare(self):
        layer = self.image.value
        data = image_layer_data(layer)
        opts = {"diameter": float(self.diameter.value) or None}
        if self.backend.value == "cellpose":
            weights = self.cp_weights.value
            weights = str(weights) if weights and str(weights) not in ("", ".") else None
            if not self.cp_download.value:  # missing weights: say so now, before any work starts
                from napari_reddino.segment.cellpose import resolve_weights

                resolve_weights(self.cp_model.value.strip() or None, weights)
            opts.update(model=self.cp_model.value.strip() or None, weights=weights,
                        download=bool(self.cp_download.value), precision=self.precision.value,
                        flow_threshold=float(self.flow_threshold.value),
                        cellprob_threshold=float(self.cellprob_threshold.value), min_size=int(self.min_size.value))
        self._job = dict(data=data, name=layer.name, backend=self.backend.value, opts=opts,
                         drop_border=bool(self.drop_border.value), scale=tuple(layer.scale[-2:]),
                         translate=tuple(layer.translate[-2:]))
        return True

    def work(self):
        from napari_reddino.segment import iter_segment_cells

        job = self._job
        labels, table = yield from iter_segment_cells(job["data"], job["backend"], job["drop_border"],
                                                      **job["opts"])
        return job, labels, table

    def show(self, result) -> None:
        job, labels, table = result
        name = f"{job['name']} cells"
        upsert_layer(self.viewer, name, "labels", labels, features=table, scale=job["scale"],
                     translate=job["translate"],
                     metadata={"source_image": job["name"], "segmentation": {
                         "backend": job["backend"], **{k: v for k, v in job["opts"].items() if k != "download"}}})
        n = int(len(table))
        if n == 0:
            show_info(f"Segment cells: no cells found in {job['name']!r} (empty or unstained image?)")
        else:
            white = int(table["white_cell"].sum())
            show_info(f"Segment cells: {n} cells in {job['name']!r}" + (f" ({white} white)" if white else ""))
