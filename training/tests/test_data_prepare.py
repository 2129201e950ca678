"""`reddino-train prepare`: patches with background dropped, cell crops, manifest rows, the dataset reader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from napari_reddino.images import InputError, read_image
from napari_reddino.sample_data import synthetic_smear
from reddino_train.cli import main
from reddino_train.data import prepare as prep
from reddino_train.data.dataset import SmearDataset
from reddino_train.data.prepare import iter_prepare
from napari_reddino.progress import run


@pytest.fixture(scope="module")
def smear():
    """A 448x672 synthetic smear (2x3 patches of 224) whose top-right patch is bare glass and whose
    bottom-right patch is outside the field of view (black)."""
    image, labels, classes = synthetic_smear(seed=0, shape=(448, 672))
    image = image.copy()
    glass = np.median(image[labels == 0], axis=0)
    noise = np.random.default_rng(0).normal(0, 3, (224, 224, 3))
    image[0:224, 448:672] = np.clip(glass + noise, 0, 255).astype(np.uint8)
    image[224:448, 448:672] = np.random.default_rng(1).integers(0, 12, (224, 224, 3), dtype=np.uint8)
    labels = labels.copy()
    labels[:, 448:] = 0
    return image, labels, classes


@pytest.fixture(scope="module")
def src(tmp_path_factory, smear):
    """A Chula-like folder: images/ (one PNG named .jpg, the Chula trap) and labels/ with cell centres."""
    root = tmp_path_factory.mktemp("src") / "mysmears"
    (root / "images").mkdir(parents=True)
    Image.fromarray(smear[0]).save(root / "images" / "7.jpg", format="PNG")
    Image.fromarray(smear[0][:, ::-1]).save(root / "images" / "8.png")
    return root


def test_patches_keep_cells_drop_glass_and_dark_and_match_the_source(tmp_path, src, smear):
    manifest = run(iter_prepare([src], tmp_path / "set", patches=True))
    rows = manifest[manifest.image == "images/7.jpg"]
    assert list(manifest.columns) == prep.MANIFEST_COLUMNS
    assert set(manifest.source) == {"mysmears"} and set(manifest.kind) == {"patch"}
    assert sorted(zip(rows.y0, rows.x0)) == [(0, 0), (0, 224), (224, 0), (224, 224)]  # glass and black dropped
    assert (rows.y1 - rows.y0 == 224).all() and (rows.x1 - rows.x0 == 224).all()
    assert (rows.foreground >= 0.05).all() and (rows.label == 0).all()
    for r in rows.itertuples():  # the file is exactly that region of the source, in RGB
        np.testing.assert_array_equal(read_image(tmp_path / "set" / r.path), smear[0][r.y0:r.y1, r.x0:r.x1])
    mirrored = manifest[manifest.image == "images/8.png"]  # flipped: the empty column is now the first
    assert sorted(zip(mirrored.y0, mirrored.x0)) == [(0, 224), (0, 448), (224, 224), (224, 448)]
    assert pd.read_csv(tmp_path / "set" / "manifest.csv").shape == manifest.shape


def test_glass_has_no_stain_and_cells_do(smear):
    image, labels, _ = smear
    od = prep.stain_density(image)
    assert np.mean(od[0:224, 448:672] > prep.STAIN_OD) < 0.01
    inside = labels[:, :448] > 0
    assert np.mean(od[:, :448][inside] > prep.STAIN_OD) > 0.6


def test_cells_rows_boxes_and_classes(tmp_path, src, smear, monkeypatch):
    """Ground-truth labels in place of the segmentation: every non-border cell once, box = its bbox,
    class from Chula-style centre labels."""
    import napari_reddino.segment as seg
    from scipy import ndimage

    image, labels, _ = smear
    monkeypatch.setattr(seg, "segment", lambda rgb, backend="threshold", **kw: labels if rgb[0, 0, 0] == image[0, 0, 0]
                        else labels[:, ::-1])
    centre = ndimage.center_of_mass(labels > 0, labels, [5, 9])
    (src / "labels").mkdir(exist_ok=True)
    (src / "labels" / "7.txt").write_text("".join(f"{x:.1f} {y:.1f} {c}\n" for (y, x), c in zip(centre, [3, 12])))
    manifest = run(iter_prepare([src / "images" / "7.jpg"], tmp_path / "cells", patches=False, cells="threshold"))
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))) - {0}
    expected = set(np.unique(labels)) - {0} - border
    assert set(manifest.label) == expected and len(manifest) == len(expected)
    assert set(manifest.source) == {"images"} and set(manifest.kind) == {"cell"}
    for r in manifest.itertuples():
        ys, xs = np.nonzero(labels == r.label)
        assert (r.y0, r.x0, r.y1, r.x1) == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
        assert read_image(tmp_path / "cells" / r.path).shape == (r.y1 - r.y0, r.x1 - r.x0, 3)
    classes = dict(zip(manifest.label, manifest["class"]))
    assert {k: v for k, v in classes.items() if v >= 0} == {k: c for k, c in ((5, 3), (9, 12)) if k in expected}


def test_fixed_size_cell_crops_are_centred_with_context_and_padded(tmp_path):
    """--cell-size: a square of N px centred on each cell, the same scale for every cell (a macrocyte stays
    bigger than a microcyte after the resize), padded with the image's median colour past the border."""
    image, labels, _ = synthetic_smear(seed=1, shape=(448, 448))
    Image.fromarray(image).save(tmp_path / "s.png")
    manifest = run(iter_prepare([tmp_path / "s.png"], tmp_path / "t", patches=False, cells="threshold",
                                cell_size=64))
    assert len(manifest) > 10 and set(manifest.kind) == {"cell"}
    assert ((manifest.y1 - manifest.y0) == 64).all() and ((manifest.x1 - manifest.x0) == 64).all()
    median = np.median(image.reshape(-1, 3), axis=0).astype(np.uint8)
    on_a_cell = []
    for r in manifest.itertuples():
        crop = read_image(tmp_path / "t" / r.path)
        assert crop.shape == (64, 64, 3)
        on_a_cell.append(labels[r.y0 + 32, r.x0 + 32] > 0)  # the crop centre is a (ground-truth) cell
        inside = crop[max(-r.y0, 0):64 - max(r.y1 - 448, 0), max(-r.x0, 0):64 - max(r.x1 - 448, 0)]
        assert np.array_equal(inside, image[max(r.y0, 0):r.y1, max(r.x0, 0):r.x1])
        if r.y0 < 0:
            assert np.all(crop[:-r.y0] == median)
    assert np.mean(on_a_cell) > 0.9
    with pytest.raises(InputError, match="cell_size=0"):
        run(iter_prepare([tmp_path / "s.png"], tmp_path / "u", patches=False, cells="threshold", cell_size=0))


