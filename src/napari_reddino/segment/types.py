"""What each segmented object is, from its colour and shape relative to the red-cell diameter.

Works on any label image (threshold or Cellpose). Types (a later rule wins over an earlier one):

- ``cluster``: overlapping cells that could not be split reliably (over 2.2 cells' area, or over 1.5 and
  not convex: solidity under 0.8);
- ``artefact``: dust (under 6% of a cell's area and not a platelet), and anything thinner than a fifth of a
  cell diameter (scale bars, text, fibres) or a streak (longer than 2.5 diameters, narrower than half of one;
  or grey, not eosin red, longer than 2 and narrower than 0.8: a crease lying along cells);
- ``platelet``: smaller than 40% of a red cell and at least 30% purple;
- ``wbc``: holds a nucleus (purple: strong green, little blue absorption, and darker than any red cell)
  of at least 12% of a red cell's area;
- ``rbc``: everything else.

``border`` is True for objects touching the image edge (their shape is cut).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

OBJECT_TYPES = ("rbc", "wbc", "platelet", "cluster", "artefact")
RED_CELL = "rbc"


def object_types(image, labels, diameter: float | None = None, label_ids=None, stats=None) -> pd.DataFrame:
    """``label, type, border`` for each id in ``label_ids`` (default: every label present); ``stats``: the
    image's :class:`~napari_reddino.segment.threshold.StainStats` when the segmentation measured them."""
    import cv2
    from napari_reddino.cells import label_sums, solidity as cell_solidity
    from napari_reddino.images import to_rgb_float
    from napari_reddino.segment.threshold import (GREY, label_max, nucleus_mask, optical_density, purple_mask,
                                                  stain_stats, streak_shaped)

    labels = np.asarray(labels, np.int32)
    present = np.unique(labels)
    present = present[present > 0]
    ids = present if label_ids is None else np.asarray(label_ids, np.int64)
    if len(ids) == 0:
        return pd.DataFrame({"label": np.zeros(0, np.int64), "type": pd.Series([], dtype=object),
                             "border": np.zeros(0, bool)})
    rgb = to_rgb_float(image)
    stats = stats or stain_stats(rgb)
    od = optical_density(rgb, stats.background)
    purple = purple_mask(od, stats.threshold)
    area, major, minor = _moments(labels, ids)
    if not diameter:
        diameter = _diameter_from_labels(area)
    cell_area = np.pi * (diameter / 2) ** 2
    sums = label_sums(labels, ids)
    purple_px = sums(purple).astype(float)
    nucleus = nucleus_mask(od, stats.threshold, purple)
    nucleus_px = sums(nucleus).astype(float)
    grey_px = sums(od[..., 0] >= GREY * np.maximum(od[..., 1], 1e-3)).astype(float)
    # thickness: twice the largest distance to the object's edge (neighbouring objects are edges too)
    inner = (labels > 0) & ~inner_boundaries(labels)
    dist = cv2.distanceTransform(inner.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    thickness = 2 * (label_max(dist, labels, ids) + 1)
    # solidity (convex hull) only where it decides something: objects of more than 1.3 cells
    solidity = np.ones(len(ids))
    big = np.flatnonzero(area > 1.5 * cell_area)
    if len(big):
        solidity[big] = cell_solidity(labels, ids[big], area[big])

    kind = np.full(len(ids), RED_CELL, dtype=object)
    cluster = (area > 2.2 * cell_area) | ((area > 1.5 * cell_area) & (solidity < 0.8))
    thin = (thickness < 0.2 * diameter) | ((major > 2.5 * diameter) & (minor < 0.5 * diameter))
    # a grey crease or fibre lying along cells: red cells are eosin red (shorter grey pieces are left as they are:
    # typing them artefact lost pale red cells on Raabin fields)
    thin |= (grey_px >= 0.5 * area) & streak_shaped(major, minor, diameter)
    platelet = (area < 0.4 * cell_area) & (purple_px >= 0.3 * area)
    wbc = (nucleus_px >= 0.12 * cell_area) & (area >= 0.3 * cell_area)
    kind[cluster] = "cluster"
    kind[area < 0.06 * cell_area] = "artefact"  # dust
    kind[platelet] = "platelet"
    kind[wbc] = "wbc"
    kind[thin] = "artefact"  # no cell is that thin, whatever its colour (scale bars and text are blue)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return pd.DataFrame({"label": ids.astype(np.int64), "type": kind, "border": np.isin(ids, edge)})


def inner_boundaries(labels) -> np.ndarray:
    """skimage's ``find_boundaries(labels, mode="inner")`` without its background test: pixels with a
    4-neighbour of another label (outside the image counts as the same label)."""
    out = np.zeros(labels.shape, bool)
    down, right = labels[1:] != labels[:-1], labels[:, 1:] != labels[:, :-1]
    out[1:] |= down
    out[:-1] |= down
    out[:, 1:] |= right
    out[:, :-1] |= right
    return out


def _moments(labels, ids):
    """Area and the major/minor axis lengths (of the ellipse with the same second moments) per id."""
    from napari_reddino.cells import second_moments

    area, larger, smaller = second_moments(labels, ids, pixel_area=True)
    return area, 4 * np.sqrt(np.maximum(larger, 0)), 4 * np.sqrt(smaller)


def _diameter_from_labels(area: np.ndarray) -> float:
    """Red-cell diameter from the objects themselves: the median equivalent diameter, taken twice so that
    platelets and dust do not pull it down."""
    from napari_reddino.segment.threshold import DEFAULT_DIAMETER

    area = area[np.isfinite(area) & (area > 0)]
    if len(area) < 3:
        return DEFAULT_DIAMETER
    d = 2 * np.sqrt(np.median(area) / np.pi)
    big = area[area >= 0.33 * np.pi * (d / 2) ** 2]
    return float(2 * np.sqrt(np.median(big) / np.pi)) if len(big) >= 3 else float(d)


def type_counts(types) -> dict[str, int]:
    """Objects per type, every type named (0 where absent)."""
    types = pd.Series(types, dtype=object)
    return {t: int((types == t).sum()) for t in OBJECT_TYPES}


def segmentation_summary(table, name: str) -> str:
    """One line for the dock and the CLI: red cells found, the other objects by type, the diameter used."""
    n = len(table)
    if n == 0:
        return f"no cells found in {name!r} (empty or unstained image?)"
    counts = type_counts(table["type"])
    others = ", ".join(f"{counts[t]} {_NAMES[t][counts[t] > 1]}" for t in OBJECT_TYPES[1:] if counts[t])
    diameter = table.attrs.get("diameter")
    size = f"; red cells about {diameter:.0f} px across" if diameter else ""
    return f"{counts[RED_CELL]} red cell{'s' * (counts[RED_CELL] != 1)} in {name!r}" + (f" (also {others})" if others else "") + size


_NAMES = {"rbc": ("red cell", "red cells"), "wbc": ("white cell", "white cells"),
          "platelet": ("platelet", "platelets"),
          "cluster": ("cluster of overlapping cells", "clusters of overlapping cells"),
          "artefact": ("artefact", "artefacts")}


ANALYSED_DEFAULT = (RED_CELL,)  # what embedding, UMAP, classifier and report use unless told otherwise


def parse_cell_types(value) -> tuple[str, ...]:
    """``"rbc"``, ``"rbc,wbc"``, ``"all"`` or a sequence of type names → a tuple of types (InputError
    naming what is accepted otherwise)."""
    from napari_reddino.images import InputError

    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    if names == ["all"]:
        return OBJECT_TYPES
    unknown = [n for n in names if n not in OBJECT_TYPES]
    if unknown or not names:
        raise InputError(f"Received cell types {', '.join(unknown) or repr(value)}; accepted: all, or a comma-"
                         f"separated list of {', '.join(OBJECT_TYPES)}.")
    return tuple(names)


def select_cells(table: pd.DataFrame, cell_types=ANALYSED_DEFAULT) -> np.ndarray:
    """Boolean mask over ``table``'s rows: objects whose ``type`` is one of ``cell_types``. A table without
    a ``type`` column (labels made elsewhere, not typed yet) keeps every row."""
    if "type" not in table.columns or set(OBJECT_TYPES) <= set(cell_types):
        return np.ones(len(table), bool)
    return table["type"].isin(list(cell_types)).to_numpy()


def typed_table(image, labels, table: pd.DataFrame | None = None, diameter: float | None = None) -> pd.DataFrame:
    """``table`` (default: one row per label) with the ``type`` and ``border`` columns, computed from the
    image when it has none (a Labels layer drawn by hand or label images from another tool)."""
    if table is not None and "type" in table.columns:
        return table
    labels = np.asarray(labels)
    ids = table["label"].to_numpy() if table is not None else np.unique(labels[labels > 0])
    types = object_types(image, labels, diameter, ids)
    base = table.copy() if table is not None else pd.DataFrame({"label": ids.astype(np.int64)})
    base["type"], base["border"] = types["type"].to_numpy(), types["border"].to_numpy()
    return base


def left_out_note(table: pd.DataFrame, kept) -> str:
    """'' when every object is used, else e.g. ``"left out 2 white cells, 1 platelet"``."""
    kept = np.asarray(kept, bool)
    if "type" not in table.columns or kept.all():
        return ""
    counts = type_counts(table["type"].to_numpy()[~kept])
    parts = [f"{n} {_NAMES[t][n > 1]}" for t, n in counts.items() if n]
    return "left out " + ", ".join(parts)
