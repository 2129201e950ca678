"""``napari-reddino embed`` and ``napari-reddino models`` in-process, on a locally saved tiny model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from napari_reddino import embed, models
from napari_reddino.cli import main


@pytest.fixture(autouse=True)
def _empty_hub_cache(empty_hub_cache):
    return empty_hub_cache


@pytest.fixture(scope="module")
def smear_files(tmp_path_factory):
    """Two synthetic smears (PNG) with their ground-truth labels (.npy and .tif), and a tiny model folder."""
    import tifffile

    from napari_reddino.sample_data import synthetic_smear

    root = tmp_path_factory.mktemp("smears")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for seed in (0, 1):
        image, labels, _ = synthetic_smear(seed, shape=(160, 200))
        Image.fromarray(image).save(root / "images" / f"smear{seed}.png")
        if seed == 0:
            np.save(root / "labels" / "smear0.npy", labels)
        else:
            tifffile.imwrite(root / "labels" / "smear1.tif", labels)
    torch.manual_seed(0)
    vit = models.create_model("vit_small_patch14_dinov2", img_size=56, embed_dim=64, depth=1, num_heads=1)
    models.save_local_dir(vit.eval(), root / "model")
    return root


def test_embed_with_labels_writes_one_row_per_cell(smear_files, tmp_path, capsys):
    root = smear_files
    out = tmp_path / "cells.parquet"
    code = main(["embed", str(root / "images"), "--labels", str(root / "labels"), "--model",
                 f"local-dir:{root / 'model'}", "--out", str(out), "--precision", "fp32", "--batch-size", "4",
                 "--cell-types", "all"])
    assert code == 0
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["image", "label", "centroid_x", "centroid_y"] + [f"emb_{i}" for i in range(64)]
    image = np.asarray(Image.open(root / "images" / "smear0.png"))
    labels = np.load(root / "labels" / "smear0.npy")
    table, emb = embed.embed_cells(image, labels, models.load_model(f"local-dir:{root / 'model'}"),
                                   precision="fp32")
    first = frame[frame["image"].str.endswith("smear0.png")]
    assert len(first) == len(table) == len(np.unique(labels[labels > 0]))
    np.testing.assert_array_equal(first["label"], table["label"])
    np.testing.assert_allclose(first["centroid_x"], table["centroid_x"])
    np.testing.assert_allclose(first[[f"emb_{i}" for i in range(64)]].to_numpy(), emb, atol=1e-6)
    assert frame["image"].str.endswith("smear1.png").sum() > 0
    assert f"wrote {len(frame)} cells" in capsys.readouterr().out


def test_embed_keeps_red_cells_by_default_and_counts_the_rest(smear_files, tmp_path, capsys):
    """Labels from elsewhere (here the ground truth, white cell and platelets included) are typed from the
    image; only red cells are embedded unless --cell-types says otherwise, and the rest is reported."""
    from napari_reddino.segment.types import typed_table

    root = smear_files
    out = tmp_path / "cells.csv"
    assert main(["embed", str(root / "images" / "smear0.png"), "--labels", str(root / "labels" / "smear0.npy"),
                 "--model", f"local-dir:{root / 'model'}", "--out", str(out), "--precision", "fp32"]) == 0
    image = np.asarray(Image.open(root / "images" / "smear0.png"))
    types = typed_table(image, np.load(root / "labels" / "smear0.npy"))
    red = types.loc[types["type"] == "rbc", "label"].to_numpy()
    assert 0 < len(red) < len(types) and "wbc" in set(types["type"])
    assert list(pd.read_csv(out)["label"]) == list(red)
    assert "left out 1 white cell" in capsys.readouterr().err
    assert main(["embed", str(root / "images" / "smear0.png"), "--labels", str(root / "labels" / "smear0.npy"),
                 "--model", f"local-dir:{root / 'model'}", "--out", str(out), "--cell-types", "rbc,wbc"]) == 0
    assert set(pd.read_csv(out)["label"]) == set(types.loc[types["type"].isin(["rbc", "wbc"]), "label"])


def test_embed_segments_on_the_fly_to_csv(smear_files, tmp_path):
    out = tmp_path / "cells.csv"
    code = main(["embed", str(smear_files / "images" / "smear0.png"), "--segment", "threshold", "--model",
                 str(smear_files / "model"), "--out", str(out)])
    assert code == 0
    frame = pd.read_csv(out)
    assert len(frame) > 3 and frame["label"].is_unique and "emb_63" in frame


@pytest.mark.parametrize("extra, message", [
    (["--out", "c.csv", "--cell-types", "rbc,blob"], "accepted: all, or a comma-separated list of rbc"),
    (["--out", "cells.xlsx"], "accepted: a .parquet or .csv"),
    (["--out", "c.csv", "--model", "hf-hub:Snarcy/RedDino-small"], "napari-reddino models download"),
    (["--out", "c.csv", "--model", "nonsense"], "accepted: hf-hub:Snarcy/RedDino-small|base|large"),
    (["--out", "c.csv", "--batch-size", "0"], "--batch-size"),
    (["--out", "c.csv", "--precision", "fp8"], None),  # argparse's own usage error, also exit 2
])
def test_bad_input_exits_2_with_one_line(smear_files, tmp_path, capsys, extra, message):
    extra = [str(tmp_path / a) if a.endswith((".csv", ".xlsx")) else a for a in extra]
    if "--model" not in extra:
        extra += ["--model", str(smear_files / "model")]
    try:
        code = main(["embed", str(smear_files / "images"), "--labels", str(smear_files / "labels")] + extra)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "Traceback" not in err
    if message:
        assert message in err and len(err.splitlines()) == 1


def test_labels_are_paired_by_name_not_by_order(smear_files, tmp_path):
    """Given in the other order (smear1's labels first), each image still gets its own labels; paired by
    order, smear0 would have been measured on smear1's cells without a word."""
    root = smear_files
    out = tmp_path / "cells.csv"
    code = main(["embed", str(root / "images"), "--labels", str(root / "labels" / "smear1.tif"),
                 str(root / "labels" / "smear0.npy"), "--model", f"local-dir:{root / 'model'}", "--out", str(out),
                 "--cell-types", "all"])
    assert code == 0
    frame = pd.read_csv(out)
    for stem, labels in (("smear0", np.load(root / "labels" / "smear0.npy")),
                         ("smear1", __import__("tifffile").imread(root / "labels" / "smear1.tif"))):
        rows = frame[frame["image"].str.endswith(f"{stem}.png")]
        assert sorted(rows["label"]) == sorted(np.unique(labels[labels > 0]))


@pytest.mark.parametrize("names, message", [
    (["1", "3", "5"], "no label image for 2.png"),  # the gap would have shifted image 2 onto image 3's cells
    (["1", "2"], "no label image for 3.png"),
    (["1", "2", "3", "4"], "4.npy with no image of that name"),
    (["1", "1_labels", "2", "3"], "2 label images for 1.png"),
])
def test_missing_extra_or_doubled_labels_exit_2_naming_the_file(smear_files, tmp_path, capsys, names, message):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    image = Image.open(smear_files / "images" / "smear0.png")
    for k in (1, 2, 3):
        image.save(tmp_path / "images" / f"{k}.png")
    for name in names:
        np.save(tmp_path / "labels" / f"{name}.npy", np.load(smear_files / "labels" / "smear0.npy"))
    code = main(["embed", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
                 "--model", str(smear_files / "model"), "--out", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.csv").exists()


def test_label_names_of_segmentation_tools_pair_with_their_image():
    from pathlib import Path

    from napari_reddino.cli.embed import pair_labels

    images = [Path("a/smear.jpg"), Path("a/cell_mask.jpg"), Path("a/x.png")]
    labels = [Path("l/x_cp_masks.png"), Path("l/smear_labels.tif"), Path("l/cell_mask.tif")]
    assert [p.name for p in pair_labels(images, labels)] == ["smear_labels.tif", "cell_mask.tif", "x_cp_masks.png"]


def test_models_list_and_offline_download(capsys, monkeypatch):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for spec in ("hf-hub:Snarcy/RedDino-small", "hf-hub:Snarcy/RedDino-base", "hf-hub:Snarcy/RedDino-large"):
        assert spec in out
    assert "not cached" in out and "1024" in out and "cc-by-nc-4.0" in out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["models", "download", "hf-hub:Snarcy/RedDino-base"]) == 2
    assert "offline" in capsys.readouterr().err
