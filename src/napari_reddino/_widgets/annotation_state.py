"""One UMAP session: pooled cells, their points, their cells on the smear, annotations and predictions.

Keeps the Points layer (features, colours), the smear layers (selection outline, class colours) and the
report table in step with the annotation store after every change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino._widgets.layers import REDDINO_UMAP
from napari_reddino.annotate import class_colors
from napari_reddino.classify import fit_on_top, next_to_annotate
from napari_reddino.report import export_cell_table, morphology_report
from napari_reddino.style import PREDICTED_ALPHA, UNANNOTATED_COLOR, class_counts

CLICK_PIXELS = 4


class AnnotationState:
    def __init__(self, viewer, canvas, classes, store, result: dict, panel):
        from napari_reddino._widgets.smear_link import SmearLink

        self.viewer, self.canvas, self.classes, self.store, self.panel = viewer, canvas, classes, store, panel
        self.table: pd.DataFrame = result["table"]
        self.X: np.ndarray = result["X"]
        Y = self.Y = result["Y"]  # the map's coordinates, one row per table row
        self.params: dict = dict(result.get("params") or {})  # what the map was made with
        self.sources: list[str] = list(result["sources"])
        self.images: list[str] = list(result["images"])  # the image layer of each source
        n = len(self.table)
        self.prediction = np.full(n, "", dtype=object)
        self.confidence = np.full(n, np.nan, dtype=np.float32)
        self.listeners: list = []  # called after every refresh (the verification gallery follows the state)
        self.prior: tuple[np.ndarray, np.ndarray] | None = None  # the shipped classifier's, which training builds on
        if {"prediction", "confidence"} <= set(self.table.columns) and self.table["confidence"].notna().any():
            # the cells came pre-classified (the features dock, the pipeline, a saved session)
            self.prediction = self.table["prediction"].fillna("").astype(str).to_numpy(object)
            self.confidence = self.table["confidence"].to_numpy(np.float32)
            self.prior = (self.prediction, self.confidence)
        self._colors = class_colors(classes)
        self._index = {c.name: i for i, c in enumerate(classes)}
        source_of_image = {image: s for s, image in enumerate(result["images"])}
        source_of_row = self.table["image"].map(source_of_image).to_numpy()
        self.link = SmearLink(viewer, result["sources"], source_of_row, self.table["label"].to_numpy(),
                              result.get("geometry"))
        data = np.column_stack([-Y[:, 1], Y[:, 0]])
        extent = float(np.ptp(data, axis=0).max()) or 1.0
        name = " + ".join(result["sources"]) + " UMAP"
        self.points = canvas.set_points(name, data, self._features(), self._face_colors(), extent / 80)
        self.points.metadata[REDDINO_UMAP] = {"sources": list(result["sources"])}
        canvas.selection_changed.connect(self._on_selection)
        viewer.mouse_drag_callbacks.append(self._on_smear_drag)
        self.refresh()

    def disconnect(self) -> None:
        self.link.disconnect()
        if self._on_smear_drag in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_smear_drag)
        try:
            self.canvas.selection_changed.disconnect(self._on_selection)
        except (TypeError, ValueError, RuntimeError):
            pass

    # --- derived columns --------------------------------------------------------------------------
    def class_column(self) -> np.ndarray:
        return self.store.column(self.table)

    def _features(self, cls=None) -> pd.DataFrame:
        text = lambda v: pd.Series(np.asarray(v, dtype=object), dtype=object)  # noqa: E731 (pandas 3 would
        # otherwise copy every string of a million cells into its own string type on each refresh: seconds)
        return pd.DataFrame({"image": text(self.table["image"]), "label": self.table["label"].to_numpy(),
                             "class": text(self.class_column() if cls is None else cls),
                             "prediction": text(self.prediction), "confidence": self.confidence})

    def _face_colors(self, cls=None) -> np.ndarray:
        """One RGBA per row: its class' colour, else its prediction's (faded), else the unannotated grey."""
        from matplotlib.colors import to_rgba

        names = list(self._colors)
        table = np.asarray([*self._colors.values(), to_rgba(UNANNOTATED_COLOR)], np.float32)
        code = lambda col: pd.Categorical(np.asarray(col, dtype=object), categories=names).codes  # noqa: E731
        pred, ann = code(self.prediction), code(self.class_column() if cls is None else cls)
        out = table[np.where(ann >= 0, ann, np.where(pred >= 0, pred, len(names)))]
        out[(ann < 0) & (pred >= 0), 3] = PREDICTED_ALPHA
        out[ann >= 0, 3] = 1.0
        return out

    def refresh(self) -> None:
        cls = self.class_column()  # once: a million cells' classes take a while to look up
        self.points.features = self._features(cls)
        self.canvas.set_colors(self._face_colors(cls))
        self.link.color_cells(cls, self.prediction, self.confidence, self.classes)
        self._show_counts(cls)
        self.panel.report.set_frame(self.report(cls))
        n_ann = int((cls != "").sum())
        where = sorted({self.store.path_of(i) for i in pd.unique(self.table["image"])})
        saved = [str(p) for p in where if p.is_file()]
        said = (f"saved to {', '.join(saved)}" if saved else
                f"nothing saved yet (the first annotation goes to {', '.join(map(str, where))})")
        self.panel.status.setText(f"{len(self.table)} cells, {n_ann} annotated; {said}")
        for listener in list(self.listeners):
            try:
                listener()
            except RuntimeError:  # its Qt widget was deleted (a closed gallery): forget it
                self.listeners.remove(listener)

    def class_counts(self, cls=None) -> list[tuple[str, str, int, int]]:
        """(name, colour, annotated, predicted) per class, then the unannotated cells (``style.class_counts``,
        which the smear's legend counts with too)."""
        return class_counts(self.classes, self.class_column() if cls is None else cls, self.prediction)

    def _show_counts(self, cls=None) -> None:
        counts = self.class_counts(cls)
        self.canvas.set_legend(counts)
        self.panel.set_counts([n for _, _, n, _ in counts[:-1]])

    # --- selection --------------------------------------------------------------------------------
    def selected_rows(self) -> np.ndarray:
        return self.canvas.selected_rows()

    def _on_selection(self, *_):
        self.link.highlight(self.selected_rows())

    def _on_smear_drag(self, viewer, event):
        start = np.asarray(event.pos, dtype=float)
        yield
        moved = False
        while event.type == "mouse_move":
            moved = moved or np.linalg.norm(np.asarray(event.pos) - start) > CLICK_PIXELS
            yield
        if moved:
            return
        row = self.link.row_at(event.position)
        if row is not None:
            self.canvas.select([row], toggle="Shift" in event.modifiers)

    # --- edits ------------------------------------------------------------------------------------
    def _keys(self, rows) -> list[tuple[str, int]]:
        return list(zip(self.table["image"].to_numpy()[rows], self.table["label"].to_numpy()[rows]))

    def assign_selected(self, cls: str | None) -> int:
        changed = self.store.assign(self._keys(self.selected_rows()), cls)
        if changed:
            self.refresh()
        return changed

    def verify_selected(self) -> int:
        """Mark the selected cells verified with the class they show (their annotation, else their
        prediction); cells with neither are left as they are. Returns how many changed."""
        from napari_reddino.review import shown_class

        rows = self.selected_rows()
        shown = shown_class(self.class_column()[rows], self.prediction[rows])
        keys = self._keys(rows)
        changed = self.store.verify({k: c for k, c in zip(keys, shown) if c})
        if changed:
            self.refresh()
        return changed

    def verified_column(self) -> np.ndarray:
        return self.store.verified_column(self.table)

    def undo(self):
        keys = self.store.undo()
        if keys:
            self.refresh()
        return keys

    def train(self, kind: str = "logreg"):
        return self.set_predictions(*self.fit(kind, self.class_column()))

    def fit(self, kind: str, annotated) -> tuple[np.ndarray, np.ndarray]:
        """The classifier's (prediction, confidence) per cell, trained on the annotations on top of the shipped
        classifier's predictions when there are any; touches no layer (runs in a worker)."""
        prior = self.prior or (None, None)
        return fit_on_top(self.X, annotated, *prior, kind=kind)

    def set_predictions(self, prediction, confidence):
        self.prediction, self.confidence = prediction, confidence
        self.refresh()
        return self.prediction, self.confidence

    def stale_sources(self) -> list[str]:
        """The cells layers segmented again since this map was made (it no longer describes their cells)."""
        return [name for s, name in enumerate(self.sources) if not self.link.is_current(s)]

    def select_next(self, k: int = 20) -> np.ndarray:
        """Select the ``k`` cells that teach the classifier most (representative ones before any prediction)."""
        rows = next_to_annotate(self.confidence, self.class_column(), k, self.X, self.prediction, (self.prior or [None])[0])
        self.canvas.select(rows)
        return rows

    # --- tables -----------------------------------------------------------------------------------
    def cell_columns(self) -> dict:
        """What the store says of every row now, read on the main thread (annotating goes on meanwhile):
        the columns ``build_cell_table`` adds to the table, in any thread."""
        t = self.table
        stamps = [self.store.verification(i, lbl) or ("", "") for i, lbl in zip(t["image"], t["label"])]
        return {"table": t, "class": self.class_column(), "prediction": np.array(self.prediction, dtype=object),
                "confidence": np.array(self.confidence, dtype=np.float32), "verified": self.verified_column(),
                "verified_by": [s[0] for s in stamps], "verified_at": [s[1] for s in stamps]}

    def cell_table(self) -> pd.DataFrame:
        return build_cell_table(self.cell_columns())

    def report(self, cls=None) -> pd.DataFrame:
        """The per-image report (from the classes and predictions only: the dock redraws it on every change)."""
        return morphology_report(pd.DataFrame({"image": self.table["image"].astype(str).to_numpy(),
                                               "class": self.class_column() if cls is None else cls,
                                               "prediction": self.prediction}))

    def export_cells(self, path) -> Path:
        from napari_reddino.outputs import write_csv

        return write_csv(self.cell_table(), path, "the cell table")

    def export_report(self, path) -> Path:
        from napari_reddino.outputs import write_csv

        return write_csv(self.report(), path, "the report")

    def graded_report_inputs(self, image_paths=None) -> dict:
        """What the graded report needs, read now (main thread): the store's columns (``cell_columns``), the
        map's coordinates and the smears that still show this map's cells; ``write_graded_report`` makes the
        table, the crops and the map's figure from them in a worker."""
        smears = {}
        for s, (image, source) in enumerate(zip(self.images, self.sources)):
            if self.link.is_current(s):
                from napari_reddino._widgets.levels import image_pixels

                labels = np.asarray(self.viewer.layers[source].data)
                data = image_pixels(self.viewer, image, labels.shape)  # a slide: the level of its cells
                data = None if data is None else np.asarray(data)
                if data is not None and data.shape[:2] == labels.shape:
                    smears[image] = (data, labels)
        return {"columns": self.cell_columns(), "Y": self.Y, "smears": smears, "image_paths": image_paths}

    def export_graded_report(self, path, image_paths=None) -> list[Path]:
        return write_graded_report(path, **self.graded_report_inputs(image_paths))


def build_cell_table(columns: dict) -> pd.DataFrame:
    """The exported cell table from ``AnnotationState.cell_columns``. Any thread."""
    t = columns["table"].copy()
    for col in ("class", "prediction", "confidence", "verified", "verified_by", "verified_at"):
        t[col] = columns[col]
    return export_cell_table(t)


def write_graded_report(path, columns, Y, smears, image_paths=None) -> list[Path]:
    """The graded slide report beside ``path``: ``<stem>_graded.csv`` and ``<stem>_graded.html`` (one sample per
    image folder, cells of each class cropped from ``smears``: image -> (image, labels)), from
    ``AnnotationState.graded_report_inputs``. Any thread."""
    from napari_reddino.grading.files import write_report

    path = Path(path)
    cells = build_cell_table(columns).assign(umap_x=Y[:, 0], umap_y=Y[:, 1])
    _, written = write_report(cells, path.parent, sample_by="folder", load=smears.get, image_paths=image_paths,
                              source="the annotation dock", stem=f"{path.stem}_graded")
    return written
