"""UMAP of per-cell embeddings, and pooling of several images' embeddings into one matrix.

Above ``SAMPLE_CELLS`` cells (a million from many slides) the map is fitted on a seeded sample of that many
and every other cell is placed where umap's own ``transform`` starts a new point: the mean of the map
positions of its ``n_neighbors`` nearest sample cells, weighted by umap's fuzzy membership strengths
(``smooth_knn_dist``), without the optimisation epochs ``transform`` runs after it (minutes for a million
cells on 2 cores; they move a point only within its neighbours' spread). The nearest sample cells are
found with a small inverted-file index (``NearestSample``: k-means cells over the sample, a query searched
exactly among the members of its nearest cells): pynndescent, umap's own index, took 4 minutes to build and
compile and 15-20 s per 100,000 queries here. Sample cells keep exactly the positions that fitting the
sample alone gives them. Measured in ``benchmarks/results_umap_million.md``.

Headless: umap and scikit-learn are imported inside the functions that need them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from napari_reddino.progress import Progress
from napari_reddino.images import InputError

MIN_CELLS = 4
# Exact k-nearest neighbours (chunked matrix products) up to this many cells: deterministic, needs no
# numba JIT of NN-descent and beats it on 2 cores at 20k cells. Above it umap's NN-descent takes over.
EXACT_KNN_MAX = 60_000
EXACT_KNN_METRICS = ("cosine", "euclidean")
POOLED_COLUMNS = ["image", "label", "centroid_x", "centroid_y"]
# Above this many cells UMAP is fitted on a seeded sample of this many, the others placed (module docstring):
# 1,000,000 cells in under 5 minutes on 2 cores, see benchmarks/results_umap_million.md.
SAMPLE_CELLS = 50_000
PLACE_CHUNK = 20_000  # cells placed per step (a Progress each; float32 working memory ~ chunk x sample / lists)


def check_embeddings(X) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.dtype.kind not in "iuf" or X.shape[1] < 2:
        raise InputError(f"Received embeddings with shape {X.shape} dtype {X.dtype}; accepted: a numeric "
                         "(N cells, D features) matrix with D >= 2.")
    X = X.astype(np.float32, copy=False)
    if not np.isfinite(X).all():
        raise InputError(f"Received embeddings with {int((~np.isfinite(X)).sum())} NaN/inf values; accepted: "
                         "finite numbers only.")
    return X


def reduce_dims(X: np.ndarray, pca_dims: int | None = 50, seed: int | None = 0) -> np.ndarray:
    """PCA to ``pca_dims`` components when the features are wider (and there are enough cells)."""
    return _reduce(X, pca_dims, seed)[0]


def _reduce(X, pca_dims, seed):
    """(reduced X, the fitted PCA or None): the PCA also places the cells left out of a sampled fit."""
    n, d = X.shape
    if not pca_dims or d <= pca_dims or n <= pca_dims:
        return X, None
    from sklearn.decomposition import PCA

    pca = PCA(n_components=pca_dims, random_state=seed)
    return pca.fit_transform(X).astype(np.float32), pca


def exact_knn(X: np.ndarray, k: int, metric: str = "cosine", chunk: int = 512):
    """(indices, distances) of each row's ``k`` nearest rows, itself first, as umap expects."""
    X = np.asarray(X, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        X = X / np.maximum(norms, 1e-12)
    sq = (X * X).sum(1)
    n = len(X)
    idx = np.empty((n, k), dtype=np.int32)
    dist = np.empty((n, k), dtype=np.float32)
    for s in range(0, n, chunk):
        block = X[s:s + chunk] @ X.T
        d = (1.0 - block) if metric == "cosine" else (sq[s:s + chunk, None] + sq[None, :] - 2 * block)
        rows = np.arange(len(d))
        d[rows, s + rows] = -np.inf  # self first, whatever rounding says
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        pd_ = np.take_along_axis(d, part, 1)
        order = np.argsort(pd_, axis=1)
        idx[s:s + chunk] = np.take_along_axis(part, order, 1)
        dist[s:s + chunk] = np.take_along_axis(pd_, order, 1)
    dist[:, 0] = 0.0
    np.maximum(dist, 0.0, out=dist)
    if metric == "euclidean":
        np.sqrt(dist, out=dist)
    return idx, dist


def iter_umap_embed(X, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "cosine",
                    seed: int | None = 0, pca_dims: int | None = 50, sample: int | None = SAMPLE_CELLS):
    """Progress generator behind :func:`umap_embed`; returns the (N, 2) float32 embedding. Above ``sample``
    cells (None: never) UMAP is fitted on a seeded sample of that many and the others are placed (module
    docstring)."""
    X = check_embeddings(X)
    n = len(X)
    if n < MIN_CELLS:
        raise InputError(f"Received {n} cells; accepted: at least {MIN_CELLS} cells for a UMAP.")
    if int(n_neighbors) < 2:
        raise InputError(f"Received n_neighbors={n_neighbors}; accepted: an integer >= 2.")
    if not 0 <= float(min_dist) <= 1:
        raise InputError(f"Received min_dist={min_dist}; accepted: a number in [0, 1].")
    if sample is not None and int(sample) <= int(n_neighbors):
        raise InputError(f"Received a UMAP sample of {sample} cells; accepted: more cells than neighbours "
                         f"({n_neighbors}), e.g. {SAMPLE_CELLS}.")
    if sample is None or n <= int(sample):
        Y, _, _ = yield from _iter_fit(X, n_neighbors, min_dist, metric, seed, pca_dims)
        return Y
    fitted = sample_rows(n, int(sample), seed)
    Y_fit, Z_fit, pca = yield from _iter_fit(X[fitted], n_neighbors, min_dist, metric, seed, pca_dims)
    Y = np.empty((n, 2), dtype=np.float32)
    Y[fitted] = Y_fit
    rest = np.setdiff1d(np.arange(n), fitted, assume_unique=True)
    yield Progress(0, len(rest), "indexing the sample")
    index = NearestSample(Z_fit, metric, seed)
    k = min(int(n_neighbors), len(fitted))
    for start in range(0, len(rest), PLACE_CHUNK):
        yield Progress(start, len(rest), "placing the other cells")
        rows = rest[start:start + PLACE_CHUNK]
        Z = X[rows] if pca is None else pca.transform(X[rows]).astype(np.float32)
        Y[rows] = place(Y_fit, *index.query(Z, k))
    yield Progress(len(rest), len(rest), "placing the other cells")
    return Y


def sample_rows(n: int, sample: int, seed: int | None = 0) -> np.ndarray:
    """The sorted rows a sampled UMAP is fitted on (seeded: the same rows for the same seed)."""
    return np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))


