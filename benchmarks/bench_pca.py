"""PCA overlay speed and memory: end to end vs the bare backbone on the same tiles, in the same run.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_pca.py [--rounds 3] [--huge 8000] [--huge-model small]

Speed: a 1280 x 960 smear of ../shared/data/chula-rbc-12-diseases through a random-weight ViT-S/14
(224 px windows, the RedDino-small geometry). "bare backbone" = ``model.forward_features`` on the very
same window batches, pre-cut and normalised outside the timer, same autocast dtype. Rounds alternate
the two; medians are reported. Memory: the image tiled up to ``--huge`` px square, run in a child
process whose peak RSS (ru_maxrss) is read against its RSS after loading the model.
Writes benchmarks/results_pca.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "chula-rbc-12-diseases"
ARCHS = {"small": dict(arch="vit_small_patch14_dinov2"),
         # ViT-S width (384-d tokens, so the same grid memory) with one block: the memory check in minutes
         "small-depth1": dict(arch="vit_small_patch14_dinov2", depth=1)}


def smear() -> tuple[Path, np.ndarray]:
    from napari_reddino.images import read_image

    for path in sorted(DATA.glob("*/*.jpg")):
        image = read_image(path)
        if image.shape[:2] == (960, 1280):
            return path, image
    sys.exit(f"no 1280 x 960 smear under {DATA}")


def model_for(name: str):
    import torch

    from napari_reddino.models import create_model

    torch.manual_seed(0)
    kw = dict(ARCHS[name])
    return create_model(kw.pop("arch"), img_size=224, **kw).eval()


def bare_batches(image, model, batch_size):
    """The windows iter_patch_features will cut, normalised into batches, outside any timer."""
    import torch

    from napari_reddino.models import model_mean_std
    from napari_reddino.patch_features import _window, grid_shape, window_starts

    p, n = 14, 16
    gh, gw = grid_shape(image.shape, p)
    ys, _ = window_starts(gh, n, 0)
    xs, _ = window_starts(gw, n, 0)
    tiles = np.stack([_window(image, y * p, x * p, n * p) for y in ys for x in xs])
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in model_mean_std(model))
    x = (torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255 - mean) / std
    return list(torch.split(x, batch_size))


def time_bare(model, batches, amp) -> float:
    import torch

    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", dtype=amp, enabled=amp != torch.float32):
        for x in batches:
            model.forward_features(x)
    return time.perf_counter() - t0


def time_e2e(image, model, batch_size, upsample) -> float:
    from napari_reddino.pca import pca_overlay

    t0 = time.perf_counter()
    pca_overlay(image, model, batch_size=batch_size, upsample=upsample)
    return time.perf_counter() - t0


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def huge_child(size: int, model_name: str, batch_size: int) -> None:
    """Runs in a fresh process: tile the smear to size x size, run the overlay, print peak memory."""
    from napari_reddino.pca import pca_overlay

    _, small = smear()
    image = np.tile(small, (-(-size // 960), -(-size // 1280), 1))[:size, :size].copy()
    model = model_for(model_name)
    base = rss_mb()
    t0 = time.perf_counter()
    rgb = pca_overlay(image, model, batch_size=batch_size)
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(size=size, model=model_name, grid=list(rgb.shape), seconds=secs, base_mb=base,
                          peak_mb=peak, image_mb=image.nbytes / 2**20)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--huge", type=int, default=8000, help="0 skips the memory check")
    ap.add_argument("--huge-model", default="small-depth1", choices=sorted(ARCHS))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return huge_child(args.huge, args.huge_model, args.batch_size)

    import torch

    from napari_reddino.models import resolve_precision

    path, image = smear()
    model = model_for("small")
    amp = resolve_precision("auto", "cpu")
    batches = bare_batches(image, model, args.batch_size)
    time_bare(model, batches[:1], amp)  # warm-up
    time_e2e(image[:224, :224], model, args.batch_size, False)
    rows = {"bare": [], "e2e": [], "e2e_up": []}
    for _ in range(args.rounds):
        rows["bare"].append(time_bare(model, batches, amp))
        rows["e2e"].append(time_e2e(image, model, args.batch_size, False))
        rows["e2e_up"].append(time_e2e(image, model, args.batch_size, "bilinear"))
    med = {k: statistics.median(v) for k, v in rows.items()}
    peak_main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    huge = None
    if args.huge:
        cmd = [sys.executable, __file__, "--child", "--huge", str(args.huge), "--huge-model", args.huge_model,
               "--batch-size", str(args.batch_size)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        huge = json.loads(done.stdout.strip().splitlines()[-1])

    n_tiles = sum(len(b) for b in batches)
    command = "OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_pca.py " + " ".join(sys.argv[1:])
    lines = [
        "# PCA overlay benchmark", "", f"Command: `{command.strip()}`", "",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, CPU, "
        f"autocast {str(amp).replace('torch.', '')}; torch {torch.__version__}. Image: "
        f"`chula-rbc-12-diseases/{path.relative_to(DATA).as_posix()}`"
        f" (1280 x 960, Chula-RBC-12 'RBC Diseases', Naruenatthanaset et al. arXiv:2012.01321). Model: "
        f"ViT-S/14 random weights, 224 px windows ({n_tiles} windows, batch {args.batch_size}). "
        f"Median of {args.rounds} alternating rounds.", "",
        "| run | seconds | × bare backbone |", "|---|---|---|",
        f"| bare backbone (`forward_features` on the same windows) | {med['bare']:.2f} | 1.00 |",
        f"| end to end: image → grid → PCA fit → overlay (patch grid) | {med['e2e']:.2f} | "
        f"{med['e2e'] / med['bare']:.2f} |",
        f"| end to end + bilinear upsampling to 1280 x 960 | {med['e2e_up']:.2f} | "
        f"{med['e2e_up'] / med['bare']:.2f} |", "",
        f"Peak RSS of this process (model, image, all rounds): {peak_main:.0f} MB.", ""]
    if huge:
        lines += [
            f"## {huge['size']} x {huge['size']} smear (the 1280 x 960 one tiled), model `{huge['model']}`"
            + (" (ViT-S width, 384-d tokens, 1 block: same grid and per-block memory as ViT-S, 12x less compute)"
               if huge["model"] == "small-depth1" else ""),
            "", "| grid | seconds | RSS after model load | peak RSS | peak − base | image itself |",
            "|---|---|---|---|---|---|",
            f"| {huge['grid'][0]} x {huge['grid'][1]} | {huge['seconds']:.0f} | {huge['base_mb']:.0f} MB | "
            f"{huge['peak_mb']:.0f} MB | {huge['peak_mb'] - huge['base_mb']:.0f} MB | {huge['image_mb']:.0f} MB |",
            ""]
    out = Path(__file__).with_name("results_pca.md")
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
