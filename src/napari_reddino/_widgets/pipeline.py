"""Dock "Run the whole pipeline": the current image → cells → RedDino features → PCA overlay → UMAP, in one
click; each result lands where the step docks put theirs, so any step can be re-run on its own after."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit
from napari.utils.notifications import show_info, show_warning

from napari_reddino._widgets._common import (
    TIPS, StepWidget, cell_types_box, display_labels, follow_image_layers, image_layer_choices, image_layer_data,
    start_warm_up)
from napari_reddino._widgets.levels import LevelBox, level_placement
from napari_reddino.pca_resolution import MAX_FACTOR
from napari_reddino._widgets.session import SessionButtons
from napari_reddino.segment import BACKENDS, DEFAULT_BACKEND

if TYPE_CHECKING:
    import napari

    from napari_reddino.pipeline import PipelineResult

ANNOTATION_DOCK = "4. Embedding & annotation"


class PipelineWidget(StepWidget):
    title = "Run the whole pipeline"
    tab = "Pipeline"  # its tab in the RedDino panel
    run_tip = ("On the chosen image: find the cells, describe each with RedDino, colour the image by its "
               "features and put the cells on a map for annotation, in one go")

    def __init__(self, napari_viewer: "napari.Viewer"):
        super().__init__(napari_viewer)
        from napari_reddino.models import default_spec

        self.image = ComboBox(label="image", choices=lambda *_: image_layer_choices(self.viewer), nullable=True)
        self.backend = ComboBox(label="segmentation", choices=list(BACKENDS), value=DEFAULT_BACKEND)
        self.diameter = FloatSpinBox(label="cell diameter (px, 0 = auto)", min=0, max=1000, value=0)
        self.drop_border = CheckBox(label="drop cells touching the border", value=False)
        self.model = LineEdit(label="model", value=default_spec())
        self.image.tooltip, self.backend.tooltip = TIPS["image"], TIPS["backend"]
        self.diameter.tooltip, self.drop_border.tooltip = TIPS["diameter"], TIPS["drop_border"]
        self.model.tooltip = TIPS["model"]
        self.cell_types = cell_types_box()
        self.do_pca = CheckBox(label="PCA overlay", value=True)
        self.do_pca.tooltip = ("Also colour the image by what RedDino sees in it: regions that look alike get "
                               "alike colours")
        self.pca_resolution = FloatSpinBox(label="PCA cell resolution (x, 0 = auto)", min=0, max=MAX_FACTOR,
                                           step=0.5, value=0)
        self.pca_resolution.tooltip = TIPS["cell_resolution"]
        self.do_umap = CheckBox(label="UMAP for annotation", value=True)
        self.do_umap.tooltip = ("Also put the cells on a map of similar cells and open the annotation dock "
                                "(needs at least 4 cells)")
        self.level = LevelBox(self.image)  # shown for a multiscale image only
        self.form.extend([self.image, self.level.combo, self.backend, self.diameter, self.drop_border, self.model,
                          self.cell_types, self.do_pca, self.pca_resolution, self.do_umap])
        follow_image_layers(napari_viewer, self.image)
        self.level.refresh()
        self.session_buttons = SessionButtons(napari_viewer)
        self.add_below(self.session_buttons)
        self._job = None
        start_warm_up()  # the first UMAP of the session need not wait for numba to compile

    def prepare(self):
        from napari_reddino.pipeline import STEPS, PipelineOptions

        from functools import partial

        layer, level = self.image.value, self.level.value
        data = partial(np.asarray, image_layer_data(layer, level))  # read in the worker (a multiscale level)
        steps = tuple(s for s in STEPS if (s != "pca" or self.do_pca.value) and (s != "umap" or self.do_umap.value))
        opts = PipelineOptions(backend=self.backend.value, diameter=float(self.diameter.value) or None,
                               drop_border=bool(self.drop_border.value), model=self.model.value.strip() or None,
                               steps=steps, cell_types=tuple(self.cell_types.value),
                               pca_resolution=float(self.pca_resolution.value) or "auto")
        self._job = dict(images=[(layer.name, data)], opts=opts,
                         placements={layer.name: (*level_placement(layer, level), level)})
        return True

    def work(self):
        from napari_reddino.pipeline import iter_pipeline

        result = yield from iter_pipeline(self._job["images"], self._job["opts"])
        for smear in result.smears:  # what the GUI thread would otherwise do or redo on each redraw
            smear.labels = display_labels(smear.labels)
        result.geometry = smear_geometries(result) if result.umap is not None else None
        result.looks = cells_looks(result)
        return result

    def show(self, result):
        """A generator (``StepWidget`` runs it in slices, one layer or so each)."""
        yield from iter_add_result_layers(self.viewer, result, placements=self._job["placements"])
        if result.skipped:  # the layers that could be made are in place; say once what was not, and why
            show_warning("; ".join(result.skipped))  # no title first: a toast shows its first 40 characters
        else:
            note = result.classifier_note  # the shipped classifier used morphology alone: said once
            show_info(f"{self.title}: {result.summary()}" + (f". {note}" if note else ""))


def add_result_layers(viewer: "napari.Viewer", result: "PipelineResult", project_folder=None,
                      annotation_files=None):
    """Put a pipeline result into ``viewer`` as the step docks would: the image (if not there), Labels
    ``<image> cells`` carrying the table and the embeddings, Image ``<image> PCA``, and the UMAP in the
    annotation dock (annotations saved in ``project_folder`` when given, or in ``annotation_files``: image
    name -> file, as a reopened session says). Returns that dock's widget (None without a UMAP)."""
    shown = iter_add_result_layers(viewer, result, project_folder, annotation_files)
    while True:
        try:
            next(shown)
        except StopIteration as done:
            return done.value