def _iter_fit(X, n_neighbors, min_dist, metric, seed, pca_dims):
    """UMAP of every row of X: (embedding (N, 2) float32, X reduced, the PCA or None)."""
    n = len(X)
    # Few cells: shrink the neighbourhood rather than refuse (umap needs k < N).
    k = min(int(n_neighbors), n - 1)
    yield Progress(0, 3, "PCA")
    Z, pca = _reduce(X, pca_dims, seed)
    yield Progress(1, 3, "neighbours")
    knn = exact_knn(Z, k, metric) if metric in EXACT_KNN_METRICS and n <= EXACT_KNN_MAX else (None, None, None)
    yield Progress(2, 3, "UMAP")
    import umap

    reducer = umap.UMAP(n_neighbors=k, min_dist=float(min_dist), metric=metric, random_state=seed,
                        n_components=2, precomputed_knn=knn, init="spectral" if n > 16 else "random")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(precomputed_knn|n_jobs|disconnected|spectral).*")
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        try:
            Y = reducer.fit_transform(Z)
        except ValueError as exc:  # umap's own parameter checks (unknown metric, ...)
            raise InputError(f"UMAP refused the input ({exc}); accepted: metric names umap-learn knows, "
                             "e.g. cosine, euclidean, correlation.") from None
    yield Progress(3, 3, "UMAP")
    return np.asarray(Y, dtype=np.float32), Z, pca


def umap_embed(X, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "cosine", seed: int | None = 0,
               pca_dims: int | None = 50, sample: int | None = SAMPLE_CELLS) -> np.ndarray:
    """2-D UMAP of an (N, D) feature matrix (PCA to ``pca_dims`` first when D is wider; fitted on a sample
    of ``sample`` cells above that many)."""
    from napari_reddino.progress import run

    return run(iter_umap_embed(X, n_neighbors, min_dist, metric, seed, pca_dims, sample))


