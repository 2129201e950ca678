"""Segmentation accuracy and speed on Chula-RBC-12 (labelled cell centres), written to results_segment.md.

Per image: hit = a labelled centre inside a mask that holds no other centre; miss = a centre in no mask;
merge = a centre in a mask holding two or more centres; extra = masks holding no centre (not every cell
is labelled, so extras are partly real cells). Images without a label file or with an empty one are skipped.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_segment.py [--step N] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from napari_reddino.images import read_image
from napari_reddino.sample_data import read_chula_centres
from napari_reddino.segment import segment

HERE = Path(__file__).resolve().parent


def score(labels: np.ndarray, centres_yx: np.ndarray) -> dict:
    yx = np.round(centres_yx).astype(int)
    yx[:, 0] = yx[:, 0].clip(0, labels.shape[0] - 1)
    yx[:, 1] = yx[:, 1].clip(0, labels.shape[1] - 1)
    m = labels[yx[:, 0], yx[:, 1]]
    counts = np.bincount(m.ravel(), minlength=int(labels.max()) + 1)
    present = np.unique(labels)
    present = present[present > 0]
    return {"centres": len(m), "hit": int(((m > 0) & (counts[m] == 1)).sum()), "miss": int((m == 0).sum()),
            "merge": int(((m > 0) & (counts[m] >= 2)).sum()), "extra": int((counts[present] == 0).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE.parent / ".." / "shared" / "data"))
    parser.add_argument("--step", type=int, default=1, help="every N-th labelled image (1 = all)")
    parser.add_argument("--out", default=str(HERE / "results_segment.md"))
    args = parser.parse_args()
    root = Path(args.data) / "chula-rbc-12"
    label_files = sorted((root / "labels").glob("*.txt"), key=lambda p: int(p.stem))[:: args.step]
    totals = {"centres": 0, "hit": 0, "miss": 0, "merge": 0, "extra": 0}
    times, n_images, sub = [], 0, {"centres": 0, "hit": 0, "merge": 0}
    for lf in label_files:
        centres, classes = read_chula_centres(lf)
        if len(centres) == 0:
            continue
        image = read_image(root / "images" / f"{lf.stem}.jpg")
        t0 = time.perf_counter()
        labels = segment(image, backend="threshold")
        times.append(time.perf_counter() - t0)
        s = score(labels, centres)
        for k in totals:
            totals[k] += s[k]
        if int(lf.stem) < 707 or int(lf.stem) > 738:  # without the elliptocyte batch (other scanner)
            keep = score(labels, centres)
            for k in sub:
                sub[k] += keep[k]
        n_images += 1
    c = totals["centres"]
    rows = [
        "# Segmentation benchmark: `threshold` backend on Chula-RBC-12",
        "",
        "Command (from the repository root):",
        "",
        f"    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_segment.py --step {args.step}",
        "",
        f"Data: `../shared/data/chula-rbc-12` (Chula-PIC-Lab/Chula-RBC-12-Dataset, Naruenatthanaset et al., "
        f"arXiv:2012.01321), {n_images} labelled 640x480 images ({'all labelled images' if args.step == 1 else f'every {args.step}th labelled image'}"
        f"), {c} labelled centres. Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, shared with other jobs while measured; single-threaded (OMP_NUM_THREADS=1).",
        "",
        "| metric | value | target |",
        "|---|---|---|",
        f"| hits (centre in exactly one mask holding no other centre) | {totals['hit'] / c:.1%} | ≥ 95% |",
        f"| misses (centre in no mask) | {totals['miss'] / c:.1%} | |",
        f"| centres in merged masks | {totals['merge'] / c:.1%} | ≤ 2% |",
        f"| extra masks per image (no labelled centre; many are unlabelled cells) | "
        f"{totals['extra'] / max(n_images, 1):.1f} | |",
        f"| hits without images 707-738 (the other scanner batch) | {sub['hit'] / max(sub['centres'], 1):.1%} | |",
        f"| time per image, median | {np.median(times):.3f} s | ≤ 0.3 s |",
        f"| time per image, 10th-90th percentile | {np.percentile(times, 10):.3f}-{np.percentile(times, 90):.3f} s | |",
        "",
        "Time is `segment(image)` only (image already decoded), wall clock.",
        "",
    ]
    Path(args.out).write_text("\n".join(rows))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
