"""Putting saved annotations back on the right cells when the segmentation may have changed.

Each saved annotation carries its cell's centroid (x, y) and a fingerprint of the segmentation it was made
on. On restore: same fingerprint → the same label ("same"); otherwise the current cell whose mask contains
the stored centroid, if that cell's own centroid lies within a third of its diameter ("matched"); anything
else, or two annotations claiming one cell, is "unmatched": reported and kept in the file, never moved.
Rows of older files without centroids go back by label only when nothing says the cells changed.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

MATCH_FRACTION = 1 / 3  # of the cell's equivalent diameter


def fingerprint(labels) -> str:
    a = np.ascontiguousarray(np.asarray(labels, dtype=np.int64))
    return hashlib.sha1(repr(a.shape).encode() + a.tobytes()).hexdigest()[:16]


class Cells:
    """The current cells of one image: centroid (x, y) and equivalent diameter per label."""

    def __init__(self, labels):
        self.labels = np.asarray(labels)
        self.fingerprint = fingerprint(self.labels)
        flat = self.labels.ravel().astype(np.int64)
        ys, xs = np.indices(self.labels.shape)
        self.area = np.bincount(flat)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.x = np.bincount(flat, weights=xs.ravel()) / self.area
            self.y = np.bincount(flat, weights=ys.ravel()) / self.area
        self.diameter = 2 * np.sqrt(self.area / np.pi)

    def has(self, label: int) -> bool:
        return 0 < label < len(self.area) and self.area[label] > 0

    def centroid(self, label: int) -> tuple[float, float]:
        return (float(self.x[label]), float(self.y[label])) if self.has(label) else (np.nan, np.nan)

    def cell_at(self, x: float, y: float) -> int:
        """The label whose mask holds (x, y) and whose centroid is near it; 0 when none."""
        r, c = int(round(y)), int(round(x))
        if not (0 <= r < self.labels.shape[0] and 0 <= c < self.labels.shape[1]):
            return 0
        lbl = int(self.labels[r, c])
        if lbl and np.hypot(self.x[lbl] - x, self.y[lbl] - y) <= MATCH_FRACTION * self.diameter[lbl]:
            return lbl
        return 0


def match(rows: pd.DataFrame, cells: Cells) -> tuple[np.ndarray, np.ndarray]:
    """(current label, kind) per stored row of one image; kind is same, matched, by_label or unmatched."""
    n = len(rows)
    new, kind = np.zeros(n, np.int64), np.full(n, "unmatched", dtype=object)
    seg = rows["segmentation"].fillna("").astype(str).to_numpy()
    xs, ys = rows["x"].to_numpy(float), rows["y"].to_numpy(float)
    old = rows["label"].to_numpy(np.int64)
    legacy = (seg == "") & np.isnan(xs)
    legacy_ok = legacy.any() and all(cells.has(int(lbl)) for lbl in old[legacy])
    for i in range(n):
        if seg[i] == cells.fingerprint and cells.has(int(old[i])):
            new[i], kind[i] = old[i], "same"
        elif not np.isnan(xs[i]):
            lbl = cells.cell_at(xs[i], ys[i])
            new[i], kind[i] = (lbl, "matched") if lbl else (0, "unmatched")
        elif legacy[i] and legacy_ok:
            new[i], kind[i] = old[i], "by_label"
    # a cell annotated on this very segmentation keeps its annotation; others claiming one cell are unmatched
    moved = (new > 0) & (kind != "same")
    claimed = pd.Series(new[moved]).value_counts()
    clash = moved & (np.isin(new, claimed.index[claimed > 1].to_numpy()) | np.isin(new, new[kind == "same"]))
    new[clash], kind[clash] = 0, "unmatched"
    return new, kind
