"""FSDP: two gloo CPU processes with student and teacher sharded take the same steps as one process on the same
global batch, checkpoint whole weights, and resume from their own checkpoint."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

from conftest import write_config
from reddino_train.cli import main
from reddino_train.train.checkpoint import load_checkpoint


def _torchrun(config, data, out, *args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "reddino_train.cli", "train", "--config", config, "--data", str(data), "--out", str(out),
           "--no-progress", *args]
    done = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _same_weights(a, b, atol=1e-5):
    for part in ("student", "teacher"):
        assert a[part].keys() == b[part].keys()
        for k, v in a[part].items():
            assert torch.allclose(v, b[part][k], atol=atol), (part, k, (v - b[part][k]).abs().max())


def _column(run, name):
    with open(run / "metrics.csv", newline="") as f:
        return [float(r[name]) for r in csv.DictReader(f) if r[name] != ""]


@pytest.mark.slow
def test_two_process_fsdp_equals_one_process_and_resumes(tiny_data, tiny_labelled, tmp_path, capsys):
    knn = {"knn_data": str(tiny_labelled), "knn_every": 2}  # the monitor reads the sharded teacher on all ranks
    one = write_config(tmp_path / "one.yaml", optim={"batch_size_per_gpu": 4}, train=knn)
    two = write_config(tmp_path / "two.yaml", optim={"batch_size_per_gpu": 2},  # 2 ranks x 2 = the same 4
                       train={**knn, "distributed": "fsdp"})
    assert main(["train", "--config", one, "--data", str(tiny_data), "--out", str(tmp_path / "one"),
                 "--max-steps", "2", "--no-progress"]) == 0
    _torchrun(two, tiny_data, tmp_path / "two", "--max-steps", "2")

    a, b = load_checkpoint(tmp_path / "one"), load_checkpoint(tmp_path / "two")
    assert a["step"] == b["step"] == 2 and b["sharding"] == "fsdp"
    _same_weights(a, b)  # whole tensors in the checkpoint, equal to the unsharded run's
    assert not torch.allclose(a["student"]["dino_head.mlp.0.weight"], a["teacher"]["dino_head.mlp.0.weight"])
    assert _column(tmp_path / "two", "knn_acc") == pytest.approx(_column(tmp_path / "one", "knn_acc"))
    assert _column(tmp_path / "two", "loss") == pytest.approx(_column(tmp_path / "one", "loss"), abs=1e-4)

    # resume: the sharded AdamW state goes back to the right shards, so step 3 is the unsharded run's step 3
    assert main(["train", "--config", one, "--data", str(tiny_data), "--out", str(tmp_path / "one"),
                 "--max-steps", "3", "--no-progress", "--resume"]) == 0
    _torchrun(two, tiny_data, tmp_path / "two", "--max-steps", "3", "--resume")
    a, b = load_checkpoint(tmp_path / "one"), load_checkpoint(tmp_path / "two")
    assert a["step"] == b["step"] == 3
    _same_weights(a, b)

    # a sharded run's checkpoint resumed in one plain process: refused with a one-line message, nothing written
    before = (tmp_path / "two" / "checkpoint.pt").read_bytes()
    assert main(["train", "--config", one, "--data", str(tiny_data), "--out", str(tmp_path / "two"),
                 "--max-steps", "4", "--no-progress", "--resume"]) == 2
    assert "resume it the same way" in capsys.readouterr().err
    assert (tmp_path / "two" / "checkpoint.pt").read_bytes() == before
