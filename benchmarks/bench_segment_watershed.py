"""The learned segmenter's watershed setting, old and new side by side in one process: CPU seconds per Chula
image (median of 20), so a slower or busier host shows in both rows alike.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_segment_watershed.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import skimage.segmentation as sks

from napari_reddino.images import read_image
from napari_reddino.segment import segment_cells, threshold

SETTINGS = [("0.7, 4-connected (before)", 0.7, 1), ("1.0, 8-connected (now)", 1.0, 2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    args = parser.parse_args()
    images = [read_image(p) for p in sorted(Path(args.data, "chula-rbc-12", "images").glob("*.jpg"))[:40:2]]
    flood, weight = sks.watershed, threshold.TOWARD_CENTRES
    try:
        for label, w, connectivity in SETTINGS * 2:  # twice, alternating, so drift in the host shows
            threshold.TOWARD_CENTRES = w
            sks.watershed = lambda *a, connectivity=1, _c=connectivity, **k: flood(*a, connectivity=_c, **k)
            for backend in ("learned", "threshold"):
                seconds = []
                for image in images:
                    t0 = time.process_time()
                    segment_cells(image, backend)
                    seconds.append(time.process_time() - t0)
                print(f"{label}: {backend} {np.median(seconds):.3f} s", flush=True)
    finally:
        sks.watershed, threshold.TOWARD_CENTRES = flood, weight


if __name__ == "__main__":
    main()
