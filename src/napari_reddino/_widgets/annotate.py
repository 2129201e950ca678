"""Dock "Embedding & annotation": UMAP of the cells' embeddings as a Points layer in its own canvas,
linked both ways with the smear, annotated by selection, with a classifier and a morphology report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox, Select, SpinBox
from napari.utils.notifications import show_info, show_warning

from napari_reddino.progress import Progress
from napari_reddino._widgets._common import (
    StepWidget,
    is_layer_kind,
    notify_bad_input,
    show_at_once,
    start_warm_up,
)
from napari_reddino._widgets.annotate_panel import KEYS, AnnotationPanel
from napari_reddino._widgets.dock_layout import fit_rows
from napari_reddino._widgets.layers import cells_features
from napari_reddino._widgets.annotation_state import AnnotationState, RowIndex
from napari_reddino._widgets.session import SessionButtons
from napari_reddino.annotate import default_classes
from napari_reddino.images import InputError

METRICS = ["cosine", "euclidean", "correlation", "manhattan"]
TRAINING = "Training the classifier…"


def restore_message(counts: dict) -> str:
    """One line on how saved annotations came back ('' when there were none)."""
    parts = [f"{counts['same']} on the same cells" if counts["same"] else "",
             f"{counts['matched']} matched to the equivalent cell after re-segmentation" if counts["matched"] else "",
             f"{counts['by_label']} by cell number from an older file" if counts["by_label"] else "",
             f"{counts['unmatched']} left unmatched (kept in the file, not shown)" if counts["unmatched"] else "",
             f"{counts['other_image']} made on another image of the same name (kept in the file, not shown)"
             if counts.get("other_image") else "",
             f"{counts['kept']} of images not shown now (kept in the file)" if counts.get("kept") else ""]
    parts = [p for p in parts if p]
    return f"Restored annotations: {'; '.join(parts)}" if parts else ""


class AnnotationWidget(StepWidget):
    title = "Compute UMAP"
    tab = "4. Annotate"  # its tab in the RedDino panel
    uses_torch = False  # umap, numba and scikit-learn only: no 1-2 s torch import before the map starts
    run_tip = ("Place every cell on a map (UMAP) where cells that RedDino describes alike lie close together; "
               "select cells on it or on the smear to annotate them")

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.classes = default_classes()
        self.layers = Select(label="cells layers", choices=self._embedded_layers)
        self.layers.tooltip = ("The cells (from 'Extract RedDino features') to put on one map; select several "
                               "to compare smears; none selected: all of them")
        self.n_neighbors = SpinBox(label="neighbours", value=15, min=2, max=200)
        self.n_neighbors.tooltip = ("How many similar cells each cell is compared with: fewer brings out small "
                                    "groups, more the overall layout (15)")
        self.min_dist = FloatSpinBox(label="spacing", value=0.1, min=0.0, max=1.0, step=0.05)
        self.min_dist.tooltip = "How closely similar cells are packed: 0 tight clumps, 1 evenly spread (0.1)"
        self.metric = ComboBox(label="similarity", choices=METRICS, value="cosine")
        self.metric.tooltip = "How the likeness of two cells' descriptions is measured; cosine suits RedDino"
        self.seed = SpinBox(label="seed (-1: none, faster)", value=0, min=-1, max=2**31 - 1)
        self.seed.tooltip = ("The same number gives the same map for the same cells every time; -1: a slightly "
                             "different map on each run, a little faster")
        self.project = FileEdit(label="project folder", mode="d", value="")
        self.project.tooltip = ("Folder where the annotations are saved, one file for all images; empty: a file "
                                "beside each image")
        fit_rows(self.layers.native, 2, 3)  # a short list of layers: the height goes to the classes and report
        # the map's settings fold away (the defaults suit RedDino): on a 768 px screen the class list and the
        # report then fit beside the smear without scrolling
        self.map_settings = CheckBox(value=False, text="show the map settings")
        self.map_settings.tooltip = ("Show the settings of the map: neighbours, spacing, similarity and seed "
                                     "(the defaults suit RedDino)")
        self.map_settings.changed.connect(self._show_map_settings)
        self.form.extend([self.layers, self.map_settings, self.n_neighbors, self.min_dist, self.metric, self.seed,
                          self.project])
        self._show_map_settings(False)
        self.panel = AnnotationPanel(self.classes)
        self.add_below(self.panel, stretch=1)
        self.session_buttons = SessionButtons(napari_viewer, annotation_dock=self)
        self.add_below(self.session_buttons)
        self.state: AnnotationState | None = None
        self.canvas = None
        self._dock = None
        self._job = None
        self.trainer = None  # the classifier's worker while it trains
        self.state_listeners: list = []  # called with each new state (None when closed): the gallery
        self.viewer.layers.events.inserted.connect(self._reset_choices)
        self.viewer.layers.events.removed.connect(self._reset_choices)
        start_warm_up()  # the first UMAP of the session need not wait for numba to compile
        p = self.panel
        p.assign_button.clicked.connect(lambda: self._safely(self.assign, p.current_class()))
        p.clear_button.clicked.connect(lambda: self._safely(self.assign, None))
        p.undo_button.clicked.connect(lambda: self._safely(self.undo))
        p.train_button.clicked.connect(lambda: self._safely(self.train_in_background, p.classifier.currentText()))
        p.next_button.clicked.connect(lambda: self._safely(self.next_to_annotate, p.next_k.value()))
        p.export_cells_button.clicked.connect(lambda: self._export("cells"))
        p.export_report_button.clicked.connect(lambda: self._export("report"))

    # --- inputs -----------------------------------------------------------------------------------
    def _show_map_settings(self, shown: bool) -> None:
        for w in (self.n_neighbors, self.min_dist, self.metric, self.seed):
            w.visible = bool(shown)

    def _embedded_layers(self, *_):
        return [la.name for la in self.viewer.layers
                if is_layer_kind(la, "Labels") and cells_features(la)]

    def _reset_choices(self, *_):
        self.layers.reset_choices()

    def _project_folder(self):
        value = self.project.value
        return Path(value) if value and str(value) not in ("", ".") else None

    def _image_path(self, image: str):
        from napari_reddino._widgets.session import image_source_path

        from napari_reddino._widgets.levels import find_image

        layer = find_image(self.viewer, image)  # a layer, or one RGB OME-Zarr's colour layers
        path = image_source_path(layer) if layer is not None else None
        return Path(path) if path else None

    def _pixels(self, image: str):
        """The image layer ``image``'s pixels (what its annotations are tied to), None when it is not open."""
        from napari_reddino._widgets.levels import cells_shape, image_pixels

        try:  # a slide: the level its cells were found at
            pixels = image_pixels(self.viewer, image, cells_shape(self.viewer, image))
            return None if pixels is None else np.asarray(pixels)
        except InputError:
            return None

    def prepare(self):
        from napari_reddino.embedding import MIN_CELLS, layer_items

        names = list(self.layers.value) or self._embedded_layers()
        if not names:
            raise InputError("Received no Labels layer with embeddings; accepted: Labels layers on which "
                             "'Extract RedDino features' has run.")
        layers = [self.viewer.layers[n] for n in names]
        items = layer_items([(la.name, la.metadata, la.features) for la in layers])
        n = sum(len(emb) for _, _, emb in items)
        if n < MIN_CELLS:  # say it here, in plain words, before any work starts
            cells = "1 cell" if n == 1 else f"{n} cells"
            raise InputError(f"{cells} in {', '.join(names)}: too few for a UMAP map (it needs at least "
                             f"{MIN_CELLS}); choose more images or segment a larger field")
        self._job = {"items": items, "sources": names, "params": self.umap_params(),
                     "labels": {la.name: la.data for la in layers},
                     "pixels": {la.name: self._pixels(image) for la, (image, _, _) in zip(layers, items)}}
        return True

    def umap_params(self) -> dict:
        seed = self.seed.value
        return {"n_neighbors": int(self.n_neighbors.value), "min_dist": float(self.min_dist.value),
                "metric": self.metric.value, "seed": None if seed < 0 else int(seed)}

    def set_umap_params(self, params: dict) -> None:
        """Show the parameters a map was made with (a reopened session's, the pipeline's) in the form."""
        for key, box in (("n_neighbors", self.n_neighbors), ("min_dist", self.min_dist), ("metric", self.metric)):
            if params.get(key) is not None:
                box.value = params[key]
        if "seed" in params:
            self.seed.value = -1 if params["seed"] is None else int(params["seed"])

    # --- off the GUI thread -----------------------------------------------------------------------
    def work(self):
        from napari_reddino._widgets.smear_link import smear_geometry
        from napari_reddino.embedding import iter_umap_embed, pool_embeddings

        job = self._job
        yield Progress(0, 4, "pooling")
        table, X = pool_embeddings(job["items"])
        p = job["params"]
        Y = yield from iter_umap_embed(X, p["n_neighbors"], p["min_dist"], p["metric"], p["seed"])
        yield Progress(3, 4, "outlining the cells")
        geometry = {name: smear_geometry(labels, job["pixels"][name]) for name, labels in job["labels"].items()}
        return {"table": table, "X": X, "Y": Y, "sources": job["sources"], "params": p,
                "images": [it[0] for it in job["items"]], "geometry": geometry,
                "index": RowIndex(table, self.classes)}  # the rows as codes, here rather than on the GUI thread

    # --- main thread ------------------------------------------------------------------------------
    def show(self, result):
        """A generator (``StepWidget`` runs it in slices): the map's canvas is made in a slice of its own."""
        from napari_reddino.annotate import FALLBACK_FOLDER, AnnotationStore, annotation_path

        if self.canvas is None:
            self._ensure_canvas()
            yield
        folder = self._project_folder()
        paths = {image: self._image_path(image) for image in result["images"]}
        known = self._annotation_files(result)
        if folder is None and any(p is None and i not in known for i, p in paths.items()):
            folder = FALLBACK_FOLDER
            show_info(f"Some images were not opened from a file: annotations are saved in {folder}")
        if self.state is not None:
            self.state.store.flush()  # the last session's last change is on disk before its files are read again
        store = AnnotationStore(lambda image: known.get(image) or annotation_path(paths.get(image), folder),
                                notify=show_warning, background=True)  # written by a thread, not the GUI's
        geometry = result.get("geometry") or {}
        for image, source in zip(result["images"], result["sources"]):
            if source in self.viewer.layers:
                data, done = self.viewer.layers[source].data, geometry.get(source)
                if done is not None and done["labels"] is data:
                    store.set_cells(image, done["cells"])
                else:
                    store.set_cells(image, data, pixels=self._pixels(image))
        store.load(result["images"])
        if self.state is not None:
            self.state.disconnect()
            self.state = None
        yield from self.canvas.iter_make_layers(len(result["Y"]) > self.canvas.point_budget)  # a layer a turn
        self.state = AnnotationState(self.viewer, self.canvas, self.classes, store, result, self.panel, draw=False)
        yield  # then the map's view, the legend and report, the smears: a turn of the event loop each
        self.canvas.frame_points()
        self.canvas.update_view()
        yield
        self.state.refresh(points=False, smears=False)
        yield
        yield from self.state.iter_draw_smears()
        self._bind_keys()
        self._tell_listeners()
        self.panel.set_enabled(True)
        self.panel.left_out.setText(self._left_out(result["sources"]))
        message = restore_message(store.restored)
        if message:
            show_info(message)

    def _tell_listeners(self) -> None:
        from napari_reddino._widgets.gallery import open_galleries

        fresh = [g for g in open_galleries(self.viewer) if g.annotation is not self]
        for gallery in fresh:  # opened before this dock's first map: it follows this dock from now on
            gallery.attach(self)
        for listener in list(self.state_listeners):
            if getattr(listener, "__self__", None) not in fresh:
                try:
                    listener(self.state)
                except RuntimeError:  # its Qt widget was deleted (a closed gallery): forget it
                    self.state_listeners.remove(listener)

    def _annotation_files(self, result) -> dict:
        """image -> the annotation file a reopened session named for it (in its cells layer's metadata):
        annotating after a reopen goes on in that file, wherever the image now comes from."""
        from napari_reddino._widgets.session import ANNOTATION_FILE

        known = {}
        for image, source in zip(result["images"], result["sources"]):
            layer = self.viewer.layers[source] if source in self.viewer.layers else None  # noqa: SIM401 (no .get)
            path = (layer.metadata or {}).get(ANNOTATION_FILE) if layer is not None else None
            if path:
                known[image] = Path(path)
        return known

    def _left_out(self, sources) -> str:
        """What the feature step left out of these layers' cells (by type), as one line."""
        from napari_reddino.segment.types import left_out_note

        frames, kept = [], []
        for name in sources:
            layer = self.viewer.layers[name] if name in self.viewer.layers else None
            if layer is None or "type" not in layer.features.columns:
                continue
            frames.append(layer.features[["label", "type"]])
            kept.append(np.isin(layer.features["label"], cells_features(layer)["labels"]))
        if not frames:
            return ""
        note = left_out_note(pd.concat(frames, ignore_index=True), np.concatenate(kept))
        return f"Objects not analysed: {note.removeprefix('left out ')}" if note else ""

    def show_embedding(self, layer_names, Y, params=None, geometry: dict | None = None) -> None:
        """Show an embedding computed elsewhere (the pipeline dock, a reopened session) for these Labels
        layers; rows of ``Y`` follow the layers' cells in order, as
        :func:`napari_reddino.embedding.pool_embeddings` pools them; ``params``: what it was made with;
        ``geometry``: the smears' outlines when the worker already measured them."""
        from napari_reddino.embedding import layer_items, pool_embeddings

        layers = [self.viewer.layers[n] for n in layer_names]
        items = layer_items([(la.name, la.metadata, la.features) for la in layers])
        table, X = pool_embeddings(items)
        if len(Y) != len(table):
            raise InputError(f"Received {len(Y)} embedding points for {len(table)} cells; accepted: one point "
                             "per cell of the given layers.")
        self.reset_choices_to(layer_names)
        if params:
            self.set_umap_params(params)
        show_at_once(self.show(dict(table=table, X=X, Y=np.asarray(Y, np.float32), sources=list(layer_names),
                                    images=[it[0] for it in items], params=self.umap_params(),
                                    geometry=geometry)))

    def reset_choices_to(self, layer_names) -> None:
        self._reset_choices()
        self.layers.value = [n for n in layer_names if n in self.layers.choices]

    def _ensure_canvas(self):
        from napari_reddino._widgets.dock_layout import place_umap_dock
        from napari_reddino._widgets.umap_canvas import UmapCanvas

        if self.canvas is not None:
            return
        self.canvas = UmapCanvas()
        window = getattr(self.viewer, "window", None)
        if window is not None and hasattr(window, "add_dock_widget"):
            self._dock = place_umap_dock(window, self.canvas)

    def _bind_keys(self):
        layer = self.canvas.points
        for i, key in enumerate(KEYS[:len(self.classes)]):
            layer.bind_key(key, lambda _layer, i=i: self._safely(self.assign, i), overwrite=True)
        layer.bind_key("Control-z", lambda _layer: self._safely(self.undo), overwrite=True)
        layer.bind_key("Backspace", lambda _layer: self._safely(self.assign, None), overwrite=True)

    # --- actions (also the programmatic API the tests drive) ----------------------------------------
    def _need_state(self) -> AnnotationState:
        if self.state is None:
            raise InputError("Received an action before any UMAP; accepted: run 'Compute UMAP' first.")
        return self.state

    def assign(self, cls) -> int:
        """Give the selected points class ``cls`` (index into the class list or name; None clears)."""
        if isinstance(cls, (int, np.integer)):
            cls = self.classes[int(cls)].name
        return self._need_state().assign_selected(cls)

    def undo(self):
        return self._need_state().undo()

    def train(self, kind: str = "logreg"):
        return self._need_state().train(kind)

    def train_in_background(self, kind: str = "logreg"):
        """'Train & predict': the classifier learns in a worker (seconds on a few thousand cells), the
        predictions are drawn on the main thread when it is done. Returns the worker."""
        from napari.qt.threading import create_worker

        state = self._need_state()
        if self.trainer is not None:
            return self.trainer
        annotated = state.class_column()  # read now: annotations made while it trains wait for the next run

        def shown(result):
            if self.state is state:  # not a session replaced by a new UMAP meanwhile
                state.set_predictions(*result)

        self.trainer = create_worker(state.fit, kind, annotated, _start_thread=False, _connect={
            "returned": shown, "errored": self._on_error, "finished": self._trained})  # too few classes: one line
        try:  # napari's notifying workers also relay errors; _on_error reports them, once
            self.trainer.errored.disconnect(self.trainer._relay_error)
        except (AttributeError, TypeError, RuntimeError):
            pass
        self._status_before = self.panel.status.text()
        self.panel.train_button.setEnabled(False)
        self.panel.status.setText(TRAINING)
        self.trainer.start()
        return self.trainer

    def _trained(self):
        self.trainer = None
        self.panel.train_button.setEnabled(self.state is not None)
        if self.panel.status.text() == TRAINING:  # failed: no refresh has said anything newer
            self.panel.status.setText(self._status_before)

    def next_to_annotate(self, k: int = 20):
        return self._need_state().select_next(k)

    def export_cells(self, path) -> Path:
        return self._need_state().export_cells(path)

    def export_report(self, path) -> list[Path]:
        """The per-image table at ``path`` and the graded slide report beside it (``<stem>_graded.csv/.html``)."""
        state = self._need_state()
        return [state.export_report(path), *state.export_graded_report(path, self._image_paths(state))]

    def _image_paths(self, state) -> dict:
        paths = {image: self._image_path(image) for image in state.images}
        return {k: v for k, v in paths.items() if v}

    def export_report_in_background(self, path):
        """*Export report…*: the per-image table now, the graded report (crops, the map figure: seconds on many
        cells) in a worker; the layers are read here, on the main thread. Returns the worker."""
        from napari.qt.threading import create_worker

        from napari_reddino._widgets.annotation_state import write_graded_report

        state = self._need_state()
        first = state.export_report(path)
        inputs = state.graded_report_inputs(self._image_paths(state))
        worker = create_worker(write_graded_report, path, **inputs, _start_thread=False, _connect={
            "returned": lambda written: show_info(f"Wrote {first}, {', '.join(map(str, written))}"),
            "errored": self._on_error})
        try:  # napari's notifying workers also relay errors; _on_error reports them, once
            worker.errored.disconnect(worker._relay_error)
        except (AttributeError, TypeError, RuntimeError):
            pass
        worker.start()
        return worker

    def _safely(self, fn, *args):
        return notify_bad_input(fn, *args)

    def _export(self, what: str):
        from qtpy.QtWidgets import QFileDialog

        default = "cells.csv" if what == "cells" else "morphology_report.csv"
        path, _ = QFileDialog.getSaveFileName(self, f"Export {what}", default, "CSV (*.csv)")
        if path:
            if what == "report":
                self._safely(self.export_report_in_background, path)  # it says what it wrote when done
                return
            written = self._safely(self.export_cells, path)
            if written:
                show_info(f"Wrote {written}")

    def close_canvas(self):
        if self.state is not None:
            self.state.store.flush()  # closing waits for the last change to be written
            self.state.disconnect()
            self.state = None
            self._tell_listeners()
        if self.canvas is not None:
            if self._dock is not None:
                try:
                    self.viewer.window.remove_dock_widget(self._dock)
                except (AttributeError, LookupError, RuntimeError):
                    pass
                self._dock = None
            self.canvas.close_canvas()
            self.canvas.deleteLater()
            self.canvas = None

    def closeEvent(self, event):
        self.close_canvas()
        super().closeEvent(event)
