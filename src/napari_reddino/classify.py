"""A classifier trained on the annotated cells' embeddings that predicts every cell, with a confidence.

Logistic regression (default) or k-nearest neighbours, on standardised features; scikit-learn is
imported lazily. :func:`fit_on_top` retrains on top of the shipped classifier's predictions
(:mod:`napari_reddino.classifier`): the user's annotations at full weight, the shipped classifier's confident
predictions of the other cells as lower-weight labels, so classes the user never annotated are still predicted.
"""

from __future__ import annotations

import numpy as np

from napari_reddino.images import InputError

KINDS = ("logreg", "knn")


def _annotated(y) -> np.ndarray:
    y = np.asarray(y, dtype=object)
    return np.array([isinstance(v, str) and v != "" for v in y], dtype=bool)


PSEUDO_WEIGHT = 0.3  # a shipped prediction counts this much (times its confidence) against an annotation's 1
PSEUDO_MIN_CONFIDENCE = 0.5
AGREEMENT_PRIOR = 5  # annotations' worth of trust in a shipped class before the user's corrections of it count


def train_classifier(X, y, kind: str = "logreg", k: int = 20, sample_weight=None):
    """Fit on rows whose class ``y`` is a non-empty string; others are ignored. Returns a fitted sklearn
    pipeline with ``predict_proba`` and ``classes_``. ``sample_weight`` (logreg only): one weight per row."""
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
    fit_kw = {}
    if sample_weight is not None and kind == "logreg":
        fit_kw["logisticregression__sample_weight"] = np.asarray(sample_weight, np.float64)[mask]
    model.fit(X[mask], y[mask].astype(str), **fit_kw)
    return model


def predict(model, X) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class (N,) object array, confidence (N,) float32 = probability of that class)."""
    proba = model.predict_proba(np.asarray(X, dtype=np.float32))
    best = proba.argmax(1)
    return model.classes_[best].astype(object), proba[np.arange(len(best)), best].astype(np.float32)


def fit_predict(X, y, kind: str = "logreg", k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    return predict(train_classifier(X, y, kind, k), X)


def fit_on_top(X, annotated, prior_prediction=None, prior_confidence=None, kind: str = "logreg",
               k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, confidence) per cell from the user's annotations on top of the shipped classifier's
    ``prior_prediction``/``prior_confidence``. The shipped prediction is an input of the retrained classifier
    (one column per class holding its confidence), so it keeps the shipped classifier's decisions where the
    annotations teach nothing else; annotated cells are labelled with the user's class (full weight),
    unannotated ones the shipped classifier is at least 50% sure of with its class at ``PSEUDO_WEIGHT`` times its
    confidence. (Retraining on the measurements alone, with a class's pseudo-labels weighted by how often the
    user agreed with it, fell from 80.5 to 44-73 weighted F1 after 20-80 annotations: a linear model is weaker
    than the shipped one, and cells picked for review are the ones it gets wrong; benchmarks/
    results_active_learning.md.) Without a prior it is :func:`fit_predict`. kNN learns from the annotations only."""
    annotated = np.asarray(annotated, dtype=object)
    if prior_prediction is None or kind != "logreg":
        return fit_predict(X, annotated, kind=kind, k=k)
    prior = np.asarray(prior_prediction, dtype=object)
    conf = np.nan_to_num(np.asarray(prior_confidence, np.float64), nan=0.0)
    user = _annotated(annotated)
    pseudo = ~user & _annotated(prior) & (conf >= PSEUDO_MIN_CONFIDENCE)
    y = np.where(user, annotated, np.where(pseudo, prior, ""))
    agreed = np.ones(len(y))
    for cls in set(prior[pseudo]):  # how often the user kept this shipped class, shrunk toward "always"
        checked = user & (prior == cls)
        agreed[prior == cls] = (np.sum(annotated[checked] == cls) + AGREEMENT_PRIOR) / (checked.sum() + AGREEMENT_PRIOR)
    weight = np.where(user, 1.0, PSEUDO_WEIGHT * conf * agreed)
    shipped = sorted(set(prior[_annotated(prior)]))
    Z = np.concatenate([np.asarray(X, np.float32), np.stack([(prior == c) * conf for c in shipped], 1)], 1)
    return predict(train_classifier(Z, y, kind, k, sample_weight=weight), Z)


def next_to_annotate(confidence, y=None, k: int = 20, features=None, prediction=None, prior=None) -> np.ndarray:
    """Indices of ``k`` cells that are not annotated yet. With the cells' ``features``: the ones that teach the
    classifier most (:func:`napari_reddino.review.teach_first`: next to corrections of the shipped ``prior``
    the ``prediction`` still contradicts, then representative cells; beats random picks in
    benchmarks/results_active_learning.md, where the least confident cells do not). Without: the ``k`` least
    confident, least confident first."""
    if features is not None:
        from napari_reddino.review import teach_first

        return teach_first(features, y, prediction, prior, batch=max(0, int(k)))
    conf = np.asarray(confidence, dtype=np.float64)
    candidates = np.flatnonzero(~_annotated(y)) if y is not None else np.arange(len(conf))
    candidates = candidates[np.isfinite(conf[candidates])]
    order = np.argsort(conf[candidates], kind="stable")
    return candidates[order[:max(0, int(k))]]
