"""The per-step metrics CSV (one row per optimiser step) and the CLS feature rank."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

COLUMNS = ["step", "loss", "dino_loss", "ibot_loss", "koleo_loss", "lr", "wd", "momentum", "teacher_temp",
           "target_entropy", "cls_rank", "knn_acc", "knn_wf1",
           "data_s", "step_s", "img_per_s"]


@torch.no_grad()
def effective_rank(features: torch.Tensor) -> float:
    """RankMe effective rank exp(H(σ/Σσ)) of a (N, D) batch: near 1 when the features collapse, up to min(N, D)."""
    s = torch.linalg.svdvals(features.detach().float())
    p = s / s.sum().clamp(min=1e-12) + 1e-12
    return round(float(torch.exp(-(p * p.log()).sum())), 3)


@torch.no_grad()
def mean_entropy(probs: torch.Tensor) -> float:
    """Mean entropy (nats) of the rows of a (N, K) probability matrix. For the teacher's CLS targets, ln K means
    every image gets the uniform target: DINO's collapsed state, where the CLS loss teaches nothing."""
    p = probs.float().clamp(min=1e-12)
    return float(-(p * p.log()).sum(dim=-1).mean())


class MetricsCSV:
    """Appends rows; on resume drops rows past the checkpoint's step (written after it, before the kill). The
    kept rows are put back atomically before anything is appended: a kill at any moment leaves every row up
    to the checkpoint."""

    def __init__(self, path: Path, truncate_after: int = 0):
        from napari_reddino.atomic import atomic_path

        self.path = Path(path)
        rows = []
        if truncate_after and self.path.is_file():
            with self.path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= truncate_after]
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        self._f = self.path.open("a", newline="")
        self._w = csv.DictWriter(self._f, fieldnames=COLUMNS, extrasaction="ignore")

    def write(self, row: dict) -> None:
        self._w.writerow(row)
        self._f.flush()

    def close(self) -> None:
        self._f.close()
