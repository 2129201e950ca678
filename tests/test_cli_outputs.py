"""Nothing a batch makes is lost or mixed up: inputs of the same name keep their own results, ``--out`` is
checked before the work, a bad file is reported while the others are done, an interrupted run keeps every
finished image and ``--resume`` does only the rest."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from PIL import Image

from napari_reddino.cli import main
from napari_reddino.outputs import output_stems, unique_names
from napari_reddino.sample_data import synthetic_smear


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory):
    """``a/1.png`` and ``b/1.png`` (different smears), ``a/2.png``, and ``a/2.jpg`` (a copy of a/2.png)."""
    root = tmp_path_factory.mktemp("sites")
    for folder, name, seed in (("a", "1.png", 0), ("b", "1.png", 1), ("a", "2.png", 2)):
        (root / folder).mkdir(exist_ok=True)
        Image.fromarray(synthetic_smear(seed=seed, shape=(160, 200), n_cells=6, n_white=0)[0]).save(
            root / folder / name)
    Image.open(root / "a" / "2.png").convert("RGB").save(root / "a" / "2.jpg", quality=95)
    return root


def test_names_stay_unique_and_stable():
    from pathlib import Path

    paths = [Path("/d/a/1.jpg"), Path("/d/b/1.jpg"), Path("/d/a/2.jpg"), Path("/d/a/2.png")]
    assert unique_names(paths) == ["a/1.jpg", "b/1.jpg", "2.jpg", "2.png"]
    assert output_stems(unique_names(paths)) == ["a__1", "b__1", "2_jpg", "2_png"]
    assert unique_names(paths[2:3]) == ["2.jpg"] and output_stems(["2.jpg"]) == ["2"]  # no collision: as before
    assert output_stems(["s.ome.zarr", "t.OME.tif", "u.zarr"]) == ["s", "t", "u"]  # an OME file's two suffixes


def test_inputs_of_the_same_name_keep_their_own_results(two_sites, tmp_path):
    """a/1.png and b/1.png wrote one set of 1_* files (the second over the first)."""
    out = tmp_path / "out"
    assert main(["segment", str(two_sites), "--out", str(out)]) == 0
    files = sorted(p.name for p in out.glob("*_labels.tif"))
    assert files == ["2_jpg_labels.tif", "2_png_labels.tif", "a__1_labels.tif", "b__1_labels.tif"]
    a, b = (pd.read_csv(out / f"{s}__1_cells.csv") for s in "ab")
    assert not a[["centroid_x", "centroid_y"]].equals(b[["centroid_x", "centroid_y"]])  # two smears, two tables


def test_run_pools_one_row_per_image_and_cell(two_sites, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(two_sites / "a" / "1.png"), str(two_sites / "b" / "1.png"), "--out", str(out),
                 "--model", f"local-dir:{tiny_model_dir}", "--no-pca", "--no-umap"]) == 0
    cells = pd.read_csv(out / "cells.csv")
    assert set(cells["image"]) == {"a/1.png", "b/1.png"}
    assert not cells.duplicated(["image", "label"]).any()
    feats = pd.read_parquet(out / "a__1_features.parquet")
    assert set(feats["image"]) == {"a/1.png"}


@pytest.mark.parametrize("command", ["segment", "run", "embed"])
def test_out_that_cannot_be_written_is_refused_before_any_work(two_sites, tiny_model_dir, tmp_path, capsys,
                                                               monkeypatch, command):
    """--out a file (or a read-only folder) failed with an OSError traceback after all the compute."""
    import napari_reddino.segment as seg

    monkeypatch.setattr(seg, "iter_segment_cells", lambda *a, **k: pytest.fail("computed before checking --out"))
    monkeypatch.setattr(seg, "iter_segment", lambda *a, **k: pytest.fail("computed before checking --out"))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = {"segment": blocker, "run": blocker, "embed": blocker / "cells.csv"}[command]
    extra = {"segment": [], "run": ["--model", f"local-dir:{tiny_model_dir}"],
             "embed": ["--segment", "threshold", "--model", f"local-dir:{tiny_model_dir}"]}[command]
    assert main([command, str(two_sites / "a"), "--out", str(out)] + extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err and "Traceback" not in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_refused(two_sites, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    assert main(["segment", str(two_sites / "a" / "1.png"), "--out", str(ro / "out")]) == 2
    assert "cannot be written" in capsys.readouterr().err


def test_a_bad_file_is_reported_and_the_others_are_done(two_sites, tiny_model_dir, tmp_path, capsys):
    """A truncated JPEG among the inputs stopped every command; embed and run then wrote nothing."""
    folder = tmp_path / "batch"
    folder.mkdir()
    for name in ("1.png", "2.png"):
        (folder / name).write_bytes((two_sites / "a" / name).read_bytes())
    (folder / "broken.jpg").write_bytes((two_sites / "a" / "2.jpg").read_bytes()[:300])
    for command, extra, made in (
            ("segment", [], lambda out: sorted(p.name for p in out.glob("*_labels.tif"))
             == ["1_labels.tif", "2_labels.tif"]),
            ("run", ["--model", f"local-dir:{tiny_model_dir}", "--no-pca", "--no-umap"],
             lambda out: set(pd.read_csv(out / "cells.csv")["image"]) == {"1.png", "2.png"})):
        out = tmp_path / command
        assert main([command, str(folder), "--out", str(out)] + extra) == 2
        failed = pd.read_csv(out / "failed.csv")
        assert failed["input"].tolist() == ["broken.jpg"] and "Could not read" in failed["error"][0]
        assert made(out), command
    out = tmp_path / "emb.csv"
    assert main(["embed", str(folder), "--segment", "threshold", "--model", f"local-dir:{tiny_model_dir}",
                 "--out", str(out)]) == 2
    assert set(pd.read_csv(out)["image"]) == {"1.png", "2.png"}
    assert pd.read_csv(tmp_path / "emb.csv.failed.csv")["input"].tolist() == ["broken.jpg"]
    assert "broken.jpg" in capsys.readouterr().err


def test_resume_does_only_what_is_missing_and_refuses_other_settings(two_sites, tiny_model_dir, tmp_path,
                                                                     monkeypatch, capsys):
    out = tmp_path / "out"
    args = ["run", str(two_sites / "a"), "--out", str(out), "--model", f"local-dir:{tiny_model_dir}", "--no-pca"]
    assert main(args) == 0
    first = pd.read_csv(out / "cells.csv")
    (out / "2_png_labels.tif").unlink()  # as if the run had been killed before this image was written
    import napari_reddino.segment as seg

    real, seen = seg.iter_segment_cells, []
    monkeypatch.setattr(seg, "iter_segment_cells", lambda image, *a, **k: seen.append(image.shape) or real(
        image, *a, **k))
    assert main(args + ["--resume"]) == 0
    assert len(seen) == 1  # only the image whose results were missing
    again = pd.read_csv(out / "cells.csv")
    pd.testing.assert_frame_equal(first.drop(columns=["umap_x", "umap_y"]),
                                  again.drop(columns=["umap_x", "umap_y"]))
    capsys.readouterr()
    assert main(args + ["--resume", "--backend", "threshold"]) == 2
    assert "other settings (backend)" in capsys.readouterr().err


def test_an_interrupted_run_keeps_every_finished_image(two_sites, tiny_model_dir, tmp_path, monkeypatch):
    """`run` wrote only at the end: a failure at the last image lost every image before it."""
    import napari_reddino.segment as seg

    real, calls = seg.iter_segment_cells, []

    def third_one_dies(image, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return (yield from real(image, *a, **k))

    monkeypatch.setattr(seg, "iter_segment_cells", third_one_dies)
    out = tmp_path / "out"
    assert main(["run", str(two_sites / "a"), "--out", str(out), "--model", f"local-dir:{tiny_model_dir}",
                 "--no-pca"]) == 130
    assert {p.name for p in out.glob("*_features.parquet")} == {"1_features.parquet", "2_jpg_features.parquet"}


def test_pca_keeps_same_named_inputs_apart_and_reports_a_bad_file(two_sites, tiny_model_dir, tmp_path, capsys):
    """pca named same-stem inputs by their parent folder only (x/a/1.jpg and y/a/1.jpg collided), and a bad
    file stopped the batch."""
    folder = tmp_path / "in"
    for site in ("a", "b"):
        (folder / site).mkdir(parents=True)
        (folder / site / "1.png").write_bytes((two_sites / site / "1.png").read_bytes())
    (folder / "a" / "broken.jpg").write_bytes((two_sites / "a" / "2.jpg").read_bytes()[:300])
    out = tmp_path / "out"
    code = main(["pca", str(folder), "--out", str(out), "--model", f"local-dir:{tiny_model_dir}", "--fit", "each",
                 "--cell-resolution", "off"])
    assert code == 2
    assert sorted(p.name for p in out.glob("*_pca.png")) == ["a__1_pca.png", "b__1_pca.png"]
    assert pd.read_csv(out / "failed.csv")["input"].tolist() == ["broken.jpg"]
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    capsys.readouterr()
    assert main(["pca", str(folder / "a" / "1.png"), "--out", str(blocker), "--model",
                 f"local-dir:{tiny_model_dir}"]) == 2
    assert "which is a file" in capsys.readouterr().err


def test_a_resumed_run_with_pca_reopens_with_every_overlay(two_sites, tiny_model_dir, tmp_path):
    """--resume kept the finished images' PCA overlays on disk but not in the run's session: `view DIR`
    reopened them without their overlay."""
    import numpy as np

    from napari_reddino.pipeline import pca_png
    from napari_reddino.session import read_session

    out = tmp_path / "out"
    args = ["run", str(two_sites / "a"), "--out", str(out), "--model", f"local-dir:{tiny_model_dir}",
            "--cell-resolution", "off", "--no-umap"]
    assert main(args) == 0
    pngs = {p.name: np.asarray(Image.open(p)) for p in out.glob("*_pca.png")}
    (out / "2_png_labels.tif").unlink()  # as if killed before this image was written
    assert main(args + ["--resume"]) == 0
    smears = read_session(out).result.smears
    assert len(smears) == 3 and all(s.pca is not None for s in smears)
    for s, stem in zip(smears, output_stems([s.name for s in smears])):  # the same picture as the first run's
        np.testing.assert_array_equal(pca_png(s), pngs[f"{stem}_pca.png"])


def test_run_takes_device_and_drop_border(two_sites, tiny_model_dir, tmp_path):
    """`run` had neither --device nor --drop-border (the dock and `segment` had them)."""
    out = tmp_path / "out"
    base = ["run", str(two_sites / "a" / "1.png"), "--model", f"local-dir:{tiny_model_dir}", "--no-pca", "--no-umap"]
    assert main(base + ["--out", str(out / "all")]) == 0
    assert main(base + ["--out", str(out / "inner"), "--drop-border", "--device", "cpu"]) == 0
    every, inner = (pd.read_csv(out / d / "cells.csv") for d in ("all", "inner"))
    assert every["border"].any() and not inner["border"].any() and 0 < len(inner) < len(every)
