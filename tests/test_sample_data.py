"""Sample data: the synthetic smear is a faithful, deterministic ground truth; the real one never downloads here."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import ndimage

from napari_reddino import chula, sample_data
from napari_reddino.images import InputError
from napari_reddino.chula import smear as chula_smear
from napari_reddino.sample_data import synthetic_smear


@pytest.fixture(scope="module")
def smear():
    return synthetic_smear(seed=0)


def test_synthetic_is_deterministic_by_seed(smear):
    image, labels, classes = smear
    again = synthetic_smear(seed=0)
    assert np.array_equal(again[0], image) and np.array_equal(again[1], labels) and again[2] == classes
    other = synthetic_smear(seed=1)
    assert not np.array_equal(other[0], image)


def test_synthetic_shapes_and_classes(smear):
    image, labels, classes = smear
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    assert labels.shape == (480, 640) and labels.dtype == np.int32
    assert set(classes) == set(np.unique(labels)) - {0}
    kinds = set(classes.values())
    assert {"normal", "spherocyte", "target", "elliptocyte", "white_cell", "platelet"} <= kinds
    assert 60 <= sum(k not in ("white_cell", "platelet") for k in classes.values()) <= 120
    small = synthetic_smear(seed=3, shape=(100, 120), n_cells=5, n_white=0, n_platelets=0)
    assert small[0].shape == (100, 120, 3) and 1 <= len(small[2]) <= 5


def test_synthetic_cells_look_like_red_cells(smear):
    image, labels, classes = smear
    gray = image.astype(float).mean(-1)
    background = gray[labels == 0].mean()
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, labels.max() + 1))
    diam = {lab: 2 * np.sqrt(sizes[lab - 1] / np.pi) for lab in classes}
    normal = [lab for lab, k in classes.items() if k == "normal"]
    whole = [lab for lab in normal if diam[lab] > 30]  # not cut by the border or covered by a neighbour
    assert np.median([diam[lab] for lab in whole]) == pytest.approx(39, abs=5)
    assert max(diam[lab] for lab, k in classes.items() if k == "platelet") < 9
    # cells absorb light; a normal cell's centre (pallor) is paler than its rim
    paler = 0
    for lab in whole:
        cy, cx = ndimage.center_of_mass(labels == lab)
        yy, xx = np.nonzero(labels == lab)
        r = np.hypot(yy - cy, xx - cx)
        centre, rim = gray[yy[r < 4], xx[r < 4]].mean(), gray[yy[(r > 9) & (r < 14)], xx[(r > 9) & (r < 14)]].mean()
        paler += centre > rim
        assert rim < background - 15
    assert paler >= 0.8 * len(whole)
    # white cells carry a purple nucleus: blue above green, unlike red cells
    wbc = np.isin(labels, [lab for lab, k in classes.items() if k == "white_cell"])
    dark = wbc & (gray < np.percentile(gray[wbc], 30))
    assert image[dark][:, 2].mean() > image[dark][:, 1].mean() + 20
    rbc = np.isin(labels, normal)
    assert image[rbc][:, 0].mean() > image[rbc][:, 1].mean() + 20


def test_synthetic_has_touching_and_overlapping_cells(smear):
    image, labels, _ = smear
    a, b = labels[:, :-1], labels[:, 1:]
    touching = {(min(p, q), max(p, q)) for p, q in zip(a[(a != b) & (a > 0) & (b > 0)], b[(a != b) & (a > 0) & (b > 0)])}
    assert len(touching) >= 5
    # overlaps absorb twice: the darkest cell pixels are on the contact lines
    gray = image.astype(float).mean(-1)
    contact = np.zeros_like(labels, bool)
    contact[:, :-1] |= (a != b) & (a > 0) & (b > 0)
    assert gray[contact].mean() < gray[labels > 0].mean()


def test_crowded_smear_keeps_placing_cells_after_one_finds_no_room():
    # 30 large cells cannot all fit in 60x60; the small ones after them still fit between the large ones
    centres = np.array(sample_data._place(np.random.default_rng(0), (60, 60), [12.0] * 30 + [0.5] * 5, 0.0))
    assert np.isnan(centres[:30, 0]).any()
    assert not np.isnan(centres[30:, 0]).any()


def test_synthetic_refuses_tiny_shape():
    with pytest.raises(InputError, match="accepted"):
        synthetic_smear(shape=(10, 10))


def test_synthetic_layers_for_napari():
    layers = sample_data.synthetic_smear_layers()
    (image, image_kw, image_kind), (labels, labels_kw, labels_kind) = layers
    assert image_kind == "image" and labels_kind == "labels" and image.shape[-1] == 3
    assert len(labels_kw["features"]["label"]) == len(labels_kw["features"]["class"]) == len(np.unique(labels)) - 1


def test_chula_offline_fails_with_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("NAPARI_REDDINO_DATA", raising=False)
    monkeypatch.setenv("NAPARI_REDDINO_OFFLINE", "1")
    monkeypatch.setattr("pooch.os_cache", lambda name: tmp_path)
    monkeypatch.setattr("pooch.retrieve", lambda *a, **k: pytest.fail("tried to download"))
    with pytest.raises(InputError) as info:
        chula_smear(1)
    msg = str(info.value)
    assert "\n" not in msg and "NAPARI_REDDINO_OFFLINE" in msg and "NAPARI_REDDINO_DATA" in msg
    with pytest.raises(InputError, match="accepted for download"):
        chula_smear(4)


def test_chula_download_failure_is_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("NAPARI_REDDINO_DATA", raising=False)
    monkeypatch.setenv("NAPARI_REDDINO_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # either one turns every download off (runtime.is_offline)
    monkeypatch.setattr("pooch.os_cache", lambda name: tmp_path)

    def no_network(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr("pooch.retrieve", no_network)
    with pytest.raises(InputError, match="Could not download.*ConnectionError"):
        chula_smear(2)


@pytest.mark.data
def test_chula_from_local_data(monkeypatch, shared_data):
    monkeypatch.setenv("NAPARI_REDDINO_DATA", str(shared_data))
    image, centres, class_ids = chula_smear(1)
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    assert centres.shape == (117, 2) and class_ids.shape == (117,)
    assert centres[:, 0].max() < 480 and centres[:, 1].max() < 640  # (y, x) order
    assert centres[0].tolist() == [95.0, 594.0] and class_ids[0] == 0
    layers = sample_data.chula_smear_layers()
    assert [kind for *_, kind in layers] == ["image", "points"] and len(layers[1][0]) == 117
    with pytest.raises(InputError, match="chula-rbc-12/images"):
        chula_smear(4)  # multiples of 4 are not in the development subset


@pytest.mark.data
def test_chula_pinned_hashes_match_the_public_files(shared_data):
    root = shared_data / "chula-rbc-12"
    for image_id, (image_sha, label_sha) in chula.FILES.items():
        assert hashlib.sha256((root / "images" / f"{image_id}.jpg").read_bytes()).hexdigest() == image_sha
        assert hashlib.sha256((root / "labels" / f"{image_id}.txt").read_bytes()).hexdigest() == label_sha
