"""Synthetic smear fields with exact instance ground truth, composed from real cells.

1. Cell bank: on each training image the threshold segmenter (``segment_cells``) finds the objects; kept are
   the isolated ones (not at the border; red cells also convex, solidity ≥ 0.95, 0.6-1.4 cells' area),
   white cells and platelets. Each is cut out as optical density (OD) times its mask, resized so that the
   image's red-cell diameter becomes ``TARGET_DIAMETER``. No labels or boxes of any data set are read.
2. Fields: cells pasted with random rotation, flips and scale jitter at densities from sparse to packed, a
   share of them overlapping a placed cell by 0-50% of their diameters. OD adds where cells overlap (what a
   brightfield smear does). A pixel in an overlap belongs to the cell it lies deeper in (larger distance to
   that cell's edge relative to its radius), which splits two overlapping discs along their chord.
3. Targets: the foreground and, per instance, the distance to its edge over its largest distance.
"""

from __future__ import annotations

import numpy as np

from napari_reddino.segment.learned import OD_SCALE, TARGET_DIAMETER


def training_items(data, sources=("chula", "bccd", "pbc", "raabin"), max_per_source=None):
    """Image paths of the training half: the odd-index images (i % 2 == 1) of each source in the order of
    ``benchmarks/bench_segment.py`` (which scores the even ones). Only the paths are used."""
    import importlib.util
    from pathlib import Path

    bench = Path(__file__).resolve().parents[4] / "benchmarks" / "bench_segment.py"
    spec = importlib.util.spec_from_file_location("bench_segment", bench)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    data = Path(data)
    iters = {"chula": lambda: mod.chula_items(data / "chula-rbc-12"), "bccd": lambda: mod.bccd_items(data / "bccd"),
             "pbc": lambda: mod.txl_items(data / "txl-pbc", False), "raabin": lambda: mod.txl_items(data / "txl-pbc", True)}
    out = []
    for src in sources:
        paths = [p for i, (p, _, _) in enumerate(iters[src]()) if i % 2 == 1]
        out += paths[:max_per_source] if max_per_source else paths
    return out


def cell_bank(images, max_cells_per_image=40, seed=0) -> list[dict]:
    """Isolated objects of ``images`` (arrays or paths) as ``{"od": (h, w, 3) float16, "mask": bool, "kind"}``
    at the network's scale."""
    import cv2

    from napari_reddino.images import read_image, to_rgb_float
    from napari_reddino.segment import segment_cells
    from napari_reddino.segment.threshold import optical_density, stain_stats

    rng = np.random.default_rng(seed)
    bank = []
    for image in images:
        image = read_image(image) if not isinstance(image, np.ndarray) else image
        labels, table = segment_cells(image)
        d = table.attrs["diameter"]
        rgb = to_rgb_float(image)
        od = optical_density(rgb, stain_stats(rgb).background, sigma=0)
        cell_area = np.pi * (d / 2) ** 2
        s = TARGET_DIAMETER / d
        ok = ~table["border"] & table["type"].isin(["rbc", "wbc", "platelet"])
        rbc = table["type"] == "rbc"
        ok &= ~rbc | ((table["solidity"] >= 0.95) & table["area"].between(0.6 * cell_area, 1.4 * cell_area))
        rows = table[ok]
        if len(rows) > max_cells_per_image:
            rows = rows.iloc[rng.choice(len(rows), max_cells_per_image, replace=False)]
        for _, r in rows.iterrows():
            m = 2
            y0, x0 = max(0, int(r["bbox_y0"]) - m), max(0, int(r["bbox_x0"]) - m)
            y1, x1 = int(r["bbox_y1"]) + m, int(r["bbox_x1"]) + m
            mask = (labels[y0:y1, x0:x1] == r["label"]).astype(np.float32)
            size = (max(2, int(round(mask.shape[1] * s))), max(2, int(round(mask.shape[0] * s))))
            patch = cv2.resize(od[y0:y1, x0:x1] * mask[..., None], size, interpolation=cv2.INTER_AREA)
            small = cv2.resize(mask, size, interpolation=cv2.INTER_AREA) > 0.5
            if small.sum() >= 4:
                bank.append({"od": (patch * small[..., None]).astype(np.float16), "mask": small, "kind": r["type"]})
    return bank


