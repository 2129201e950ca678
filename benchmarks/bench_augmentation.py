"""Augmentation throughput: input images per second through each multi-crop pipeline, one process, one thread
(what one DataLoader worker delivers), side by side in one run; plus the cost of each of RedDino's 33
colour/noise transforms on one 224 px crop. Writes benchmarks/results_augmentation.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_augmentation.py [--seconds 10]

Images: 224 px patches of Chula-RBC-12 images from ../shared/data (synthetic smears when absent).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NAPARI_REDDINO_DATA", ROOT / ".." / "shared" / "data"))
PIPELINES = [  # (label, config, n_global, n_local, global size, local size)
    ("RedDino, 2 global 224 px (reddino_vits14)", "reddino", 2, 0, 224, 98),
    ("RedDino, 2 global 112 px (cpu_tiny)", "reddino", 2, 0, 112, 56),
    ("DINOv2, 2 global 224 px", "dinov2", 2, 0, 224, 98),
    ("DINOv2, 2 global 224 + 8 local 98 px (DINOv2 default)", "dinov2", 2, 8, 224, 98),
]


def load_images(n=16):
    from napari_reddino.images import read_image

    paths = sorted((DATA / "chula-rbc-12" / "images").glob("*.jpg"))[:n]
    if paths:
        return [read_image(p)[:224, :224] for p in paths], f"{len(paths)} Chula-RBC-12 patches (224 px)"
    from napari_reddino.sample_data import synthetic_smear

    return [synthetic_smear(seed=i)[0][:224, :224] for i in range(4)], "4 synthetic smear patches (224 px)"


def per_transform_ms(image, seconds=0.4):
    from reddino_train.config import resolve_augmentation
    from reddino_train.data.augment import build_transform

    cfg = resolve_augmentation("reddino")
    out = []
    for spec in cfg["global_crops"]["transforms"][0]["SomeOf"]["transforms"]:
        t = build_transform(spec)
        t(image=image)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            t(image=image)
            n += 1
        out.append((next(iter(spec)), 1000 * (time.perf_counter() - start) / n))
    return out


def main(argv=None) -> int:
    import cv2
    import torch

    from reddino_train.config import resolve_augmentation
    from reddino_train.data.augment import build_augmentation, measure_throughput

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="measuring time per pipeline")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results_augmentation.md"))
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    images, what = load_images()
    rows = []
    for label, name, ng, nl, gs, ls in PIPELINES:
        aug = build_augmentation(resolve_augmentation(name), n_global=ng, n_local=nl, global_size=gs,
                                 local_size=ls, seed=0)
        rate = measure_throughput(aug, images, seconds=args.seconds)
        rows.append((label, rate, rate * (ng + nl)))
        print(f"{label}: {rate:.1f} img/s", file=sys.stderr)
    costs = sorted(per_transform_ms(images[0]), key=lambda r: -r[1])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import albumentations

    lines = [
        "# Augmentation throughput", "",
        "Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_augmentation.py "
        f"--seconds {args.seconds:g}`", "",
        f"One process, one thread (= one DataLoader worker); {what}; albumentations {albumentations.__version__}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} "
        "when measured (shared machine).", "",
        "| pipeline | images/s | crops/s | ms per image |", "|---|---:|---:|---:|",
        *[f"| {label} | {rate:.1f} | {crops:.1f} | {1000 / rate:.1f} |" for label, rate, crops in rows], "",
        "RedDino's 33 colour/noise transforms (4 drawn per crop), ms per 224 px crop, slowest first (measured one by one after the table above; the 4 drawn per crop add 4 x the mean "
        f"= {4 * np.mean([c for _, c in costs]):.1f} ms on average):", "",
        "| transform | ms |", "|---|---:|", *[f"| {n} | {c:.2f} |" for n, c in costs], "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