@pytest.mark.parametrize("backend", ["learned", "threshold"])
def test_cells_from_the_plugins_segmentation(tmp_path, backend):
    image, labels, _ = synthetic_smear(seed=1, shape=(448, 448))
    Image.fromarray(image).save(tmp_path / "s.png")
    manifest = run(iter_prepare([tmp_path / "s.png"], tmp_path / "t", patches=True, cells=backend))
    cells = manifest[manifest.kind == "cell"]
    assert (manifest.kind == "patch").sum() == 4 and len(cells) > 0.5 * labels.max()
    for r in cells.itertuples():  # every crop holds mostly one ground-truth cell
        ids, counts = np.unique(labels[r.y0:r.y1, r.x0:r.x1], return_counts=True)
        assert counts[ids > 0].max() > 0.3 * (r.y1 - r.y0) * (r.x1 - r.x0)


def test_max_per_image_and_limit(tmp_path, src):
    manifest = run(iter_prepare([src], tmp_path / "q", max_per_image=2, limit=1, seed=3))
    assert len(manifest) == 2 and manifest.image.nunique() == 1
    more = run(iter_prepare([src], tmp_path / "q", max_per_image=1, limit=2, seed=4, append=True))
    assert more.image.nunique() == 2 and more.path.is_unique
    assert set(more.path) >= set(manifest.path) and len(more) >= 3
    assert len(pd.read_csv(tmp_path / "q" / "manifest.csv")) == len(more)


