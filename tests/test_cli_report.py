"""``napari-reddino report`` and the report ``napari-reddino run`` writes: end to end on small generated runs."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from napari_reddino.annotation_match import fingerprint
from napari_reddino.cli import main
from napari_reddino.sample_data import synthetic_smear


@pytest.fixture(scope="module")
def run_folder(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["run", "--sample", "synthetic", "--out", str(out), "--model", f"local-dir:{tiny_model_dir}",
                 "--no-pca"]) == 0
    return out


def annotate(folder, classes=("normal", "target", "schistocyte"), verified_every=2):
    """Annotations as the dock saves them (with a ``verified`` column) for the run's red cells, in turn."""
    cells = pd.read_csv(folder / "cells.csv")
    rbc = cells[cells["type"] == "rbc"].reset_index(drop=True)
    labels = tifffile.imread(next(folder.glob("*_labels.tif")))
    ann = pd.DataFrame({"image": rbc["image"], "label": rbc["label"],
                        "class": [classes[i % len(classes)] for i in range(len(rbc))],
                        "x": rbc["centroid_x"], "y": rbc["centroid_y"], "segmentation": fingerprint(labels),
                        "verified": np.arange(len(rbc)) % verified_every == 0})
    ann.to_csv(folder / "reddino-annotations.csv", index=False)
    return rbc, ann


def test_run_writes_the_report_of_its_red_cells(run_folder):
    cells = pd.read_csv(run_folder / "cells.csv")
    report = pd.read_csv(run_folder / "report.csv")
    n_rbc = int((cells["type"] == "rbc").sum())
    assert set(report["red_cells"]) == {n_rbc} and n_rbc < len(cells)  # other objects left out
    counted = report[report["class"] != "(no class)"]
    assert counted["count"].sum() == n_rbc  # every red cell in a class: the shipped classifier's prediction
    assert counted["count"].sum() == (cells.loc[cells["type"] == "rbc", "prediction"].fillna("") != "").sum()
    warnings = report["warnings"].iloc[0]
    assert f"{n_rbc} of {n_rbc} red cells not verified" in warnings and "fewer than 1,000" in warnings
    page = (run_folder / "report.html").read_text(encoding="utf-8")
    assert "Red-cell morphology report" in page and "data:image/png;base64," in page  # the UMAP


def test_report_grades_the_annotated_cells_of_a_run_folder(run_folder, tmp_path, capsys):
    rbc, ann = annotate(run_folder)
    out = tmp_path / "rep"
    assert main(["report", str(run_folder / "cells.csv"), "--out", str(out)]) == 0
    report = pd.read_csv(out / "report.csv").set_index("class")
    n = len(rbc)
    assert report.loc["target", "count"] == (ann["class"] == "target").sum()
    assert report.loc["target", "percent"] == pytest.approx(100 * (ann["class"] == "target").mean())
    assert report.loc["schistocyte", "grade"] == "3+"  # a third of the cells
    unverified = int((~ann["verified"]).sum())
    assert f"{unverified} of {n} red cells not verified" in report["warnings"].iloc[0]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert len(re.findall(r'<img alt="target"', page)) >= 1  # thumbnails cropped from the run's image copy
    assert all(r.startswith("data:") for r in re.findall(r'src="([^"]+)"', page))
    assert "schistocyte 3+" in capsys.readouterr().out


def test_a_verified_state_in_the_cell_table_stands_where_the_annotation_file_says_nothing(run_folder, tmp_path):
    rbc, ann = annotate(run_folder)
    ann.drop(columns="verified").to_csv(run_folder / "reddino-annotations.csv", index=False)
    cells = pd.read_csv(run_folder / "cells.csv")
    cells["verified"] = True
    cells.to_csv(tmp_path / "cells.csv", index=False)
    shutil.copy(run_folder / "session.json", tmp_path / "session.json")
    for f in run_folder.glob("*_labels.tif"):
        shutil.copy(f, tmp_path / f.name)
    assert main(["report", str(tmp_path / "cells.csv"), "--out", str(tmp_path / "rep")]) == 0
    report = pd.read_csv(tmp_path / "rep" / "report.csv")
    assert "not verified" not in str(report["warnings"].iloc[0]) and report["unverified"].sum() == 0
    assert (report.set_index("class").loc["target", "count"] == (ann["class"] == "target").sum())


