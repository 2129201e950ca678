"""The evaluation on the real Chula-RBC-12 development subset (skipped when ../shared/data is absent)."""

from __future__ import annotations

import numpy as np
import pytest
from reddino_train.eval import datasets, features, protocol

pytestmark = [pytest.mark.data, pytest.mark.slow]


@pytest.fixture(scope="module")
def chula(shared_data):
    return datasets.load_dataset(f"chula:{shared_data / 'chula-rbc-12'}", crop_size=48)


def test_every_labelled_cell_is_read(chula):
    assert len(chula) == 16537  # the README's count
    assert chula.counts()["elliptocyte"] == 793 and chula.counts()["normal"] == 4636
    ellipto_images = {int(g) for g in np.unique(chula.groups[chula.y == 12])}
    assert min(ellipto_images) >= 707 and max(ellipto_images) <= 738  # the acquisition-batch trap


def test_grouped_folds_keep_images_whole_on_real_cells(chula):
    splits = protocol.make_splits("grouped", chula.y, chula.groups)
    for tr, te in splits:
        assert not set(chula.groups[tr]) & set(chula.groups[te])
        assert len(np.unique(chula.y[te])) >= 10  # stratification keeps most classes in every fold


def test_handcrafted_features_carry_morphology(chula):
    cells = datasets.stratified_limit(datasets.exclude_classes(chula, [12]), 1200, seed=0)
    X = features.handcrafted_features(cells.crops, cells.thresholds)
    area = X[:, features.HANDCRAFTED_NAMES.index("area")]
    med = {c: np.median(area[cells.y == c]) for c in (0, 1, 2)}
    assert med[2] < med[0] < med[1]  # microcytes < normal cells < macrocytes
    res = protocol.run_protocol(X, cells.y, protocol.make_splits("grouped", cells.y, cells.groups),
                                classifiers=["linear"], standardise=True)
    chance = np.max(np.bincount(cells.y)) / len(cells.y)
    assert np.mean([f["acc"] for f in res["linear"]["folds"]]) > chance + 0.1
