"""``napari-reddino umap`` and ``napari-reddino classify`` on small FEATURES files."""

import numpy as np
import pandas as pd
import pytest

from napari_reddino.cli import main


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("feat")
    y = np.repeat(np.array(["normal", "target", "burr"]), 12)
    centres = {"normal": 0, "target": 6, "burr": -6}
    emb = np.array([rng.normal(centres[c], 1, 16) + (np.arange(16) == i % 3) * 5 for i, c in enumerate(y)])
    df = pd.DataFrame({"image": np.where(np.arange(36) % 2, "a", "b"), "label": np.arange(1, 37),
                       "x": rng.uniform(0, 100, 36), "y": rng.uniform(0, 100, 36)})
    for j in range(16):
        df[f"emb_{j}"] = emb[:, j].astype(np.float32)
    df.to_parquet(d / "f.parquet")
    return d / "f.parquet", y


def test_umap_cli_writes_csv_and_png(features, tmp_path):
    path, _ = features
    assert main(["umap", str(path), "--out", str(tmp_path / "u"), "--n-neighbors", "8", "--color-by", "x"]) == 0  # x: centroid_x
    emb = pd.read_csv(tmp_path / "u" / "umap.csv")
    assert len(emb) == 36 and {"image", "label", "umap_x", "umap_y"} <= set(emb.columns)
    assert emb[["umap_x", "umap_y"]].notna().all().all()
    png = (tmp_path / "u" / "umap.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_umap_cli_bad_input_exits_2(features, tmp_path, capsys):
    path, _ = features
    assert main(["umap", str(path), "--out", str(tmp_path), "--color-by", "nope"]) == 2
    err = capsys.readouterr().err
    assert "accepted" in err and len(err.strip().splitlines()) == 1
    assert main(["umap", str(tmp_path / "missing.parquet"), "--out", str(tmp_path)]) == 2


def test_classify_cli_trains_on_annotations(features, tmp_path, capsys):
    path, y = features
    picks = [0, 1, 12, 13, 24, 25]
    ann = pd.DataFrame({"image": np.where(np.array(picks) % 2, "a", "b"), "label": np.array(picks) + 1,
                        "class": y[picks]})
    ann.loc[len(ann)] = ["zzz", 999, "normal"]  # matches no cell: reported, not fatal
    ann["x"], ann["y"], ann["segmentation"] = 1.0, 2.0, "f00d"  # the dock's files carry these too
    ann.to_csv(tmp_path / "ann.csv", index=False)
    out = tmp_path / "pred.csv"
    for kind in ("logreg", "knn"):
        assert main(["classify", str(path), "--annotations", str(tmp_path / "ann.csv"), "--out", str(out),
                     "--classifier", kind, "--k", "3"]) == 0
        pred = pd.read_csv(out, keep_default_na=False)
        assert list(pred.columns) == ["image", "label", "centroid_x", "centroid_y", "class", "prediction", "confidence"]
        assert (pred["prediction"] == y).mean() > 0.9 and (pred["class"] != "").sum() == 6
    assert "1 of 7 annotations match no cell" in capsys.readouterr().err


def test_classify_cli_needs_two_classes(features, tmp_path, capsys):
    path, _ = features
    pd.DataFrame({"image": ["b"], "label": [1], "class": ["normal"]}).to_csv(tmp_path / "a.csv", index=False)
    assert main(["classify", str(path), "--annotations", str(tmp_path / "a.csv"), "--out",
                 str(tmp_path / "p.csv")]) == 2
    assert "at least 2 classes" in capsys.readouterr().err


@pytest.mark.parametrize("label, shown", [("abc", "'abc'"), ("3.7", "3.7"), ("99999999999", "99999999999"),
                                          ("0", "0")])
def test_classify_cli_bad_annotation_label_is_one_line(features, tmp_path, capsys, label, shown):
    """3.7 was cut to 3 (another cell's class), 'abc' and huge numbers were tracebacks."""
    path, _ = features
    (tmp_path / "a.csv").write_text(f"image,label,class\nb,1,normal\na,{label},burr\n")
    assert main(["classify", str(path), "--annotations", str(tmp_path / "a.csv"), "--out",
                 str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"label {shown} in row 2" in err and "accepted: cell numbers" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "p.csv").exists()


def test_features_with_a_missing_label_and_k_0_are_one_line(features, tmp_path, capsys):
    path, _ = features
    df = pd.read_parquet(path)
    df["label"] = df["label"].astype(float)
    df.loc[5, "label"] = np.nan
    df.to_parquet(tmp_path / "nan.parquet")
    assert main(["umap", str(tmp_path / "nan.parquet"), "--out", str(tmp_path / "u")]) == 2
    assert "label nan in row 6" in capsys.readouterr().err
    pd.DataFrame({"image": ["b", "a"], "label": [1, 2], "class": ["normal", "burr"]}).to_csv(tmp_path / "a.csv",
                                                                                          index=False)
    assert main(["classify", str(path), "--annotations", str(tmp_path / "a.csv"), "--out", str(tmp_path / "p.csv"),
                 "--classifier", "knn", "--k", "0"]) == 2
    assert "--k 0; accepted" in capsys.readouterr().err


def test_classify_writes_its_predictions_atomically(features, tmp_path, monkeypatch):
    """A kill mid-write must leave the old file or the new one: the predictions go through atomic_path."""
    from napari_reddino import atomic

    path, y = features
    pd.DataFrame({"image": ["b", "a"], "label": [1, 2], "class": [y[0], y[12]]}).to_csv(tmp_path / "a.csv",
                                                                                     index=False)
    through, real = [], atomic.atomic_path
    monkeypatch.setattr(atomic, "atomic_path", lambda p, *a, **k: (through.append(str(p)), real(p, *a, **k))[1])
    assert main(["classify", str(path), "--annotations", str(tmp_path / "a.csv"), "--out",
                 str(tmp_path / "p.csv")]) == 0
    assert str(tmp_path / "p.csv") in through and (tmp_path / "p.csv").is_file()


def test_umap_cli_fits_a_sample_above_sample_cells(features, tmp_path, capsys):
    from napari_reddino.embedding import sample_rows, umap_embed
    from napari_reddino.formats import read_features

    path, _ = features
    assert main(["umap", str(path), "--out", str(tmp_path / "s"), "--n-neighbors", "8", "--sample", "20"]) == 0
    emb = pd.read_csv(tmp_path / "s" / "umap.csv")
    _, X = read_features(path)
    fitted = sample_rows(36, 20, seed=0)  # the sample's cells sit where a map of the sample alone puts them
    np.testing.assert_allclose(emb[["umap_x", "umap_y"]].to_numpy()[fitted],
                               umap_embed(X[fitted], n_neighbors=8, sample=None), atol=1e-4)
    assert main(["umap", str(path), "--out", str(tmp_path / "t"), "--n-neighbors", "8", "--sample", "5"]) == 2
    assert "more cells than neighbours" in capsys.readouterr().err
