"""How the plugin draws cells: the one home of its layer names, colours and legend counts (no Qt, no napari).

On the smear every object is drawn as its outline (a Labels layer in contour mode) in one colour per cell:

- an annotated cell: its class colour (the classes and their colours: ``annotate.CHULA_CLASSES``);
- a cell with only a prediction: the predicted class' colour, faded (``PREDICTED_ALPHA``);
- an object that is not a red cell (``segment.types``: white cell, platelet, cluster, artefact): its type
  colour, and a ring with its name (``object_marks``);
- any other red cell: ``UNANNOTATED_COLOR``.

The UMAP canvas colours its points with the same classes and the same fading; both legends count cells
with :func:`class_counts`. Selected cells are ringed in ``SELECTION_COLOR`` on both canvases; no class or
type colour is near it (tests/test_style.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

# --- layer names: "<image> cells" and the layers drawn over it ("<image> cells objects", ...) -------------
CELLS_SUFFIX = " cells"
PCA_SUFFIX = " PCA"
SELECTION_SUFFIX = "selection"
OBJECTS_SUFFIX = "objects"
LEGEND_SUFFIX = "legend"


def cells_layer_name(image: str) -> str:
    return f"{image}{CELLS_SUFFIX}"


def pca_layer_name(image: str) -> str:
    return f"{image}{PCA_SUFFIX}"


def derived_layer_name(cells_layer: str, suffix: str) -> str:
    """``"<image> cells selection"`` and the like: a layer drawn over a cells layer."""
    return f"{cells_layer} {suffix}"


def is_drawn_layer_name(name: str) -> bool:
    """Whether ``name`` is an image layer the plugin drew over a smear (its PCA overlay, the selected cells'
    rings), which a step must never take for a smear."""
    return name.endswith(PCA_SUFFIX) or any(name.endswith(derived_layer_name(CELLS_SUFFIX, suffix))
                                            for suffix in (SELECTION_SUFFIX, OBJECTS_SUFFIX, LEGEND_SUFFIX))


# --- colours --------------------------------------------------------------------------------------------
SELECTION_COLOR = "#ffff00"  # selected cells' rings, on the map and on the smear
VERIFIED_COLOR = "#ffffff"  # the gallery's tick on a verified cell (on a dark badge)
UNANNOTATED_COLOR = "#bbbbbb"  # a red cell without class or prediction (points and outlines)
PREDICTED_ALPHA = 0.35  # a predicted class is its class colour at this opacity
CONTOUR_WIDTH = 2  # outline width in image pixels
PCA_OPACITY = 0.5
# objects that are not red cells: none of these is near a class colour or the selection colour
# (CIEDE2000 > 15), and all are dark enough to read on a smear's pale background
TYPE_COLORS = {"wbc": "#0000ff", "platelet": "#006400", "cluster": "#800000", "artefact": "#000000"}
TYPE_NAMES = {"rbc": "red cell", "wbc": "white cell", "platelet": "platelet", "cluster": "cluster",
              "artefact": "artefact"}


def rgba(color) -> np.ndarray:
    from matplotlib.colors import to_rgba

    return np.asarray(to_rgba(color), dtype=np.float32)


def faded(color) -> np.ndarray:
    out = rgba(color)
    out[3] = PREDICTED_ALPHA
    return out


# --- per-cell colours -----------------------------------------------------------------------------------
def outline_colors(labels, types=None, annotated=None, predicted=None,
                   class_colors: Mapping[str, str] | None = None) -> dict[int, np.ndarray]:
    """RGBA outline colour per label (see the module docstring for the rules, first match wins).

    ``labels``: the label ids; ``types``: each one's object type (``None``: all red cells); ``annotated`` and
    ``predicted``: each one's class name ('' or None for none); ``class_colors``: class name → colour.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)

    def column(values):
        if values is None:
            return np.full(n, "", dtype=object)
        out = pd.Series(values, dtype=object).fillna("").astype(str).to_numpy()
        if len(out) != n:
            raise ValueError(f"{len(out)} values for {n} labels")
        return out

    types, annotated, predicted = column(types), column(annotated), column(predicted)
    class_colors = dict(class_colors or {})
    base = {name: rgba(c) for name, c in class_colors.items()}
    fade = {name: faded(c) for name, c in class_colors.items()}
    by_type = {name: rgba(c) for name, c in TYPE_COLORS.items()}
    plain = rgba(UNANNOTATED_COLOR)
    out = {}
    for label, kind, cls, pred in zip(labels.tolist(), types, annotated, predicted):
        if cls in base:
            out[label] = base[cls]
        elif pred in fade:
            out[label] = fade[pred]
        elif kind in by_type:
            out[label] = by_type[kind]
        else:
            out[label] = plain
    return out


