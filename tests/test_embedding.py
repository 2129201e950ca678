"""UMAP embedding and pooling of several images' embeddings."""

import numpy as np
import pandas as pd
import pytest

from napari_reddino.embedding import (
    NearestSample,
    exact_knn,
    layer_items,
    place,
    pool_embeddings,
    sample_rows,
    umap_embed,
)
from napari_reddino.formats import read_features
from napari_reddino.images import InputError


def clusters(n_per=30, k=3, d=64, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 4
    y = np.repeat(np.arange(k), n_per)
    return (centres[y] + rng.normal(size=(len(y), d))).astype(np.float32), y


@pytest.fixture(scope="module")
def embedded():
    X, y = clusters()
    return X, y, umap_embed(X, n_neighbors=10, seed=0)


def test_umap_separates_clusters_and_is_reproducible(embedded):
    X, y, Y = embedded
    assert Y.shape == (len(X), 2) and Y.dtype == np.float32
    centroids = np.stack([Y[y == c].mean(0) for c in range(3)])
    spread = max(np.linalg.norm(Y[y == c] - centroids[c], axis=1).mean() for c in range(3))
    gaps = min(np.linalg.norm(centroids[a] - centroids[b]) for a in range(3) for b in range(a + 1, 3))
    assert gaps > 2 * spread
    np.testing.assert_allclose(umap_embed(X, n_neighbors=10, seed=0), Y, atol=1e-4)


def test_umap_reduces_wide_features_with_pca():
    X, _ = clusters(n_per=25, d=120)  # wider than pca_dims: goes through PCA first
    Y = umap_embed(X, n_neighbors=8, pca_dims=20)
    assert Y.shape == (75, 2) and np.isfinite(Y).all()


def test_umap_small_n_falls_back_and_tiny_n_is_refused():
    X, _ = clusters(n_per=3, k=2, d=8)  # 6 cells < n_neighbors + 2: neighbourhood shrinks
    assert umap_embed(X, n_neighbors=15).shape == (6, 2)
    with pytest.raises(InputError, match="at least 4 cells"):
        umap_embed(X[:3])
    with pytest.raises(InputError, match="accepted"):
        umap_embed(np.ones(10))
    with pytest.raises(InputError, match="NaN"):
        umap_embed(np.full((10, 4), np.nan))


@pytest.fixture(scope="module")
def sampled():
    """A map fitted on 150 of 450 cells (the threshold set low), the others placed."""
    X, y = clusters(n_per=150, k=3, d=64, seed=1)
    return X, y, umap_embed(X, n_neighbors=10, seed=0, sample=150)


def test_sampled_umap_gives_the_fitted_cells_the_map_of_the_sample_alone(sampled):
    X, _, Y = sampled
    fitted = sample_rows(len(X), 150, seed=0)
    assert len(fitted) == 150 and np.array_equal(fitted, np.unique(fitted))
    np.testing.assert_allclose(Y[fitted], umap_embed(X[fitted], n_neighbors=10, seed=0, sample=None), atol=1e-5)
    assert not np.array_equal(sample_rows(len(X), 150, seed=1), fitted)


def test_sampled_umap_is_deterministic_and_places_cells_with_their_cluster(sampled):
    X, y, Y = sampled
    np.testing.assert_array_equal(umap_embed(X, n_neighbors=10, seed=0, sample=150), Y)
    fitted = sample_rows(len(X), 150, seed=0)
    placed = np.setdiff1d(np.arange(len(X)), fitted)
    d = ((Y[placed, None, :] - Y[None, fitted, :]) ** 2).sum(-1)
    assert (y[fitted][d.argmin(1)] == y[placed]).mean() > 0.95  # nearest fitted cell on the map: same cluster
    assert np.isfinite(Y).all() and Y.dtype == np.float32


def test_sampled_umap_places_in_chunks_with_progress(monkeypatch):
    import napari_reddino.embedding as embedding

    monkeypatch.setattr(embedding, "PLACE_CHUNK", 40)
    X, _ = clusters(n_per=50, k=3, d=16)
    gen, seen = embedding.iter_umap_embed(X, n_neighbors=5, sample=30), []
    try:
        while True:
            seen.append(next(gen))
    except StopIteration as stop:
        Y = stop.value
    placing = [p.done for p in seen if p.message == "placing the other cells"]
    assert placing == [0, 40, 80, 120] and Y.shape == (150, 2)
    with pytest.raises(InputError, match="more cells than neighbours"):
        umap_embed(X, n_neighbors=10, sample=10)


def test_placed_cell_lies_at_its_nearest_fitted_cells():
    Y_fit = np.array([[0, 0], [10, 0], [0, 10], [50, 50]], np.float32)
    idx = np.array([[0, 1, 2], [3, 0, 1], [3, 3, 3]])
    dist = np.array([[0.1, 0.1, 0.1], [0.0, 0.9, 0.95], [0.1, 0.2, 0.3]], np.float32)
    out = place(Y_fit, idx, dist)
    np.testing.assert_allclose(out[0], [10 / 3, 10 / 3], atol=1e-4)  # equally near: their mean
    plain = Y_fit[idx[1]].mean(0)  # the nearest weighs most: nearer it than the plain mean is
    assert np.linalg.norm(out[1] - Y_fit[3]) < np.linalg.norm(plain - Y_fit[3]) - 2
    np.testing.assert_allclose(out[2], Y_fit[3], atol=1e-4)  # neighbours all in one place: there


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "correlation"])
def test_nearest_sample_finds_the_nearest_cells(metric):
    from sklearn.metrics import pairwise_distances

    X, _ = clusters(n_per=100, k=3, d=16, seed=2)
    S, Q = X[:240], X[240:]
    exact = np.sort(pairwise_distances(Q, S, metric=metric), axis=1)[:, :5]
    idx, dist = NearestSample(S, metric, seed=0, lists=4, probe=4).query(Q, 5)  # every list probed: exact
    np.testing.assert_allclose(dist, exact, atol=1e-4)
    idx, _ = NearestSample(S, metric, seed=0, lists=16, probe=4).query(Q, 5)
    truth = np.argsort(pairwise_distances(Q, S, metric=metric), axis=1)[:, :5]
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(idx, truth)]) > 0.8


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_knn_matches_brute_force(metric):
    from sklearn.metrics import pairwise_distances

    X, _ = clusters(n_per=20, d=16)
    idx, dist = exact_knn(X, 5, metric, chunk=7)
    D = pairwise_distances(X, metric=metric)
    np.testing.assert_array_equal(idx[:, 0], np.arange(len(X)))
    np.testing.assert_allclose(dist, np.sort(D, axis=1)[:, :5], atol=1e-4)


