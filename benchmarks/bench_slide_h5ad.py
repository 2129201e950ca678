"""The pooled `cells.h5ad` of `slide` (slides/pooled.py): CPU time and the most Python-allocated memory
(tracemalloc: numpy's arrays included) of writing it from one slide's Parquet files pooled `--times` times.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_slide_h5ad.py \
        /tmp/bench_slide_exports/out_slide_10000_threshold_features_morphology slide_10000 --times 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path


def main(argv=None) -> int:
    from napari_reddino.slides.pooled import SlideCells, write_slides_h5ad

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="a slide --features output folder")
    p.add_argument("stem")
    p.add_argument("--times", type=int, default=3)
    args = p.parse_args(argv)
    slide = SlideCells(args.stem, args.out / f"{args.stem}_cells.parquet", args.out / f"{args.stem}_features.parquet")
    with tempfile.TemporaryDirectory() as d:
        tracemalloc.start()
        t = time.process_time()
        n = write_slides_h5ad(Path(d) / "cells.h5ad", [slide] * args.times, {})
        cpu, peak = time.process_time() - t, tracemalloc.get_traced_memory()[1]
        size = (Path(d) / "cells.h5ad").stat().st_size
    print(f"{n} cells: {cpu:.1f} s CPU, at most {peak / 1e6:.0f} MB allocated, file {size / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
