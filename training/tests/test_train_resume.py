"""A run stopped by SIGTERM checkpoints, and resuming it gives the run that was never stopped."""

from __future__ import annotations

import csv
import signal

import torch

from reddino_train.train.checkpoint import load_checkpoint
from reddino_train.train.loop import train


def _rows(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_sigterm_checkpoint_then_resume_equals_uninterrupted(tiny_cfg, tiny_data, tmp_path):
    cfg = tiny_cfg(**{"loss": {"centering": "centering"}})  # the momentum centre is state to restore too
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    train(cfg, tiny_data, straight, max_steps=4, progress=False)

    def kill_at_2(step, teacher, row):
        if step == 2:
            signal.raise_signal(signal.SIGTERM)

    train(cfg, tiny_data, killed, max_steps=4, on_step=kill_at_2, progress=False)
    assert load_checkpoint(killed)["step"] == 2  # stopped after the step in flight, with a checkpoint
    assert len(_rows(killed)) == 2
    train(cfg, tiny_data, killed, resume=True, max_steps=4, progress=False)

    a, b = load_checkpoint(straight), load_checkpoint(killed)
    assert b["step"] == 4
    for part in ("student", "teacher"):
        for k, v in a[part].items():
            assert torch.allclose(v, b[part][k], atol=1e-6), (part, k)
    assert torch.allclose(a["center_cls"], b["center_cls"])
    assert [r["step"] for r in _rows(killed)] == ["1", "2", "3", "4"]
    for ra, rb in zip(_rows(straight), _rows(killed)):
        assert float(ra["loss"]) == float(rb["loss"]) or abs(float(ra["loss"]) - float(rb["loss"])) < 1e-5
