"""Verifying a pre-classified slide: the gallery's order and groups, and the review queue.

Pure functions on per-cell arrays (one entry per row of the pooled cell table), used by the verification
gallery dock (``_widgets/gallery.py``). A cell's *shown class* is its annotation, else its prediction, else
none; *uncertain* cells are the unverified ones the classifier is least sure of (confidence under a
threshold) or where a second classifier (a kNN on the same features) predicts another class.
"""

from __future__ import annotations

import numpy as np

UNCLASSIFIED = ""  # the group of cells with neither an annotation nor a prediction
DEFAULT_THRESHOLD = 0.8  # confidence under which a predicted cell is uncertain
BATCH = 20  # cells a round: what 'Next to annotate' selects, the benchmark's round
MAX_CLUSTERS = 400  # the most clusters representative cells are spread over
MIN_CLUSTER = 5  # a cluster smaller than this is a few outliers: its cells are picked last
TYPICAL_K = 20  # neighbours whose mean distance measures how typical a cell is
_FIT_CELLS = 2000  # the clusters are fitted on at most this many cells, then every cell is assigned
KMEANS_ITERATIONS = 6  # from the last centres, enough to follow 20 newly verified cells
PCA_DIMS = 32  # features with more dimensions (embeddings) are compared in this many principal components


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
                 threshold: float = DEFAULT_THRESHOLD, features=None, annotated=None, prior=None,
                 batch: int = BATCH) -> np.ndarray:
    """The cells still to verify, most useful first. With ``features`` (one row per cell) it starts with
    :func:`teach_first`'s ``batch`` cells (``annotated``: the user's classes, ``prior``: the shipped
    classifier's prediction). Then the uncertain cells: where the two classifiers disagree (least confident
    first), then those under ``threshold`` (least confident first). Verified cells are never in it, nor
    uncertain cells without a prediction."""
    uncertain = _uncertain(prediction, confidence, verified, second, threshold)
    if features is None:
        return uncertain
    head = teach_first(features, annotated, prediction, prior, verified, batch)
    return np.concatenate([head, uncertain[~np.isin(uncertain, head)]])


def _uncertain(prediction, confidence, verified, second, threshold) -> np.ndarray:
    pred = _text(prediction, len(prediction))
    conf = np.asarray(confidence, dtype=np.float64)
    todo = (pred != "") & ~np.isnan(conf)
    if verified is not None:
        todo &= ~np.asarray(verified, bool)
    split = disagreement(pred, second) if second is not None else np.zeros(len(pred), bool)
    low = conf < float(threshold)
    rows = np.flatnonzero(todo & (split | low))
    return rows[np.lexsort((rows, conf[rows], ~split[rows]))]


def teach_first(features, annotated=None, prediction=None, prior=None, verified=None,
                batch: int = BATCH) -> np.ndarray:
    """Up to ``batch`` unverified cells to annotate next, the ones that teach the classifier most first:

    1. cells whose nearest annotated cell is a *correction* (the user's class differs from the shipped
       classifier's ``prior``) and whose ``prediction`` still differs from that class, closest first: a
       shift the shipped classifier misses comes in clumps (all the elliptocytes of one acquisition);
    2. then representative cells (TypiClust, Hacohen et al. 2022): k-means with one cluster per verified or
       picked cell plus one per cell still to pick, rounded up to ``batch`` (at most ``MAX_CLUSTERS``), on the
       standardised features (at most ``PCA_DIMS`` principal components); the largest clusters without a
       verified cell each give their most typical cell (the smallest mean distance to its ``TYPICAL_K``
       nearest cluster mates). The uncertain cells of a classifier trained on a few dozen cells are mostly
       its confusions between rare classes; representative cells teach the common ones.
    """
    Z = _space(features)
    n = len(Z)
    ann = _text(annotated, n)
    done = ann != ""
    if verified is not None:
        done |= np.asarray(verified, bool)
    free = np.flatnonzero(~done)
    picks = np.zeros(0, np.int64)
    if prior is not None and len(free):
        shipped = _text(prior, n)
        corrected = np.flatnonzero((ann != "") & (shipped != "") & (ann != shipped))
        if len(corrected):
            labelled = np.flatnonzero(ann != "")
            d = _sq_dist(Z[free], Z[labelled])
            nearest = d.argmin(1)
            near = labelled[nearest]
            pred = _text(prediction, n) if prediction is not None else shipped
            hit = np.isin(near, corrected) & (pred[free] != ann[near])
            order = np.argsort(d[np.arange(len(free)), nearest][hit], kind="stable")
            picks = free[hit][order][:batch]
    if len(picks) < batch:
        picks = np.concatenate([picks, _typical(Z, done, picks, batch - len(picks), batch)])
    return picks.astype(np.int64)


def _sq_dist(A, B) -> np.ndarray:
    return np.maximum((A * A).sum(1)[:, None] - 2 * A @ B.T + (B * B).sum(1)[None], 0.0)


