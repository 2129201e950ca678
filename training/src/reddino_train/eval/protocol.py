"""The RedDino / DinoBloom evaluation protocol: linear probe and kNN on frozen features, scored over folds.

Linear probe: LogisticRegression(lbfgs, max_iter=1000, C = D*K/100). kNN: k=1 and k=20, Euclidean (or
cosine), uniform weights. Metrics: accuracy, balanced accuracy, weighted F1, mean and std (ddof=0) over
folds. Splits: ``grouped`` (StratifiedGroupKFold by image, the default: cells of one image never sit on
both sides), ``ungrouped`` (the paper's StratifiedKFold without shuffling on pooled cells) and ``loso``
(leave one source out).
"""

from __future__ import annotations

import warnings

import numpy as np

from napari_reddino.images import InputError

CLASSIFIERS = ("linear", "knn1", "knn20")
METRICS = ("acc", "bacc", "wf1")
PROTOCOLS = ("grouped", "ungrouped", "loso")


def make_classifier(name: str, dim: int, n_classes: int, metric: str = "euclidean",
                    standardise: bool = False):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "linear":
        clf = LogisticRegression(solver="lbfgs", max_iter=1000, C=dim * n_classes / 100)
    elif name.startswith("knn") and name[3:].isdigit():
        clf = KNeighborsClassifier(n_neighbors=int(name[3:]), metric=metric, weights="uniform")
    else:
        raise InputError(f"Received classifier {name!r}; accepted: {', '.join(CLASSIFIERS)}.")
    return make_pipeline(StandardScaler(), clf) if standardise else clf


def make_splits(protocol: str, y, groups=None, sources=None, n_splits: int = 5) -> list:
    """List of (train_idx, test_idx). InputError when the protocol cannot run on these cells."""
    from sklearn.model_selection import (
        LeaveOneGroupOut,
        StratifiedGroupKFold,
        StratifiedKFold,
    )

    y = np.asarray(y)
    x = np.zeros(len(y))
    if protocol == "ungrouped":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return list(StratifiedKFold(n_splits=n_splits, shuffle=False).split(x, y))
    if protocol == "grouped":
        n_groups = len(np.unique(groups))
        if n_groups < n_splits:
            raise InputError(f"Received cells from {n_groups} images; accepted: at least {n_splits} images "
                             "for the grouped protocol (or use --protocol ungrouped).")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "least populated class has only N members"
            return list(StratifiedGroupKFold(n_splits=n_splits, shuffle=False).split(x, y, groups))
    if protocol == "loso":
        if sources is None or len(np.unique(sources)) < 2:
            raise InputError("Received cells without at least two sources; accepted: leave-one-source-out "
                             "needs a dataset with a 'source' per cell (csv:FILE with a source column).")
        return list(LeaveOneGroupOut().split(x, y, sources))
    raise InputError(f"Received protocol {protocol!r}; accepted: {', '.join(PROTOCOLS)} or all.")


def score(y_true, y_pred) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes predicted but absent from a fold's truth
        return {"acc": accuracy_score(y_true, y_pred), "bacc": balanced_accuracy_score(y_true, y_pred),
                "wf1": f1_score(y_true, y_pred, average="weighted", zero_division=0)}


def run_protocol(X, y, splits, classifiers=CLASSIFIERS, metric: str = "euclidean",
                 standardise: bool = False, log=None) -> dict:
    """Fit every classifier on every fold. Returns ``{classifier: {"folds": [scores...],
    "pred": out-of-fold predictions (-1 where a cell was never tested)}}``."""
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    n_classes = len(np.unique(y))
    out = {}
    for name in classifiers:
        pred = np.full(len(y), -1, dtype=np.int64)
        folds = []
        for k, (tr, te) in enumerate(splits):
            clf = make_classifier(name, X.shape[1], n_classes, metric, standardise)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # lbfgs ConvergenceWarning at max_iter, as in the paper
                clf.fit(X[tr], y[tr])
            pred[te] = clf.predict(X[te])
            folds.append(score(y[te], pred[te]))
            if log is not None:
                print(f"    {name} fold {k + 1}/{len(splits)}: wf1 {folds[-1]['wf1']:.3f}", file=log, flush=True)
        out[name] = {"folds": folds, "pred": pred}
    return out


def summarise(model: str, protocol: str, results: dict) -> list[dict]:
    """Rows of results.csv: model, protocol, classifier, metric, mean, std."""
    rows = []
    for clf, res in results.items():
        for m in METRICS:
            v = np.array([f[m] for f in res["folds"]], dtype=float)
            rows.append({"model": model, "protocol": protocol, "classifier": clf, "metric": m,
                         "mean": float(v.mean()), "std": float(v.std())})
    return rows
