"""Save session… / Open session…: the layers the plugin made and the annotation state, to a folder and back.

The buttons sit in the pipeline dock and the annotation dock. Saving gathers the viewer's cells layers (with
their features and embeddings), their images, PCA overlays and the annotation dock's UMAP into a
:class:`napari_reddino.session.Session` on the main thread and writes it in a worker; opening reads and checks
the whole folder in a worker, then adds the layers as the pipeline dock does (``add_result_layers``), with
the annotations read from the same file as before. Nothing is segmented, embedded or mapped again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QPushButton, QWidget

from napari_reddino.images import InputError

if TYPE_CHECKING:
    import napari

    from napari_reddino.session import Session

SOURCE_PATH = "source_path"  # image layer metadata: the file a reopened image was read from
ANNOTATION_FILE = "annotation_file"  # cells layer metadata: where a reopened image's annotations live


def annotation_dock(viewer):
    """The open "Embedding & annotation" dock widget, if any."""
    from napari_reddino._widgets.annotate import AnnotationWidget

    window = getattr(viewer, "window", None)
    docks = getattr(window, "dock_widgets", None) or {}
    return next((d for d in docks.values() if isinstance(d, AnnotationWidget)), None)


def image_source_path(layer) -> str | None:
    """The file an image layer was opened from (napari's source, or a reopened session's record)."""
    path = getattr(getattr(layer, "source", None), "path", None) or (layer.metadata or {}).get(SOURCE_PATH)
    return str(path) if path else None


# --- viewer → session --------------------------------------------------------------------------------------
def viewer_session(viewer: "napari.Viewer", dock=None) -> "Session":
    """What the plugin made in ``viewer``, as a session, with the map of the annotation ``dock`` (default:
    the viewer's); InputError when there is nothing to save or the map is stale."""
    from napari_reddino._widgets._common import image_layer_data, is_layer_kind
    from napari_reddino._widgets.layers import cells_features, pca_record
    from napari_reddino._widgets.levels import find_image, image_pixels, levels_of
    from napari_reddino.pipeline import STEPS, PipelineResult, SmearResult
    from napari_reddino.session import Session, SessionImage
    from napari_reddino.style import pca_layer_name

    smears, images, models, cells_of = [], [], [], {}
    for layer in list(viewer.layers):
        meta = layer.metadata or {}
        red = cells_features(layer) or {}
        name = red.get("image") or meta.get("source_image")
        if not is_layer_kind(layer, "labels") or not name or name in {s.name for s in smears}:
            continue
        if find_image(viewer, name) is None:
            raise InputError(f"The cells layer {layer.name!r} was found on the image {name!r}, which is no longer "
                             "open; accepted: its image open beside it (open it again, or delete the cells layer).")
        # a slide's pixels at its cells' level (saved as they are; reopened as a plain image where the cells lie)
        s = SmearResult(name, np.asarray(image_pixels(viewer, name, layer.data.shape)), labels=np.asarray(layer.data),
                        table=layer.features.drop(columns=["index"], errors="ignore").reset_index(drop=True))
        if red.get("embeddings") is not None:
            s.embeddings, s.embedded = np.asarray(red["embeddings"]), np.asarray(red["labels"], np.int64)
            models.append(red.get("model"))
        smears.append(s)
        cells_of[name] = layer
        images.append(SessionImage(name, segmentation=dict(meta.get("segmentation") or {})))
    for layer in list(viewer.layers):  # overlays, with or without cells
        pca = pca_record(layer)
        if not pca or pca.get("image") not in viewer.layers or layer.name != pca_layer_name(pca["image"]):
            continue
        s = next((s for s in smears if s.name == pca["image"]), None)
        if s is None:
            s = SmearResult(pca["image"], np.asarray(image_layer_data(viewer.layers[pca["image"]])))
            smears.append(s)
            images.append(SessionImage(s.name))
        s.pca, s.patch = np.asarray(layer.data).astype(np.float32) / 255, int(pca["patch"])
        s.pca_upsampled = bool(pca.get("upsampled", False))
        s.pca_factor = tuple(float(f) for f in pca.get("factor", (1.0, 1.0)))
        models.append(pca.get("model"))
    if not smears:
        raise InputError("Received a viewer with no cells or PCA overlay made by napari-reddino; accepted: a "
                         "viewer where a step has run (segment, features, PCA or the whole pipeline).")
    for s, info in zip(smears, images):
        image = find_image(viewer, s.name) or viewer.layers[s.name]
        info.path = image_source_path(image)
        if image.multiscale and tuple(s.image.shape[:2]) != tuple(levels_of(image)[0].shape[:2]):
            info.path = None  # a coarser level of the slide: saved as a copy (its file would give level 0)
        placed = cells_of[s.name] if image.multiscale and s.name in cells_of else image
        info.scale, info.translate = tuple(placed.scale[-2:]), tuple(placed.translate[-2:])
    result = PipelineResult(smears, model=next((m for m in models if m), None), steps=STEPS)
    session = Session(result, images)
    dock = dock or annotation_dock(viewer)
    if dock is not None and dock.state is not None:
        _add_umap(session, dock)
    return session


def _add_umap(session: "Session", dock) -> None:
    """The dock's map and where its annotations are saved, into ``session``."""
    state, result = dock.state, session.result
    stale = state.stale_sources()
    if stale:
        raise InputError(f"The map was made before {', '.join(map(repr, stale))} was segmented again; accepted: "
                         "a map of the cells shown now (press 'Compute UMAP' first, then save).")
    table = state.table
    images = list(pd.unique(table["image"]))
    missing = [i for i in images if i not in {s.name for s in result.smears}]
    if missing:
        raise InputError(f"The map holds cells of {', '.join(map(repr, missing))}, whose cells layer is not open; "
                         "accepted: a map of the cells layers shown now (press 'Compute UMAP' first, then save).")
    result.umap_images = images
    row = {(str(i), int(lbl)): r for r, (i, lbl) in enumerate(zip(table["image"], table["label"]))}
    keys = [(s.name, int(lbl)) for s in result.umap_smears() for lbl in s.embedded]
    if any(k not in row for k in keys) or len(keys) != len(row):
        raise InputError("The map does not describe the cells' current features; accepted: a map computed after "
                         "the last feature step (press 'Compute UMAP' first, then save).")
    result.umap = np.asarray(state.Y, np.float32)[[row[k] for k in keys]]
    result.umap_params = dict(state.params)
    state.store.flush()  # the files the session names hold every annotation made so far
    session.annotation_files = {i: str(state.store.path_of(i)) for i in images}
    annotated = state.class_column() != ""
    session.annotated = {i: int(annotated[(table["image"] == i).to_numpy()].sum()) for i in images}
    folder = dock._project_folder()
    session.project_folder = str(folder) if folder else None


# --- session → viewer --------------------------------------------------------------------------------------
def show_session(viewer: "napari.Viewer", session: "Session"):
    """Add a read session's layers to ``viewer`` and its map to the annotation dock (returned; None without a
    map). Refused, with nothing added, when the viewer already has a layer of the same name."""
    from napari_reddino._widgets.pipeline import add_result_layers
    from napari_reddino.style import cells_layer_name, pca_layer_name

    result = session.result
    names = [n for s in result.smears for n in (s.name, cells_layer_name(s.name), pca_layer_name(s.name))]
    taken = [n for n in names if n in viewer.layers]
    if taken:
        raise InputError(f"The viewer already has layers named {', '.join(map(repr, taken))}; accepted: a viewer "
                         "without them (open the session in a new window, or delete those layers first).")
    for s, info in zip(result.smears, session.images):
        rgb = s.image.ndim == 3 and s.image.shape[-1] in (3, 4)
        viewer.add_image(s.image, name=s.name, rgb=rgb, scale=info.scale, translate=info.translate,
                         metadata={SOURCE_PATH: info.path} if info.path else {})
    for path, n in session.missing_annotations().items():  # said, not silently shown without them
        show_warning(f"The annotation file {path} named by the session is missing, so its {n} annotations are not "
                     "shown; accepted: that file at its path (put it back and open the session again).")
    dock = add_result_layers(viewer, result, project_folder=session.project_folder,
                             annotation_files=session.annotation_files)
    for s, info in zip(result.smears, session.images):
        if s.labels is not None and info.segmentation:
            viewer.layers[cells_layer_name(s.name)].metadata["segmentation"] = info.segmentation
    return dock  # add_result_layers put the saved predictions back on the map


# --- the buttons -------------------------------------------------------------------------------------------
class SessionButtons(QWidget):
    """Save session… / Open session…, for any dock of the plugin."""

    def __init__(self, viewer: "napari.Viewer", annotation_dock=None, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.annotation_dock = annotation_dock  # the dock whose map is saved (None: the viewer's)
        self.worker = None
        self.save_button = QPushButton("Save session…")
        self.save_button.setToolTip("Save the image(s), the cells found, their features, the PCA colours and the "
                                    "map in a folder, so that reopening it later needs no recomputing "
                                    "(annotations stay in their own file, which the session names)")
        self.open_button = QPushButton("Open session…")
        self.open_button.setToolTip("Put back a saved session (or a 'napari-reddino run' output folder): images, "
                                    "cells, PCA colours, the map and its annotations, without recomputing")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.save_button)
        layout.addWidget(self.open_button)
        self.save_button.clicked.connect(lambda: self._ask("save"))
        self.open_button.clicked.connect(lambda: self._ask("open"))

    def _ask(self, what: str) -> None:
        title = "Save the session in folder" if what == "save" else "Open the session folder"
        folder = QFileDialog.getExistingDirectory(self, title)
        if folder:
            (self.save if what == "save" else self.open)(folder)

    def save(self, folder):
        """Gather here, write in a worker; returns the worker (None when refused: a notification says why)."""
        from napari_reddino.session import save_session

        try:
            session = viewer_session(self.viewer, self.annotation_dock)
        except InputError as exc:
            show_error(str(exc))
            return None
        return self._start(lambda: save_session(session, folder),
                           lambda written: show_info(f"Saved the session in {folder} ({len(written)} files)"))

    def open(self, folder):
        """Read in a worker, show here; returns the worker."""
        from napari_reddino.session import read_session

        def done(session):
            show_session(self.viewer, session)
            show_info(f"Opened the session {folder}")

        return self._start(lambda: read_session(folder), done)

    def _start(self, work, done):
        from napari.qt.threading import create_worker

        if self.worker is not None:
            return None

        def returned(value):
            try:
                done(value)
            except InputError as exc:
                show_error(str(exc))

        def errored(exc):
            if isinstance(exc, (InputError, OSError)):
                show_error(f"{exc}" if isinstance(exc, InputError) else f"Could not write the session: {exc}")
            else:
                from napari.utils.notifications import notification_manager

                notification_manager.receive_error(type(exc), exc, exc.__traceback__)

        self.worker = create_worker(work, _start_thread=False, _connect={
            "returned": returned, "errored": errored, "finished": self._finished})
        try:  # napari's notifying workers also relay errors; errored reports them, once
            self.worker.errored.disconnect(self.worker._relay_error)
        except (AttributeError, TypeError, RuntimeError):
            pass
        self.save_button.setEnabled(False)
        self.open_button.setEnabled(False)
        self.worker.start()
        return self.worker

    def _finished(self):
        self.worker = None
        self.save_button.setEnabled(True)
        self.open_button.setEnabled(True)


def open_session_folder(viewer: "napari.Viewer", folder):
    """Read and show a session at once (the CLI's ``view``); returns the annotation dock or None."""
    from napari_reddino.session import read_session

    return show_session(viewer, read_session(Path(folder)))
