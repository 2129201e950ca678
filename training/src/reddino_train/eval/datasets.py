"""Labelled cells for the evaluation: ``chula:PATH``, ``folder:PATH`` and ``csv:FILE`` become one
:class:`CellSet` of crops, class ids, the image each cell came from (the CV group) and its source.

Cells are cropped around their labelled centre (``crop_size`` square, padded with 0 where it leaves the
image) or, for CSV rows with a box, the box itself (RedDino's published preprocessing: the model then
squash-resizes it). Each cell also carries the foreground threshold of its whole image (Otsu on the green
channel), which the handcrafted baseline uses to find the cell inside its crop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_reddino.cells import padded_crop
from napari_reddino.chula import CLASSES as CHULA_CLASSES
from napari_reddino.chula import folders, read_centres
from napari_reddino.images import IMAGE_SUFFIXES, InputError, read_image

ACCEPTED = "chula:PATH (images/ + labels/<id>.txt 'x y class', or the upstream Dataset/ + Label/), folder:PATH (one sub-folder of crops per " \
           "class) or csv:FILE (columns image, x, y or x0, y0, x1, y1, class, optional source)"


@dataclass
class CellSet:
    crops: list  # (h, w, 3) uint8 each
    y: np.ndarray  # int class index into ``classes``
    classes: list[str]
    groups: np.ndarray  # image each cell comes from (CV groups)
    sources: np.ndarray | None = None  # acquisition source per cell, for leave-one-source-out
    thresholds: np.ndarray = field(default=None)  # green-channel foreground threshold of the cell's image

    def __post_init__(self):
        self.y = np.asarray(self.y, dtype=np.int64)
        self.groups = np.asarray(self.groups).astype(str)
        if self.thresholds is None:
            self.thresholds = np.full(len(self.y), np.nan, dtype=np.float32)
        if not (len(self.crops) == len(self.y) == len(self.groups) == len(self.thresholds)):
            raise ValueError("CellSet fields must have one entry per cell")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx) -> CellSet:
        idx = np.asarray(idx, dtype=np.int64)
        return CellSet([self.crops[i] for i in idx], self.y[idx], list(self.classes), self.groups[idx],
                       None if self.sources is None else self.sources[idx], self.thresholds[idx])

    def counts(self) -> dict[str, int]:
        return {c: int((self.y == i).sum()) for i, c in enumerate(self.classes) if (self.y == i).any()}


def image_threshold(rgb: np.ndarray) -> float:
    """Otsu threshold of the green channel: red cells absorb green, so cell pixels lie below it."""
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(rgb[..., 1]))


def centre_crop(rgb, x, y, size: int) -> np.ndarray:
    x0, y0 = int(np.round(x)) - size // 2, int(np.round(y)) - size // 2
    return padded_crop(rgb, y0, x0, y0 + size, x0 + size)


def load_chula(root: Path, crop_size: int) -> CellSet:
    images, labels = folders(root)
    if not images.is_dir() or not labels.is_dir():
        raise InputError(f"Received chula:{root}, which has no images/ and labels/ folders; accepted: {ACCEPTED}.")
    by_stem = {p.stem: p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    crops, ys, groups, thr = [], [], [], []
    for lab in sorted(labels.glob("*.txt"), key=lambda p: (len(p.stem), p.stem)):
        centres, classes = read_centres(lab)
        if not len(centres) or lab.stem not in by_stem:
            continue  # an empty label file says nothing about the cells in its image
        rgb = read_image(by_stem[lab.stem])
        t = image_threshold(rgb)
        for (y, x), c in zip(centres, classes.tolist()):
            if not 0 <= c < len(CHULA_CLASSES):
                raise InputError(f"Received class {c} in {lab}; accepted: Chula class ids 0-12.")
            crops.append(centre_crop(rgb, x, y, crop_size))
            ys.append(c), groups.append(lab.stem), thr.append(t)
    if not crops:
        raise InputError(f"Received chula:{root} with no labelled cells; accepted: {ACCEPTED}.")
    return CellSet(crops, ys, list(CHULA_CLASSES), groups, None, np.asarray(thr, np.float32))


def load_folder(root: Path) -> CellSet:
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    crops, ys, groups, classes = [], [], [], []
    for d in class_dirs:
        files = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            continue
        classes.append(d.name)
        for f in files:
            crops.append(read_image(f))
            ys.append(len(classes) - 1)
            groups.append(str(f.relative_to(root)))  # each crop is its own image: no grouping possible
    if not crops:
        raise InputError(f"Received folder:{root} without class sub-folders of images; accepted: {ACCEPTED}.")
    return CellSet(crops, ys, classes, groups)


def load_csv(path: Path, crop_size: int) -> CellSet:
    import pandas as pd

    if not path.is_file():
        raise InputError(f"Received csv:{path}, which is not a file; accepted: {ACCEPTED}.")
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input
        raise InputError(f"Could not read csv:{path} ({type(exc).__name__}); accepted: {ACCEPTED}.") from None
    has_box = {"x0", "y0", "x1", "y1"} <= set(df.columns)
    coords = ["x0", "y0", "x1", "y1"] if has_box else ["x", "y"]
    if not {"image", "class", *coords} <= set(df.columns):
        raise InputError(f"Received csv:{path} with columns {list(df.columns)}; accepted: {ACCEPTED}.")
    numbers = df[coords].apply(pd.to_numeric, errors="coerce")
    bad = numbers.isna().any(axis=1) | df["image"].isna() | df["class"].isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"Received csv:{path} whose row {i + 2} has an empty or non-numeric value "
                         f"({', '.join(f'{c}={df[c].iloc[i]!r}' for c in ['image', *coords, 'class'])}); "
                         f"accepted: {ACCEPTED}.")
    df[coords] = numbers
    classes = sorted(df["class"].astype(str).unique(), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    index = {c: i for i, c in enumerate(classes)}
    has_source = "source" in df.columns
    crops, ys, groups, thr, sources = [], [], [], [], []
    for image, rows in df.groupby("image", sort=False):
        p = Path(image) if Path(image).is_absolute() else path.parent / image
        rgb = read_image(p)  # a missing or unreadable image: one line naming it
        t = image_threshold(rgb)
        for r in rows.to_dict("records"):
            if has_box:
                crops.append(padded_crop(rgb, int(r["y0"]), int(r["x0"]), int(r["y1"]), int(r["x1"])))
            else:
                crops.append(centre_crop(rgb, r["x"], r["y"], crop_size))
            ys.append(index[str(r["class"])]), groups.append(str(image)), thr.append(t)
            sources.append(str(r["source"]) if has_source else "")
    return CellSet(crops, ys, classes, groups, np.asarray(sources) if has_source else None,
                   np.asarray(thr, np.float32))


def load_dataset(spec: str, crop_size: int = 48) -> CellSet:
    kind, sep, rest = str(spec).partition(":")
    if not sep or kind not in ("chula", "folder", "csv") or not rest:
        raise InputError(f"Received dataset {spec!r}; accepted: {ACCEPTED}.")
    if crop_size < 8:
        raise InputError(f"Received crop size {crop_size}; accepted: an integer of at least 8 pixels.")
    path = Path(rest).expanduser()
    if kind == "chula":
        return load_chula(path, crop_size)
    if kind == "folder":
        if not path.is_dir():
            raise InputError(f"Received folder:{path}, which is not a folder; accepted: {ACCEPTED}.")
        return load_folder(path)
    return load_csv(path, crop_size)


def resolve_classes(cells: CellSet, names) -> list[int]:
    """Class ids for ``names`` given as ids ('12') or names ('elliptocyte'); InputError when unknown."""
    out = []
    for n in names:
        n = str(n).strip()
        if n in cells.classes:
            out.append(cells.classes.index(n))
        elif n.isdigit() and int(n) < len(cells.classes) and n not in cells.classes:
            out.append(int(n))
        else:
            raise InputError(f"Received class {n!r} to exclude; accepted: ids 0-{len(cells.classes) - 1} or "
                             f"names {cells.classes}.")
    return out


def exclude_classes(cells: CellSet, ids) -> CellSet:
    return cells.subset(np.flatnonzero(~np.isin(cells.y, list(ids)))) if ids else cells


def stratified_limit(cells: CellSet, limit: int | None, seed: int = 0, min_per_class: int = 10) -> CellSet:
    """At most ``limit`` cells, every class kept in proportion (and at least ``min_per_class`` where it has
    them), drawn with a fixed seed; order preserved."""
    if not limit or limit >= len(cells):
        return cells
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(cells.y):
        idx = np.flatnonzero(cells.y == c)
        n = min(len(idx), max(min_per_class, round(limit * len(idx) / len(cells))))
        keep.append(rng.choice(idx, n, replace=False))
    return cells.subset(np.sort(np.concatenate(keep)))
