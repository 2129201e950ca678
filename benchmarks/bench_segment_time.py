"""Quick CPU time of `segment_cells` per backend on every N-th Chula image (the full accuracy and time table is
`bench_segment.py`'s): for checking a speed change in a minute.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_segment_time.py --step 16 --backend learned,threshold
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from napari_reddino.images import read_image
from napari_reddino.segment import segment_cells

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chula-rbc-12" / "images"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--step", type=int, default=16)
    p.add_argument("--backend", default="learned,threshold")
    args = p.parse_args(argv)
    images = [read_image(f) for f in sorted(args.data.glob("*.jpg"))[::args.step]]
    for backend in args.backend.split(","):
        segment_cells(images[0], backend=backend)  # weights loaded, caches warm
        cpu = []
        for image in images:
            t = time.process_time()
            segment_cells(image, backend=backend)
            cpu.append(time.process_time() - t)
        print(f"{backend}: {len(images)} images, CPU s per image median {np.median(cpu):.3f}, "
              f"90% {np.percentile(cpu, 90):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
