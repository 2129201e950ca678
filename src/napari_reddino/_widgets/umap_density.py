"""A map of more points than napari's Points layer can serve (a million cells), drawn as an image.

napari's Points layer takes about a second to make with 10^6 points and 2-3 s of the GUI thread to select
100,000 of them (its selection is a Python set that emits an event per point), so above
``umap_canvas.POINT_BUDGET`` points the canvas draws the view as an RGBA image instead: each bin (a few
screen pixels) the colour mean of its points, opaque in proportion to the log of how many fall in it; where
the view holds fewer points than the budget, the real points. The selection is an image in the same bins
(or rings on the real points). Pure numpy: the canvas calls these on each settled view.
"""

from __future__ import annotations

import numpy as np

DENSITY_BIN = 2  # screen pixels per bin of the density image
MAX_BINS = 2048  # per side: the image never grows past this whatever the screen
FAINTEST = 0.5  # opacity of a bin holding one point (bins as full as the 99th percentile's are opaque)


def in_rect(data: np.ndarray, rect) -> np.ndarray:
    """Indices of the (row, col) points inside ``rect`` = (row0, row1, col0, col1)."""
    r0, r1, c0, c1 = rect
    return np.flatnonzero((data[:, 0] >= r0) & (data[:, 0] <= r1) & (data[:, 1] >= c0) & (data[:, 1] <= c1))


def grid(rect, shape_px) -> tuple[tuple[int, int], tuple[float, float], tuple[float, float]]:
    """(bins (rows, cols), bin size (world units), origin (row0, col0)) of the image covering ``rect``
    at ``DENSITY_BIN`` screen pixels a bin for a view of ``shape_px`` (height, width) screen pixels."""
    r0, r1, c0, c1 = rect
    h, w = (max(1, min(MAX_BINS, int(np.ceil(s / DENSITY_BIN)))) for s in shape_px)
    return (h, w), (max((r1 - r0) / h, 1e-12), max((c1 - c0) / w, 1e-12)), (r0, c0)


def bin_of(data, rows, bins, size, origin) -> tuple[np.ndarray, np.ndarray]:
    """(flat bin index, kept rows) of the points ``rows`` that fall inside the grid."""
    r = np.floor((data[rows, 0] - origin[0]) / size[0]).astype(np.int64)
    c = np.floor((data[rows, 1] - origin[1]) / size[1]).astype(np.int64)
    keep = (r >= 0) & (r < bins[0]) & (c >= 0) & (c < bins[1])
    return r[keep] * bins[1] + c[keep], rows[keep]


def density_image(data, colors, rows, bins, size, origin) -> np.ndarray:
    """(h, w, 4) uint8 RGBA: per bin the mean colour of the points ``rows`` in it (weighted by their
    opacity: a faded prediction counts less than an annotation), opaque in proportion to log(count)."""
    return density_of(*bin_of(data, rows, bins, size, origin), colors, bins)


def density_of(flat, rows, colors, bins) -> np.ndarray:
    """``density_image`` from the points' bins (``bin_of``): a new colouring of the same view bins nothing."""
    n = bins[0] * bins[1]
    count = np.bincount(flat, minlength=n).astype(np.float32)
    alpha = colors[rows, 3].astype(np.float32)
    weight = np.bincount(flat, weights=alpha, minlength=n).astype(np.float32)
    out = np.zeros((n, 4), np.float32)
    full = weight > 0
    for ch in range(3):
        out[full, ch] = np.bincount(flat, weights=colors[rows, ch] * alpha, minlength=n)[full] / weight[full]
    if full.any():
        top = max(np.log1p(np.percentile(count[full], 99)), np.log1p(1.0))
        fill = np.minimum(np.log1p(count[full]) / top, 1.0)
        out[full, 3] = (weight[full] / count[full]) * (FAINTEST + (1 - FAINTEST) * fill)
    return to_uint8(out).reshape(bins[0], bins[1], 4)


def to_uint8(rgba: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rgba * 255), 0, 255).astype(np.uint8)


def mask_image(data, rows, rgba, bins, size, origin) -> np.ndarray:
    """(h, w, 4) uint8: ``rgba`` (0-1) in every bin holding one of the points ``rows``, transparent elsewhere."""
    flat, _ = bin_of(data, rows, bins, size, origin)
    out = np.zeros((bins[0] * bins[1], 4), np.uint8)
    out[np.unique(flat)] = to_uint8(np.asarray(rgba, np.float32))
    return out.reshape(bins[0], bins[1], 4)


def nearest(data: np.ndarray, position, radius: float) -> int | None:
    """The point nearest ``position`` (row, col) within ``radius`` world units, else None."""
    if not len(data):
        return None
    d2 = ((data - np.asarray(position, np.float32)[-2:]) ** 2).sum(1)
    i = int(np.argmin(d2))
    return i if d2[i] <= radius * radius else None
