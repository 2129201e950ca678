"""A classifier trained on the annotated cells' embeddings that predicts every cell, with a confidence.

Logistic regression (default) or k-nearest neighbours, on standardised features; scikit-learn is
imported lazily.
"""

from __future__ import annotations

import numpy as np

from napari_reddino.images import InputError

KINDS = ("logreg", "knn")


def _annotated(y) -> np.ndarray:
    y = np.asarray(y, dtype=object)
    return np.array([isinstance(v, str) and v != "" for v in y], dtype=bool)


def train_classifier(X, y, kind: str = "logreg", k: int = 20):
    """Fit on rows whose class ``y`` is a non-empty string; others are ignored. Returns a fitted sklearn
    pipeline with ``predict_proba`` and ``classes_``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind not in KINDS:
        raise InputError(f"Received classifier {kind!r}; accepted: {', '.join(KINDS)}.")
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=object)
    if len(X) != len(y):
        raise InputError(f"Received {len(X)} embeddings and {len(y)} classes; accepted: one class per row.")
    mask = _annotated(y)
    classes = sorted(set(y[mask]))
    if len(classes) < 2:
        raise InputError(f"Received annotations for {len(classes)} class(es) ({mask.sum()} cells); accepted: "
                         "cells of at least 2 classes to train a classifier.")
    if kind == "logreg":
        clf = LogisticRegression(max_iter=1000)
    else:
        clf = KNeighborsClassifier(n_neighbors=max(1, min(int(k), int(mask.sum()))), weights="distance")
    model = make_pipeline(StandardScaler(), clf)
    model.fit(X[mask], y[mask].astype(str))
    return model


def predict(model, X) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class (N,) object array, confidence (N,) float32 = probability of that class)."""
    proba = model.predict_proba(np.asarray(X, dtype=np.float32))
    best = proba.argmax(1)
    return model.classes_[best].astype(object), proba[np.arange(len(best)), best].astype(np.float32)


def fit_predict(X, y, kind: str = "logreg", k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    return predict(train_classifier(X, y, kind, k), X)


def next_to_annotate(confidence, y=None, k: int = 20) -> np.ndarray:
    """Indices of the ``k`` least confident cells that are not annotated yet, least confident first."""
    conf = np.asarray(confidence, dtype=np.float64)
    candidates = np.flatnonzero(~_annotated(y)) if y is not None else np.arange(len(conf))
    candidates = candidates[np.isfinite(conf[candidates])]
    order = np.argsort(conf[candidates], kind="stable")
    return candidates[order[:max(0, int(k))]]
