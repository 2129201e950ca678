"""Files other programs open: `cells.h5ad` reads in anndata and matches `cells.csv` and the features row for
row; each image's GeoJSON parses, its outlines are closed and hold their cells (border cells and cells in
two pieces too); the Parquet table is the image's rows of `cells.csv`; `napari-reddino export` makes them from
a run folder, with the classes annotated since; bad input is one line and exit 2."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import tifffile
from matplotlib.colors import to_rgb
from matplotlib.path import Path as Outline
from PIL import Image

from napari_reddino.annotate import default_classes
from napari_reddino.annotation_match import fingerprint
from napari_reddino.cli import main
from napari_reddino.exports import cell_outlines, cells_geojson
from napari_reddino.sample_data import synthetic_smear

IMAGES = {"a.png": (3, (200, 260), 1), "b.png": (5, (180, 240), 0)}  # seed, shape, white cells


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    for name, (seed, shape, n_white) in IMAGES.items():
        Image.fromarray(synthetic_smear(seed=seed, shape=shape, n_white=n_white)[0]).save(root / name)
    out = root / "out"
    assert main(["run", str(root / "a.png"), str(root / "b.png"), "--out", str(out), "--model",
                 f"local-dir:{tiny_model_dir}", "--no-pca"]) == 0
    return out


def rings_of(geometry):
    polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    assert geometry["type"] in ("Polygon", "MultiPolygon")
    return [np.asarray(p[0], float) for p in polygons]


def test_the_h5ad_opens_in_anndata_and_matches_the_cell_table_and_features(run_dir):
    anndata = pytest.importorskip("anndata")
    adata = anndata.read_h5ad(run_dir / "cells.h5ad")
    cells = pd.read_csv(run_dir / "cells.csv")
    analysed = cells[cells["analysed"]].reset_index(drop=True)  # white cells and the like have no features
    assert 0 < len(analysed) < len(cells) and adata.n_obs == len(analysed)
    obs = adata.obs.reset_index(drop=True)
    assert list(obs["image"].astype(str)) == list(analysed["image"]) and list(obs["label"]) == list(analysed["label"])
    assert list(obs["type"].astype(str)) == list(analysed["type"])
    np.testing.assert_allclose(obs[["centroid_x", "centroid_y"]], analysed[["centroid_x", "centroid_y"]])
    assert list(obs.columns) == list(cells.columns)  # the pooled table's own names
    assert list(adata.obs_names) == [f"{i}#{lbl}" for i, lbl in zip(analysed["image"], analysed["label"])]
    for image, stem in (("a.png", "a"), ("b.png", "b")):
        feats = pd.read_parquet(run_dir / f"{stem}_features.parquet").set_index("label")
        mine = (obs["image"].astype(str) == image).to_numpy()
        X = feats.loc[obs.loc[mine, "label"], [c for c in feats.columns if c.startswith("emb_")]].to_numpy()
        np.testing.assert_array_equal(adata.obsm["X_reddino"][mine], X)
    assert adata.obsm["X_reddino"].dtype == np.float32
    np.testing.assert_allclose(adata.obsm["X_umap"], analysed[["umap_x", "umap_y"]], rtol=1e-6)
    info = adata.uns["napari_reddino"]
    assert info["model"].startswith("local-dir:") and info["settings"]["backend"] == "learned"
    assert info["left_out"] == len(cells) - len(analysed)


def test_the_geojson_parses_and_each_outline_is_closed_and_holds_its_cell(run_dir):
    cells = pd.read_csv(run_dir / "cells.csv")
    seen = set()
    for image, stem in (("a.png", "a"), ("b.png", "b")):
        collection = json.loads((run_dir / f"{stem}_cells.geojson").read_text())
        labels = tifffile.imread(run_dir / f"{stem}_labels.tif")
        rows = cells[cells["image"] == image].set_index("label")
        assert collection["type"] == "FeatureCollection" and len(collection["features"]) == len(rows)
        h, w = labels.shape
        for feature in collection["features"]:
            props = feature["properties"]
            row = rows.loc[props["label"]]
            rings = rings_of(feature["geometry"])
            assert all((r[0] == r[-1]).all() and len(r) >= 5 for r in rings)
            assert all(r[:, 0].min() >= 0 and r[:, 0].max() <= w and r[:, 1].min() >= 0 and r[:, 1].max() <= h
                       for r in rings)
            # QuPath's pixel (r, c) spans [c, c+1] x [r, r+1]: the table's centroid (pixel centres at whole
            # numbers) is half a pixel on
            centre = (row["centroid_x"] + 0.5, row["centroid_y"] + 0.5)
            assert any(Outline(r).contains_point(centre) for r in rings), (image, props["label"])
            assert props["type"] == row["type"]
            assert props["objectType"] == ("detection" if row["type"] in ("cluster", "artefact") else "cell")
            # no class annotated: a red cell shows the shipped classifier's prediction, any other object its
            # type, in the colours of style.py
            if isinstance(row.get("prediction"), str) and row["prediction"]:
                color = next(c.color for c in default_classes() if c.name == row["prediction"])
                name, color = row["prediction"], [round(255 * v) for v in to_rgb(color)]
            else:
                name, color = TYPES[props["type"]]
            assert props["classification"] == {"name": name, "color": color}
            assert props["measurements"]["area"] == row["area"]
            assert all(np.isfinite(v) for v in props["measurements"].values())
            seen.add(props["type"])
    assert "rbc" in seen and len(seen) > 1


TYPES = {"rbc": ("red cell", [187, 187, 187]), "wbc": ("white cell", [0, 0, 255]), "platelet": ("platelet", [0, 100, 0]),
         "cluster": ("cluster", [128, 0, 0]), "artefact": ("artefact", [0, 0, 0])}


def test_the_parquet_table_is_the_images_rows_of_the_cell_table(run_dir):
    cells = pd.read_csv(run_dir / "cells.csv")
    table = pd.read_parquet(run_dir / "b_cells.parquet")
    expected = cells[cells["image"] == "b.png"].reset_index(drop=True)
    text = [c for c in ("class", "prediction") if c in table.columns]  # '' in parquet reads back as NaN from CSV
    table[text], expected[text] = table[text].fillna(""), expected[text].fillna("")
    pd.testing.assert_frame_equal(table, expected, check_dtype=False, rtol=1e-6)
    assert table["border"].dtype == bool  # typed, not text as in a CSV


def test_outlines_follow_the_pixels_of_border_cells_holes_and_cells_in_two_pieces():
    labels = np.zeros((12, 14), np.int32)
    labels[0:4, 0:5] = 1  # touches two image edges
    labels[5:11, 3:9] = 2
    labels[7, 5] = 0  # a hole: filled
    labels[1:3, 8:10] = 3  # one cell in two pieces: far apart ...
    labels[8:10, 11:13] = 3
    labels[4, 5] = 4  # ... and one touching only at a corner
    labels[3, 6] = 4
    outlines = cell_outlines(labels)
    assert sorted(outlines) == [1, 2, 3, 4] and [len(outlines[k]) for k in (1, 2, 3, 4)] == [1, 1, 2, 2]
    ys, xs = np.indices(labels.shape)
    centres = np.column_stack([xs.ravel() + 0.5, ys.ravel() + 0.5])
    for label, rings in outlines.items():
        inside = np.any([Outline(r).contains_points(centres) for r in rings], axis=0).reshape(labels.shape)
        filled = labels == label
        if label == 2:
            filled[7, 5] = True
        np.testing.assert_array_equal(inside, filled)  # exactly the cell's pixels, no neighbour's
    assert outlines[1][0].min() == 0
    table = pd.DataFrame({"label": [1, 3], "type": ["rbc", "rbc"], "class": ["target", ""],
                          "prediction": ["", "burr"], "area": [20.0, np.nan]})
    features = cells_geojson(table, labels)["features"]
    assert [f["geometry"]["type"] for f in features] == ["Polygon", "MultiPolygon"]
    assert features[0]["properties"]["classification"] == {"name": "target", "color": [148, 103, 189]}
    assert features[1]["properties"]["classification"]["name"] == "burr"  # the prediction, when not annotated
    assert "area" not in features[1]["properties"]["measurements"]  # NaN is not JSON: left out


def test_export_makes_the_files_of_a_run_folder_with_the_classes_annotated_since(run_dir, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    for made in [folder / "cells.h5ad", *folder.glob("*_cells.geojson"), *folder.glob("*_cells.parquet")]:
        made.unlink()  # a run made before these files existed
    cells = pd.read_csv(folder / "cells.csv")
    cell = cells[(cells["image"] == "a.png") & (cells["type"] == "rbc")].iloc[0]
    pd.DataFrame({"image": ["a.png"], "label": [cell["label"]], "class": ["spherocyte"], "x": [cell["centroid_x"]],
                  "y": [cell["centroid_y"]], "segmentation": [fingerprint(tifffile.imread(folder / "a_labels.tif"))]}
                 ).to_csv(folder / "reddino-annotations.csv", index=False)
    assert main(["export", str(folder), "--to", "geojson"]) == 0
    assert sorted(p.name for p in folder.glob("*_cells.geojson")) == ["a_cells.geojson", "b_cells.geojson"]
    assert not (folder / "cells.h5ad").exists() and not list(folder.glob("*_cells.parquet"))
    features = json.loads((folder / "a_cells.geojson").read_text())["features"]
    mine = next(f for f in features if f["properties"]["label"] == cell["label"])["properties"]
    assert mine["classification"] == {"name": "spherocyte", "color": [214, 39, 40]} and mine["class"] == "spherocyte"
    assert main(["export", str(folder), "--out", str(tmp_path / "elsewhere")]) == 0
    assert {p.name for p in (tmp_path / "elsewhere").iterdir()} == {
        "cells.h5ad", "a_cells.geojson", "b_cells.geojson", "a_cells.parquet", "b_cells.parquet"}
    assert "wrote 5 files" in capsys.readouterr().out
    anndata = pytest.importorskip("anndata")
    obs = anndata.read_h5ad(tmp_path / "elsewhere" / "cells.h5ad").obs
    assert list(obs.loc[obs["class"].astype(str) == "spherocyte", "label"]) == [cell["label"]]


def test_export_refuses_bad_input_in_one_line_before_any_work(run_dir, tmp_path, capsys):
    no_features = tmp_path / "no_features"
    shutil.copytree(run_dir, no_features)
    for path in [*no_features.glob("*_features.parquet"), *no_features.glob("*_cells.geojson"),
                 *no_features.glob("*_cells.parquet"), no_features / "cells.h5ad"]:
        path.unlink()
    (tmp_path / "a_file").write_text("")
    cases = [[str(run_dir), "--to", "h5ad,zarr"], [str(tmp_path / "missing")], [str(tmp_path)],
             [str(run_dir), "--out", str(tmp_path / "a_file")], [str(no_features), "--to", "h5ad"]]
    for args in cases:
        assert main(["export", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == len(cases) and all(line.startswith("napari-reddino export: error: Received") for line in err)
    assert "accepted: h5ad, geojson, parquet" in err[0] and "no features" in err[4]
    assert not [p for p in no_features.iterdir() if p.name.endswith(("_cells.geojson", "_cells.parquet", ".h5ad"))]


def test_resume_writes_what_is_missing_and_the_folder_still_opens_as_a_session(run_dir, tiny_model_dir, tmp_path):
    from napari_reddino.session import read_session

    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    (folder / "a_cells.geojson").unlink()
    (folder / "cells.h5ad").unlink()
    root = run_dir.parent
    assert main(["run", str(root / "a.png"), str(root / "b.png"), "--out", str(folder), "--model",
                 f"local-dir:{tiny_model_dir}", "--no-pca", "--resume"]) == 0
    assert (folder / "a_cells.geojson").is_file() and (folder / "cells.h5ad").is_file()
    again, first = (json.loads((f / "a_cells.geojson").read_text())["features"] for f in (folder, run_dir))
    assert [f["geometry"] for f in again] == [f["geometry"] for f in first]
    session = read_session(folder)
    assert [s.name for s in session.result.smears] == ["a.png", "b.png"]