def test_dataset_reads_rgb_and_applies_the_transform(tmp_path, src, smear):
    run(iter_prepare([src], tmp_path / "d"))
    data = SmearDataset(tmp_path / "d")
    assert len(data) == 8
    first = data.table.iloc[0]
    np.testing.assert_array_equal(data[0], smear[0][first.y0:first.y1, first.x0:first.x1]
                                  if first.image == "images/7.jpg" else data[0])
    shapes = SmearDataset(tmp_path / "d", transform=lambda a: a.shape)
    assert shapes[3] == (224, 224, 3)
    assert len(SmearDataset(tmp_path / "d", kinds="patch")) == 8
    with pytest.raises(InputError, match="no samples"):
        SmearDataset(tmp_path / "d", kinds="cell")
    with pytest.raises(InputError, match="manifest.csv"):
        SmearDataset(tmp_path)


def test_bad_input_is_one_line(tmp_path, src):
    with pytest.raises(InputError, match="accepted"):
        run(iter_prepare([src], tmp_path / "x", patches=False))
    with pytest.raises(InputError, match="accepted"):
        run(iter_prepare([src], tmp_path / "x", cells="watershed"))


def test_cli_prepare_and_its_errors(tmp_path, src, capsys):
    assert main(["prepare", str(src), "--out", str(tmp_path / "c"), "--patch-size", "112"]) == 0
    manifest = pd.read_csv(tmp_path / "c" / "manifest.csv")
    assert len(manifest) > 8 and (manifest.y1 - manifest.y0 == 112).all()
    assert "samples from 2 images" in capsys.readouterr().out
    assert main(["prepare", str(tmp_path / "missing"), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reddino-train prepare: error:") and "\n" not in err


@pytest.mark.data
def test_real_smears_keep_every_patch_and_read_png_named_jpg(tmp_path, shared_data):
    images = shared_data / "chula-rbc-12" / "images"
    manifest = run(iter_prepare([images / "1.jpg", images / "710.jpg"], tmp_path / "r"))  # 710: a PNG named .jpg
    assert len(manifest) == 8 and set(manifest.source) == {"images"}  # dense smears: no patch is background
    with Image.open(images / "710.jpg") as im:
        assert im.format == "PNG"
        png = np.asarray(im.convert("RGB"))
    row = manifest[manifest.image == "710.jpg"].iloc[0]
    np.testing.assert_array_equal(read_image(tmp_path / "r" / row.path), png[row.y0:row.y1, row.x0:row.x1])


def test_sources_and_images_of_the_same_name_keep_every_sample(tmp_path, smear):
    """`prepare siteA/images siteB/images` gave both the source "images", and 1.jpg beside 1.png one stem:
    half the samples were written over."""
    for site, flip in (("siteA", 1), ("siteB", -1)):
        (tmp_path / site / "images").mkdir(parents=True)
        Image.fromarray(smear[0][:, ::flip]).save(tmp_path / site / "images" / "1.jpg", format="PNG")
        Image.fromarray(smear[0][::-1]).save(tmp_path / site / "images" / "1.png")
    manifest = run(iter_prepare([tmp_path / "siteA" / "images", tmp_path / "siteB" / "images"], tmp_path / "set",
                                patches=True, patch_size=112))
    assert sorted(manifest["source"].unique()) == ["siteA__images", "siteB__images"]
    assert manifest["path"].is_unique and all((tmp_path / "set" / p).is_file() for p in manifest["path"])
    assert manifest.groupby("source")["image"].nunique().tolist() == [2, 2]
    assert {p.split("/")[-1].split("_y")[0] for p in manifest["path"]} == {"1_jpg", "1_png"}


def test_a_bad_file_is_reported_and_the_set_is_still_written(tmp_path, src, capsys):
    """A truncated JPEG stopped prepare, leaving orphan PNGs and no manifest."""
    import shutil

    folder = tmp_path / "in"
    shutil.copytree(src / "images", folder)
    (folder / "9.jpg").write_bytes((folder / "8.png").read_bytes()[:200])
    assert main(["prepare", str(folder), "--out", str(tmp_path / "set"), "--patch-size", "112"]) == 2
    manifest = pd.read_csv(tmp_path / "set" / "manifest.csv")
    assert set(manifest["image"]) == {"7.jpg", "8.png"}
    failed = pd.read_csv(tmp_path / "set" / "failed.csv")
    assert failed["input"].tolist() == ["in/9.jpg"] and "9.jpg" in capsys.readouterr().out
