"""Verifying a pre-classified slide: the gallery's order and groups, and the queue of uncertain cells.

Pure functions on per-cell arrays (one entry per row of the pooled cell table), used by the verification
gallery dock (``_widgets/gallery.py``). A cell's *shown class* is its annotation, else its prediction, else
none; *uncertain* cells are the unverified ones the classifier is least sure of (confidence under a
threshold) or where a second classifier (a kNN on the same features) predicts another class.
"""

from __future__ import annotations

import numpy as np

UNCLASSIFIED = ""  # the group of cells with neither an annotation nor a prediction
DEFAULT_THRESHOLD = 0.8  # confidence under which a predicted cell is uncertain


def _text(a, n: int) -> np.ndarray:
    if a is None:
        return np.full(n, "", dtype=object)
    return np.array(["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in a], dtype=object)


def shown_class(annotated, prediction) -> np.ndarray:
    """The class each cell counts as: its annotation, else its prediction, else ''."""
    cls = _text(annotated, len(annotated))
    pred = _text(prediction, len(cls))
    return np.where(cls != "", cls, pred).astype(object)


def by_confidence(rows: np.ndarray, confidence) -> np.ndarray:
    """``rows`` least confident first; cells without a confidence (no prediction) last; ties by row."""
    conf = np.asarray(confidence, dtype=np.float64)[rows]
    key = np.where(np.isnan(conf), np.inf, conf)
    return rows[np.lexsort((rows, key))]


def groups(annotated, prediction, confidence, class_names=(), only=None) -> list[tuple[str, np.ndarray]]:
    """The gallery's groups: (class, rows least confident first) per shown class, in the order of
    ``class_names``, then other classes alphabetically, then the unclassified cells ('').
    ``only``: a bool mask of the rows to show (e.g. the unverified ones); empty groups are left out."""
    shown = shown_class(annotated, prediction)
    keep = np.ones(len(shown), bool) if only is None else np.asarray(only, bool)
    present = set(shown[keep])
    order = [c for c in class_names if c in present]
    order += sorted(present - set(order) - {UNCLASSIFIED})
    order += [UNCLASSIFIED] if UNCLASSIFIED in present else []
    return [(name, by_confidence(np.flatnonzero(keep & (shown == name)), confidence)) for name in order]


def disagreement(prediction, second) -> np.ndarray:
    """Where two classifiers both predict and predict different classes (bool per cell)."""
    a, b = _text(prediction, len(prediction)), _text(second, len(prediction))
    return (a != "") & (b != "") & (a != b)


def review_queue(prediction, confidence, verified=None, second=None,
                 threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """The uncertain cells still to verify, most doubtful first: the cells where the two classifiers
    disagree (least confident first), then those under ``threshold`` (least confident first). Verified
    cells and cells without a prediction are never in it."""
    pred = _text(prediction, len(prediction))
    conf = np.asarray(confidence, dtype=np.float64)
    todo = (pred != "") & ~np.isnan(conf)
    if verified is not None:
        todo &= ~np.asarray(verified, bool)
    split = disagreement(pred, second) if second is not None else np.zeros(len(pred), bool)
    low = conf < float(threshold)
    rows = np.flatnonzero(todo & (split | low))
    return rows[np.lexsort((rows, conf[rows], ~split[rows]))]


def next_in_queue(queue: np.ndarray, after: int | None = None) -> int | None:
    """The queue's cell after row ``after`` (the one the user is on), wrapping round; its first cell when
    ``after`` is None or not in it; None when it is empty."""
    queue = np.asarray(queue)
    if not len(queue):
        return None
    if after is None or after not in queue:
        return int(queue[0])
    i = int(np.flatnonzero(queue == after)[0])
    return int(queue[(i + 1) % len(queue)])
