"""Peak memory and time of `napari-reddino slide` on synthetic whole slides composed from Chula-RBC-12 fields
(benchmarks/results_slide.md): does peak memory stay that of a tile whatever the slide's size?

Each step runs in its own process under /usr/bin/time -v (peak RSS is that process's, dask's threads included):
first the slide is composed (slides/synthetic.py, OME-Zarr), then segmented tile by tile.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_slide.py --size 10000 --backend threshold
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_slide.py --size 40000 --smears-in 10000
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_slide.py --size 4096 --features --model demo

--smears-in N puts the smears in the top-left N x N pixels only and blank slide (the median of the fields'
background colours) elsewhere, as a scan of a smear often is: the whole slide is read, measured, tiled and written, at a
fraction of the segmentation time.

Prints one Markdown row per step (and appends it to WORK/rows.md); the slides stay in WORK for a re-run.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chula-rbc-12" / "images"
# development fields of one glass colour (1, 10 and 11 have a darker, bluer glass: in a mosaic with the others,
# measured once for the slide, their whole field reads as stain; 707-738 are another batch too)
FIELDS = [101, 102, 103, 105, 106, 107, 109, 110, 111, 113, 114, 115, 117, 118, 119, 121]


def compose(path, fields, size: int, region: int):
    """``synthetic.compose_slide``, with smears in the top-left ``region`` pixels only (blank slide elsewhere)."""
    import dask.array as da
    import numpy as np

    from napari_reddino.slides import ngff, synthetic
    from napari_reddino.segment.threshold import estimate_background

    if region >= size:
        return synthetic.compose_slide(path, fields, size)
    smears = synthetic.mosaic(fields, (region, region))
    glass = np.median([estimate_background(f.astype(np.float32) / 255) for f in fields], axis=0)
    blank = np.round(255 * glass).astype(np.uint8)  # the smears' own glass colour
    blank = da.broadcast_to(da.from_array(blank, chunks=3), (size, size, 3)).rechunk((ngff.CHUNK, ngff.CHUNK, 3))
    slide = da.concatenate([da.concatenate([smears, blank[:region, region:]], axis=1), blank[region:]], axis=0)
    return ngff.write_image(path, slide.rechunk((ngff.CHUNK, ngff.CHUNK, 3)), name=Path(path).stem)


def timed(cmd: list[str], cwd=None) -> dict:
    """Run ``cmd`` under /usr/bin/time -v; its wall time, CPU time, peak RSS and last output line."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, cwd=cwd)
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    err = proc.stderr

    def field(name):
        return re.search(rf"{re.escape(name)}: (.+)", err).group(1).strip()

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
    seconds = sum(float(v) * 60 ** i for i, v in enumerate(reversed(wall)))
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    lines = [line for line in proc.stdout.splitlines() if "objects in" in line or "composed" in line]
    return {"wall": seconds, "cpu": cpu, "rss_mb": int(field("Maximum resident set size (kbytes)")) / 1024,
            "said": lines[-1] if lines else ""}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, required=True, help="slide side in pixels")
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_slide"))
    p.add_argument("--backend", default="threshold")
    p.add_argument("--tile", type=int, default=2048)
    p.add_argument("--smears-in", type=int, default=None, help="smears in the top-left N x N only")
    p.add_argument("--features", action="store_true")
    p.add_argument("--model", default="demo")
    p.add_argument("--classifier", default=None, help="slide --classifier (a shipped classifier's name)")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    region = args.smears_in or args.size
    slide = args.work / f"slide_{args.size}{f'_smears{region}' if region < args.size else ''}.zarr"
    py = sys.executable
    rows = []
    where = "smears everywhere" if region == args.size else f"smears in {region:,}², blank elsewhere"
    if not slide.is_dir():
        code = ("import sys; from napari_reddino.images import read_image; from napari_reddino.slides import synthetic;"
                f"fields=[read_image('{DATA}/'+str(i)+'.jpg') for i in {FIELDS}];"
                f"compose('{slide}', fields, {args.size}, {region}); print('composed')")
        code = f"from bench_slide import compose; {code}"
        r = timed([py, "-c", code], cwd=Path(__file__).parent)
        rows.append(f"| {args.size:,}² | compose (OME-Zarr) | {where} | {r['wall']:.0f} s | {r['cpu']:.0f} s | "
                    f"{r['rss_mb']:.0f} MB | |")
    flags = (["--features", "--model", args.model] if args.features else []) + \
        (["--classifier", args.classifier] if args.classifier else [])
    out = args.work / f"out_{slide.stem}_{args.backend}{'_features' if args.features else ''}" \
        f"{'_' + args.classifier if args.classifier else ''}"
    cmd = [py, "-m", "napari_reddino.cli", "slide", str(slide), "--out", str(out), "--backend", args.backend,
           "--tile", str(args.tile)] + flags
    t = time.time()
    r = timed(cmd)
    said = r["said"].split(" → ")[0].split(": ", 1)[-1] + f" ({where})"
    shown = " ".join(f for f in flags if f not in ("--model", args.model))
    rows.append(f"| {args.size:,}² | slide --backend {args.backend}{' ' + shown if shown else ''} | "
                f"{said} | {r['wall']:.0f} s | {r['cpu']:.0f} s | {r['rss_mb']:.0f} MB | "
                f"{(time.time() - t) / (args.size ** 2 / 1e6):.2f} s/Mpx |")
    for row in rows:
        print(row)
        with open(args.work / "rows.md", "a") as fh:
            fh.write(row + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
