"""Per-cell embedding speed: napari-reddino's batched path vs the bare backbone vs RedDino's notebook loop.

For ViT-S and ViT-B (DINOv2 architecture, 224 px, random weights) on the same synthetic smear, measured
side by side in one run:
  end-to-end   ``embed_cells``: cell table, crops, resize in a background thread, batches, autocast
  bare         ``model(x)`` alone on ready-made normalised batches of the same size and precision
  reference    RedDino's usage notebook per cell: PIL crop → Resize((224, 224)) → ToTensor → Normalize →
               model, batch 1, fp32 (under ``torch.no_grad``, which the notebook omits: kinder to it)
Peak memory: peak resident memory above the level before each phase (CPU), or peak CUDA allocation.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_embed.py --cells 64 --out benchmarks/results_embed.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np


def synthetic_cells(n: int, seed: int = 0):
    """A smear-like image with ``n`` disk cells of 35-45 px diameter (Chula's cell size) on a grid."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    step = 64
    image = rng.integers(180, 230, size=(side * step, side * step, 3), dtype=np.uint8)
    labels = np.zeros(image.shape[:2], np.int32)
    yy, xx = np.mgrid[:step, :step]
    for i in range(n):
        r = rng.uniform(17.5, 22.5)
        cy, cx = step / 2 + rng.uniform(-4, 4), step / 2 + rng.uniform(-4, 4)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        y0, x0 = (i // side) * step, (i % side) * step
        labels[y0:y0 + step, x0:x0 + step][disk] = i + 1
        image[y0:y0 + step, x0:x0 + step][disk] = rng.integers(90, 170, size=(int(disk.sum()), 3))
    return image, labels


class PeakMemory:
    """Peak extra memory during a block: CUDA allocator peak, or sampled RSS above the starting level."""

    def __init__(self, device: str):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = self.peak = self._rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            self.extra = torch.cuda.max_memory_allocated() - self.base
        else:
            self._stop.set()
            self._thread.join()
            self.extra = max(self.peak, self._rss()) - self.base
        return False


def timed(fn, device):
    import torch

    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return out, seconds, mem.extra


def bench_model(arch, image, labels, device, precision, batch_size, ref_cells):
    import torch
    from PIL import Image
    from torchvision import transforms

    from napari_reddino.embed import embed_cells, to_model_input
    from napari_reddino.models import create_model
    from napari_reddino.runtime import resolve_precision

    torch.manual_seed(0)
    model = create_model(arch, img_size=224).eval().to(device)
    dtype = resolve_precision(precision, device)
    n = int(labels.max())
    embed_cells(image[:128, :128], labels[:128, :128], model, batch_size=batch_size, precision=precision)  # warm-up

    (_, emb), t_e2e, m_e2e = timed(lambda: embed_cells(image, labels, model, batch_size=batch_size,
                                                       precision=precision), device)
    assert emb.shape[0] == n

    rng = np.random.default_rng(1)
    batches = [to_model_input(rng.integers(0, 256, (min(batch_size, n - i), 224, 224, 3), dtype=np.uint8),
                              model) for i in range(0, n, batch_size)]

    def bare():
        with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
            for x in batches:
                model(x)
    _, t_bare, m_bare = timed(bare, device)
    batches.clear()  # free the inputs before the reference run

    tf = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                             transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    from scipy import ndimage

    boxes = ndimage.find_objects(labels)[:ref_cells]  # batch 1: a subset gives the same per-cell rate
    pil = Image.fromarray(image)

    def reference():
        with torch.no_grad():
            for sl in boxes:
                crop = pil.crop((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop))
                model(tf(crop).unsqueeze(0).to(device))
    _, t_ref, m_ref = timed(reference, device)
    return dict(arch=arch, precision=str(dtype).replace("torch.", ""), batch=batch_size, cells=n,
                e2e=n / t_e2e, bare=n / t_bare, ref=len(boxes) / t_ref, ref_cells=len(boxes),
                m_e2e=m_e2e, m_bare=m_bare, m_ref=m_ref)


def main(argv=None):
    import torch

    from napari_reddino.runtime import cpu_supports_bf16, resolve_device

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=256)
    p.add_argument("--ref-cells", type=int, default=16, help="cells timed in the (slow) reference loop")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--device", default="auto")
    p.add_argument("--models", nargs="+", default=["vit_small_patch14_dinov2", "vit_base_patch14_dinov2"])
    p.add_argument("--out", default=None, help="write the markdown table here")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    image, labels = synthetic_cells(args.cells)
    load = os.getloadavg()[0]
    rows = []
    for arch in args.models:
        rows.append(bench_model(arch, image, labels, device, args.precision, args.batch_size, args.ref_cells))
        print(rows[-1], file=sys.stderr)

    mb = 2 ** 20
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    hw = torch.cuda.get_device_name() if device == "cuda" else f"{cpu}, {torch.get_num_threads()} torch threads"
    lines = [
        "# Per-cell embedding speed", "",
        "Command: `" + " ".join(["OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "(unset)"),
                                 ".venv/bin/python benchmarks/bench_embed.py"] + (argv or sys.argv[1:])) + "`", "",
        f"Device: {device} ({hw}); torch {torch.__version__}; native CPU bf16: {cpu_supports_bf16()}. "
        f"Load average at start {load:.1f} (shared machine). Same {args.cells} synthetic cells (35-45 px) for every column, random weights, 224 px input.", "",
        "| model | precision | batch | end-to-end cells/s | bare forward img/s | end-to-end / bare (goal ≥ 0.9) "
        "| reference loop cells/s (fp32, batch 1) | end-to-end / reference (goal ≥ 2) "
        "| peak extra memory MB: end-to-end / bare / reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['precision']} | {r['batch']} | {r['e2e']:.2f} | {r['bare']:.2f} | "
                     f"{r['e2e'] / r['bare']:.2f} | {r['ref']:.3f} | {r['e2e'] / r['ref']:.1f} | "
                     f"{r['m_e2e'] / mb:.0f} / {r['m_bare'] / mb:.0f} / {r['m_ref'] / mb:.0f} |")
    lines += ["", f"Load average after the run: {os.getloadavg()[0]:.1f}. On a shared CPU the phases of one row run "
              "minutes apart, so contention from other processes moves the ratios; compare rows of one run only.",
              "", "End-to-end includes the cell table, cropping, PIL resize (background thread), normalisation "
              "and copying the embeddings back; bare is the model call alone on ready batches. The reference "
              "loop is RedDino's usage notebook run under torch.no_grad (the notebook keeps autograd on), timed on the "
              f"first {rows[0]['ref_cells']} cells (batch 1, so the per-cell rate does not depend on the count)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
