"""One UMAP session: pooled cells, their points, their cells on the smear, annotations and predictions.

Keeps the Points layer (features, colours), the smear layers (selection outline, class colours) and the
report table in step with the annotation store after every change. Each row's class and prediction are
kept as codes into one list of names (``RowIndex``, made in the dock's worker): a change updates the rows
it touched, and the colours, counts and report are counted from the codes (a map of 10^6 cells recounted
in milliseconds; looking classes up in the store's dictionary for every row took seconds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino._widgets.layers import REDDINO_UMAP
from napari_reddino.annotate import class_colors
from napari_reddino.classify import fit_on_top, next_to_annotate
from napari_reddino.report import REPORT_COLUMNS, export_cell_table, morphology_report
from napari_reddino.style import PREDICTED_ALPHA, UNANNOTATED_COLOR, class_counts

CLICK_PIXELS = 4


def text(values) -> pd.Series:
    """Strings as an object Series: pandas 3 would otherwise copy every string of a million cells into its own
    string type (seconds)."""
    return pd.Series(np.asarray(values, dtype=object), dtype=object)


def encode(values, names: list[str], code_of: dict[str, int]) -> np.ndarray:
    """int32 code per value into ``names`` (-1 for ''/missing); names not there yet are appended."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    lut = np.full(len(uniques) + 1, -1, np.int32)
    for j, name in enumerate(uniques):
        name = str(name)
        if name and name != "nan":
            if name not in code_of:
                code_of[name] = len(names)
                names.append(name)
            lut[j] = code_of[name]
    return lut[codes]


class RowIndex:
    """The pooled table as codes, made once per map (in the dock's worker; ``AnnotationState`` makes it where
    none was made): each row's image, label, prediction and confidence, a label -> row table per image, and
    the class names the codes point into (the dock's classes first)."""

    def __init__(self, table: pd.DataFrame, classes):
        self.names = [c.name for c in classes]
        self.code_of = {n: i for i, n in enumerate(self.names)}
        image_code, images = pd.factorize(np.asarray(table["image"], dtype=object), sort=False)
        self.image_code = image_code.astype(np.int32)
        self.image_names = [str(i) for i in images]
        self.image_of = {name: k for k, name in enumerate(self.image_names)}
        self.image = np.asarray(self.image_names, dtype=object)[self.image_code]
        self.label = table["label"].to_numpy(np.int64)
        self.pred = np.full(len(table), -1, np.int32)
        self.confidence = np.full(len(table), np.nan, np.float32)
        self.prior = False
        if {"prediction", "confidence"} <= set(table.columns) and table["confidence"].notna().any():
            # the cells came pre-classified (the features dock, the pipeline, a saved session)
            self.pred = encode(table["prediction"], self.names, self.code_of)
            self.confidence = table["confidence"].to_numpy(np.float32)
            self.prior = True
        self.features = pd.DataFrame({  # the map's points' table (its class column: the state's, when shown)
            "image": text(self.image), "label": self.label, "class": text(np.full(len(table), "", dtype=object)),
            "prediction": text(np.asarray([*self.names, ""], dtype=object)[self.pred]), "confidence": self.confidence})
        order = np.argsort(self.image_code, kind="stable")
        bounds = np.searchsorted(self.image_code[order], np.arange(len(images) + 1))
        self.row_of = []  # per image: label -> row (-1: none)
        for k in range(len(images)):
            rows = order[bounds[k]:bounds[k + 1]]
            lut = np.full(int(self.label[rows].max(initial=0)) + 1, -1, np.int64)
            lut[self.label[rows]] = rows
            self.row_of.append(lut)

    def rows_of(self, keys) -> np.ndarray:
        """The row of each (image, label) key (-1 where the map has none)."""
        out = np.full(len(keys), -1, np.int64)
        for i, (image, label) in enumerate(keys):
            k = self.image_of.get(image)
            if k is not None and 0 <= label < len(self.row_of[k]):
                out[i] = self.row_of[k][label]
        return out


