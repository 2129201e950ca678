"""The training kNN monitor reads the evaluation's datasets and predicts the evaluation's 20-NN score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _eval_data import make_chula, save_tiny_model

from napari_reddino.images import InputError


@pytest.fixture(scope="module")
def chula_and_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitor")
    return make_chula(root / "chula", n_images=6), save_tiny_model(root / "tiny", img_size=56)


def test_monitor_on_an_eval_spec_matches_the_evaluations_20nn(chula_and_model):
    from reddino_train.eval import datasets, features, protocol
    from reddino_train.train.knn_monitor import KNNMonitor

    from napari_reddino.models import load_model

    chula, model_dir = chula_and_model
    vit = load_model(f"local-dir:{model_dir}")
    monitor = KNNMonitor(f"chula:{chula}", img_size=56, crop_size=40)
    got = monitor(vit)

    cells = datasets.load_dataset(f"chula:{chula}", 40)
    X = features.model_features(cells.crops, vit, precision="fp32", log=None)
    splits = protocol.make_splits("grouped", cells.y, cells.groups)
    assert min(len(tr) for tr, _ in splits) >= 20  # so both use k = 20
    res = protocol.run_protocol(X, cells.y, splits, ["knn20"])["knn20"]["folds"]
    assert got["knn_wf1"] == pytest.approx(np.mean([f["wf1"] for f in res]), abs=1e-6)
    assert got["knn_acc"] == pytest.approx(np.mean([f["acc"] for f in res]), abs=1e-6)
    assert not vit.training  # the backbone's mode is restored
    # the cells are held as resized uint8 pixels, a quarter of the float32 tensor the backbone reads
    assert monitor._x.dtype == torch.uint8 and monitor._x.shape == (len(cells), 56, 56, 3)


def test_monitor_subsamples_and_refuses_cells_from_one_image(chula_and_model, tmp_path):
    from reddino_train.train.knn_monitor import KNNMonitor

    chula, _ = chula_and_model
    small = KNNMonitor(f"chula:{chula}", img_size=28, max_samples=40, crop_size=40)
    assert len(small.y) <= 60 and len(np.unique(small.y)) == 4  # every class kept
    one = make_chula(tmp_path / "one", n_images=1)
    with pytest.raises(InputError, match="one image"):
        KNNMonitor(f"chula:{one}", img_size=28)
