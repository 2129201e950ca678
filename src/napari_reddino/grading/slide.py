"""Per sample (a slide): the red cells counted, and per class the count, percentage, 95 % Wilson interval and
grade, with the warnings a technologist must see before signing the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from napari_reddino.grading.table import Grading, grade, read_grading, wilson_interval
from napari_reddino.images import InputError

SAMPLE_BY = ("folder", "image")  # or the name of a column of the cell table
NO_CLASS = "(no class)"
NO_FOLDER = "all images"  # the sample of images whose folder is not known (a sample smear, a bare name)
REPORT_COLUMNS = ["sample", "class", "icsh_term", "count", "red_cells", "percent", "ci_low", "ci_high", "grade",
                  "unverified", "rule", "warnings"]


@dataclass
class SlideReport:
    table: pd.DataFrame  # long: one row per (sample, class), REPORT_COLUMNS but warnings
    images: pd.DataFrame  # per image: sample, image, red_cells, other_objects, unverified, then a count per class
    warnings: dict[str, list[str]] = field(default_factory=dict)  # sample -> lines
    notes: list[str] = field(default_factory=list)  # lines about the whole report
    grading: Grading | None = None
    sample_by: str = "folder"

    def long_table(self) -> pd.DataFrame:
        """``report.csv``: the table with each sample's warnings joined into its rows."""
        out = self.table.copy()
        out["warnings"] = out["sample"].map(lambda s: " | ".join(self.warnings.get(s, [])))
        return out[REPORT_COLUMNS]


def truthy(values) -> np.ndarray:
    """A ``verified`` column as booleans (True/False, 1/0, "true"/"yes"; empty or missing: False)."""
    s = pd.Series(values)
    if s.dtype == bool:
        return s.to_numpy()
    return s.fillna("").astype(str).str.strip().str.lower().isin(["true", "1", "1.0", "yes", "y"]).to_numpy()


def sample_names(cells: pd.DataFrame, sample_by: str = "folder", image_paths=None) -> pd.Series:
    """The sample of each row: its image's folder (``image_paths``: image name -> file, where known; else the
    folder in the name), the image itself, or the value of a column."""
    if sample_by == "image":
        return cells["image"].astype(str)
    if sample_by != "folder":
        if sample_by not in cells.columns:
            raise InputError(f"Received --sample-by {sample_by!r}, which is not a column of the cell table; "
                             f"accepted: folder, image or a column ({', '.join(map(str, cells.columns))}).")
        return cells[sample_by].fillna("").astype(str).replace("", "(none)")
    paths = image_paths or {}
    folders = {}
    for name in pd.unique(cells["image"].astype(str)):
        path = paths.get(name)
        folders[name] = Path(path).resolve().parent if path else PurePosixPath(name).parent
    # the folder's name, or its whole path where two folders share a name
    short = {f: (f.name if str(f) not in ("", ".") else NO_FOLDER) for f in set(folders.values())}
    clash = pd.Series(list(short.values())).duplicated(keep=False).to_numpy()
    for (f, name), dup in zip(list(short.items()), clash):
        if dup and name != NO_FOLDER:
            short[f] = str(f)
    return cells["image"].astype(str).map(lambda n: short[folders[n]])


