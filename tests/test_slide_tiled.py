"""Whole slides tile by tile (slides/tiles.py, slides/tiled.py, slides/assemble.py, cli/slide.py): the same cells
as one piece, a cell on a tile corner once, a killed run resumed to the same bytes."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_reddino.progress import run
from napari_reddino.sample_data import synthetic_smear
from napari_reddino.slides import ngff, tiled
from napari_reddino.slides.tiles import plan_tiles


def cell_sets(labels) -> set:
    """Each cell as the set of its pixels (flat indices): equal sets are the same cells up to label ids."""
    flat = np.asarray(labels).ravel()
    inside = np.flatnonzero(flat)
    order = np.argsort(flat[inside], kind="stable")
    _, starts = np.unique(flat[inside][order], return_index=True)
    return {frozenset(inside[order][a:b].tolist()) for a, b in zip(starts, list(starts[1:]) + [len(order)])}


def slide(tmp_path, image, name="s.zarr") -> Path:
    return ngff.write_image(tmp_path / name, image, chunk=128, levels=1)


def segment_slide(path, out, **kw):
    kw = {"tile": 256, "backend": "threshold", **kw}
    return run(tiled.iter_segment_slide(path, out, "s", **kw))


def read_labels(out) -> np.ndarray:
    return ngff.read_multiscales(Path(out) / "s_labels.zarr").yx(0).compute()


def test_cores_partition_the_slide():
    for shape, tile, overlap in [((480, 640), 256, 110), ((1000, 300), 256, 60), ((2049, 2048), 2048, 100)]:
        plan = plan_tiles(shape, tile, overlap=overlap)
        owners = np.zeros(shape, int)
        for t in plan.tiles:
            y0, y1, x0, x1 = t.core
            wy0, wy1, wx0, wx1 = t.window
            assert wy0 <= y0 < y1 <= wy1 and wx0 <= x0 < x1 <= wx1 and wy1 - wy0 <= tile
            owners[y0:y1, x0:x1] += 1
        assert (owners == 1).all()  # every centroid has exactly one owner


@pytest.fixture(scope="module")
def field(request):
    """A Chula-RBC-12 field when the real data is there (crowded, clumps), else a synthetic smear."""
    import os

    root = os.environ.get("NAPARI_REDDINO_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    data = Path(root) / "chula-rbc-12" / "images" / "102.jpg"
    if data.is_file():
        from napari_reddino.images import read_image

        return read_image(data)
    return synthetic_smear(seed=5, shape=(480, 640))[0]


@pytest.mark.parametrize("backend, tile", [("threshold", 256), ("learned", 400)])
def test_tiled_equals_one_piece(tmp_path, field, backend, tile):
    """The same cells (same pixels) as the whole image segmented at once with the slide's measurements, the
    same measurements and types; and what the in-memory tiled segmentation gives, label for label."""
    from napari_reddino.segment import iter_segment, segment, segment_cells

    path = slide(tmp_path, field)
    result = segment_slide(path, tmp_path / "out", backend=backend, tile=tile)
    labels = read_labels(tmp_path / "out")
    levels, factors = tiled.open_levels(str(path), 0)
    stats, diameter = tiled.measure_slide(levels, factors, tile)
    if backend == "learned":  # the slide's diameter, nudged onto the network's grid
        from napari_reddino.segment.learned import tile_grid

        diameter = tile_grid(diameter)[0]
    whole = segment(field, backend, stats=stats, diameter=diameter, tile_size=4096)
    assert result.tiles >= 4 and result.cells == whole.max() > 50
    assert cell_sets(labels) == cell_sets(whole)
    # measured in slide coordinates, typed, border against the slide's edge: as the image in one piece
    table = pd.read_parquet(tmp_path / "out" / "s_cells.parquet")
    _, one = segment_cells(field, backend, diameter=diameter, stats=stats, tile_size=4096)
    assert len(table) == len(one)
    key = ["bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]
    a, b = table.sort_values(key).reset_index(drop=True), one.sort_values(key).reset_index(drop=True)
    assert (a[key].to_numpy() == b[key].to_numpy()).all() and (a["type"] == b["type"]).all()
    assert (a["border"] == b["border"]).all() and a["border"].any()
    np.testing.assert_allclose(a[["centroid_y", "centroid_x", "area", "perimeter", "mean_g"]],
                               b[["centroid_y", "centroid_x", "area", "perimeter", "mean_g"]], rtol=1e-9)
    # the in-memory tiled segmentation uses the same plan: the same labels, id for id
    in_memory = run(iter_segment(field, backend, tile_size=tile))
    np.testing.assert_array_equal(labels, in_memory)


def test_cell_on_a_tile_corner_is_counted_once(tmp_path):
    image, _, _ = synthetic_smear(seed=3, shape=(600, 600))
    plan = plan_tiles((600, 600), 256, overlap=120)
    corner = next(t for t in plan.tiles if t.core[0] > 0 and t.core[2] > 0)
    cy, cx = corner.core[0], corner.core[2]  # where four cores meet
    yy, xx = np.mgrid[:600, :600]
    image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 15 ** 2] = (190, 90, 110)  # a red cell centred on the corner
    result = segment_slide(slide(tmp_path, image), tmp_path / "out", opts={"diameter": 40.0})
    labels = read_labels(tmp_path / "out")
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 12 ** 2
    ids = np.unique(labels[disc])
    assert len(ids) == 1 and ids[0] > 0  # one cell, whole
    table = pd.read_parquet(tmp_path / "out" / "s_cells.parquet")
    near = np.hypot(table["centroid_y"] - cy, table["centroid_x"] - cx) < 5
    assert near.sum() == 1 and table.loc[near, "label"].item() == ids[0]
    assert len(table) == result.cells == len(np.unique(labels)) - 1 and table["label"].is_unique


def output_bytes(out) -> dict:
    out = Path(out)
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "run.json"}


def test_killed_run_resumes_to_the_same_files(tmp_path, run_killed, field):
    path = slide(tmp_path, field)
    segment_slide(path, tmp_path / "once")
    status = run_killed("""
        from napari_reddino.progress import run
        from napari_reddino.slides import tiled
        done = []
        real = tiled.run_tile
        def dying(unit):
            if len(done) == 3:
                die()
            done.append(real(unit))
            return done[-1]
        tiled.run_tile = dying
        run(tiled.iter_segment_slide(path, out, "s", tile=256, backend="threshold"))
    """, path=path, out=tmp_path / "killed")
    assert status == -9
    assert len(list((tmp_path / "killed" / "s.tiles").glob("*.npz"))) == 3
    result = segment_slide(path, tmp_path / "killed", resume=True)
    assert result.skipped == 3 and not (tmp_path / "killed" / "s.tiles").exists()
    resumed = output_bytes(tmp_path / "killed")
    assert resumed == output_bytes(tmp_path / "once") and "s_cells.geojson" in resumed


def test_failed_tile_is_reported_and_resume_finishes(tmp_path, monkeypatch, field):
    path = slide(tmp_path, field)
    real, calls = tiled.segment_pixels, []

    def flaky(rgb, settings):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk went away\nsecond line")
        return real(rgb, settings)

    monkeypatch.setattr(tiled, "segment_pixels", flaky)
    result = segment_slide(path, tmp_path / "out")
    assert [f.error for f in result.failed] == ["disk went away"] and not (tmp_path / "out" / "s_cells.parquet").exists()
    monkeypatch.setattr(tiled, "segment_pixels", real)
    again = segment_slide(path, tmp_path / "out", resume=True)
    assert not again.failed and again.skipped == again.tiles - 1
    segment_slide(path, tmp_path / "fresh")
    assert output_bytes(tmp_path / "out") == output_bytes(tmp_path / "fresh")
    # other settings are not mixed into the tiles already there
    tiled_dir = tmp_path / "other"
    segment_slide(path, tiled_dir, keep_tiles=True)
    with pytest.raises(tiled.InputError, match="other settings"):
        segment_slide(path, tiled_dir, opts={"diameter": 20.0}, resume=True)


def test_cli_writes_labels_cells_and_features(tmp_path, tiny_model_dir, capsys):
    from napari_reddino.cli import main
    from napari_reddino.formats import read_features

    image = synthetic_smear(seed=1, shape=(420, 560))[0]
    path = ngff.write_image(tmp_path / "a.zarr", image, chunk=128)
    out = tmp_path / "out"
    args = ["slide", str(path), "--out", str(out), "--tile", "256", "--backend", "threshold", "--features",
            "--model", f"local-dir:{tiny_model_dir}"]
    assert main(args) == 0
    cells = pd.read_parquet(out / "a_cells.parquet")
    table, X = read_features(out / "a_features.parquet")
    labels = ngff.read_multiscales(out / "a_labels.zarr").yx(0).compute()
    assert len(cells) == labels.max() > 10 and set(np.unique(labels)) == {0, *cells["label"]}
    assert table["label"].tolist() == cells.loc[cells["type"] == "rbc", "label"].tolist() and X.shape[1] == 48
    assert np.isfinite(X).all() and (table["image"] == "a.zarr").all()
    assert not (out / "a.tiles").exists() and "objects in" in capsys.readouterr().out
    assert main(args + ["--resume"]) == 0 and "cells done before, kept" in capsys.readouterr().out
    # the labels beside the slide, where napari-ome-zarr shows them
    assert main(["slide", str(path), "--out", str(tmp_path / "o2"), "--tile", "256", "--backend", "threshold",
                 "--labels-beside"]) == 0
    assert ngff.read_multiscales(path).labels == ["cells"]
    beside = ngff.read_multiscales(path / "labels" / "cells").yx(0).compute()
    np.testing.assert_array_equal(beside, labels)


def test_cli_pca_overlay_of_a_slide(tmp_path, capsys):
    from napari_reddino.cli import main

    image = synthetic_smear(seed=2, shape=(420, 560))[0]
    path = ngff.write_image(tmp_path / "a.zarr", image, chunk=128)
    args = ["slide", str(path), "--out", str(tmp_path / "out"), "--tile", "256", "--backend", "threshold", "--pca",
            "--model", "demo"]
    assert main(args) == 0
    said = capsys.readouterr().out
    overlay = ngff.read_multiscales(tmp_path / "out" / "a_pca.zarr")
    q = overlay.scales[0][-1]
    assert "PCA overlay" in said and overlay.yx(0).shape == (-(-420 // q), -(-560 // q), 3)
    assert overlay.yx(0).compute().any()  # cells coloured
    assert main(args + ["--resume"]) == 0
    assert "PCA overlay done before, kept" in capsys.readouterr().out


@pytest.mark.parametrize("extra, said", [
    (["--tile", "100"], "Received --tile 100; accepted: 256 pixels or more"),
    (["--level", "5"], "Received level 5"),
    (["--labels-beside", "--level", "1"], "accepted: an OME-Zarr slide segmented at level 0"),
])
def test_cli_bad_settings_are_one_line(tmp_path, capsys, extra, said):
    from napari_reddino.cli import main

    path = ngff.write_image(tmp_path / "a.zarr", synthetic_smear(seed=1, shape=(300, 300))[0], chunk=128)
    assert main(["slide", str(path), "--out", str(tmp_path / "out"), "--backend", "threshold", *extra]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert said in (tmp_path / "out" / "failed.csv").read_text()
    assert main(["slide", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "out")]) == 2
    assert "missing.zarr" in capsys.readouterr().err


def test_diameter_of_a_large_slide_is_measured_at_full_resolution():
    """A view small enough to hold shows cells 2 px across; the diameter comes from full-resolution windows
    where the slide is stained (here the smear fills one corner of blank glass)."""
    from napari_reddino.segment.threshold import estimate_image_diameter, measure_large

    smear = synthetic_smear(seed=2, shape=(1200, 1200))[0]
    _, expected = estimate_image_diameter(smear)
    glass = np.median(smear.reshape(-1, 3), axis=0).astype(np.uint8)
    big = np.broadcast_to(glass, (6000, 6000, 3)).copy()
    big[4800:, 4800:] = smear
    _, diameter = measure_large([big], (1.0,), tile=400)
    assert diameter == pytest.approx(expected, rel=0.1)


def test_two_workers_write_the_same_files(tmp_path, field):
    from napari_reddino.cli import main

    path = slide(tmp_path, field)
    for n in ("1", "2"):
        assert main(["slide", str(path), "--out", str(tmp_path / n), "--tile", "256", "--backend", "threshold",
                     "--workers", n]) == 0
    assert output_bytes(tmp_path / "1") == output_bytes(tmp_path / "2") != {}