def iter_add_result_layers(viewer: "napari.Viewer", result: "PipelineResult", project_folder=None,
                           annotation_files=None, placements=None):
    """``add_result_layers`` as a generator: it yields after each piece that takes the GUI thread a while
    (a layer made, the map), so that a dock's display runs in slices; returns the annotation dock.
    ``placements``: image name -> (scale, translate, level) of the results of an image processed at a level
    of a multiscale layer (``levels.level_placement``)."""
    from napari_reddino._widgets.layers import REDDINO, features_metadata, iter_put_cells_layer, put_pca_layer
    from napari_reddino._widgets.session import ANNOTATION_FILE
    from napari_reddino._widgets.smear_link import cells_look, iter_draw_cells
    from napari_reddino.style import cells_layer_name, with_label_index

    cells_layers = []
    for s in result.smears:
        level = 0
        if placements and s.name in placements:
            scale, translate, level = placements[s.name]
        else:
            if s.name in viewer.layers:
                image_layer = viewer.layers[s.name]
            else:
                image_layer = viewer.add_image(s.image, name=s.name, rgb=True)
            scale, translate = tuple(image_layer.scale[-2:]), tuple(image_layer.translate[-2:])
        metadata = {"source_image": s.name, "source_level": level}
        if s.table is not None and s.table.attrs.get("diameter"):  # as the segment dock records it
            metadata["segmentation"] = {"estimated_diameter": float(s.table.attrs["diameter"])}
        if annotation_files and s.name in annotation_files:  # the annotation dock saves this image's work there
            metadata[ANNOTATION_FILE] = str(annotation_files[s.name])
        if s.embeddings is not None:
            metadata[REDDINO] = features_metadata(s.embeddings, s.embedded, result.model, s.name)
        cells, look = None, (getattr(result, "looks", None) or {}).get(s.name)
        if s.labels is not None:
            outlines = look.get("outlines") if look is not None else None
            features = look["features"] if look is not None else with_label_index(s.table)
            look = look["look"] if look is not None else cells_look(features)
            cells = yield from iter_put_cells_layer(viewer, s.name, s.labels, features=features, look=look,
                                                    scale=scale, translate=translate, metadata=metadata,
                                                    outlines=outlines)
            cells_layers.append(cells)
        if s.pca is not None:  # made hidden: over the whole smear it hides the stain (tick its eye to see it)
            put_pca_layer(viewer, s.name, s.pca, model=result.model, patch=s.patch, upsampled=s.pca_upsampled,
                          factor=s.pca_factor, scale=scale, translate=translate, hidden_when_new=True)
            yield
        if cells is not None:
            yield from iter_draw_cells(viewer, cells, look=look)
            yield
    if cells_layers:
        viewer.layers.selection.active = cells_layers[-1]
    with_cells = [cells_layer_name(s.name) for s in result.umap_smears()] if result.umap is not None else []
    if not with_cells:
        return None
    _, dock = viewer.window.add_plugin_dock_widget("napari-reddino", ANNOTATION_DOCK)
    if project_folder is not None:
        dock.project.value = str(project_folder)
    if dock.canvas is None:  # the map's canvas, made before the dock is first shown: the two are laid out together
        dock._ensure_canvas()
    dock.show_embedding(with_cells, result.umap, result.umap_params, geometry=getattr(result, "geometry", None))
    return dock  # the map starts from the predictions in the cells' tables (the shipped classifier's, a session's)


def cells_looks(result: "PipelineResult") -> dict:
    """Per smear with cells, its cells layer's features, look (``smear_link.cells_look``) and outlines
    (``layers.cell_outlines``), in the worker."""
    from napari_reddino._widgets.layers import cell_outlines
    from napari_reddino._widgets.smear_link import cells_look
    from napari_reddino.style import with_label_index

    looks = {}
    for s in result.smears:
        if s.labels is not None:
            features = with_label_index(s.table)
            look = cells_look(features, dtype=np.asarray(s.labels).dtype)
            looks[s.name] = {"features": features, "look": look,
                             "outlines": cell_outlines(s.labels, look["contour"])}
    return looks


def smear_geometries(result: "PipelineResult") -> dict:
    """Per smear with cells on the map, what the annotation dock would compute from its labels on the GUI
    thread (``smear_link.smear_geometry``), computed in the worker."""
    from napari_reddino._widgets.smear_link import smear_geometry
    from napari_reddino.style import cells_layer_name

    return {cells_layer_name(s.name): smear_geometry(s.labels, s.image) for s in result.smears
            if s.embeddings is not None and len(s.embeddings)}
