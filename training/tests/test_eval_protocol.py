"""Splits, classifiers and scores of the paper's protocol; handcrafted and random-init features."""

from __future__ import annotations

import numpy as np
import pytest
from reddino_train.eval import features, protocol

from napari_reddino.images import InputError


def blobs(rng, n_per=40, k=3, d=8, sep=4.0):
    centres = rng.normal(0, sep, (k, d))
    X = np.concatenate([c + rng.normal(0, 1, (n_per, d)) for c in centres])
    y = np.repeat(np.arange(k), n_per)
    groups = np.tile(np.repeat(np.arange(8), n_per // 8), k).astype(str)
    return X.astype(np.float32), y, groups


def test_grouped_folds_never_split_an_image(rng):
    _, y, groups = blobs(rng)
    splits = protocol.make_splits("grouped", y, groups)
    assert len(splits) == 5
    tested = np.concatenate([te for _, te in splits])
    assert sorted(tested) == list(range(len(y)))  # every cell tested exactly once
    for tr, te in splits:
        assert not set(groups[tr]) & set(groups[te])


def test_ungrouped_is_the_papers_unshuffled_stratified_kfold(rng):
    from sklearn.model_selection import StratifiedKFold

    _, y, groups = blobs(rng)
    ours = protocol.make_splits("ungrouped", y, groups)
    ref = list(StratifiedKFold(5).split(np.zeros(len(y)), y))
    assert all((a[1] == b[1]).all() for a, b in zip(ours, ref))
    assert any(set(groups[tr]) & set(groups[te]) for tr, te in ours)  # the leak grouping removes


def test_loso_leaves_each_source_out_and_needs_sources(rng):
    _, y, groups = blobs(rng)
    sources = np.where(np.arange(len(y)) % 3 == 0, "lab1", "lab2")
    splits = protocol.make_splits("loso", y, groups, sources)
    assert [set(sources[te]) for _, te in splits] == [{"lab1"}, {"lab2"}]
    with pytest.raises(InputError, match="source"):
        protocol.make_splits("loso", y, groups, None)
    with pytest.raises(InputError, match="at least 5 images"):
        protocol.make_splits("grouped", y, np.zeros(len(y)).astype(str))
    with pytest.raises(InputError):
        protocol.make_splits("bogus", y, groups)


def test_classifiers_follow_the_paper():
    clf = protocol.make_classifier("linear", dim=384, n_classes=13)
    assert (clf.solver, clf.max_iter, clf.C) == ("lbfgs", 1000, pytest.approx(384 * 13 / 100))
    knn = protocol.make_classifier("knn20", 4, 3, metric="cosine")
    assert (knn.n_neighbors, knn.metric, knn.weights) == (20, "cosine", "uniform")
    assert protocol.make_classifier("knn1", 4, 3, standardise=True).steps[0][0] == "standardscaler"
    with pytest.raises(InputError):
        protocol.make_classifier("svm", 4, 3)


def test_scores_separate_signal_from_noise(rng):
    X, y, groups = blobs(rng)
    splits = protocol.make_splits("grouped", y, groups)
    good = protocol.run_protocol(X, y, splits)
    noise = protocol.run_protocol(rng.normal(size=X.shape), y, splits)
    for clf in protocol.CLASSIFIERS:
        assert np.mean([f["wf1"] for f in good[clf]["folds"]]) > 0.9
        assert np.mean([f["acc"] for f in noise[clf]["folds"]]) < 0.6
        assert (good[clf]["pred"] >= 0).all()
    rows = protocol.summarise("m", "grouped", good)
    assert len(rows) == 9 and set(rows[0]) == {"model", "protocol", "classifier", "metric", "mean", "std"}
    accs = [f["acc"] for f in good["knn1"]["folds"]]
    row = next(r for r in rows if r["classifier"] == "knn1" and r["metric"] == "acc")
    assert row["mean"] == pytest.approx(np.mean(accs)) and row["std"] == pytest.approx(np.std(accs))


def test_balanced_accuracy_differs_from_accuracy_on_imbalance():
    s = protocol.score(np.array([0] * 9 + [1]), np.zeros(10, int))
    assert s["acc"] == pytest.approx(0.9) and s["bacc"] == pytest.approx(0.5)


def disc(size, radius, centre=None, pallor=False):
    yy, xx = np.mgrid[:size, :size]
    cy, cx = centre or (size / 2, size / 2)
    r = np.hypot(yy - cy, xx - cx)
    img = np.full((size, size, 3), (235, 225, 230), np.uint8)
    img[r < radius] = (200, 90, 120)
    if pallor:
        img[r < radius * 0.4] = (225, 170, 190)
    return img


def test_handcrafted_features_measure_the_centre_cell():
    big, small = disc(48, 18), disc(48, 11)
    two = disc(48, 11)
    two[disc(48, 6, centre=(5, 5)).sum(-1) < 600] = (200, 90, 120)  # a neighbour in the corner
    F = features.handcrafted_features([big, small, two, disc(48, 18, pallor=True)])
    area = features.HANDCRAFTED_NAMES.index("area")
    pallor = features.HANDCRAFTED_NAMES.index("pallor")
    assert F.shape == (4, len(features.HANDCRAFTED_NAMES))
    assert F[0, area] == pytest.approx(np.pi * 18 ** 2, rel=0.1)
    assert F[1, area] == pytest.approx(F[2, area], rel=0.05)  # the neighbour is not counted
    assert F[3, pallor] > F[0, pallor] + 0.1
    assert features.cell_mask(np.full((10, 10, 3), 200, np.uint8)).sum() == 0


def test_random_init_keeps_architecture_and_resets_every_weight(tiny_vit):
    import copy

    import torch

    trained = copy.deepcopy(tiny_vit)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.37)  # stands for training: every tensor moved away from its init
    rand = features.random_init_like(trained, seed=1)
    a, b = trained.state_dict(), rand.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert all(not torch.allclose(a[k], b[k]) for k in a if a[k].is_floating_point())
    again = features.random_init_like(tiny_vit, seed=1).state_dict()
    assert all(torch.equal(b[k], again[k]) for k in b)  # depends on architecture and seed, not weights
    assert rand is not trained and not rand.training


def test_border_padding_is_not_taken_for_a_cell():
    crop = disc(48, 12)
    crop[:, :10] = 0  # the image ended here
    mask = features.cell_mask(crop)
    assert not mask[:, :10].any() and mask[24, 24]