def slide_report(cells: pd.DataFrame, grading: Grading | None = None, sample_by: str = "folder",
                 image_paths=None) -> SlideReport:
    """Grade every sample of a cell table (columns ``image``, and ``class``/``prediction``, ``type``,
    ``verified`` where present): only red cells (``type == "rbc"``) are counted; a cell's class is the
    annotated one, else the prediction."""
    from napari_reddino.report import final_class
    from napari_reddino.segment.types import RED_CELL, left_out_note

    grading = grading or read_grading()
    if "image" not in cells.columns:
        raise InputError(f"Received a cell table with columns {list(cells.columns)[:8]}; accepted: a table "
                         "with an image column (cells.csv of napari-reddino run, or Export cell table…).")
    notes = []
    cells = cells.reset_index(drop=True)
    red = (cells["type"].fillna("").astype(str) == RED_CELL).to_numpy() if "type" in cells.columns \
        else np.ones(len(cells), bool)
    if not red.all():
        notes.append(f"Only red cells are graded: {left_out_note(cells, red)}.")
    frame = pd.DataFrame({
        "sample": sample_names(cells, sample_by, image_paths).to_numpy(),
        "image": cells["image"].astype(str).to_numpy(),
        "class": final_class(cells).replace("", NO_CLASS).to_numpy() if len(cells) else [],
        "verified": truthy(cells["verified"]) if "verified" in cells.columns else np.zeros(len(cells), bool),
        "red": red})
    rbc = frame[frame["red"]]
    found = pd.unique(rbc["class"])
    entries = {name: grading.find(name) for name in found if name != NO_CLASS}
    missing = sorted(n for n, e in entries.items() if e is None)
    if missing:
        notes.append(f"Not in the grading table ({grading.name}), so counted but not graded: {', '.join(missing)}.")
    table_names = {e.name: n for n, e in entries.items() if e is not None}  # grading name -> name in the cells
    order = [(c, table_names.get(c.name, c.name)) for c in grading.classes]
    order += [(None, n) for n in missing] + ([(None, NO_CLASS)] if NO_CLASS in set(found) else [])

    rows, warnings = [], {}
    samples = sorted(pd.unique(frame["sample"]))
    for sample in samples:
        these = rbc[rbc["sample"] == sample]
        n = len(these)
        counts = these["class"].value_counts()
        unverified = these.loc[~these["verified"], "class"].value_counts()
        for entry, name in order:
            k = int(counts.get(name, 0))
            low, high = wilson_interval(k, n)
            percent = 100.0 * k / n if n else np.nan
            if entry is None:
                g, rule = "", "not in the grading table" if name != NO_CLASS else "no class: neither annotated nor predicted"
            elif entry.report == "grade":
                g, rule = grade(percent, entry.thresholds), entry.rule()
            elif entry.report == "presence":
                g, rule = ("present" if k else "absent"), entry.rule()
            else:
                g, rule = "", entry.rule()
            rows.append((sample, entry.name if entry else name, entry.icsh_term if entry else "", k, n, percent,
                         100 * low, 100 * high, g, int(unverified.get(name, 0)), rule))
        warnings[sample] = sample_warnings(these, order, grading)
    table = pd.DataFrame(rows, columns=REPORT_COLUMNS[:-1])
    return SlideReport(table, per_image(frame, [name for _, name in order]), warnings, notes, grading, sample_by)


def sample_warnings(rbc: pd.DataFrame, order, grading: Grading) -> list[str]:
    n = len(rbc)
    lines = []
    if n < grading.min_red_cells:
        lines.append(f"Only {n:,} red cells counted: fewer than {grading.min_red_cells:,}, so the percentages are "
                     "uncertain (see the 95 % intervals).")
    counts = rbc["class"].value_counts()
    for entry, name in order:
        if entry is not None and entry.warn_above is not None and n:
            percent = 100.0 * int(counts.get(name, 0)) / n
            if percent > entry.warn_above:
                lines.append(f"{entry.icsh_term or entry.name}: {percent:.1f} %, above {entry.warn_above:g} %"
                             + (f" ({entry.warn_note})" if entry.warn_note else "."))
    unverified = int((~rbc["verified"]).sum())
    if unverified:
        lines.append(f"{unverified:,} of {n:,} red cells not verified by a person: their class is the classifier's "
                     "(or none) until checked in the gallery.")
    unclassified = int((rbc["class"] == NO_CLASS).sum())
    if unclassified:
        lines.append(f"{unclassified:,} red cells have no class (neither annotated nor predicted): counted as red "
                     "cells, in no class.")
    return lines


def per_image(frame: pd.DataFrame, classes) -> pd.DataFrame:
    """One row per image: its sample, red cells, other objects, unverified red cells, and a count per class."""
    rows = []
    for image, these in frame.sort_values(["sample", "image"], kind="stable").groupby("image", sort=False):
        rbc = these[these["red"]]
        counts = rbc["class"].value_counts()
        rows.append({"sample": these["sample"].iloc[0], "image": image, "red_cells": len(rbc),
                     "other_objects": int((~these["red"]).sum()), "unverified": int((~rbc["verified"]).sum()),
                     **{c: int(counts.get(c, 0)) for c in classes}})
    cols = ["sample", "image", "red_cells", "other_objects", "unverified", *classes]
    return pd.DataFrame(rows, columns=cols)