class AnnotationState:
    def __init__(self, viewer, canvas, classes, store, result: dict, panel, draw: bool = True):
        """``draw``: the map's view, the smears, legend and report now (else a dock's next display slices call
        ``canvas.update_view``, ``refresh(points=False, smears=False)`` and ``iter_draw_smears``)."""
        from napari_reddino._widgets.smear_link import SmearLink

        self.viewer, self.canvas, self.classes, self.store, self.panel = viewer, canvas, classes, store, panel
        self.table: pd.DataFrame = result["table"]
        self.X: np.ndarray = result["X"]
        Y = self.Y = result["Y"]  # the map's coordinates, one row per table row
        self.params: dict = dict(result.get("params") or {})  # what the map was made with
        self.sources: list[str] = list(result["sources"])
        self.images: list[str] = list(result["images"])  # the image layer of each source
        index = result.get("index")
        self.index = index = index if isinstance(index, RowIndex) else RowIndex(self.table, classes)
        self.names, self._code_of = index.names, index.code_of  # codes -> class names (shared with the index)
        self._pred = index.pred
        self.prediction = self._decode(self._pred)
        self.confidence = index.confidence
        self.listeners: list = []  # called after every refresh (the verification gallery follows the state)
        self.prior: tuple[np.ndarray, np.ndarray] | None = None  # the shipped classifier's, which training builds on
        if index.prior:
            self.prior = (self.prediction, self.confidence)
        self._ann = np.full(len(self.table), -1, np.int32)
        keys = list(store.classes.items())
        rows = index.rows_of([k for k, _ in keys])
        found = rows >= 0
        self._ann[rows[found]] = encode([c for (_, c), f in zip(keys, found) if f], self.names, self._code_of)
        self._colors = class_colors(classes)
        source_of_image = {image: s for s, image in enumerate(result["images"])}
        source_of_code = np.array([source_of_image.get(name, -1) for name in index.image_names], np.int64)
        self.link = SmearLink(viewer, result["sources"], source_of_code[index.image_code], index.label,
                              result.get("geometry"))
        data = np.column_stack([-Y[:, 1], Y[:, 0]])
        extent = float(np.ptp(data, axis=0).max()) or 1.0
        name = " + ".join(result["sources"]) + " UMAP"
        self._face = self._face_colors()
        self.points = canvas.set_points(name, data, self._features(), self._face, extent / 80, draw=draw)
        self.points.metadata[REDDINO_UMAP] = {"sources": list(result["sources"])}
        canvas.selection_changed.connect(self._on_selection)
        viewer.mouse_drag_callbacks.append(self._on_smear_drag)
        if draw:
            self.refresh(points=False)

    def disconnect(self) -> None:
        self.link.disconnect()
        if self._on_smear_drag in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_smear_drag)
        try:
            self.canvas.selection_changed.disconnect(self._on_selection)
        except (TypeError, ValueError, RuntimeError):
            pass

    # --- derived columns --------------------------------------------------------------------------
    def _decode(self, codes) -> np.ndarray:
        return np.asarray([*self.names, ""], dtype=object)[codes]

    def class_column(self) -> np.ndarray:
        """Each row's annotated class ('' where none), as the store holds it."""
        return self._decode(self._ann)

    def _features(self) -> pd.DataFrame:
        features = self.index.features.copy(deep=False)  # made in the worker; a new class column here
        features["class"] = text(self.class_column())
        return features

    def _face_colors(self, rows=None) -> np.ndarray:
        """One RGBA per row (of ``rows``; all when None): its class' colour, else its prediction's (faded),
        else the unannotated grey; an annotation of a class not in the list counts as none."""
        from matplotlib.colors import to_rgba

        k = len(self.classes)
        table = np.asarray([*self._colors.values(), to_rgba(UNANNOTATED_COLOR)], np.float32)
        ann, pred = (self._ann, self._pred) if rows is None else (self._ann[rows], self._pred[rows])
        ann, pred = np.where(ann < k, ann, -1), np.where(pred < k, pred, -1)
        out = table[np.where(ann >= 0, ann, np.where(pred >= 0, pred, k))]
        out[(ann < 0) & (pred >= 0), 3] = PREDICTED_ALPHA
        out[ann >= 0, 3] = 1.0
        return out

    def _set_rows(self, rows, classes) -> None:
        """Rows ``rows`` now have the class ``classes`` (one name, a name per row, or None: none)."""
        rows = np.asarray(rows, np.int64)
        if classes is None:
            self._ann[rows] = -1
        elif isinstance(classes, str):
            self._ann[rows] = encode([classes], self.names, self._code_of)[0]
        else:
            self._ann[rows] = encode(classes, self.names, self._code_of)

    def refresh(self, rows=None, points: bool = True, smears: bool = True) -> None:
        """Show the classes and predictions of ``rows`` (every row when None) on the map, the smears, the
        legend, the report and the status line; ``points``: the map's points too (not when just made);
        ``smears``: the smears too (else ``iter_draw_smears`` later)."""
        cls = self.class_column()
        if points:
            features = self.canvas.features  # napari's own table: its class column replaced, not the table
            features["class"] = pd.Series(cls, index=features.index, dtype=object)
            if rows is None:
                features["prediction"] = pd.Series(self.prediction, index=features.index, dtype=object)
                features["confidence"] = self.confidence
                self._face = self._face_colors()
            else:
                self._face[rows] = self._face_colors(rows)
            self.canvas.set_colors(self._face)
        if smears:
            self.link.color_cells(cls, self.prediction, self.confidence, self.classes, rows)
        self._show_counts()
        self.panel.report.set_frame(self.report())
        n_ann = int((self._ann >= 0).sum())
        where = sorted({self.store.path_of(i) for i in self.index.image_names})  # (a fallback may have replaced one)
        saved = [str(p) for p in where if p.is_file() or self.store.is_pending(p)]
        said = (f"saved to {', '.join(saved)}" if saved else
                f"nothing saved yet (the first annotation goes to {', '.join(map(str, where))})")
        self.panel.status.setText(f"{len(self.table)} cells, {n_ann} annotated; {said}")
        for listener in list(self.listeners):
            try:
                listener()
            except RuntimeError:  # its Qt widget was deleted (a closed gallery): forget it
                self.listeners.remove(listener)

    def iter_draw_smears(self):
        """Every row's class and prediction on its smear (``refresh(smears=False)`` left them), a smear per turn
        of the event loop (a generator for the dock's display slices)."""
        self.link.color_cells(self.class_column(), self.prediction, self.confidence, self.classes, draw=False)
        yield from self.link.iter_draw()

    def class_counts(self, cls=None) -> list[tuple[str, str, int, int]]:
        """(name, colour, annotated, predicted) per class, then the unannotated cells (as
        ``style.class_counts``, which the smear's legend counts with, gives them; counted here from the codes)."""
        if cls is not None:
            return class_counts(self.classes, cls, self.prediction)
        v = len(self.names)
        free = self._ann < 0
        annotated = np.bincount(self._ann[~free], minlength=v)
        pred = self._pred[free]
        predicted = np.bincount(pred[pred >= 0], minlength=v)
        rows = [(c.name, c.color, int(annotated[i]), int(predicted[i])) for i, c in enumerate(self.classes)]
        return rows + [("unannotated", UNANNOTATED_COLOR, int(free.sum()), 0)]

    def _show_counts(self) -> None:
        counts = self.class_counts()
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
        return list(zip(self.index.image[rows].tolist(), self.index.label[rows].tolist()))

    def assign_selected(self, cls: str | None) -> int:
        rows = self.selected_rows()
        changed = self.store.assign(self._keys(rows), cls)
        if changed:
            self._set_rows(rows, cls)
            self.refresh(rows)
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
            rows = rows[np.asarray([bool(c) for c in shown], bool)]
            self._set_rows(rows, list(shown[[bool(c) for c in shown]]))
            self.refresh(rows)
        return changed

    def verified_column(self) -> np.ndarray:
        return self.store.verified_column(self.table)

    def undo(self):
        keys = self.store.undo()
        if keys:
            rows = self.index.rows_of(keys)
            keys = [k for k, r in zip(keys, rows) if r >= 0]
            rows = rows[rows >= 0]
            back = [self.store.classes.get(k) for k in keys]
            had = np.asarray([c is not None for c in back], bool)
            self._set_rows(rows[~had], None)
            self._set_rows(rows[had], [c for c in back if c is not None])
            self.refresh(rows)
        return keys

    def train(self, kind: str = "logreg"):
        return self.set_predictions(*self.fit(kind, self.class_column()))

    def fit(self, kind: str, annotated) -> tuple[np.ndarray, np.ndarray]:
        """The classifier's (prediction, confidence) per cell, trained on the annotations on top of the shipped
        classifier's predictions when there are any; touches no layer (runs in a worker)."""
        prior = self.prior or (None, None)
        return fit_on_top(self.X, annotated, *prior, kind=kind)

    def set_predictions(self, prediction, confidence):
        self._pred = encode(prediction, self.names, self._code_of)
        self.prediction = self._decode(self._pred)  # '' where none: the one spelling the codes give back
        self.confidence = np.asarray(confidence, np.float32)
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
        """The per-image report (``report.morphology_report`` of the classes and predictions; the dock redraws it
        on every change, so it is counted here from the codes)."""
        if cls is not None:
            return morphology_report(pd.DataFrame({"image": self.index.image, "class": cls,
                                                   "prediction": self.prediction}))
        final = np.where(self._ann >= 0, self._ann, self._pred)
        v, images = len(self.names), self.index.image_names
        keep = final >= 0
        counts = np.bincount(self.index.image_code[keep] * v + final[keep], minlength=len(images) * v)
        counts = counts.reshape(len(images), v)
        present = sorted((self.names[j], j) for j in np.flatnonzero(counts.sum(0)))
        totals = counts.sum(1)
        rows = [(image, name, int(counts[i, j]), 100.0 * counts[i, j] / totals[i])
                for i, image in enumerate(images) for name, j in present if counts[i, j]]
        return pd.DataFrame(rows, columns=REPORT_COLUMNS)

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