def compose(bank, rng, size=96, n_cells=None, overlap_share=None):
    """One field: ``(x (3, size, size) float32 network input, fg (size, size) float32, dist float32,
    instance labels int32)``."""
    import cv2

    n_cells = int(rng.integers(1, 30)) if n_cells is None else n_cells
    overlap_share = rng.uniform(0, 0.6) if overlap_share is None else overlap_share
    od = np.zeros((size, size, 3), np.float32)
    depth = np.zeros((size, size), np.float32)  # best relative depth so far
    labels = np.zeros((size, size), np.int32)
    centres = []
    for k in range(1, n_cells + 1):
        cell = bank[int(rng.integers(len(bank)))]
        p, m = cell["od"].astype(np.float32), cell["mask"].astype(np.uint8)
        f = rng.uniform(0.85, 1.15)
        angle = rng.uniform(0, 360)
        h0, w0 = m.shape
        side = int(np.ceil(np.hypot(h0, w0) * f)) + 2
        rot = cv2.getRotationMatrix2D((w0 / 2, h0 / 2), angle, f)
        rot[:, 2] += (side - w0) / 2, (side - h0) / 2
        p = cv2.warpAffine(p, rot, (side, side), flags=cv2.INTER_LINEAR)
        m = cv2.warpAffine(m, rot, (side, side), flags=cv2.INTER_NEAREST)
        if rng.random() < 0.5:
            p, m = p[:, ::-1], m[:, ::-1]
        if not m.any():
            continue
        r = np.sqrt(m.sum() / np.pi)
        if centres and rng.random() < overlap_share:  # overlap a placed cell by 0-50% of the diameters
            cy, cx, cr = centres[int(rng.integers(len(centres)))]
            sep = (r + cr) * rng.uniform(0.5, 1.0)
            a = rng.uniform(0, 2 * np.pi)
            y, x = cy + sep * np.sin(a), cx + sep * np.cos(a)
        else:
            y, x = rng.uniform(0, size), rng.uniform(0, size)
        y0, x0 = int(round(y - side / 2)), int(round(x - side / 2))
        ys, xs = slice(max(0, y0), min(size, y0 + side)), slice(max(0, x0), min(size, x0 + side))
        py, px = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)
        if ys.stop <= ys.start or xs.stop <= xs.start:
            continue
        mm = m[py, px].astype(bool)
        od[ys, xs] += p[py, px]
        d = cv2.distanceTransform(np.pad(m, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
        rel = d[py, px] / max(d.max(), 1)
        win, lab = depth[ys, xs], labels[ys, xs]
        take = mm & (rel > win)
        win[take], lab[take] = rel[take], k
        centres.append((y, x, r))
    return field_targets(od, labels, rng)


def field_targets(od, labels, rng):
    """Network input (with stain/noise augmentation) and the targets of a composed field."""
    from skimage.segmentation import relabel_sequential
    import cv2

    labels = relabel_sequential(labels)[0]
    dist = np.zeros(labels.shape, np.float32)
    for i, sl in enumerate(__import__("scipy.ndimage", fromlist=["x"]).find_objects(labels), 1):
        if sl is None:
            continue
        sl = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in sl)
        m = (labels[sl] == i).astype(np.uint8)
        d = cv2.distanceTransform(np.pad(m, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
        dist[sl][m > 0] = (d / max(d.max(), 1))[m > 0]
    gain = rng.uniform(0.7, 1.3) * rng.uniform(0.85, 1.15, 3)
    od = od * gain + rng.normal(0, rng.uniform(0.005, 0.03), od.shape)
    od = cv2.GaussianBlur(od.astype(np.float32), (0, 0), rng.uniform(0.3, 1.0))
    x = (od * OD_SCALE).transpose(2, 0, 1).astype(np.float32)
    return x, (labels > 0).astype(np.float32), dist, labels.astype(np.int32)


def disc_bank(n=20, seed=0) -> list[dict]:
    """A bank of synthetic pale-red discs with a central pallor (for tests and a smoke run without data)."""
    rng = np.random.default_rng(seed)
    bank = []
    for _ in range(n):
        r = TARGET_DIAMETER / 2 * rng.uniform(0.9, 1.1)
        s = int(2 * r + 3)
        yy, xx = np.mgrid[:s, :s] - (s - 1) / 2
        rr = np.hypot(yy, xx)
        mask = rr <= r
        g = np.where(rr < 0.45 * r, 0.18, 0.35) * mask
        od = np.stack([0.1 * g, g, 0.6 * g], -1).astype(np.float16)
        bank.append({"od": od, "mask": mask, "kind": "rbc"})
    return bank