_cache: dict = {}  # the last map's space and clusters: computed once per map (and number of clusters)


def _space(features) -> np.ndarray:
    """The cells in at most ``PCA_DIMS`` principal components of the standardised features, cached for the
    last ``features``."""
    X = np.asarray(features)
    key = (X.shape, hash(np.ascontiguousarray(X[:: max(1, len(X) // 64)]).tobytes()),
           hash(np.nansum(X, 0).tobytes()))
    if _cache.get("key") != key:  # another map: its own space and clusters
        _cache.clear()
        Z = np.where(np.isfinite(X), X, 0.0).astype(np.float32)
        sd = Z.std(0)
        Z = (Z - Z.mean(0)) / np.where(sd > 1e-8, sd, 1.0)
        if Z.shape[1] > PCA_DIMS:
            fit = _fit_rows(len(Z))
            vectors = np.linalg.eigh(Z[fit].T @ Z[fit])[1]  # eigenvalues ascending
            Z = Z @ vectors[:, ::-1][:, :PCA_DIMS]
        _cache.update(key=key, space=np.ascontiguousarray(Z))
    return _cache["space"]


def _fit_rows(n: int) -> np.ndarray:
    return np.arange(n) if n <= _FIT_CELLS else np.random.default_rng(0).choice(n, _FIT_CELLS, replace=False)


def _clusters(Z, k: int) -> np.ndarray:
    """The cluster of each cell for ``k`` clusters, cached per ``k``. k-means
    starts from the last ``k``'s centres (and k-means++ for the new ones), so a few iterations follow the
    newly verified cells."""
    if _cache.get("k") == k:
        return _cache["clusters"]
    rng = np.random.default_rng(k)
    F = Z[_fit_rows(len(Z))]
    centres = _cache.get("centres", np.zeros((0, Z.shape[1]), np.float32))[:k]
    d = _sq_dist(F, centres).min(1) if len(centres) else np.ones(len(F))
    for _ in range(k - len(centres)):  # k-means++: a new centre far from the others is likelier
        c = F[rng.choice(len(F), p=d / d.sum()) if d.sum() > 0 else rng.integers(len(F))]
        centres = np.concatenate([centres, c[None]])
        d = np.minimum(d, _sq_dist(F, c[None])[:, 0])
    a = None
    for _ in range(KMEANS_ITERATIONS):
        moved = _sq_dist(F, centres).argmin(1)
        if a is not None and np.array_equal(moved, a):
            break
        a = moved
        count = np.bincount(a, minlength=k)[:, None]
        sums = np.stack([np.bincount(a, F[:, i], minlength=k) for i in range(F.shape[1])], 1)
        centres = np.where(count > 0, sums / np.maximum(count, 1), centres).astype(np.float32)
    cluster = _sq_dist(Z, centres).argmin(1)
    _cache.update(k=k, clusters=cluster, centres=centres, typical={})
    return cluster


def _most_typical(Z, rows: np.ndarray, members: np.ndarray) -> int:
    """The row of ``rows`` with the smallest mean distance to its ``TYPICAL_K`` nearest ``members`` (its
    cluster), computed once per cluster and number of clusters."""
    memo, j = _cache["typical"], int(_cache["clusters"][members[0]])
    if j not in memo:
        sub = members if len(members) <= 1000 else np.random.default_rng(j).choice(members, 1000, replace=False)
        kk = min(TYPICAL_K, len(sub) - 1)
        d = np.sqrt(_sq_dist(Z[members], Z[sub]))
        memo[j] = -np.partition(d, kk, axis=1)[:, 1:kk + 1].mean(1) if kk > 0 else np.zeros(len(members))
    typical = memo[j][np.searchsorted(members, rows)]
    return int(rows[np.argmax(typical)])


def _typical(Z, done, taken, m: int, batch: int) -> np.ndarray:
    """``m`` representative cells not ``done`` nor ``taken``, one per cluster: the largest clusters without a
    done or taken cell first, then (when every cluster has one) those with the most cells per such cell;
    clusters of fewer than ``MIN_CLUSTER`` cells (outliers) last."""
    free = ~done
    free[taken] = False
    if m <= 0 or not free.any():
        return np.zeros(0, np.int64)
    k = int(min(-(-(int((~free).sum()) + m) // batch) * batch, MAX_CLUSTERS, len(Z)))
    cluster = _clusters(Z, k)
    size = np.bincount(cluster, minlength=k)
    covered = np.bincount(cluster[~free], minlength=k)
    left = np.bincount(cluster[free], minlength=k)
    key = np.where(covered == 0, np.inf, size / (1.0 + covered))
    order = [j for j in np.lexsort((np.arange(k), -size, -key, size < MIN_CLUSTER)) if left[j]]
    out = [_most_typical(Z, np.flatnonzero(free & (cluster == j)), np.flatnonzero(cluster == j)) for j in order[:m]]
    return np.array(out, np.int64)


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
