"""The exported cell table and the per-smear morphology report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_reddino.images import InputError

CELL_TABLE_COLUMNS = ["image", "label", "centroid_x", "centroid_y", "class", "prediction", "confidence",
                      "verified", "verified_by", "verified_at"]
REPORT_COLUMNS = ["image", "class", "count", "percent"]


def export_cell_table(table: pd.DataFrame) -> pd.DataFrame:
    """Export form of a pooled cell table: image, label, centroid, class, prediction, confidence, and whether
    a person verified the class (``verified``: False where the table does not say), who and when."""
    missing = [c for c in ("image", "label") if c not in table.columns]
    if missing:
        raise InputError(f"Received a table with columns {list(table.columns)[:8]}; accepted: at least image "
                         "and label columns.")
    out = pd.DataFrame({"image": table["image"].astype(str), "label": table["label"].astype(np.int64)})
    for col in CELL_TABLE_COLUMNS[2:]:
        out[col] = table[col].to_numpy() if col in table.columns else (np.nan if col in (
            "centroid_x", "centroid_y", "confidence") else "")
    for col in ("class", "prediction", "verified_by", "verified_at"):
        out[col] = out[col].fillna("").astype(str)
    out["verified"] = out["verified"].map(lambda v: v is True or str(v).strip().lower() in ("true", "1")).astype(bool)
    return out


def final_class(table: pd.DataFrame) -> pd.Series:
    """The annotated class where there is one, else the prediction, else ''."""
    cls = table["class"].fillna("").astype(str) if "class" in table.columns else pd.Series("", index=table.index)
    if "prediction" in table.columns:
        pred = table["prediction"].fillna("").astype(str)
        cls = cls.where(cls != "", pred)
    return cls


def morphology_report(table: pd.DataFrame, source: str = "final", classes=None) -> pd.DataFrame:
    """Counts and percentages per class per image (long table: image, class, count, percent).

    ``source``: ``"final"`` (annotation, else prediction), ``"class"`` (annotations only) or
    ``"prediction"``. Cells without a class are left out of the counts. ``classes`` (names) fixes the row
    order and lists zero counts; classes not in it follow in alphabetical order.
    """
    if source == "final":
        cls = final_class(table)
    elif source in ("class", "prediction"):
        cls = table[source].fillna("").astype(str) if source in table.columns else pd.Series("", index=table.index)
    else:
        raise InputError(f"Received report source {source!r}; accepted: final, class, prediction.")
    # counted in one pass over codes: the annotation dock redraws this on every change, of up to 10^6 cells
    image_code, images = pd.factorize(table["image"].astype(str), sort=False)
    class_code, names = pd.factorize(cls, sort=False)
    counts = np.bincount(image_code * len(names) + class_code, minlength=len(images) * len(names)).reshape(
        len(images), len(names))
    column = {str(name): j for j, name in enumerate(names) if name != ""}
    counts[:, [j for j, name in enumerate(names) if name == ""]] = 0
    order = list(classes or [])
    order += sorted(set(column) - set(order))
    rows = []
    for i, image in enumerate(images):
        total = int(counts[i].sum())
        for name in order:
            n = int(counts[i, column[name]]) if name in column else 0
            if n or classes is not None:
                rows.append((str(image), name, n, 100.0 * n / total if total else 0.0))
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)
