"""The graded slide report's core: the grading table (shipped and user files), the Wilson interval, grades at
their boundaries, samples, warnings, and an HTML page that needs no network."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from napari_reddino.annotate import default_classes
from napari_reddino.grading import grade, read_grading, slide_report, wilson_interval
from napari_reddino.grading.html import report_html
from napari_reddino.images import InputError


@pytest.fixture(scope="module")
def icsh():
    return read_grading()


def test_wilson_interval_matches_the_published_formula():
    low, high = wilson_interval(10, 100)
    assert (round(low, 4), round(high, 4)) == (0.0552, 0.1744)
    assert wilson_interval(0, 10)[0] == 0 and round(wilson_interval(0, 10)[1], 4) == 0.2775  # z²/(n+z²)
    low, high = wilson_interval(10, 10)
    assert high == 1 and round(low, 4) == round(1 - 0.2775, 4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


@pytest.mark.parametrize("name, percent, expected", [
    ("target", 4.99, ""), ("target", 5, "1+"), ("target", 20, "1+"), ("target", 20.01, "2+"),
    ("target", 50, "2+"), ("target", 50.01, "3+"),
    ("macrocyte", 10.99, ""), ("macrocyte", 11, "1+"), ("macrocyte", 20, "1+"), ("macrocyte", 20.5, "2+"),
    ("schistocyte", 0, ""), ("schistocyte", 0.1, "1+"), ("schistocyte", 0.99, "1+"), ("schistocyte", 1, "2+"),
    ("schistocyte", 2, "2+"), ("schistocyte", 2.01, "3+"),
])
def test_grades_at_the_published_boundaries(icsh, name, percent, expected):
    """ICSH's '5-20 %' holds 5 and 20 (1+), '21-50 %' starts just above 20, '>50 %' above 50."""
    assert grade(percent, icsh.find(name).thresholds) == expected


def test_the_shipped_table_covers_every_project_class_with_its_source(icsh):
    for c in default_classes():
        assert icsh.find(c.name) is not None, c.name
    for alias, name in (("target cell", "target"), ("Teardrop cell", "teardrop"), ("burr cell", "burr"),
                        ("normal cell", "normal")):
        assert icsh.find(alias).name == name
    for entry in icsh.classes:
        if entry.report == "grade":
            assert entry.source and entry.found_at.startswith("https://")
        if not entry.confirmed:
            assert "not confirmed" in entry.note.lower() or "not read" in entry.note.lower()
    assert icsh.find("schistocyte").warn_above == 1 and icsh.min_red_cells == 1000
    assert {"icsh2015", "icsh2021"} <= set(icsh.references)
    assert "10.1111/ijlh.12327" in icsh.references["icsh2015"] and "10.1111/ijlh.13370" in icsh.references["icsh2021"]


GOOD_ROW = "classes:\n  - class: target\n    report: grade\n    grades: {1+: '>=5', 2+: '>20', 3+: '>50'}\n"


@pytest.mark.parametrize("text, named", [
    ("classes: []\n", "'classes'"),
    ("classes:\n  - report: grade\n", "row 1: field 'class'"),
    (GOOD_ROW + "  - class: burr\n    report: graded\n", "row 2 ('burr'): field 'report'"),
    (GOOD_ROW + "  - class: burr\n    report: grade\n    grades: {1+: '>=5', 2+: '>2O', 3+: '>50'}\n",
     "row 2 ('burr'): field 'grades.2+'"),
    (GOOD_ROW + "  - class: burr\n    report: grade\n    grades: {1+: '>=5', 3+: '>50'}\n", "field 'grades'"),
    (GOOD_ROW + "  - class: burr\n    report: grade\n    grades: {1+: '>=30', 2+: '>20', 3+: '>50'}\n",
     "does not rise"),
    (GOOD_ROW + "  - class: codocyte\n    aliases: [Target]\n    report: count\n", "row 2 ('codocyte') names 'Target'"),
    ("min_red_cells: many\n" + GOOD_ROW, "'min_red_cells'"),
    ("classes: [\n", "not valid YAML"),
])
def test_a_malformed_grading_file_is_one_line_naming_row_and_field(tmp_path, text, named):
    path = tmp_path / "grading.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_grading(path)
    message = str(err.value)
    assert "\n" not in message and named in message and "accepted" in message


def cells_table(counts: dict, image="a/1.jpg", verified=True, others=0) -> pd.DataFrame:
    """A cell table of red cells with the given predicted classes, plus ``others`` white cells."""
    classes = [c for c, n in counts.items() for _ in range(n)]
    df = pd.DataFrame({"image": image, "label": np.arange(1, len(classes) + 1), "class": "",
                       "prediction": classes, "type": "rbc", "verified": verified})
    wbc = pd.DataFrame({"image": image, "label": np.arange(len(classes) + 1, len(classes) + 1 + others),
                        "class": "", "prediction": "", "type": "wbc", "verified": False})
    return pd.concat([df, wbc], ignore_index=True)