# --- counts for the legends -----------------------------------------------------------------------------
def class_counts(classes: Iterable, annotated, predicted=None) -> list[tuple[str, str, int, int]]:
    """(name, colour, annotated, predicted) per class in order (predicted: by the classifier, among the
    cells not annotated), then ("unannotated", UNANNOTATED_COLOR, every cell without an annotation, 0).
    ``classes``: objects with ``name`` and ``color`` (``annotate.CellClass``)."""
    cls = pd.Series(annotated, dtype=object).fillna("").astype(str).to_numpy()
    pred = (np.full(len(cls), "", dtype=object) if predicted is None
            else pd.Series(predicted, dtype=object).fillna("").astype(str).to_numpy())
    free = cls == ""
    annotated, predicted = pd.Series(cls).value_counts(), pd.Series(pred[free]).value_counts()
    rows = [(c.name, c.color, int(annotated.get(c.name, 0)), int(predicted.get(c.name, 0))) for c in classes]
    return rows + [("unannotated", UNANNOTATED_COLOR, int(free.sum()), 0)]


def count_text(name: str, annotated: int, predicted: int) -> str:
    """``"spherocyte 8 + 3 predicted"``: one legend entry's words, the same on both canvases."""
    return f"{name} {annotated}" + (f" + {predicted} predicted" if predicted else "")


def legend_entries(counts, types=None) -> list[tuple[str, str]]:
    """(text, colour) per line of the smear's legend: the classes with cells (``class_counts``' rows; the
    "unannotated" row says "red cells"), then one line per other object type found."""
    out = []
    for name, color, annotated, predicted in counts:
        if not annotated and not predicted:
            continue
        label = "red cells not annotated" if name == "unannotated" else name  # predicted ones included
        out.append((count_text(label, annotated, predicted), color))
    if types is not None:
        kinds = pd.Series(types, dtype=object)
        for kind, color in TYPE_COLORS.items():
            n = int((kinds == kind).sum())
            if n:
                out.append((f"{TYPE_NAMES[kind]}{'s' * (n > 1)} {n}", color))
    return out


# --- marks on objects that are not red cells --------------------------------------------------------------
def object_marks(table: pd.DataFrame) -> pd.DataFrame:
    """One row per object of ``table`` (a cell table with ``type``) that is not a red cell: its centre
    (``y``, ``x``, image pixels), ring ``size`` (a little wider than the object), ``name``, ``color`` and the
    ``caption`` written beside its ring (:func:`_captions`)."""
    if "type" not in table.columns or not len(table):
        return pd.DataFrame({"label": np.zeros(0, np.int64), "y": [], "x": [], "size": [], "name": [],
                             "color": [], "caption": []})
    rows = table[table["type"].isin(list(TYPE_COLORS))]
    if "equivalent_diameter" in rows.columns:
        diameter = rows["equivalent_diameter"].to_numpy(float)
    elif "area" in rows.columns:
        diameter = np.sqrt(4 * rows["area"].to_numpy(float) / np.pi)
    else:
        diameter = np.full(len(rows), 10.0)
    if {"bbox_y0", "bbox_y1", "bbox_x0", "bbox_x1"} <= set(rows.columns):  # elongated objects: their box
        box = np.maximum(rows["bbox_y1"].to_numpy(float) - rows["bbox_y0"].to_numpy(float),
                         rows["bbox_x1"].to_numpy(float) - rows["bbox_x0"].to_numpy(float))
        diameter = np.maximum(diameter, box)
    marks = pd.DataFrame({"label": rows["label"].to_numpy(np.int64), "y": rows["centroid_y"].to_numpy(float),
                          "x": rows["centroid_x"].to_numpy(float), "size": 1.25 * diameter + 4,
                          "name": [TYPE_NAMES[t] for t in rows["type"]],
                          "color": [TYPE_COLORS[t] for t in rows["type"]]})
    marks["caption"] = _captions(marks)
    return marks


def _captions(marks: pd.DataFrame) -> list[str]:
    """The words written beside each ring: its object's name, once for a group of objects of the same kind whose
    rings touch (two artefacts side by side wrote "artefact" twice, one over the other). Runs in a dock's display
    on the GUI thread: neighbours from a k-d tree, not every pair (a slide level can hold thousands of objects)."""
    from scipy.spatial import cKDTree

    yx, size = marks[["y", "x"]].to_numpy(float), marks["size"].to_numpy(float)
    names = marks["name"].to_numpy(object)
    out = names.copy()
    for name in dict.fromkeys(names.tolist()):
        rows = np.flatnonzero(names == name)
        near = cKDTree(yx[rows]).query_ball_point(yx[rows], (size[rows] + size[rows].max()) / 2)
        named = np.zeros(len(rows), bool)
        for k, others in enumerate(near):  # in order: an object is named unless a named one's ring touches it
            touching = [j for j in others if j < k and named[j] and
                        np.hypot(*(yx[rows[k]] - yx[rows[j]])) < (size[rows[k]] + size[rows[j]]) / 2]
            named[k] = not touching
        out[rows[~named]] = ""
    return out.tolist()


def with_label_index(features: pd.DataFrame) -> pd.DataFrame:
    """``features`` with napari's ``index`` column (= ``label``) first, so that hovering cell k shows cell
    k's row: without it napari takes row k, which is cell k+1's (rows start at label 1)."""
    if features is None or "label" not in features.columns:
        return features
    out = features.drop(columns=["index"], errors="ignore").reset_index(drop=True)
    out.insert(0, "index", out["label"].to_numpy())
    return out
