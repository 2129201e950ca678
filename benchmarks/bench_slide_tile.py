"""Reading one tile of a big slide (slides/read.py): time and the process's peak memory, per format.

    python benchmarks/bench_slide_tile.py [--size 10000] [--folder /tmp/reddino-bench-slide]

Composes (once, kept in --folder) a SIZE x SIZE slide from four Chula disease smears as OME-Zarr and as a
zlib-tiled (512 px) pyramidal OME-TIFF, then, in a fresh process per format, opens it and reads a 1024 x 1024
tile from its middle. The peak RSS is the whole process's (Python, numpy, dask, zarr and the tile).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

MEASURE = """
import resource, sys, time
t0 = time.perf_counter()
from napari_reddino.slides.read import open_slide
s = open_slide(sys.argv[1]); t1 = time.perf_counter()
h, w = s.shape(0)
tile = s.data[h // 2: h // 2 + 1024, w // 2: w // 2 + 1024].compute(); t2 = time.perf_counter()
print(f"| {s.format} | {h:,} x {w:,}, {len(s.levels)} levels | {t1 - t0:.2f} | {t2 - t1:.2f} | "
      f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} |")
"""


def make(folder: Path, size: int) -> list[Path]:
    import numpy as np
    import tifffile

    from napari_reddino.images import read_image
    from napari_reddino.slides import synthetic
    from napari_reddino.slides.read import open_slide

    data = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "chula-rbc-12-diseases" / "he"
    zarr_path, tiff_path = folder / f"slide{size}.zarr", folder / f"slide{size}.ome.tif"
    if not zarr_path.exists():
        fields = [read_image(p) for p in sorted(data.glob("*.jpg"))[:4]]
        synthetic.compose_slide(zarr_path, fields, size, pixel_size_um=0.1)
    if not tiff_path.exists():
        slide = open_slide(zarr_path)
        with tifffile.TiffWriter(tiff_path, bigtiff=True, ome=True) as tw:
            n = len(slide.levels) - 1
            tw.write(np.asarray(slide.levels[0]), subifds=n, tile=(512, 512), photometric="rgb",
                     compression="zlib", metadata={"PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1})
            for k in range(1, n + 1):
                tw.write(np.asarray(slide.levels[k]), subfiletype=1, tile=(512, 512), photometric="rgb",
                         compression="zlib")
    return [zarr_path, tiff_path]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/reddino-bench-slide"))
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    print("| format | slide | open (s, with imports) | 1024² tile (s) | peak RSS (MB) |\n|---|---|---|---|---|")
    for path in make(args.folder, args.size):
        subprocess.run([sys.executable, "-c", MEASURE, str(path)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