def test_counts_percent_interval_and_grade_of_a_sample(icsh):
    cells = cells_table({"normal": 700, "target": 250, "schistocyte": 50}, others=7)
    cells.loc[cells["prediction"] == "target", "class"] = "target cell"  # annotated (an alias): wins over prediction
    report = slide_report(cells, icsh)
    rows = report.table.set_index("class")
    assert rows.loc["target", "count"] == 250 and rows.loc["target", "red_cells"] == 1000
    assert rows.loc["target", "percent"] == 25.0 and rows.loc["target", "grade"] == "2+"
    assert rows.loc["schistocyte", "grade"] == "3+" and rows.loc["microcyte", "count"] == 0
    low, high = wilson_interval(250, 1000)
    assert rows.loc["target", "ci_low"] == pytest.approx(100 * low) and rows.loc["target", "ci_high"] == pytest.approx(100 * high)
    assert any("left out 7 white cells" in n for n in report.notes)  # only red cells counted
    assert list(report.table["class"])[:3] == ["normal", "macrocyte", "microcyte"]  # the grading table's order


@pytest.mark.parametrize("n_schisto, n_red, warned_schisto, warned_few", [
    (10, 1000, False, False), (11, 1000, True, False), (10, 999, True, True), (0, 1000, False, False)])
def test_warnings_for_few_cells_and_schistocytes_above_one_percent(icsh, n_schisto, n_red, warned_schisto, warned_few):
    report = slide_report(cells_table({"schistocyte": n_schisto, "normal": n_red - n_schisto}), icsh)
    lines = report.warnings["a"]
    assert any("schistocytes" in w and "above 1 %" in w for w in lines) == warned_schisto
    assert any("fewer than 1,000" in w for w in lines) == warned_few
    assert not any("not verified" in w for w in lines)


def test_unverified_and_unclassified_cells_are_warned_with_how_many(icsh):
    cells = cells_table({"normal": 8, "target": 2}, verified=False)
    cells.loc[0, "verified"] = True
    cells.loc[1, "prediction"] = ""
    report = slide_report(cells, icsh)
    lines = report.warnings["a"]
    assert any(w.startswith("9 of 10 red cells not verified") for w in lines)
    assert any(w.startswith("1 red cells have no class") for w in lines)
    assert report.table.set_index("class").loc["target", "unverified"] == 2
    no_column = slide_report(cells.drop(columns="verified"), icsh)  # no verified column: nothing is verified
    assert any(w.startswith("10 of 10 red cells not verified") for w in no_column.warnings["a"])


def test_a_presence_class_of_a_user_file_is_present_or_absent(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("min_red_cells: 10\nclasses:\n  - class: sickle\n    report: presence\n"
                    "  - class: normal\n    report: count\n")
    mine = read_grading(path)
    rows = slide_report(cells_table({"normal": 9, "sickle": 1}), mine).table.set_index("class")
    assert rows.loc["sickle", "grade"] == "present" and rows.loc["normal", "grade"] == ""
    assert slide_report(cells_table({"normal": 10}), mine).table.set_index("class").loc["sickle", "grade"] == "absent"


def test_samples_by_folder_image_or_column(icsh):
    cells = pd.concat([cells_table({"normal": 3}, "a/1.jpg"), cells_table({"normal": 4}, "a/2.jpg"),
                       cells_table({"target": 5}, "b/1.jpg")], ignore_index=True)
    cells["patient"] = ["p1"] * 3 + ["p2"] * 9
    by = {s: slide_report(cells, icsh, s).table.groupby("sample")["red_cells"].first().to_dict()
          for s in ("folder", "image", "patient")}
    assert by["folder"] == {"a": 7, "b": 5}
    assert by["image"] == {"a/1.jpg": 3, "a/2.jpg": 4, "b/1.jpg": 5}
    assert by["patient"] == {"p1": 3, "p2": 9}
    paths = {"a/1.jpg": "/slides/s1/x.jpg", "a/2.jpg": "/slides/s2/x.jpg", "b/1.jpg": "/slides/s2/y.jpg"}
    by_path = slide_report(cells, icsh, "folder", image_paths=paths).table.groupby("sample")["red_cells"].first()
    assert by_path.to_dict() == {"s1": 3, "s2": 9}  # the files' folders, where known
    with pytest.raises(InputError, match="'slide'.*accepted: folder, image or a column"):
        slide_report(cells, icsh, "slide")


def test_the_html_holds_the_grade_table_and_references_nothing_outside(icsh):
    report = slide_report(cells_table({"normal": 70, "target": 30}), icsh)
    page = report_html(report, thumbnails={"target": [b"\x89PNG fake"]}, umap_png=b"\x89PNG fake")
    assert "<table class=\"grades\">" in page and "% of red cells" in page and ">2+<" in page
    assert "@page { size: A4" in page
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page, flags=re.I)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    assert not re.search(r"<script|<link|@import|url\(", page, flags=re.I)
    without = report_html(report, None, None, thumbnails_note="Thumbnails left out: not found.")
    assert "Thumbnails left out" in without and "data:image" not in without
