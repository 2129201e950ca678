"""Fit, cross-validate (5 folds grouped by image), calibrate and export the shipped classifier.

A classifier is standardisation + logistic regression or a one-hidden-layer MLP (scikit-learn), exported as
arrays that :class:`napari_reddino.classifier.ShippedClassifier` runs with numpy. The confidence is
calibrated by one temperature fitted on the out-of-fold logits (cells the fold's model never saw).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

KINDS = ("logreg", "mlp")


@dataclass
class Exported:
    mean: np.ndarray
    scale: np.ndarray
    layers: list  # [(W, b)], ReLU between, K outputs in class-id order


def fit_export(X, y, n_classes: int, kind: str = "logreg", C: float = 0.5, balanced: bool = False,
               hidden: int = 128, alpha: float = 1e-3, seed: int = 0) -> Exported:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.utils.class_weight import compute_sample_weight

    X = np.asarray(X, np.float64)
    mean, scale = X.mean(0), X.std(0)
    scale[scale < 1e-8] = 1.0
    Z = (X - mean) / scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs "did not converge" at max_iter: scored all the same
        if kind == "logreg":
            m = LogisticRegression(C=C, max_iter=2000, class_weight="balanced" if balanced else None)
            m.fit(Z, y)
            layers = [(m.coef_.T, m.intercept_)]
        elif kind == "mlp":
            m = MLPClassifier((hidden,), alpha=alpha, max_iter=300, early_stopping=True, random_state=seed,
                              n_iter_no_change=15)
            if balanced:  # MLPClassifier has no class_weight: balance by resampling
                rng = np.random.default_rng(seed)
                w = compute_sample_weight("balanced", y)
                idx = rng.choice(len(y), len(y), p=w / w.sum())
                m.fit(Z[idx], y[idx])
            else:
                m.fit(Z, y)
            layers = list(zip(m.coefs_, m.intercepts_))
        else:
            raise ValueError(f"kind {kind!r}; accepted: {KINDS}")
    # put the outputs in class-id order; a class absent from the training cells can never win
    W, b = layers[-1]
    full_W = np.zeros((W.shape[0], n_classes))
    full_b = np.full(n_classes, -1e4)
    cls = np.asarray(m.classes_, int)
    if W.shape[1] == 1 and len(cls) == 2:  # binary logistic regression: one column for class 1
        W, b = np.hstack([-W / 2, W / 2]), np.array([-b[0] / 2, b[0] / 2])
    full_W[:, cls], full_b[cls] = W, b
    layers[-1] = (full_W, full_b)
    return Exported(mean.astype(np.float32), scale.astype(np.float32),
                    [(np.asarray(W, np.float32), np.asarray(b, np.float32)) for W, b in layers])


def logits(e: Exported, X) -> np.ndarray:
    h = (np.asarray(X, np.float32) - e.mean) / e.scale
    for i, (W, b) in enumerate(e.layers):
        h = h @ W + b
        if i < len(e.layers) - 1:
            h = np.maximum(h, 0)
    return h


def softmax(z, t: float = 1.0) -> np.ndarray:
    z = np.asarray(z, np.float64) / t
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def fit_temperature(z, y) -> float:
    """The temperature minimising the negative log-likelihood of ``y`` (a grid, then a finer one)."""
    def nll(t):
        p = softmax(z, t)
        return -np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)))

    grid = np.exp(np.linspace(np.log(0.2), np.log(10), 60))
    t = grid[int(np.argmin([nll(t) for t in grid]))]
    fine = t * np.exp(np.linspace(-0.07, 0.07, 29))
    return float(fine[int(np.argmin([nll(t) for t in fine]))])


def ece(p, y, bins: int = 10) -> float:
    """Expected calibration error of the top class (0 = the confidence is the accuracy)."""
    conf, hit = p.max(1), p.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges) - 1, 0, bins - 1)
    return float(sum(abs(conf[which == b].mean() - hit[which == b].mean()) * (which == b).mean()
                     for b in range(bins) if (which == b).any()))


def grouped_folds(y, groups, n_splits: int = 5, seed: int = 0) -> list:
    from sklearn.model_selection import StratifiedGroupKFold

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
                    .split(np.zeros(len(y)), y, groups))


def cross_validate(X, y, groups, n_classes: int, n_splits: int = 5, seed: int = 0, **fit_kw) -> dict:
    """Out-of-fold logits and per-fold weighted F1 (each fold's model never saw the fold's images)."""
    from sklearn.metrics import f1_score

    z = np.zeros((len(y), n_classes), np.float32)
    fold_wf1 = []
    for train, test in grouped_folds(y, groups, n_splits, seed):
        e = fit_export(X[train], y[train], n_classes, seed=seed, **fit_kw)
        z[test] = logits(e, X[test])
        fold_wf1.append(float(f1_score(y[test], z[test].argmax(1), average="weighted")))
    return {"logits": z, "fold_wf1": fold_wf1}


def scores(cv: dict, y, n_classes: int) -> dict:
    """Weighted F1 (mean and std over folds; pooled), balanced accuracy, per-class recall and precision, the
    confusion matrix (rows: true class), and calibration before and after the fitted temperature."""
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

    z = cv["logits"]
    pred = z.argmax(1)
    t = fit_temperature(z, y)
    cm = confusion_matrix(y, pred, labels=list(range(n_classes)))
    support = cm.sum(1)
    return {
        "wf1_mean": float(np.mean(cv["fold_wf1"])), "wf1_std": float(np.std(cv["fold_wf1"])),
        "fold_wf1": cv["fold_wf1"], "wf1_pooled": float(f1_score(y, pred, average="weighted")),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "recall": [float(cm[k, k] / support[k]) if support[k] else None for k in range(n_classes)],
        "precision": [float(cm[k, k] / cm[:, k].sum()) if cm[:, k].sum() else None for k in range(n_classes)],
        "support": support.tolist(), "confusion": cm.tolist(), "temperature": t,
        "ece_raw": ece(softmax(z), y), "ece_calibrated": ece(softmax(z, t), y),
    }
