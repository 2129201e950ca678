"""Training speed on this machine: images per second for cpu_tiny and ViT-S/14 (RedDino recipe, random init),
the share of each step spent waiting for data with the default DataLoader workers, and the augmentation
pipeline's own rate (the data engineer's augmentation, one process). Writes benchmarks/results_train.md.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_train.py [--steps 8] [--vits-steps 3]

Data: 224 px patches of Chula-RBC-12 and BCCD from ../shared/data (`reddino-train prepare --limit 30`), or
--data DIR (a prepared folder).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NAPARI_REDDINO_DATA", ROOT / ".." / "shared" / "data"))
CASES = [  # label, config, overrides
    ("cpu_tiny (ViT 192-d x 6, 112 px, batch 32, 1 worker)", "cpu_tiny", []),
    ("ViT-S/14 RedDino recipe (224 px, 131,072 prototypes, batch 8, 1 worker)", "reddino_vits14",
     ["model.init=scratch", "model.download=false", "optim.batch_size_per_gpu=8", "train.num_workers=1",
      "train.precision=fp32"]),
]


def prepared(tmp: Path, given: str | None) -> Path:
    if given:
        return Path(given)
    from reddino_train.cli import main

    out = tmp / "prepared"
    srcs = [str(DATA / d) for d in ("chula-rbc-12", "bccd") if (DATA / d).is_dir()]
    if not srcs:
        sys.exit(f"no data at {DATA}; pass --data DIR")
    main(["prepare", *srcs, "--out", str(out), "--limit", "30"])
    return out


def run_case(cfg_name, overrides, data, run, steps):
    from reddino_train.config import load_config
    from reddino_train.train.loop import train

    cfg = load_config(cfg_name, overrides + ["train.checkpoint_every=0"])
    train(cfg, data, run, max_steps=steps, progress=False)
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))[1:]  # the first step carries start-up (workers, first allocations)
    step_s = [float(r["step_s"]) for r in rows]
    data_s = [float(r["data_s"]) for r in rows]
    batch = int(cfg["optim"]["batch_size_per_gpu"])
    return {"img_s": batch * len(rows) / sum(step_s), "step_s": statistics.median(step_s),
            "wait": sum(data_s) / sum(step_s), "steps": len(rows)}


def augmentation_rate(data: Path, size: int, seconds: float) -> float:
    from reddino_train.config import resolve_augmentation
    from reddino_train.data.augment import build_augmentation, measure_throughput
    from reddino_train.data.dataset import SmearDataset

    ds = SmearDataset(data)
    images = [ds[i] for i in range(min(len(ds), 32))]
    aug = build_augmentation(resolve_augmentation("reddino"), 2, 0, size, size // 2, seed=0)
    return measure_throughput(aug, images, seconds=seconds)


def main() -> int:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--vits-steps", type=int, default=3)
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results_train.md"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = prepared(tmp, args.data)
        results = []
        for (label, name, overrides), steps in zip(CASES, (args.steps, args.vits_steps)):
            t0 = time.perf_counter()
            r = run_case(name, overrides, data, tmp / name, steps + 1)
            results.append((label, r))
            print(label, r, f"{time.perf_counter() - t0:.0f} s", flush=True)
        aug = [(s, augmentation_rate(data, s, 8.0)) for s in (112, 224)]
    load = os.getloadavg()
    lines = [
        "# Training speed (CPU)", "",
        "```", "OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_train.py " + " ".join(sys.argv[1:]), "```", "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, fp32 (bf16 autocast measured 2-3x slower for training here); shared with other "
        f"jobs (load average {load[0]:.1f} at the end), so absolute rates are pessimistic. Data: 224 px patches "
        "of Chula-RBC-12 (Naruenatthanaset et al.) and BCCD (Shenggan/BCCD_Dataset) from ../shared/data.", "",
        "| model | img/s (train) | median step (s) | share of step waiting for data | steps timed |",
        "|---|---|---|---|---|",
    ]
    for label, r in results:
        lines.append(f"| {label} | {r['img_s']:.2f} | {r['step_s']:.2f} | {100 * r['wait']:.1f}% | {r['steps']} |")
    lines += ["", "Augmentation pipeline alone (RedDino, 2 global crops, one process, input images/s):", "",
              "| crop size | img/s |", "|---|---|"]
    lines += [f"| {s} px | {rate:.1f} |" for s, rate in aug]
    lines += ["", "img/s counts input images (each gives 2 global crops); the first step is excluded."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
