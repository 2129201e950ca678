"""Dock "Segment cells": an image layer → Labels layer ``<image> cells`` with a per-cell features table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox, Label, LineEdit, SpinBox
from napari.utils.notifications import show_info

from napari_reddino.segment.types import segmentation_summary

from napari_reddino._widgets._common import (
    TIPS, StepWidget, display_labels, follow_image_layers, image_layer_choices, image_layer_data)
from napari_reddino._widgets.levels import LevelBox, level_placement
from napari_reddino.segment import BACKENDS, DEFAULT_BACKEND

if TYPE_CHECKING:
    import napari


class SegmentWidget(StepWidget):
    title = "Segment cells"
    tab = "1. Segment"  # its tab in the RedDino panel
    run_tip = "Find every cell on the image and measure it; the cells appear as a new '<image> cells' layer"

    def __init__(self, napari_viewer: "napari.Viewer"):
        super().__init__(napari_viewer)
        self.image = ComboBox(label="image", choices=lambda *_: image_layer_choices(self.viewer), nullable=True)
        self.backend = ComboBox(label="method", choices=list(BACKENDS),
                                value=DEFAULT_BACKEND)
        self.image.tooltip = TIPS["image"]
        self.backend.tooltip = TIPS["backend"]
        self.diameter = FloatSpinBox(label="cell diameter (px, 0 = auto)", min=0, max=1000, value=0)
        self.diameter.tooltip = TIPS["diameter"]
        self.cp_auto_diameter = CheckBox(label="give Cellpose the measured cell diameter", value=False)
        self.cp_auto_diameter.tooltip = ("Cellpose-SAM finds the scale itself; tick to pass it the red-cell "
                                         "diameter measured from the image instead (when diameter is 0).")
        self.drop_border = CheckBox(label="drop cells touching the border", value=False)
        self.drop_border.tooltip = TIPS["drop_border"] + "; the remaining cells are numbered again"
        self.cp_model = LineEdit(label="cellpose model", value="cpsam")
        self.cp_model.tooltip = ("Name of the Cellpose model: cpsam (Cellpose-SAM, the default) or another one "
                                 "already on this computer")
        self.cp_weights = FileEdit(label="cellpose weights file", mode="r", nullable=True)
        self.cp_weights.tooltip = ("A Cellpose model file of your own (for example one you trained); empty: the "
                                   "model named above")
        self.cp_download = CheckBox(label="download the model if missing", value=False)
        self.cp_download.tooltip = ("Allow fetching the Cellpose model from the internet when it is not on this "
                                    "computer (a large file, fetched once)")
        self.flow_threshold = FloatSpinBox(label="flow threshold", min=0, max=3, step=0.05, value=0.4)
        self.flow_threshold.tooltip = ("How far a found shape may differ from what Cellpose expects of a cell: "
                                       "raise it if cells are missed, lower it if odd shapes are kept (0.4)")
        self.cellprob_threshold = FloatSpinBox(label="cell probability threshold", min=-6, max=6, step=0.25,
                                               value=0.0)
        self.cellprob_threshold.tooltip = ("How sure Cellpose must be that a pixel belongs to a cell: lower it "
                                           "to keep pale or faint cells, raise it if background is taken "
                                           "for cells (0)")
        self.min_size = SpinBox(label="min size (px)", min=0, max=100000, value=15)
        self.min_size.tooltip = "Objects with a smaller area, in pixels, are dropped as debris"
        self.precision = ComboBox(label="precision", choices=["auto", "fp32", "bf16"], value="auto")
        self.precision.tooltip = TIPS["precision"]
        self._cellpose_widgets = [self.cp_auto_diameter, self.cp_model, self.cp_weights, self.cp_download, self.flow_threshold,
                                  self.cellprob_threshold, self.min_size, self.precision]
        self.found = Label(label="found", value="")
        self.found.native.setWordWrap(True)  # a long summary must wrap, not widen the dock over the canvas
        self.level = LevelBox(self.image)  # shown for a multiscale image only
        self.form.extend([self.image, self.level.combo, self.backend, self.diameter, self.drop_border,
                          *self._cellpose_widgets, self.found])
        self.backend.changed.connect(self._show_backend_options)
        self._show_backend_options()
        self._job = None
        follow_image_layers(napari_viewer, self.image)
        self.level.refresh()

    def _show_backend_options(self, *_):
        for w in self._cellpose_widgets:
            w.visible = self.backend.value == "cellpose"

    def prepare(self):
        layer, level = self.image.value, self.level.value
        data = image_layer_data(layer, level)  # lazy for a multiscale level: read in the worker
        opts = {"diameter": float(self.diameter.value) or "auto"}
        if self.backend.value == "cellpose":
            if opts["diameter"] == "auto" and not self.cp_auto_diameter.value:
                opts["diameter"] = None  # Cellpose-SAM's own scale
            weights = self.cp_weights.value
            weights = str(weights) if weights and str(weights) not in ("", ".") else None
            if not self.cp_download.value:  # missing weights: say so now, before any work starts
                from napari_reddino.segment.cellpose import resolve_weights

                resolve_weights(self.cp_model.value.strip() or None, weights)
            opts.update(model=self.cp_model.value.strip() or None, weights=weights,
                        download=bool(self.cp_download.value), precision=self.precision.value,
                        flow_threshold=float(self.flow_threshold.value),
                        cellprob_threshold=float(self.cellprob_threshold.value), min_size=int(self.min_size.value))
        scale, translate = level_placement(layer, level)  # the cells lie on the slide, whatever the level
        self._job = dict(data=data, name=layer.name, backend=self.backend.value, opts=opts,
                         drop_border=bool(self.drop_border.value), scale=scale, translate=translate, level=level)
        return True

    def work(self):
        from napari_reddino._widgets.layers import cell_outlines
        from napari_reddino._widgets.smear_link import cells_look
        from napari_reddino.segment import iter_segment_cells
        from napari_reddino.style import with_label_index

        job = self._job
        labels, table = yield from iter_segment_cells(job["data"], job["backend"], job["drop_border"],
                                                      **job["opts"])
        labels = display_labels(labels)
        features = with_label_index(table)
        # the GUI thread's share, prepared here: the outlines' colours down to napari's table of them, and the
        # outlines themselves
        look = cells_look(features, dtype=labels.dtype)
        return job, labels, table, features, look, cell_outlines(labels, look["contour"])

    def show(self, result):
        """A generator (``StepWidget`` runs it in slices): the cells layer, then its marks, then its legend."""
        job, labels, table, features, look, outlines = result
        from napari_reddino._widgets.layers import iter_put_cells_layer
        from napari_reddino._widgets.smear_link import iter_draw_cells

        message = segmentation_summary(table, job["name"])
        self.found.value = message
        show_info(f"Segment cells: {message}")
        layer = yield from iter_put_cells_layer(
            self.viewer, job["name"], labels, features=features, look=look, scale=job["scale"],
            translate=job["translate"], outlines=outlines, metadata={"source_image": job["name"], "source_level": job["level"],
                                                  "segmentation": {
                "backend": job["backend"], **{k: v for k, v in job["opts"].items() if k != "download"},
                "estimated_diameter": table.attrs.get("diameter")}})
        # named rings on the other objects, then the legend (the outlines are drawn)
        yield from iter_draw_cells(self.viewer, layer, look=look)
