"""What `napari-reddino slide` writes for other programs: per slide a QuPath GeoJSON of the cells' outlines (made
tile by tile, one feature per cell also where a cell lies across tiles, in level-0 pixels at any --level), and
the run's pooled `cells.h5ad` that opens in anndata and matches the Parquet tables row for row; --classifier
puts the shipped classifier's prediction in all three."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.path import Path as Outline

from napari_reddino.cli import main
from napari_reddino.formats import read_features
from napari_reddino.sample_data import synthetic_smear
from napari_reddino.slides import ngff, tiled
from napari_reddino.slides.tiles import plan_tiles
from napari_reddino.style import TYPE_NAMES

try:  # opens cells.h5ad where installed (not on Python 3.11: pyproject's test extra); h5py reads it elsewhere
    import anndata
except ImportError:
    anndata = None


def h5ad_columns(path: Path, *columns: str) -> dict:
    """Numeric obs columns of an .h5ad and its obsm keys, read with h5py (no anndata needed)."""
    import h5py

    with h5py.File(path, "r") as f:
        return {**{c: f["obs"][c][:] for c in columns}, "obsm": sorted(f["obsm"].keys())}


def rings_of(geometry) -> list[np.ndarray]:
    assert geometry["type"] in ("Polygon", "MultiPolygon")
    polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    return [np.asarray(p[0], float) for p in polygons]


def check_outlines(geojson: Path, cells: pd.DataFrame, scale: int = 1, image: str = "") -> dict:
    """Each row of ``cells`` (one slide's Parquet, pixels of the level segmented) has exactly one feature whose
    outline holds its centroid and spans its box, in level-0 pixels; returns label -> properties."""
    collection = json.loads(geojson.read_text())
    assert collection["type"] == "FeatureCollection"
    labels = [f["properties"]["label"] for f in collection["features"]]
    assert labels == cells["label"].tolist()  # one feature per cell, in the table's order: none twice
    rows = cells.set_index("label")
    props = {}
    for feature in collection["features"]:
        p = feature["properties"]
        row = rows.loc[p["label"]]
        rings = rings_of(feature["geometry"])
        assert all((r[0] == r[-1]).all() and len(r) >= 5 for r in rings)
        centre = ((row["centroid_x"] + 0.5) * scale, (row["centroid_y"] + 0.5) * scale)
        assert any(Outline(r).contains_point(centre) for r in rings), p["label"]
        points = np.concatenate(rings)
        assert points[:, 0].min() == row["bbox_x0"] * scale and points[:, 0].max() == row["bbox_x1"] * scale
        assert points[:, 1].min() == row["bbox_y0"] * scale and points[:, 1].max() == row["bbox_y1"] * scale
        assert p["type"] == row["type"] and p["measurements"]["area"] == row["area"]
        assert set(p["measurements"]) <= set(cells.columns)  # the table's measurements (features not among them)
        assert p.get("image") == image
        props[p["label"]] = p
    return props


@pytest.fixture(scope="module")
def slide_run(tiny_model_dir, tmp_path_factory):
    """Two slides in one run, with features and the shipped classifier, tiles of 256 px."""
    root = tmp_path_factory.mktemp("slides")
    for name, seed, shape in (("a.zarr", 1, (420, 560)), ("b.zarr", 4, (300, 520))):
        ngff.write_image(root / name, synthetic_smear(seed=seed, shape=shape, n_white=2)[0], chunk=128)
    out = root / "out"
    assert main(["slide", str(root / "a.zarr"), str(root / "b.zarr"), "--out", str(out), "--tile", "256",
                 "--backend", "threshold", "--features", "--model", f"local-dir:{tiny_model_dir}",
                 "--classifier", "morphology"]) == 0
    return root, out


def test_geojson_has_each_cell_once_also_across_tiles_with_its_prediction(slide_run):
    root, out = slide_run
    cells = pd.read_parquet(out / "a_cells.parquet")
    props = check_outlines(out / "a_cells.geojson", cells, image="a.zarr")
    # cells that lie across a border of two tiles' cores are there, once each (checked above)
    levels, factors = tiled.open_levels(str(root / "a.zarr"), 0)
    plan = plan_tiles((420, 560), 256, tiled.measure_slide(levels, factors, 256)[1])  # the run's tiles
    xs = sorted({t.core[2] for t in plan.tiles} - {0})
    across = ((cells["bbox_x0"].to_numpy()[:, None] < xs) & (cells["bbox_x1"].to_numpy()[:, None] > xs)).any(1)
    assert len(xs) and across.sum() >= 3
    red = cells["type"] == "rbc"
    assert (cells.loc[red, "prediction"] != "").all() and (cells.loc[~red, "prediction"] == "").all()
    assert cells.loc[red, "confidence"].between(0, 1).all() and (~red).any()
    for label, row in cells.set_index("label").iterrows():
        shown = row["prediction"] or TYPE_NAMES[row["type"]]
        assert props[label]["classification"]["name"] == shown


def test_pooled_h5ad_opens_in_anndata_and_matches_the_parquet_row_for_row(slide_run):
    if anndata is None:
        pytest.skip("anndata is not installed")
    root, out = slide_run
    adata = anndata.read_h5ad(out / "cells.h5ad")
    parts = []
    for name, stem in (("a.zarr", "a"), ("b.zarr", "b")):
        table, X = read_features(out / f"{stem}_features.parquet")
        cells = pd.read_parquet(out / f"{stem}_cells.parquet").set_index("label").loc[table["label"]].reset_index()
        assert (cells["type"] == "rbc").all() and len(cells) > 20
        parts.append((name, cells, X))
    expected = pd.concat([c.assign(image=n) for n, c, _ in parts], ignore_index=True)
    obs = adata.obs
    assert adata.n_obs == len(expected) and adata.n_vars == 0
    assert obs["image"].astype(str).tolist() == expected["image"].tolist()
    assert obs["label"].tolist() == expected["label"].tolist()
    assert list(obs.index) == [f"{i}#{lbl}" for i, lbl in zip(expected["image"], expected["label"])]
    for col in ("centroid_x", "centroid_y", "area", "eccentricity", "confidence"):
        np.testing.assert_allclose(obs[col].to_numpy(float), expected[col].to_numpy(float), rtol=1e-6)
    assert obs["prediction"].astype(str).tolist() == expected["prediction"].tolist()
    X = adata.obsm["X_reddino"]
    assert X.dtype == np.float32 and X.shape == (len(expected), 48)
    np.testing.assert_array_equal(X, np.concatenate([x for _, _, x in parts]))
    assert "X_umap" not in adata.obsm
    info = adata.uns["napari_reddino"]
    assert list(info["slides"]) == ["a.zarr", "b.zarr"] and info["classifier"] == "morphology"


def test_at_level_1_outlines_and_pooled_centroids_are_in_level_0_pixels(tmp_path, capsys):
    small = synthetic_smear(seed=3, shape=(360, 480))[0]
    big = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)  # its level 1 is ``small`` again
    path = ngff.write_image(tmp_path / "s.zarr", big, chunk=256, levels=2)
    out = tmp_path / "out"
    args = ["slide", str(path), "--out", str(out), "--tile", "256", "--backend", "threshold", "--level", "1"]
    assert main(args) == 0
    cells = pd.read_parquet(out / "s_cells.parquet")
    assert cells["bbox_x1"].max() <= 480 and len(cells) > 20  # the table: level 1's pixels
    check_outlines(out / "s_cells.geojson", cells, scale=2, image="s.zarr")
    obs = h5ad_columns(out / "cells.h5ad", "label", "centroid_x", "bbox_y1")
    assert obs["label"].tolist() == cells["label"].tolist()  # every object, in order
    np.testing.assert_allclose(obs["centroid_x"], (cells["centroid_x"] + 0.5) * 2 - 0.5)
    np.testing.assert_array_equal(obs["bbox_y1"], cells["bbox_y1"] * 2)
    assert "X_reddino" not in obs["obsm"]
    # --resume keeps the slide and writes the same GeoJSON and pooled table again
    before = (out / "s_cells.geojson").read_bytes()
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0 and "cells done before, kept" in capsys.readouterr().out
    assert (out / "s_cells.geojson").read_bytes() == before
    again = h5ad_columns(out / "cells.h5ad", "label", "centroid_x", "bbox_y1")
    assert all(np.array_equal(again[k], obs[k]) for k in ("label", "centroid_x", "bbox_y1"))


def test_embedding_classifier_without_features_says_so_and_uses_morphology(slide_run, capsys):
    root, out = slide_run
    base = ["slide", str(root / "b.zarr"), "--tile", "256", "--backend", "threshold", "--classifier"]
    assert main(base + ["embedding+morphology", "--out", str(root / "emb")]) == 0
    assert "note: Cells classified from morphology only (no embeddings)." in capsys.readouterr().out
    assert main(base + ["morphology", "--out", str(root / "morph")]) == 0
    a, b = (pd.read_parquet(root / d / "b_cells.parquet") for d in ("emb", "morph"))
    pd.testing.assert_frame_equal(a, b)
    assert (a["prediction"] != "").any()
