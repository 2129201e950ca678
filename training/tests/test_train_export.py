"""CLI train → export → the plugin's loader gives the teacher's CLS output."""

from __future__ import annotations

import csv
import json

import torch

from conftest import write_config
from napari_reddino.models import load_model
from reddino_train.cli import main
from reddino_train.config import read_saved_config
from reddino_train.models import build_student_teacher
from reddino_train.train.checkpoint import load_checkpoint


def test_cli_train_export_plugin_load_same_cls(tiny_data, tmp_path, capsys):
    cfg_file = write_config(tmp_path / "tiny.yaml")
    run, out = tmp_path / "run", tmp_path / "exported"
    assert main(["train", "--config", cfg_file, "--data", str(tiny_data), "--out", str(run), "--max-steps", "2",
                 "--no-progress", "loss.koleo_weight=0.1", "head.shared_ibot_head=false", "crops.n_local=2",
                 "augmentation=reddino"]) == 0
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors"}
    assert "license" not in json.loads((out / "config.json").read_text())["pretrained_cfg"]  # from scratch

    cfg = read_saved_config(run / "config.yaml")
    assert cfg["loss"]["koleo_weight"] == 0.1 and cfg["augmentation"]["name"] == "reddino"  # resolved, saved
    with open(run / "metrics.csv", newline="") as f:
        assert float(next(csv.DictReader(f))["koleo_loss"]) != 0  # the switch reached the loss
    _, teacher = build_student_teacher(cfg)
    teacher.load_state_dict(load_checkpoint(run)["teacher"])
    teacher.eval()
    model = load_model(f"local-dir:{out}")
    assert tuple(model.pretrained_cfg["input_size"]) == (3, 42, 42)
    x = torch.randn(3, 3, 42, 42)
    with torch.no_grad():
        expected = teacher(x)["cls"]
        assert torch.allclose(model(x), expected, atol=1e-5)
        assert torch.allclose(teacher.backbone.forward_features(x)[:, 0], expected, atol=1e-5)


def test_cli_errors_are_one_line(tiny_data, tmp_path, capsys):
    assert main(["train", "--config", "cpu_tiny", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("accepted" in line for line in err)
