"""``napari-reddino segment``: files written, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from napari_reddino.cli import main
from napari_reddino.sample_data import synthetic_smear


@pytest.fixture(scope="module")
def smear_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("smears")
    for seed in (0, 1):
        Image.fromarray(synthetic_smear(seed=seed, shape=(200, 260))[0]).save(folder / f"smear{seed}.png")
    Image.fromarray(np.full((60, 80, 3), 215, np.uint8)).save(folder / "blank.png")
    return folder


def test_segment_writes_labels_and_table(smear_files, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", str(smear_files), "--out", str(out), "--drop-border"]) == 0
    for stem in ("smear0", "smear1"):
        labels = tifffile.imread(out / f"{stem}_labels.tif")
        table = pd.read_csv(out / f"{stem}_cells.csv")
        assert labels.dtype == np.uint16 and labels.shape == (200, 260)
        assert len(table) == labels.max() >= 3 and table["label"].tolist() == list(range(1, len(table) + 1))
        assert {"centroid_x", "area", "eccentricity", "mean_r", "type", "border"} <= set(table.columns)
        assert (table["type"] == "rbc").sum() >= 3
        assert labels[0].max() == labels[:, 0].max() == 0  # border cells dropped
    assert tifffile.imread(out / "blank_labels.tif").max() == 0
    out_text = capsys.readouterr().out
    assert "blank.png: no cells found" in out_text and "red cells in 'smear0.png'" in out_text


def test_diameter_auto_number_or_refused(smear_files, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", str(smear_files / "smear0.png"), "--out", str(out), "--diameter", "auto"]) == 0
    assert main(["segment", str(smear_files / "smear0.png"), "--out", str(out), "--diameter", "80"]) == 0
    assert "about 80 px across" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(smear_files / "smear0.png"), "--out", str(out), "--diameter", "big"])
    assert exc.value.code == 2 and "accepted: auto or a red-cell diameter" in capsys.readouterr().err


def test_bad_input_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    assert main(["segment", str(tmp_path / "missing.png"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path / "models"))
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "a.png")
    assert main(["segment", str(tmp_path / "a.png"), "--backend", "cellpose", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "CELLPOSE_LOCAL_MODELS_PATH" in err and "Traceback" not in err


def test_console_script_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "napari_reddino.cli", "segment", str(tmp_path / "nope.jpg"),
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_learned_backend_uses_the_weights_given(smear_files, tmp_path, capsys):
    """--weights names the learned segmenter's file too; a missing one is a one-line error, not the shipped
    weights used silently."""
    image = str(smear_files / "smear0.png")
    assert main(["segment", image, "--backend", "learned", "--weights", str(tmp_path / "absent.safetensors"),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "absent.safetensors" in err and "reddino-train segmenter" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "smear0_labels.tif").exists()
