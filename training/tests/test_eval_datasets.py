"""Labelled cells from chula:/folder:/csv: specs."""

from __future__ import annotations

import numpy as np
import pytest
from _eval_data import make_chula
from PIL import Image
from reddino_train.eval import datasets

from napari_reddino.images import InputError


@pytest.fixture(scope="module")
def chula(tmp_path_factory):
    return make_chula(tmp_path_factory.mktemp("chula"), n_images=3)


def test_chula_reads_every_labelled_centre_and_groups_by_image(chula):
    cells = datasets.load_dataset(f"chula:{chula}", crop_size=40)
    n_lines = sum(len(p.read_text().split("\n")) - 1 for p in (chula / "labels").glob("[0-9]*.txt"))
    assert len(cells) == n_lines
    assert set(cells.groups) == {"1", "2", "3"}  # the unlabelled and empty images are skipped
    assert all(c.shape == (40, 40, 3) and c.dtype == np.uint8 for c in cells.crops)
    assert cells.classes[12] == "elliptocyte" and set(np.unique(cells.y)) <= {0, 3, 4, 12}
    assert np.isfinite(cells.thresholds).all()


def test_chula_reads_the_upstream_layout_too(chula, tmp_path):
    import shutil

    shutil.copytree(chula / "images", tmp_path / "Dataset")
    shutil.copytree(chula / "labels", tmp_path / "Label")
    a = datasets.load_dataset(f"chula:{chula}", crop_size=40)
    b = datasets.load_dataset(f"chula:{tmp_path}", crop_size=40)
    assert len(a) == len(b) and (a.y == b.y).all()


def test_crop_is_centred_and_padded_at_the_border():
    rgb = np.full((30, 40, 3), 200, np.uint8)
    rgb[0, 0] = (1, 2, 3)
    crop = datasets.centre_crop(rgb, 0, 0, 8)  # a cell labelled in the image's corner
    assert crop.shape == (8, 8, 3)
    assert (crop[:4, :].sum(-1) == 0).all() and (crop[:, :4].sum(-1) == 0).all()
    assert tuple(crop[4, 4]) == (1, 2, 3)


def test_folder_dataset_has_one_class_per_subfolder(tmp_path):
    for cls, n in (("a", 3), ("b", 2)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.fromarray(np.full((20 + i, 22, 3), 50 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "empty").mkdir()
    cells = datasets.load_dataset(f"folder:{tmp_path}")
    assert cells.classes == ["a", "b"] and list(cells.y) == [0, 0, 0, 1, 1]
    assert cells.crops[1].shape == (21, 22, 3)


def test_csv_dataset_with_boxes_points_and_sources(tmp_path):
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(tmp_path / "s.png")
    (tmp_path / "points.csv").write_text("image,x,y,class,source\ns.png,10,10,echinocyte,A\n"
                                         "s.png,59,49,discocyte,B\n")
    cells = datasets.load_dataset(f"csv:{tmp_path / 'points.csv'}", crop_size=16)
    assert cells.classes == ["discocyte", "echinocyte"] and list(cells.y) == [1, 0]
    assert list(cells.sources) == ["A", "B"] and cells.crops[1].shape == (16, 16, 3)
    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1,class\ns.png,5,6,25,16,3\n")
    cells = datasets.load_dataset(f"csv:{tmp_path / 'boxes.csv'}")
    assert cells.crops[0].shape == (10, 20, 3) and cells.sources is None


@pytest.mark.parametrize("spec", ["nope", "chula:", "zip:/x", "chula:/no/such/dir", "folder:/no/such",
                                  "csv:/no/such.csv"])
def test_bad_dataset_specs_are_one_line_input_errors(spec):
    with pytest.raises(InputError) as err:
        datasets.load_dataset(spec)
    assert "\n" not in str(err.value) and "accepted" in str(err.value)


def test_csv_without_required_columns_is_refused(tmp_path):
    (tmp_path / "bad.csv").write_text("file,label\na.png,1\n")
    with pytest.raises(InputError, match="columns"):
        datasets.load_dataset(f"csv:{tmp_path / 'bad.csv'}")


@pytest.mark.parametrize("body, words", [
    ("image,x,y,class\ns.png,ten,10,a\n", "row 2 has an empty or non-numeric value"),
    ("image,x,y,class\ns.png,10,10,a\ns.png,,10,b\n", "row 3 has an empty"),
    ("image,x,y,class\nmissing.png,10,10,a\n", "missing.png"),
    ('image,x,y,class\n"s.png,10\n', "Could not read csv"),
])
def test_a_bad_eval_csv_is_one_line(tmp_path, body, words):
    """A non-numeric or empty coordinate, a missing image or a broken CSV were tracebacks."""
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(tmp_path / "s.png")
    (tmp_path / "cells.csv").write_text(body)
    with pytest.raises(InputError, match=words) as err:
        datasets.load_dataset(f"csv:{tmp_path / 'cells.csv'}")
    assert "\n" not in str(err.value)


def test_exclude_by_id_or_name_and_stratified_limit(chula):
    cells = datasets.load_dataset(f"chula:{chula}", crop_size=32)
    assert datasets.resolve_classes(cells, ["12", "target"]) == [12, 4]
    with pytest.raises(InputError):
        datasets.resolve_classes(cells, ["13"])
    kept = datasets.exclude_classes(cells, [12])
    assert 12 not in kept.y and len(kept) == int((cells.y != 12).sum())
    small = datasets.stratified_limit(cells, 20, seed=1, min_per_class=2)
    assert len(small) <= 20 + 2 * len(cells.counts()) and set(small.y) == set(cells.y)
    assert datasets.stratified_limit(cells, 20, seed=1, min_per_class=2).groups.tolist() == small.groups.tolist()