def test_without_the_images_the_report_says_thumbnails_are_left_out(run_folder, tmp_path):
    moved = tmp_path / "results"
    shutil.copytree(run_folder, moved)
    for copy in moved.glob("*_image.tif"):
        copy.unlink()
    out = tmp_path / "rep"
    assert main(["report", str(moved / "cells.csv"), "--out", str(out)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Thumbnails" in page and "left out" in page and "<img alt=\"normal\"" not in page


def test_one_sample_per_folder_of_images(tiny_model_dir, tmp_path, capsys):
    for folder, seed in (("slide1", 0), ("slide2", 1)):
        (tmp_path / folder).mkdir()
        Image.fromarray(synthetic_smear(seed=seed, shape=(160, 200), n_cells=6, n_white=0)[0]).save(
            tmp_path / folder / "field.png")
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "slide1"), str(tmp_path / "slide2"), "--out", str(out),
                 "--model", f"local-dir:{tiny_model_dir}", "--no-pca", "--no-umap"]) == 0
    assert sorted(pd.read_csv(out / "report.csv")["sample"].unique()) == ["slide1", "slide2"]
    assert main(["report", str(out / "cells.csv"), "--out", str(tmp_path / "r2"), "--sample-by", "image"]) == 0
    assert sorted(pd.read_csv(tmp_path / "r2" / "report.csv")["sample"].unique()) == ["slide1/field.png",
                                                                                      "slide2/field.png"]


def test_bad_grading_file_or_sample_column_is_one_line_exit_2(run_folder, tmp_path, capsys):
    bad = tmp_path / "mine.yaml"
    bad.write_text("classes:\n  - class: target\n    report: grade\n    grades: {1+: 5, 2+: '>20', 3+: '>50'}\n")
    assert main(["report", str(run_folder / "cells.csv"), "--out", str(tmp_path / "r"), "--grading", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "row 1 ('target'): field 'grades.1+'" in err and "Traceback" not in err
    assert main(["report", str(run_folder / "cells.csv"), "--out", str(tmp_path / "r"), "--sample-by", "slide"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--sample-by 'slide'" in err
    assert main(["run", "--sample", "synthetic", "--out", str(tmp_path / "r3"), "--grading", str(bad)]) == 2
    assert "grades.1+" in capsys.readouterr().err and not (tmp_path / "r3" / "cells.csv").exists()  # before the work


def test_the_map_of_a_umap_csv_beside_the_table_is_used(tmp_path):
    cells = pd.DataFrame({"image": "x.png", "label": np.arange(1, 41), "type": "rbc",
                          "class": ["normal", "target"] * 20})
    cells.to_csv(tmp_path / "cells.csv", index=False)
    assert main(["report", str(tmp_path / "cells.csv"), "--out", str(tmp_path / "a")]) == 0
    assert "No UMAP coordinates" in (tmp_path / "a" / "report.html").read_text(encoding="utf-8")
    for names in (("umap_x", "umap_y"), ("umap_1", "umap_2")):  # today's umap.csv, and one of before 2026-12
        cells[["image", "label"]].assign(**{n: np.arange(40.0) for n in names}).to_csv(tmp_path / "umap.csv",
                                                                                     index=False)
        assert main(["report", str(tmp_path / "cells.csv"), "--out", str(tmp_path / names[0])]) == 0
        assert '<img class="umap"' in (tmp_path / names[0] / "report.html").read_text(encoding="utf-8")
