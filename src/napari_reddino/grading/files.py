"""``report.csv`` and ``report.html`` from a cell table and, where they can be found, its images, labels,
annotations and UMAP: a ``napari-reddino run`` folder (``session.json``, ``<stem>_labels.tif``, image copies,
``reddino-annotations.csv``) or images in a folder given by the user."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino.grading.slide import SlideReport, slide_report, truthy
from napari_reddino.images import InputError

REPORT_FILES = ("report.csv", "report.html")


class RunFolder:
    """What a results folder says about the images of ``names``: where each image and its labels are, which
    file holds its annotations. ``images_dir`` (the user's ``--images``) is looked in first."""

    def __init__(self, folder, names, images_dir=None):
        from napari_reddino.outputs import output_stems
        from napari_reddino.session import read_manifest

        self.folder = Path(folder)
        self.images_dir = Path(images_dir) if images_dir else None
        try:
            manifest = read_manifest(self.folder)
        except InputError:
            manifest = {"images": []}
        self.entries = {e.get("name"): e for e in manifest.get("images") or [] if isinstance(e, dict)}
        self.annotation_files = dict(((manifest.get("annotations") or {}).get("files") or {}))
        self.stems = dict(zip(names, output_stems(names)))

    def image_file(self, name) -> Path | None:
        if self.images_dir is not None and (self.images_dir / name).is_file():
            return self.images_dir / name
        entry = self.entries.get(name) or {}
        for candidate in (entry.get("copy") and self.folder / entry["copy"], entry.get("path")):
            if candidate and Path(candidate).is_file():
                return Path(candidate)
        return None

    def labels_file(self, name) -> Path | None:
        entry = self.entries.get(name) or {}
        labels = (entry.get("files") or {}).get("labels") or f"{self.stems.get(name, name)}_labels.tif"
        return self.folder / labels if (self.folder / labels).is_file() else None

    def source_paths(self) -> dict:
        """image name -> the file it was read from, where known (for one sample per folder)."""
        paths = {n: (e or {}).get("path") for n, e in self.entries.items()}
        if self.images_dir is not None:
            paths.update({n: str(self.images_dir / n) for n in self.stems if (self.images_dir / n).is_file()})
        return {n: p for n, p in paths.items() if p}

    def labels(self, name) -> np.ndarray | None:
        from napari_reddino.formats import read_labels

        path = self.labels_file(name)
        try:
            return None if path is None else read_labels(path)
        except InputError:
            return None

    def load(self, name):
        """(image, labels) of one image, or None when either is missing, unreadable or they disagree."""
        from napari_reddino.images import read_image

        image_path, labels = self.image_file(name), self.labels(name)
        if image_path is None or labels is None:
            return None
        try:
            image = read_image(image_path)
        except InputError:
            return None
        return (image, labels) if image.shape[:2] == labels.shape else None


def read_annotation_rows(path) -> pd.DataFrame:
    """An annotation file's rows with a class or a ``verified`` state (a cell verified as predicted may carry
    no class of its own); checked as ``annotate.read_annotations`` checks it."""
    from napari_reddino.annotate import WHERE_COLUMNS, read_annotations
    from napari_reddino.cells import label_column
    from napari_reddino.formats import with_current_names

    checked = read_annotations(path)
    raw = with_current_names(pd.read_csv(path, dtype={"image": str, "class": str}))
    if "verified" not in raw.columns:  # None: the file says nothing of it (the cell table's state stands)
        return checked.assign(verified=None)
    for col in WHERE_COLUMNS:
        if col not in raw.columns:
            raw[col] = np.nan
    raw["verified"] = truthy(raw["verified"])
    raw["class"] = raw["class"].fillna("")
    raw = raw[(raw["class"] != "") | raw["verified"]].reset_index(drop=True)
    raw["label"] = label_column(raw["label"], repr(str(path)))
    raw["segmentation"] = raw["segmentation"].fillna("").astype(str)
    return raw


def with_annotations(cells: pd.DataFrame, run: RunFolder) -> tuple[pd.DataFrame, str]:
    """The cell table with the classes and ``verified`` states of the run's annotation files put on their
    cells (``annotation_match``: a cell of another segmentation is not guessed). Returns the table and a note
    on annotations that could not be placed ('' when none)."""
    from napari_reddino.annotation_match import Cells, match

    files = {name: Path(p) for name, p in run.annotation_files.items() if p and Path(p).is_file()}
    if not files:
        return cells, ""
    cells = cells.copy()
    cells["class"] = cells["class"].fillna("").astype(str) if "class" in cells.columns else ""
    cells["verified"] = truthy(cells["verified"]) if "verified" in cells.columns else False
    unplaced = 0
    read: dict[Path, pd.DataFrame] = {}
    for name, path in files.items():
        if path not in read:
            read[path] = read_annotation_rows(path)
        rows = read[path][read[path]["image"] == name]
        if rows.empty:
            continue
        labels = run.labels(name)
        if labels is None:
            unplaced += len(rows)
            continue
        new, _ = match(rows, Cells(labels))
        mine = cells["image"].astype(str) == name
        index = pd.Series(cells.index[mine], index=cells.loc[mine, "label"].astype(np.int64).to_numpy())
        for cls, verified, lbl in zip(rows["class"], rows["verified"], new):
            if lbl and lbl in index.index:
                if cls:
                    cells.loc[index[lbl], "class"] = cls
                if verified is not None:
                    cells.loc[index[lbl], "verified"] = bool(verified)
            else:
                unplaced += 1
    note = (f"{unplaced} annotation(s) could not be placed on a cell of these results (another segmentation, or "
            "its labels are missing) and are left out of the counts; they stay in their file." if unplaced else "")
    return cells, note


def write_report(cells: pd.DataFrame, out_dir, grading=None, sample_by: str = "folder", run: RunFolder | None = None,
                 load=None, image_paths=None, source: str = "", stem: str = "report") -> tuple[SlideReport, list[Path]]:
    """Grade ``cells`` and write ``<stem>.csv`` and ``<stem>.html`` into ``out_dir`` (atomically). Thumbnails
    come from ``load(name) -> (image, labels)`` (else the ``run`` folder's files); the UMAP from the table's
    own coordinates."""
    from napari_reddino.atomic import atomic_path
    from napari_reddino.grading.html import class_thumbnails, report_html, umap_png
    from napari_reddino.outputs import write_csv

    out = Path(out_dir)
    notes = []
    if run is not None:
        cells, note = with_annotations(cells, run)
        notes += [note] if note else []
        load = load or run.load
        image_paths = {**run.source_paths(), **(image_paths or {})}
    report = slide_report(cells, grading, sample_by, image_paths)
    report.notes += notes
    thumbs, thumbs_note = ({}, "Thumbnails left out: the images and labels of these cells were not found (give "
                           "the images with --images DIR).")
    if load is not None and "label" in cells.columns:
        thumbs, thumbs_note = class_thumbnails(cells, load)
        if not thumbs and not thumbs_note:
            thumbs_note = "No classified red cells to show."
    page = report_html(report, thumbs or None, umap_png(cells), source=source, thumbnails_note=thumbs_note,
                       umap_note="No UMAP coordinates in the cell table: the map is left out.")
    written = [write_csv(report.long_table(), out / f"{stem}.csv", "the report")]
    try:
        with atomic_path(out / f"{stem}.html") as tmp:
            tmp.write_text(page, encoding="utf-8")
        written.append(out / f"{stem}.html")
    except OSError as exc:
        raise InputError(f"Could not write the report to {str(out / f'{stem}.html')!r} "
                         f"({exc.strerror or type(exc).__name__}); accepted: a folder you can write to.") from None
    return report, written


def run_report(result, out_dir, grading, sample_by: str = "folder", image_paths=None) -> list[Path]:
    """``report.csv`` and ``report.html`` of a pipeline result just written into ``out_dir`` (by
    ``napari-reddino run``): thumbnails from the images in memory, annotations already in the folder."""
    cells = result.cells()
    if cells.empty:
        return []
    smears = {s.name: (s.image, s.labels) for s in result.smears if s.labels is not None}
    run = RunFolder(out_dir, [s.name for s in result.smears])
    _, written = write_report(cells, out_dir, grading, sample_by, run=run, load=smears.get,
                              image_paths=image_paths, source=f"napari-reddino run ({len(smears)} image(s))")
    return written
