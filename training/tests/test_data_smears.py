"""Readers of the labelled smear sources (one home for the segmentation benchmark and the segmenter's
training), on generated folders in each source's layout."""

from __future__ import annotations

import numpy as np
from PIL import Image
from reddino_train.data.smears import source_items, training_half


def _image(path, w, h):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 230, np.uint8)).save(path)


def test_each_source_reads_centres_or_boxes_in_pixels(tmp_path):
    _image(tmp_path / "chula-rbc-12/images/5.jpg", 64, 48)
    (tmp_path / "chula-rbc-12/labels").mkdir()
    (tmp_path / "chula-rbc-12/labels/5.txt").write_text("10 20 0\n30 40 3\n")
    (tmp_path / "chula-rbc-12/labels/6.txt").write_text("")  # an empty label file is skipped
    _image(tmp_path / "bccd/JPEGImages/a.jpg", 64, 48)
    (tmp_path / "bccd/Annotations").mkdir()
    (tmp_path / "bccd/Annotations/a.xml").write_text(
        "<annotation><object><name>RBC</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>11</xmax><ymax>12</ymax>"
        "</bndbox></object><object><name>WBC</name><bndbox><xmin>20</xmin><ymin>20</ymin><xmax>40</xmax>"
        "<ymax>40</ymax></bndbox></object></annotation>")
    _image(tmp_path / "txl-pbc/images/p.jpg", 360, 363)
    _image(tmp_path / "txl-pbc/images/r.jpg", 575, 575)
    (tmp_path / "txl-pbc/labels").mkdir()
    (tmp_path / "txl-pbc/labels/p.txt").write_text("1 0.5 0.5 0.2 0.2\n2 0.1 0.1 0.02 0.02\n")
    (tmp_path / "txl-pbc/labels/r.txt").write_text("0 0.5 0.5 0.4 0.4\n")

    (path, centres, boxes), = source_items(tmp_path, "chula")
    assert path.name == "5.jpg" and boxes is None and np.allclose(centres["rbc"], [(20, 10), (40, 30)])
    (path, centres, boxes), = source_items(tmp_path, "bccd")
    assert centres is None and boxes["rbc"] == [(2, 1, 12, 11)] and boxes["wbc"] == [(20, 20, 40, 40)]
    (path, _, boxes), = source_items(tmp_path, "pbc")
    assert path.name == "p.jpg" and np.allclose(boxes["rbc"], [(181.5 - 36.3, 144, 181.5 + 36.3, 216)])
    assert len(boxes["platelet"]) == 1 and not boxes["wbc"]
    (path, _, boxes), = source_items(tmp_path, "raabin")
    assert path.name == "r.jpg" and len(boxes["wbc"]) == 1 and not boxes["rbc"]


def test_training_half_is_the_images_the_benchmark_does_not_score():
    items = list(range(7))
    assert training_half(items) == [1, 3, 5]
    assert not set(training_half(items)) & {i for i in items if i % 2 == 0}
