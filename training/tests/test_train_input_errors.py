"""Wrong config values, damaged or crafted checkpoints and a config that does not match its checkpoint are one
line and exit 2 (they were tracebacks, some only after the data had been loaded)."""

from __future__ import annotations

import pytest
import torch

from conftest import write_config
from reddino_train.cli import main
from reddino_train.train.checkpoint import CHECKPOINT


def _one_line_error(capsys, *words) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, err
    return err


@pytest.mark.parametrize("override, words", [
    ("optim.base_lr=abc", ["optim.base_lr='abc'", "accepted: a number"]),
    ("optim.batch_size_per_gpu=0", ["optim.batch_size_per_gpu=0", "whole number >= 1"]),
    ("optim.batch_size_per_gpu=2.5", ["whole number"]),
    ("crops.n_local=-1", ["crops.n_local=-1"]),
    ("loss.koleo_weight=[1, 2]", ["accepted: a number"]),
    ("head.shared_ibot_head=7", ["accepted: true or false"]),
    ("augmentation.normalise.mean=0.5", ["normalise", "accepted keys at this level"]),  # a typo was ignored
])
def test_wrong_config_values_are_one_line(tiny_data, tmp_path, capsys, override, words):
    code = main(["train", "--config", write_config(tmp_path / "tiny.yaml"), "--data", str(tiny_data),
                 "--out", str(tmp_path / "run"), "--max-steps", "1", "--no-progress", override])
    assert code == 2
    _one_line_error(capsys, *words)
    assert not (tmp_path / "run" / CHECKPOINT).exists()


@pytest.fixture(scope="module")
def run_folder(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    assert main(["train", "--config", write_config(run.parent / "tiny_run.yaml"), "--data", str(tiny_data),
                 "--out", str(run), "--max-steps", "1", "--no-progress"]) == 0
    return run


def _copy_run(run, to):
    import shutil

    shutil.copytree(run, to)
    return to


class _Planted:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("damage", ["truncated", "planted", "not a run"])
@pytest.mark.parametrize("command", ["export", "resume"])
def test_damaged_or_crafted_checkpoints_are_one_line(run_folder, tiny_data, tmp_path, capsys, damage, command):
    run = _copy_run(run_folder, tmp_path / "run")
    path = run / CHECKPOINT
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "planted":
        state = torch.load(path, weights_only=True)
        state["extra"] = _Planted(tmp_path / "ran")
        torch.save(state, path)
    else:
        torch.save({"weights": torch.zeros(2)}, path)
    argv = (["export", str(run), "--out", str(tmp_path / "exported")] if command == "export" else
            ["train", "--data", str(tiny_data), "--out", str(run), "--resume", "--max-steps", "2", "--no-progress"])
    assert main(argv) == 2
    words = {"truncated": ["damaged or cut short"], "planted": ["more than tensors"], "not a run": ["without the step"]}
    _one_line_error(capsys, str(path), *words[damage])
    assert not (tmp_path / "ran").exists()


def test_resume_with_another_model_size_is_one_line(run_folder, tiny_data, tmp_path, capsys):
    run = _copy_run(run_folder, tmp_path / "run")
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--resume", "--max-steps", "2",
                 "--no-progress", "model.embed_dim=48"]) == 2
    _one_line_error(capsys, "does not match the checkpoint", "size mismatch")
