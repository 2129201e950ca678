"""Offline, CPU-fast segmentation of stained smears: no weights, tuned on Chula-RBC-12.

1. Stain density: optical density in the green channel relative to the slide background (eosin-stained
   red cells absorb green; the pale background and the cells' central pallor do not).
2. Foreground: a fraction of the Otsu threshold of that density (cells' pale rims sit below Otsu), never
   below a floor, so an empty slide gives no cells instead of segmented noise.
3. Holes filled (the central pallor), small objects (platelets, debris) dropped.
4. Touching cells split by a watershed on the distance transform, seeded one marker per expected cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_reddino.images import to_rgb_float

DEFAULT_DIAMETER = 38.0  # px; Chula-RBC-12 red cells at 1000x are 35-45 px across
MIN_DENSITY = 0.05  # optical density below which nothing counts as stained (about 5% absorbance)


@dataclass
class StainStats:
    """Whole-image statistics, computed once so that tiles of a large image share one threshold."""

    background: np.ndarray  # (3,) RGB in [0, 1]
    threshold: float  # optical-density threshold for the foreground


def estimate_background(rgb: np.ndarray) -> np.ndarray:
    """Slide colour: the median of the brighter pixels (cells absorb, so the background is bright)."""
    flat = rgb.reshape(-1, 3)
    if len(flat) > 100_000:  # a sample is as good and much faster
        flat = flat[:: len(flat) // 100_000]
    gray = flat.mean(1)
    bright = flat[gray >= np.percentile(gray, 60)]
    return np.median(bright, axis=0)


def stain_density(rgb: np.ndarray, background) -> np.ndarray:
    """Optical density of the green channel relative to the background, lightly smoothed."""
    import cv2  # opencv comes with cellpose; its filters are several times faster than scipy's

    g = np.maximum(rgb[..., 1], 1 / 255)
    od = -np.log(g / max(float(background[1]), 1 / 255)).astype(np.float32)
    return cv2.GaussianBlur(od, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background region that does not reach the image border filled."""
    from scipy import ndimage

    holes, n = ndimage.label(~mask)
    if n == 0:
        return mask
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    inside = np.ones(n + 1, bool)
    inside[border] = False
    inside[0] = False
    return mask | inside[holes]


def stain_stats(rgb: np.ndarray, threshold_scale: float = 0.7, max_pixels: int = 200_000) -> StainStats:
    """Background and foreground threshold from (a strided sample of) the whole image."""
    from skimage.filters import threshold_otsu

    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / max_pixels))))
    sample = rgb[::step, ::step]
    background = estimate_background(sample)
    density = stain_density(sample, background)
    otsu = threshold_otsu(density) if np.ptp(density) > 0 else np.inf
    return StainStats(background, float(max(threshold_scale * otsu, MIN_DENSITY)))


def estimate_diameter(foreground: np.ndarray, default: float = DEFAULT_DIAMETER, dist=None) -> float:
    """Median diameter of the blobs that look like single cells (their distance-transform peak is
    close to the radius of a disc of the same area; merged cells have too much area for their
    peak); ``default`` when fewer than five such blobs."""
    from scipy import ndimage

    blobs, n = ndimage.label(foreground)
    if n < 5:
        return default
    if dist is None:
        import cv2

        dist = cv2.distanceTransform(foreground.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    ids = np.arange(1, n + 1)
    area = np.bincount(blobs.ravel(), minlength=n + 1)[1:].astype(float)
    peak = np.asarray(ndimage.maximum(dist, blobs, ids), float)
    r_eq = np.sqrt(area / np.pi)
    single = (area >= 80) & (peak >= 0.85 * r_eq)
    if single.sum() < 5:
        return default
    return float(2 * np.median(r_eq[single]))


def segment_threshold(image, diameter: float | None = None, stats: StainStats | None = None,
                      threshold_scale: float = 0.7, min_area: float = 0.12, marker_distance: float = 0.5,
                      marker_height: float = 0.35) -> np.ndarray:
    """Label the red and white cells of a stained smear; returns int32 labels (0 = background).

    ``diameter`` (px) sets the marker spacing and size filter; None estimates it from isolated cells.
    ``min_area`` is the smallest object kept, as a fraction of a cell's area (drops platelets and
    debris); ``marker_distance`` and ``marker_height`` (fractions of the radius) control splitting.
    """
    import cv2
    from scipy import ndimage
    from skimage.segmentation import watershed

    rgb = to_rgb_float(image)
    stats = stats or stain_stats(rgb, threshold_scale)
    foreground = stain_density(rgb, stats.background) > stats.threshold
    foreground = fill_holes(foreground)
    if not foreground.any():
        return np.zeros(rgb.shape[:2], np.int32)
    dist = cv2.distanceTransform(foreground.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    diameter = float(diameter) if diameter else estimate_diameter(foreground, dist=dist)
    radius = diameter / 2
    min_pixels = min_area * np.pi * radius ** 2

    blobs, n = ndimage.label(foreground)
    sizes = np.bincount(blobs.ravel(), minlength=n + 1)
    small = sizes[blobs] < min_pixels
    foreground[small], blobs[small], dist[small] = False, 0, 0
    # one marker per distance-transform peak (a plateau is one peak), far enough inside a cell
    size = 2 * max(1, int(radius * marker_distance)) + 1
    local_max = cv2.dilate(dist, np.ones((size, size), np.uint8))
    peaks = (dist == local_max) & (dist >= radius * marker_height)
    markers, n_markers = ndimage.label(peaks, structure=np.ones((3, 3)))
    # only blobs holding two or more markers need the (slow) watershed; the others are one cell each
    per_blob = np.bincount(blobs[markers > 0][np.unique(markers[markers > 0], return_index=True)[1]],
                           minlength=n + 1) if n_markers else np.zeros(n + 1, int)
    multi = per_blob[blobs] >= 2
    labels = np.where(per_blob[blobs] == 1, blobs, 0).astype(np.int32)
    if multi.any():
        split = watershed(-dist, np.where(multi, markers, 0), mask=multi)
        labels[multi] = split[multi] + n  # ids above every blob id
    # watershed slivers smaller than the size filter are debris, not cells
    sizes = np.bincount(labels.ravel())
    labels[sizes[labels] < min_pixels] = 0
    return relabel(labels)


def relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive ids 1..N, in the order of the input ids."""
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels.astype(np.int32, copy=False))[0].astype(np.int32)


def white_cell_flags(image, labels, label_ids=None, min_fraction: float = 0.15) -> np.ndarray:
    """True for cells whose colour says white cell: a purple nucleus absorbs red light, which the
    eosin-pink red cells barely do. Returns one bool per id in ``label_ids`` (default: 1..max)."""
    from scipy import ndimage

    rgb = to_rgb_float(image)
    labels = np.asarray(labels)
    ids = np.arange(1, int(labels.max()) + 1) if label_ids is None else np.asarray(label_ids)
    if len(ids) == 0:
        return np.zeros(0, bool)
    background = estimate_background(rgb)
    od = -np.log(np.maximum(rgb, 1 / 255) / np.maximum(background, 1 / 255))
    nucleus = (od[..., 0] > 0.45) & (od[..., 0] > 0.55 * od[..., 1])
    fraction = ndimage.mean(nucleus, labels, index=ids)
    return np.nan_to_num(np.asarray(fraction, float)) >= min_fraction