def test_pool_embeddings_stacks_images_in_order():
    a = pd.DataFrame({"label": [1, 2], "centroid_x": [1.0, 2.0], "centroid_y": [3.0, 4.0], "area": [5, 6]})
    b = pd.DataFrame({"label": [2, 7, 9]})
    table, X = pool_embeddings([("a", a, np.zeros((2, 4))), ("b", b, np.ones((3, 4)))])
    assert list(table["image"]) == ["a", "a", "b", "b", "b"]
    assert list(table["label"]) == [1, 2, 2, 7, 9]
    assert list(table.columns[:4]) == ["image", "label", "centroid_x", "centroid_y"]
    assert np.isnan(table["centroid_x"].iloc[2]) and X.shape == (5, 4) and X[2:].min() == 1


def test_pool_embeddings_refuses_mismatches():
    t = pd.DataFrame({"label": [1, 2]})
    with pytest.raises(InputError, match="one row per embedding"):
        pool_embeddings([("a", t, np.zeros((3, 4)))])
    with pytest.raises(InputError, match="different widths"):
        pool_embeddings([("a", t, np.zeros((2, 4))), ("b", t, np.zeros((2, 5)))])
    with pytest.raises(InputError, match="twice"):
        pool_embeddings([("a", t, np.zeros((2, 4))), ("a", t, np.zeros((2, 4)))])


def test_layer_items_align_features_on_metadata_labels():
    feats = pd.DataFrame({"label": [3, 1, 2], "centroid_x": [30.0, 10.0, 20.0]})
    meta = {"reddino": {"embeddings": np.arange(6.0).reshape(3, 2), "labels": np.array([1, 2, 3]),
                        "image": "smear"}}
    [(image, table, _)] = layer_items([("smear cells", meta, feats)])
    assert image == "smear" and list(table["label"]) == [1, 2, 3]
    assert list(table["centroid_x"]) == [10.0, 20.0, 30.0]
    with pytest.raises(InputError, match="without embeddings"):
        layer_items([("x", {}, feats)])


def test_read_features_csv_and_parquet(tmp_path):
    df = pd.DataFrame({"image": ["a", "a"], "label": [1, 2], "x": [1.0, 2.0], "y": [3.0, 4.0]})
    for i in range(3):
        df[f"emb_{i}"] = [i, i + 1.0]
    df.to_csv(tmp_path / "f.csv", index=False)
    df.to_parquet(tmp_path / "f.parquet")
    for name in ("f.csv", "f.parquet"):
        table, X = read_features(tmp_path / name)
        # files written before the names were made one: x, y come back as centroid_x, centroid_y
        assert X.shape == (2, 3) and list(table.columns) == ["image", "label", "centroid_x", "centroid_y"]
    df.drop(columns=["image"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match="accepted: columns image"):
        read_features(tmp_path / "bad.csv")
