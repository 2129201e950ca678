"""Dock "PCA overlay": an image layer + a model → RGB layer ``<image> PCA`` of the patch features'
first three principal components, placed over the image (opacity 0.5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox
from napari.utils.notifications import show_info, show_warning

from napari_reddino._widgets._common import (
    TIPS, StepWidget, follow_image_layers, image_layer_choices, image_layer_data)
from napari_reddino._widgets.levels import LevelBox, level_placement
from napari_reddino.images import InputError
from napari_reddino.pca_resolution import MAX_FACTOR

if TYPE_CHECKING:
    import napari

FIT_THIS, FIT_REUSE = "this image", "reuse last fit"


class PCAWidget(StepWidget):
    title = "PCA overlay"
    tab = "3. PCA"  # its tab in the RedDino panel
    run_tip = ("Colour the image by what the RedDino model sees in it: regions that look alike get alike "
               "colours (shown as '<image> PCA', half transparent over the image)")

    def __init__(self, napari_viewer: "napari.Viewer"):
        super().__init__(napari_viewer)
        from napari_reddino.models import default_spec

        self.image = ComboBox(label="image", choices=lambda *_: image_layer_choices(self.viewer), nullable=True)
        self.model_spec = LineEdit(label="model", value=default_spec())
        self.image.tooltip = TIPS["image"]
        self.model_spec.tooltip = TIPS["model"]
        self.resolution = FloatSpinBox(label="cell resolution (x, 0 = auto)", min=0, max=MAX_FACTOR, step=0.5,
                                       value=0)
        self.resolution.tooltip = TIPS["cell_resolution"]
        self.overlap = SpinBox(label="window overlap", min=0, max=15, value=0)
        self.overlap.tooltip = ("The model reads a large image in windows, one colour per small square (14 px "
                                "for RedDino); "
                                "neighbouring windows can share this many squares so that the colours do not "
                                "jump at window edges. 0 is fastest")
        self.fit_mode = ComboBox(label="fit", choices=[FIT_THIS, FIT_REUSE], value=FIT_THIS)
        self.fit_mode.tooltip = ("this image: colours chosen for this image alone; reuse last fit: the colours "
                                 "of the previous image, so that a colour means the same on every image")
        self.background = ComboBox(label="background", choices=["black", "transparent"], value="black")
        self.background.tooltip = ("Where the slide is bare, between the cells: black, or transparent so that "
                                   "the image shows through")
        self.upsample = CheckBox(label="upsample to image resolution", value=False)
        self.upsample.tooltip = ("Smooth the overlay to the image's own pixels instead of one colour square "
                                 "per 14 px")
        self.level = LevelBox(self.image)  # shown for a multiscale image only
        self.form.extend([self.image, self.level.combo, self.model_spec, self.resolution, self.overlap, self.fit_mode, self.background,
                          self.upsample])
        self.last_fit = None  # (model spec, PatchPCA)
        self._job = None
        follow_image_layers(napari_viewer, self.image)
        self.level.refresh()

    def prepare(self):
        layer, level = self.image.value, self.level.value
        data = image_layer_data(layer, level)  # lazy for a multiscale level: read in the worker
        spec = self.model_spec.value.strip()
        fit = None
        if self.fit_mode.value == FIT_REUSE:
            if self.last_fit is None:
                show_info("PCA overlay: no previous fit yet, fitting on this image")
            elif self.last_fit[0] != spec:
                raise InputError(f"Received model {spec!r} but the last fit used {self.last_fit[0]!r}; "
                                 "accepted: the same model, or fit on this image.")
            else:
                fit = self.last_fit[1]
        scale, translate = level_placement(layer, level)  # the overlay lies on the slide, whatever the level
        self._job = dict(data=data, name=layer.name, scale=scale, translate=translate, spec=spec, fit=fit,
                         resolution=float(self.resolution.value) or "auto", cells=self._cells_table(layer.name, level),
                         overlap=int(self.overlap.value), background=self.background.value,
                         upsample=bool(self.upsample.value))
        return True

    def _cells_table(self, image_name: str, level: int = 0):
        """The image's segmentation (its ``<image> cells`` layer, made from this ``level``) as a table carrying
        the measured red-cell diameter, or None: the diameter is then measured from the image."""
        from napari_reddino._widgets._common import is_layer_kind
        from napari_reddino.style import cells_layer_name

        name = cells_layer_name(image_name)
        if name not in self.viewer.layers or not is_layer_kind(self.viewer.layers[name], "labels"):
            return None
        layer = self.viewer.layers[name]
        if layer.metadata.get("source_level", 0) != level:  # its sizes are another level's pixels
            return None
        table = layer.features.copy()
        diameter = layer.metadata.get("segmentation", {}).get("estimated_diameter")
        if diameter:
            table.attrs["diameter"] = float(diameter)
        return table if diameter or "type" in table.columns else None

    def work(self):
        from napari_reddino.progress import Progress
        from napari_reddino.models import load_model
        from napari_reddino.pca import NoCellsFound, iter_pca_overlay

        job = self._job
        job["data"] = np.asarray(job["data"])
        yield Progress(0, 1, "loading model")
        model = load_model(job["spec"], device="auto")  # the GPU when there is one
        try:
            overlay = yield from iter_pca_overlay(
                job["data"], model, job["fit"], background=job["background"], upsample=job["upsample"],
                overlap=job["overlap"], resolution=job["resolution"], cells=job["cells"], name=job["name"])
        except NoCellsFound as exc:  # a notice, not an error: nothing is wrong with the input
            return job, exc
        return job, overlay

    def show(self, result):
        """A generator (``StepWidget`` runs it in slices): a new overlay is made hidden, then shown in the next
        turn of the event loop (making a napari layer and its first draw are each a few tenths of a second)."""
        from napari_reddino._widgets.layers import put_pca_layer
        from napari_reddino.style import pca_layer_name

        job, overlay = result
        if isinstance(overlay, Exception):
            show_warning(str(overlay))
            return
        if overlay.note:
            show_info(f"PCA overlay of {job['name']!r}: {overlay.note}")
        self.last_fit = (job["spec"], overlay.fit)
        new = pca_layer_name(job["name"]) not in self.viewer.layers
        layer = put_pca_layer(self.viewer, job["name"], overlay.rgb, model=job["spec"], patch=overlay.patch,
                              upsampled=overlay.upsampled, factor=overlay.factor, scale=job["scale"],
                              translate=job["translate"], background=job["background"], hidden_when_new=True)
        if new:
            yield
            if layer in self.viewer.layers:
                layer.visible = True
