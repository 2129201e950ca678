"""Batches depend only on (seed, step): the same with or without DataLoader workers and when started mid-run;
the optional kNN monitor writes its accuracy column."""

from __future__ import annotations

import csv

import numpy as np
import torch

from reddino_train.train.batches import build_loader
from reddino_train.train.loop import build_dataset, train


def test_batches_same_with_workers_and_from_a_later_step(tiny_cfg, tiny_data):
    cfg = tiny_cfg()
    ds = build_dataset(cfg, tiny_data)  # the data engineer's dataset + RedDino augmentation
    it = iter(build_loader(ds, cfg, rank=0, world=1, start_step=0, num_workers=0))
    first = [next(it)["global_crops"] for _ in range(4)]  # 16 samples: crosses the 12-image epoch boundary
    later = next(iter(build_loader(ds, cfg, rank=0, world=1, start_step=3, num_workers=2)))["global_crops"]
    assert torch.equal(first[3], later)
    assert not torch.equal(first[0], first[1])
    rank1 = next(iter(build_loader(ds, cfg, rank=1, world=2, start_step=0, num_workers=0)))["global_crops"]
    # rank 1 of 2 (4 samples each) holds positions 4..7 of the 8-sample global batch of step 0: exactly the
    # one-process batch of step 1
    assert torch.equal(rank1, first[1])


def test_knn_monitor_column(tiny_cfg, tiny_data, tiny_labelled, tmp_path):
    cfg = tiny_cfg(train={"knn_data": str(tiny_labelled), "knn_every": 1})
    train(cfg, tiny_data, tmp_path / "run", max_steps=1, progress=False)
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        acc = float(next(csv.DictReader(f))["knn_acc"])
    assert 0.0 <= acc <= 1.0 and np.isfinite(acc)
