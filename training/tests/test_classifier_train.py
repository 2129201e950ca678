"""reddino-train classifier: centres matched to masks, grouped folds, and exported files the plugin reads back
with the same probabilities."""

import json

import numpy as np
import pandas as pd
import pytest

from napari_reddino.classifier import load_classifier
from napari_reddino.morphology import FEATURES
from reddino_train.classifier.data import LabelledCells, match_centres
from reddino_train.classifier.fit import cross_validate, fit_export, fit_temperature, grouped_folds, logits, softmax
from reddino_train.classifier.run import evaluate, write_classifier


def test_centres_in_no_mask_or_a_shared_mask_are_dropped():
    labels = np.zeros((20, 20), np.int32)
    labels[2:8, 2:8], labels[10:18, 10:18] = 1, 2
    xyc = np.array([[4, 4, 3], [12, 12, 0], [15, 15, 5], [0, 19, 1]], float)  # two in mask 2, one outside
    ids, y, n = match_centres(labels, xyc)
    assert ids.tolist() == [1] and y.tolist() == [3]
    assert n == {"labelled": 4, "matched": 1, "no_mask": 1, "shared_mask": 2}


def test_folds_never_split_an_image(rng):
    y = rng.integers(0, 3, 300)
    groups = np.repeat(np.arange(30), 10)
    for train, test in grouped_folds(y, groups, 5):
        assert not set(groups[train]) & set(groups[test])


def test_temperature_fitted_on_overconfident_logits_is_above_one(rng):
    y = rng.integers(0, 3, 2000)
    z = rng.normal(0, 1, (2000, 3))
    z[np.arange(2000), y] += 1.0
    t = fit_temperature(5 * z, y)  # the same evidence, five times too sure
    assert 3.5 < t < 7


def _cells(rng, n_per=40, K=13):
    y = np.repeat(np.arange(K), n_per)
    morph = rng.normal(0, 1, (len(y), len(FEATURES))).astype(np.float32)
    morph[np.arange(len(y)), y] += 4  # each class stands out in one measurement
    cells = pd.DataFrame(morph, columns=FEATURES)
    cells.insert(0, "image", [f"im{i % 25}" for i in range(len(y))])
    cells.insert(1, "label", np.arange(len(y)) + 1)
    cells.insert(2, "y", y)
    emb = rng.normal(0, 1, (len(y), 8)).astype(np.float32)
    counts = {"labelled": len(y), "matched": len(y), "no_mask": 0, "shared_mask": 0, "not_red_cell": 0}
    return LabelledCells(cells, emb, [f"c{k}" for k in range(K)], counts)


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_written_files_give_the_exported_probabilities(rng, tmp_path, kind):
    lc = _cells(rng)
    fit_kw = {"kind": kind}
    results = evaluate(lc, ["embedding+morphology", "morphology"], n_splits=3, log=None, **fit_kw)
    assert results["morphology"]["all"]["wf1_mean"] > 0.5
    assert len(results["morphology"]["all"]["recall"]) == 13
    assert results["morphology"]["without_12"]["support"][12] == 0
    info = {"spec": "demo", "sha256": "0" * 64, "dim": 8}
    names = {"classes": lc.classes, "data": "synthetic"}
    write_classifier(tmp_path, lc, info, results, fit_kw, names, "reddino-train classifier ...")
    config = json.loads((tmp_path / "classifier.json").read_text())
    assert set(config["classifiers"]) == {"embedding+morphology", "morphology"}
    card = (tmp_path / "CARD.md").read_text()
    assert "grouped by image" in card and "must not be used for" in card and "Confusion matrix" in card
    clf = load_classifier("embedding+morphology", tmp_path)
    X = np.concatenate([lc.embeddings, lc.cells[FEATURES].to_numpy()], axis=1)
    e = fit_export(X, lc.cells["y"].to_numpy(), 13, **fit_kw)
    np.testing.assert_allclose(clf.proba(X), softmax(logits(e, X), clf.temperature), atol=1e-4)
    pred, conf = clf.predict(lc.cells, lc.embeddings)
    assert (pred == np.asarray(lc.classes, object)[lc.cells["y"]]).mean() > 0.5


def test_a_class_missing_from_training_is_never_predicted(rng):
    X = rng.normal(0, 1, (60, 3))
    y = np.repeat([0, 2, 3], 20)
    cv = cross_validate(X, y, np.arange(60) % 6, 5, n_splits=3)
    assert cv["logits"].shape == (60, 5)
    assert not np.isin(cv["logits"].argmax(1), [1, 4]).any()
