"""A whole slide's PCA overlay tile by tile (slides/overlay.py) against the in-memory overlay (pca.py), by size.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_slide_overlay.py [--sizes 1500 3000] [--model demo]

Slides: OME-Zarr mosaics of Chula-RBC-12 fields (../shared/data, composed by slides/synthetic.py, not timed).
Each run is its own child process; peak RSS is the child's ru_maxrss (the model, torch and the libraries
included). "in memory": the slide read whole and ``pca.iter_pca_overlay(resolution="auto")`` on it (the dock's
and ``napari-reddino pca``'s path; its enlargement is capped at 64 Mpx, so large slides get less than the
6 patches a cell). "tiled": ``slides.overlay.iter_slide_overlay`` (6 patches a cell on any size; tiles written,
assembled into ``_pca.zarr``). Writes benchmarks/results_slide_overlay.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHULA = ROOT / ".." / "shared" / "data" / "chula-rbc-12" / "images"
FIELDS = (1, 2, 3, 5, 10, 11)

CHILD = r"""
import json, resource, sys, time
import numpy as np
from napari_reddino.progress import run
from napari_reddino.slides import ngff, overlay
mode, path, out, model = sys.argv[1:5]
t = time.perf_counter()
if mode == "tiled":
    target = run(overlay.iter_slide_overlay(overlay.Source(path, 0), model, out, "slide"))
    ms = ngff.read_multiscales(target)
    grid, factor = ms.levels[0].shape[1:], 14 / ms.scales[0][-1]
else:
    from napari_reddino.models import load_model
    from napari_reddino.pca import iter_pca_overlay
    image = np.asarray(ngff.read_multiscales(path).yx(0))
    result = run(iter_pca_overlay(image, load_model(model)))
    grid, factor = result.rgb.shape[:2], result.factor[0]
print(json.dumps({"seconds": time.perf_counter() - t, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "grid": [int(g) for g in grid], "factor": float(factor)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1500, 3000])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results_slide_overlay.md"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import numpy as np
    from PIL import Image

    from napari_reddino.slides import synthetic

    fields = [np.asarray(Image.open(CHULA / f"{i}.jpg").convert("RGB")) for i in FIELDS]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = synthetic.compose_slide(Path(tmp) / f"slide{size}.zarr", fields, size)
            for mode in ("in memory", "tiled"):
                out = Path(tmp) / f"out{size}{mode[0]}"
                out.mkdir()
                done = subprocess.run([sys.executable, "-c", CHILD, mode.split()[0] if mode == "tiled" else "memory",
                                       str(path), str(out), args.model], capture_output=True, text=True,
                                      env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")})
                if done.returncode:
                    raise SystemExit(done.stderr[-3000:])
                rows.append({"size": size, "mode": mode, **json.loads(done.stdout.strip().splitlines()[-1])})
                print(rows[-1], flush=True)
    lines = ["# A whole slide's PCA overlay: tile by tile vs in memory", "",
             f"Command: `OMP_NUM_THREADS={__import__('os').environ.get('OMP_NUM_THREADS', '')} .venv/bin/python benchmarks/bench_slide_overlay.py --sizes "
             f"{' '.join(map(str, args.sizes))} --model {args.model}`", "",
             f"Machine: {platform.machine()}, 2 cores, CPU. Slides: OME-Zarr mosaics of Chula-RBC-12 fields "
             f"{', '.join(map(str, FIELDS))} (640 x 480, ~39 px red cells). Model: `{args.model}`. Each run in its own "
             "process; peak RSS includes torch and the model.", "",
             "| slide | path | seconds | peak RSS (MB) | enlargement | overlay grid |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']:,} x {r['size']:,} | {r['mode']} | {r['seconds']:.1f} | {r['peak_mb']:.0f} | "
                     f"{r['factor']:.2f}x | {r['grid'][0]} x {r['grid'][1]} |")
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
