"""Putting saved annotations back on the right cells when the segmentation may have changed.

Each saved annotation carries its cell's centroid (x, y) and a fingerprint of the segmentation it was made
on. On restore: same fingerprint → the same label ("same"); otherwise the current cell whose mask contains
the stored centroid, if that cell's own centroid lies within a third of its diameter ("matched"); anything
else, or two annotations claiming one cell, is "unmatched": reported and kept in the file, never moved.
Rows of older files without centroids go back by label only when nothing says the cells changed.
Each row also names the image it was made on by a hash of its pixels (``image_fingerprint``): a row made
on another image that happens to bear the same name (two smears called ``1`` in one project folder, or in
the shared home-folder file) is never put on this one's cells.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

MATCH_FRACTION = 1 / 3  # of the cell's equivalent diameter


def fingerprint(labels) -> str:
    a = np.ascontiguousarray(np.asarray(labels, dtype=np.int64))
    return hashlib.sha1(repr(a.shape).encode() + a.tobytes()).hexdigest()[:16]


def image_fingerprint(pixels) -> str:
    """A hash of an image's pixels as RGB bytes ('' when there are none): the same smear gives the same value
    in any session, whether napari's reader or ours opened it (grey or with alpha), another smear another."""
    if pixels is None:
        return ""
    a = np.asarray(pixels)
    if not (a.dtype == np.uint8 and a.ndim == 3 and a.shape[-1] == 3):
        from napari_reddino.images import to_rgb_uint8

        a = to_rgb_uint8(a)
    a = np.ascontiguousarray(a)
    return hashlib.sha1(repr(a.shape).encode() + a.tobytes()).hexdigest()[:16]


class Cells:
    """The current cells of one image: centroid (x, y) and equivalent diameter per label, and the image's
    ``image_fingerprint`` ('' when the pixels were not given)."""

    def __init__(self, labels, pixels=None):
        self.labels = np.asarray(labels)
        self.fingerprint = fingerprint(self.labels)
        self.image = image_fingerprint(pixels)
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
    """(current label, kind) per stored row of one image; kind is same, matched, by_label, unmatched or
    other_image (made on another image of the same name: never placed)."""
    n = len(rows)
    new, kind = np.zeros(n, np.int64), np.full(n, "unmatched", dtype=object)
    made_on = rows["image_hash"].fillna("").astype(str).to_numpy() if "image_hash" in rows else np.full(n, "")
    other = (made_on != "") & (cells.image != "") & (made_on != cells.image)
    seg = rows["segmentation"].fillna("").astype(str).to_numpy()
    xs, ys = rows["centroid_x"].to_numpy(float), rows["centroid_y"].to_numpy(float)
    old = rows["label"].to_numpy(np.int64)
    legacy = (seg == "") & np.isnan(xs)
    legacy_ok = legacy.any() and all(cells.has(int(lbl)) for lbl in old[legacy])
    for i in range(n):
        if other[i]:
            kind[i] = "other_image"
        elif seg[i] == cells.fingerprint and cells.has(int(old[i])):
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
