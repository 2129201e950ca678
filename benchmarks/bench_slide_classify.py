"""`slide --classifier` classifies each tile's red cells with sizes relative to the tile's median red cell; how often
is that the class the whole field classified at once gives (`pipeline.predict_cells`, the same labels)?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_slide_classify.py --tile 256

Five Chula-RBC-12 development fields (640x480), each written as an OME-Zarr slide and segmented tile by tile with
the threshold backend; prints one line: red cells of the same class, of all.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chula-rbc-12" / "images"
FIELDS = [101, 102, 103, 105, 106]


def main(argv=None) -> int:
    from napari_reddino.images import read_image
    from napari_reddino.pipeline import predict_cells
    from napari_reddino.progress import run
    from napari_reddino.slides import ngff, tiled

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tile", type=int, default=256)
    args = p.parse_args(argv)
    same = total = 0
    for i in FIELDS:
        image = read_image(DATA / f"{i}.jpg")
        with tempfile.TemporaryDirectory() as d:
            path = ngff.write_image(Path(d) / "f.zarr", image, chunk=128, levels=1)
            run(tiled.iter_segment_slide(path, Path(d) / "out", "f", tile=args.tile, backend="threshold",
                                         classifier="morphology"))
            tiles = pd.read_parquet(Path(d) / "out" / "f_cells.parquet")
            labels = ngff.read_multiscales(Path(d) / "out" / "f_labels.zarr").yx(0).compute()
            levels, factors = tiled.open_levels(str(path), 0)
            whole = tiles.drop(columns=["prediction", "confidence"])
            whole.attrs["diameter"] = tiled.measure_slide(levels, factors, args.tile)[1]
            predict_cells(image, labels, whole)
            red = tiles["type"] == "rbc"
            same += int((tiles.loc[red, "prediction"] == whole.loc[red, "prediction"]).sum())
            total += int(red.sum())
            tiled.open_levels.cache_clear()
    print(f"--tile {args.tile}: {same} of {total} red cells the class of the whole field ({100 * same / total:.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
