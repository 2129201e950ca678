"""PCA overlay speed and memory: end to end vs the bare backbone on the same tiles, and the overlay at the
resolution of the cells (auto enlargement) vs the model's own scale, in the same run.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_pca.py [--rounds 3] [--huge 8000] [--huge-model small]

Speed: a 1280 x 960 smear of ../shared/data/chula-rbc-12-diseases through a random-weight ViT-S/14
(224 px windows, the RedDino-small geometry). "bare backbone" = ``model.forward_features`` on the very
same window batches, pre-cut and normalised outside the timer, same autocast dtype. Rounds alternate
the two; medians are reported.
Cell resolution: a 640 x 480 Chula-RBC-12 field through the same ViT-S and the shipped demo model (112 px),
``resolution="off"`` (1x, the overlay before issue 17) and ``"auto"`` (a red cell spans 6 patches), rounds
alternating; the check for cells and the diameter estimate are inside the timer.
Memory: each configuration once more in a child process whose peak RSS (VmHWM, reset after loading the model
and the image) is read against its RSS at that point; the 1280 x 960 smear tiled up to ``--huge`` px square (off and
auto) and to half that size at 2x (enlarged to the cap).
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
SHARED = ROOT / ".." / "shared" / "data"
DATA = SHARED / "chula-rbc-12-diseases"
CHULA = SHARED / "chula-rbc-12" / "images" / "1.jpg"
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

    from napari_reddino.models import create_model, load_model

    if name == "demo":
        return load_model("demo")
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


def time_e2e(image, model, batch_size, upsample, resolution="off") -> float:
    from napari_reddino.pca import pca_overlay

    t0 = time.perf_counter()
    pca_overlay(image, model, batch_size=batch_size, upsample=upsample, resolution=resolution,
                require_cells=resolution != "off")
    return time.perf_counter() - t0


def rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field)) / 1024


def reset_peak() -> None:
    """Start the peak (VmHWM) again from the current RSS, so loading torch and the model does not set it."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def child_image(which: str) -> np.ndarray:
    """``chula``, or ``tiled:N``: the 1280 x 960 smear tiled to N x N."""
    from napari_reddino.images import read_image

    if which == "chula":
        return read_image(CHULA)
    size = int(which.split(":")[1])
    _, small = smear()
    return np.tile(small, (-(-size // 960), -(-size // 1280), 1))[:size, :size].copy()


def memory_child(which: str, model_name: str, resolution: str, batch_size: int) -> None:
    """Runs in a fresh process: one overlay; its time, enlargement and peak memory as one JSON line."""
    from napari_reddino.progress import run
    from napari_reddino.pca import iter_pca_overlay

    image = child_image(which)
    model = model_for(model_name)
    res = resolution if resolution in ("off", "auto") else float(resolution)
    base = rss_mb()
    reset_peak()
    t0 = time.perf_counter()
    overlay = run(iter_pca_overlay(image, model, batch_size=batch_size, resolution=res,
                                   require_cells=res != "off"))
    secs = time.perf_counter() - t0
    peak = rss_mb("VmHWM")
    print(json.dumps(dict(image=which, shape=list(image.shape[:2]), model=model_name, resolution=resolution,
                          factor=overlay.factor[0], grid=list(overlay.rgb.shape[:2]), seconds=secs,
                          base_mb=base, peak_mb=peak, image_mb=image.nbytes / 2**20)))


def in_child(which: str, model_name: str, resolution, batch_size: int) -> dict:
    cmd = [sys.executable, __file__, "--child", which, "--child-model", model_name, "--child-resolution",
           str(resolution), "--batch-size", str(batch_size)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cell_resolution_rows(rounds: int, batch_size: int) -> list[str]:
    """Chula 640 x 480, both models: off vs auto, time (alternating rounds, median) and peak memory."""
    from napari_reddino.images import read_image
    from napari_reddino.pca_resolution import look_for_cells

    image = read_image(CHULA)
    seen = look_for_cells(image)
    lines = ["## Cell resolution: the overlay at 1x (before) and auto (a red cell spans 6 patches)", "",
             f"Image: `chula-rbc-12/images/{CHULA.name}` (640 x 480, Chula-RBC-12, Naruenatthanaset et al. "
             f"arXiv:2012.01321); red cells measured {seen.diameter:.1f} px across. Median of {rounds} alternating "
             "rounds (the check for cells and the diameter estimate included); peak memory from one more run of "
             "each in a fresh process (peak RSS during the overlay − RSS before it, with the model and the image loaded).", "",
             "| model | resolution | enlargement | patch grid | seconds | × 1x | peak − base |",
             "|---|---|---|---|---|---|---|"]
    for name, label in (("small", "ViT-S/14 random (RedDino-small geometry, 224 px windows)"),
                        ("demo", "demo (shipped, 112 px windows)")):
        model = model_for(name)
        time_e2e(image[:224, :224], model, batch_size, False)  # warm-up
        times = {"off": [], "auto": []}
        for _ in range(rounds):
            for res in times:
                times[res].append(time_e2e(image, model, batch_size, False, res))
        med = {k: statistics.median(v) for k, v in times.items()}
        for res in times:
            mem = in_child("chula", name, res, batch_size)
            lines.append(f"| {label} | {res} | {mem['factor']:.2f}x | {mem['grid'][0]} x {mem['grid'][1]} | "
                         f"{med[res]:.2f} | {med[res] / med['off']:.2f} | {mem['peak_mb'] - mem['base_mb']:.0f} MB |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--huge", type=int, default=8000, help="0 skips the memory check")
    ap.add_argument("--huge-model", default="small-depth1", choices=sorted(ARCHS))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-model", default="small", help=argparse.SUPPRESS)
    ap.add_argument("--child-resolution", default="off", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return memory_child(args.child, args.child_model, args.child_resolution, args.batch_size)

    import torch

    from napari_reddino.runtime import resolve_precision

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

    cells = cell_resolution_rows(args.rounds, args.batch_size)
    huge = []
    if args.huge:
        half = args.huge // 2
        huge = [in_child(f"tiled:{args.huge}", args.huge_model, "off", args.batch_size),
                in_child(f"tiled:{args.huge}", args.huge_model, "auto", args.batch_size),
                in_child(f"tiled:{half}", args.huge_model, "off", args.batch_size),
                in_child(f"tiled:{half}", args.huge_model, "2", args.batch_size)]

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
    lines += cells
    if huge:
        lines += [
            f"## Large smears (the 1280 x 960 one tiled), model `{args.huge_model}`"
            + (" (ViT-S width, 384-d tokens, 1 block: same grid and per-block memory as ViT-S, 12x less compute)"
               if args.huge_model == "small-depth1" else ""), "",
            "The enlarged image is capped at 64 million pixels, so 8000 x 8000 stays at 1x whatever auto wants, "
            "and 4000 x 4000 at 2x is enlarged to exactly the cap.", "",
            "| image | resolution | enlargement | grid | seconds | × 1x | RSS after model load | peak RSS | "
            "peak − base | image itself |", "|---|---|---|---|---|---|---|---|---|---|"]
        for h in huge:
            ref = next(r for r in huge if r["image"] == h["image"] and r["resolution"] == "off")
            lines.append(
                f"| {h['shape'][0]} x {h['shape'][1]} | {h['resolution']} | {h['factor']:.2f}x | {h['grid'][0]} x "
                f"{h['grid'][1]} | {h['seconds']:.0f} | {h['seconds'] / ref['seconds']:.2f} | {h['base_mb']:.0f} MB | "
                f"{h['peak_mb']:.0f} MB | {h['peak_mb'] - h['base_mb']:.0f} MB | {h['image_mb']:.0f} MB |")
        lines.append("")
    out = Path(__file__).with_name("results_pca.md")
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
