"""Two gloo CPU processes under torchrun take the same step as one process on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import write_config
from reddino_train.cli import main
from reddino_train.train.checkpoint import load_checkpoint


@pytest.mark.slow
def test_two_process_ddp_step_equals_one_process(tiny_data, tmp_path):
    one = write_config(tmp_path / "one.yaml", optim={"batch_size_per_gpu": 4})
    two = write_config(tmp_path / "two.yaml", optim={"batch_size_per_gpu": 2})  # 2 ranks x 2 = the same 4
    assert main(["train", "--config", one, "--data", str(tiny_data), "--out", str(tmp_path / "one"),
                 "--max-steps", "2", "--no-progress"]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "reddino_train.cli", "train", "--config", two, "--data", str(tiny_data),
           "--out", str(tmp_path / "two"), "--max-steps", "2", "--no-progress"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    # a rank's own error comes before the launcher's traceback: show both
    assert done.returncode == 0, done.stderr[:3000] + "\n...\n" + done.stderr[-1000:]
    a, b = load_checkpoint(tmp_path / "one"), load_checkpoint(tmp_path / "two")
    assert a["step"] == b["step"] == 2
    for part in ("student", "teacher"):
        for k, v in a[part].items():
            assert torch.allclose(v, b[part][k], atol=1e-5), (part, k, (v - b[part][k]).abs().max())
    assert not torch.allclose(a["student"]["dino_head.mlp.0.weight"], a["teacher"]["dino_head.mlp.0.weight"])
    rows = [(tmp_path / run / "metrics.csv").read_text().splitlines() for run in ("one", "two")]
    loss_one, loss_two = (float(r[-1].split(",")[1]) for r in rows)
    assert abs(loss_one - loss_two) < 1e-4  # the logged loss is the global batch's, not rank 0's