def place(Y_fit: np.ndarray, idx: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Map positions of new cells from their nearest fitted cells (``idx``, ``dist``: (m, k), nearest first):
    the mean of those cells' positions ``Y_fit`` weighted by umap's fuzzy membership strengths, as umap's
    ``transform`` starts each new point (``smooth_knn_dist``, then ``init_graph_transform``)."""
    from umap.umap_ import smooth_knn_dist

    dist = np.ascontiguousarray(dist, dtype=np.float32)
    sigmas, rhos = smooth_knn_dist(dist, float(dist.shape[1]))
    w = np.exp(-np.maximum(dist - rhos[:, None], 0.0) / sigmas[:, None]).astype(np.float32)
    w /= w.sum(1, keepdims=True)
    return np.einsum("mk,mkd->md", w, Y_fit[idx]).astype(np.float32)


def _unit_rows(Z, metric):
    """Rows whose squared euclidean distances order pairs as ``metric`` does (cosine, correlation: unit
    rows, centred first for correlation; otherwise the rows as they are, in euclidean distance)."""
    Z = np.asarray(Z, dtype=np.float32)
    if metric == "correlation":
        Z = Z - Z.mean(1, keepdims=True)
    if metric in ("cosine", "correlation"):
        Z = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
    return Z


class NearestSample:
    """Approximate k nearest fitted cells of new cells: k-means (seeded, ``lists`` ~ sqrt(N) centres) over the
    fitted cells; a new cell is searched exactly among the members of its nearest centre's ``probe`` nearest
    centres. Distances as umap measures them: cosine and correlation (1 - cos), euclidean for the others."""

    def __init__(self, Z, metric: str = "cosine", seed: int | None = 0, lists: int | None = None,
                 probe: int = 8, iterations: int = 10):
        self.metric = metric
        self.P = _unit_rows(Z, metric)
        n = len(self.P)
        lists = int(lists or max(1, round(np.sqrt(n))))
        rng = np.random.default_rng(seed)
        self.centres = self.P[rng.choice(n, min(lists, n), replace=False)].copy()
        for _ in range(iterations):  # Lloyd's k-means; an emptied centre stays where it was
            owner = self._nearest_centre(self.P)
            counts = np.bincount(owner, minlength=len(self.centres))
            sums = np.zeros_like(self.centres)
            np.add.at(sums, owner, self.P)
            kept = counts > 0
            self.centres[kept] = sums[kept] / counts[kept, None]
        owner = self._nearest_centre(self.P)
        self.order = np.argsort(owner, kind="stable")
        self.bounds = np.searchsorted(owner[self.order], np.arange(len(self.centres) + 1))
        c = self.centres
        between = (c * c).sum(1)[:, None] + (c * c).sum(1)[None, :] - 2 * c @ c.T
        self.probes = np.argsort(between, axis=1, kind="stable")[:, :min(probe, len(c))]
        self.sq = (self.P * self.P).sum(1)

    def _nearest_centre(self, P, chunk: int = 16384) -> np.ndarray:
        c2 = (self.centres * self.centres).sum(1)
        return np.concatenate([np.argmin(c2[None, :] - 2 * P[s:s + chunk] @ self.centres.T, axis=1)
                               for s in range(0, len(P), chunk)]) if len(P) else np.zeros(0, np.int64)

    def query(self, Z, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices into the fitted cells, distances), (m, k) each, nearest first."""
        Q = _unit_rows(Z, self.metric)
        k = min(int(k), len(self.P))
        idx = np.empty((len(Q), k), dtype=np.int64)
        dist = np.empty((len(Q), k), dtype=np.float32)
        owner = self._nearest_centre(Q)
        by_centre = np.argsort(owner, kind="stable")
        bounds = np.searchsorted(owner[by_centre], np.arange(len(self.centres) + 1))
        for c in range(len(self.centres)):
            rows = by_centre[bounds[c]:bounds[c + 1]]
            if not len(rows):
                continue
            cand = np.concatenate([self.order[self.bounds[p]:self.bounds[p + 1]] for p in self.probes[c]])
            if len(cand) < k:
                cand = np.arange(len(self.P))
            q = Q[rows]
            d = (q * q).sum(1)[:, None] + self.sq[cand][None, :] - 2 * q @ self.P[cand].T
            part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < len(cand) else np.tile(np.arange(k), (len(q), 1))
            pd_ = np.take_along_axis(d, part, 1)
            o = np.argsort(pd_, axis=1, kind="stable")
            idx[rows] = cand[np.take_along_axis(part, o, 1)]
            dist[rows] = np.take_along_axis(pd_, o, 1)
        np.maximum(dist, 0.0, out=dist)
        if self.metric in ("cosine", "correlation"):
            dist *= 0.5  # |a - b|^2 / 2 = 1 - cos for unit rows
        else:
            np.sqrt(dist, out=dist)
        return idx, dist


WARM_CELLS = 24  # enough for umap's spectral start, like a real smear's


def warm_umap() -> None:
    """Compile umap's numba code for this session with a tiny UMAP through the docks' path (float32 cells,
    exact neighbours, cosine, seed 0), so that the first real UMAP does not sit for seconds (tens of
    seconds on a fresh install) before it moves. The docks run it in a background thread
    (``_widgets._common.start_warm_up``)."""
    X = np.random.default_rng(0).normal(size=(WARM_CELLS, 8)).astype(np.float32)
    umap_embed(X, n_neighbors=5)


def pool_embeddings(items) -> tuple[pd.DataFrame, np.ndarray]:
    """Pool several images' cells into one table and one matrix.

    ``items``: iterable of ``(image_name, labels_table, embeddings)`` where ``labels_table`` has a ``label``
    column (plus optionally ``centroid_x``/``centroid_y``, e.g. a Labels layer's ``features``) and
    ``embeddings`` is (N, D) with rows aligned to it. Returns a table with columns ``image, label,
    centroid_x, centroid_y`` (+ any other columns the inputs share) and the stacked (sum N, D) matrix.
    """
    tables, mats = [], []
    for image, table, emb in items:
        emb = check_embeddings(emb)
        table = pd.DataFrame(table)
        if "label" not in table.columns or len(table) != len(emb):
            raise InputError(f"Received for {image!r} a table of {len(table)} rows (columns "
                             f"{list(table.columns)[:6]}) and {len(emb)} embeddings; accepted: a table with a "
                             "'label' column, one row per embedding.")
        t = table.copy()
        t.insert(0, "image", str(image))
        for col in ("centroid_x", "centroid_y"):
            if col not in t.columns:
                t[col] = np.nan
        tables.append(t.reset_index(drop=True))
        mats.append(emb)
    if not tables:
        raise InputError("Received no images with embeddings; accepted: at least one (image, table, "
                         "embeddings) item.")
    dims = {m.shape[1] for m in mats}
    if len(dims) > 1:
        raise InputError(f"Received embeddings of different widths {sorted(dims)}; accepted: one model's "
                         "features (same width) for every pooled image.")
    shared = [c for c in tables[0].columns if all(c in t.columns for t in tables)]
    cols = POOLED_COLUMNS + [c for c in shared if c not in POOLED_COLUMNS]
    table = pd.concat([t[cols] for t in tables], ignore_index=True)
    table["label"] = table["label"].astype(np.int64)
    if table.duplicated(["image", "label"]).any():
        dup = table[table.duplicated(["image", "label"])].iloc[0]
        raise InputError(f"Received cell ({dup['image']!r}, label {dup['label']}) twice; accepted: unique "
                         "(image, label) pairs (give each pooled image a distinct name).")
    return table, np.concatenate(mats, axis=0)


LAYER_KEY = "reddino"  # a cells layer's metadata key for its features (written by _widgets/layers.py)


def layer_items(metadata_and_features):
    """``(image, table, embeddings)`` items from ``(layer_name, metadata, features)`` of Labels layers that
    carry ``metadata["reddino"]`` (see docs/architecture.md); rows are aligned on ``reddino["labels"]``."""
    items = []
    for name, metadata, features in metadata_and_features:
        red = (metadata or {}).get(LAYER_KEY)
        if not red or red.get("embeddings") is None:
            raise InputError(f"Received Labels layer {name!r} without embeddings; accepted: a layer on which "
                             "'Extract RedDino features' has run (metadata['reddino']).")
        labels = np.asarray(red.get("labels"), dtype=np.int64)
        emb = np.asarray(red["embeddings"])
        feats = pd.DataFrame(features) if features is not None else pd.DataFrame()
        # what the smear shows beside the measurements (napari's row index, the annotation dock's classes;
        # a classifier's prediction and confidence are kept: the map starts from them)
        feats = feats.drop(columns=["index", "class"], errors="ignore")
        if "label" in feats.columns and len(feats):
            feats = feats.drop_duplicates("label").set_index("label").reindex(labels).reset_index()
        else:
            feats = pd.DataFrame({"label": labels})
        if "prediction" not in feats.columns or "confidence" not in feats.columns:  # so that pooled smears share them
            feats["prediction"], feats["confidence"] = "", np.nan
        feats["prediction"] = feats["prediction"].fillna("").astype(str)
        items.append((red.get("image") or name, feats, emb))
    return items
