"""Features of the evaluation's cells: the model's CLS token (the plugin's published preprocessing), the
same architecture with random weights, and handcrafted morphology + colour measurements."""

from __future__ import annotations

import copy
import sys
import time

import numpy as np

HANDCRAFTED_NAMES = [
    "area", "perimeter", "equivalent_diameter", "major_axis", "minor_axis", "aspect_ratio", "eccentricity",
    "solidity", "extent", "circularity", "centre_offset",
    "mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b", "rel_r", "rel_g", "rel_b",
    "ring0", "ring1", "ring2", "ring3", "pallor", "texture",
]


def model_features(crops, model, batch_size: int = 64, precision: str = "auto", chunk: int = 512,
                   log=sys.stderr) -> np.ndarray:
    """(N, D) float32 raw CLS tokens, in chunks so a long run reports its rate."""
    from napari_reddino.embed import embed_crops

    out, t0 = [], time.perf_counter()
    for i in range(0, len(crops), chunk):
        out.append(np.asarray(embed_crops(crops[i:i + chunk], model, batch_size=batch_size,
                                          precision=precision), dtype=np.float32))
        done = min(i + chunk, len(crops))
        if log is not None:
            rate = done / max(time.perf_counter() - t0, 1e-9)
            print(f"  features {done}/{len(crops)} ({rate:.1f} cells/s)", file=log, flush=True)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def random_init_like(model, seed: int = 0):
    """A copy of ``model`` (same architecture, input size and normalisation) with freshly initialised
    weights: the baseline that says how much of a score is owed to training."""
    import torch

    rand = copy.deepcopy(model)
    torch.manual_seed(seed)
    for m in rand.modules():  # every layer (conv, norms, LayerScale) back to its initial state ...
        if hasattr(m, "reset_parameters") and m is not rand:
            m.reset_parameters()
    if hasattr(rand, "init_weights"):  # ... then timm's ViT scheme (trunc-normal linear/pos, tiny cls)
        rand.init_weights()
    return rand.eval()


def cell_mask(crop: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Boolean mask of the cell nearest the crop centre: green channel below the image's Otsu threshold
    (the crop's own when not given), holes filled (central pallor belongs to the cell)."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    g = crop[..., 1].astype(np.float32)
    inside_image = crop.any(-1)  # crops are zero-padded where they leave the image
    if threshold is None or not np.isfinite(threshold):
        vals = g[inside_image]
        if vals.size == 0 or vals.max() == vals.min():
            return np.zeros(g.shape, bool)
        threshold = threshold_otsu(vals)
    fg = ndimage.binary_fill_holes(ndimage.binary_opening((g < threshold) & inside_image, iterations=1))
    lab, n = ndimage.label(fg)
    h, w = g.shape
    if n == 0:
        return fg
    cy, cx = h // 2, w // 2
    if lab[cy, cx]:
        return lab == lab[cy, cx]
    yy, xx = np.nonzero(lab)
    k = np.argmin((yy - cy) ** 2 + (xx - cx) ** 2)
    return lab == lab[yy[k], xx[k]]


def _one_cell(crop: np.ndarray, threshold) -> np.ndarray:
    from skimage.measure import regionprops

    mask = cell_mask(crop, threshold)
    f = np.zeros(len(HANDCRAFTED_NAMES), np.float32)
    rgb = crop.astype(np.float32) / 255.0
    if mask.sum() < 3:
        f[11:14] = rgb.reshape(-1, 3).mean(0)
        return f
    p = regionprops(mask.astype(np.uint8))[0]
    major, minor = p.axis_major_length, max(p.axis_minor_length, 1e-3)
    h, w = mask.shape
    cy, cx = p.centroid
    inside, outside = rgb[mask], rgb[~mask & crop.any(-1)]
    bg = outside.mean(0) if len(outside) else np.ones(3, np.float32)
    # radial profile of the green channel in four rings from the centroid to the rim, relative to the
    # background: central pallor (target cells, hypochromia) versus none (spherocytes)
    yy, xx = np.nonzero(mask)
    r = np.hypot(yy - cy, xx - cx)
    r = r / max(r.max(), 1e-3)
    g = rgb[yy, xx, 1] / max(bg[1], 1e-3)
    rings = [g[(r >= a) & (r < a + 0.25 + (a == 0.75) * 1e-3)] for a in (0.0, 0.25, 0.5, 0.75)]
    rings = [x.mean() if len(x) else g.mean() for x in rings]
    f[:] = [
        p.area, p.perimeter, p.equivalent_diameter_area, major, minor, major / minor, p.eccentricity,
        p.solidity, p.extent, 4 * np.pi * p.area / max(p.perimeter, 1e-3) ** 2,
        np.hypot(cy - h / 2, cx - w / 2),
        *inside.mean(0), *inside.std(0), *(inside.mean(0) / np.maximum(bg, 1e-3)),
        *rings, rings[0] - rings[3], float(np.abs(np.diff(g)).mean()) if len(g) > 1 else 0.0,
    ]
    return f


def handcrafted_features(crops, thresholds=None) -> np.ndarray:
    """(N, 26) float32 morphology and colour of the cell nearest each crop's centre (names in
    ``HANDCRAFTED_NAMES``). Meant to be standardised before a classifier sees them."""
    if thresholds is None:
        thresholds = [None] * len(crops)
    return np.stack([_one_cell(c, t) for c, t in zip(crops, thresholds)]) if len(crops) else \
        np.zeros((0, len(HANDCRAFTED_NAMES)), np.float32)
