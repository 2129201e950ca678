"""The PCA overlay at the resolution of the cells, and no overlay where there are no cells.

At the model's own scale a 40 px red cell spans 3 of RedDino's 14 px patches, so the overlay shows one
colour per cell rim at best. The image is enlarged first so that a red cell spans about ``CELL_PATCHES``
patches (84 px): the demo model was trained on cells about 89 px across in its 112 px input (6.3 patches);
RedDino on whole-cell crops squashed to 224 px (16 patches), which would cost 7 times more here. The
factor comes from the red-cell diameter (the segmentation's, else the segmenter's estimator on this image),
is at least 1 (never shrinks: 1 is the overlay at the model's scale) and at most ``MAX_FACTOR``, and the
enlarged image is kept within ``MAX_PIXELS`` so the patch grid, the one large array, never outgrows an
8000 x 8000 smear's at factor 1 (tiled exactly as before).

Whether there are cells at all is decided from the stain, as the segmenter sees it, not from the PCA (which
always finds three components, in noise too): a flat colour or a bare slide has no stained foreground, and
noise has a "foreground" whose optical density does not hold from one pixel to the next (real smears:
correlation 0.73 or more two pixels apart, measured on every source in ``../shared/data``; noise: about 0).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from napari_reddino.progress import Steps
from napari_reddino.images import InputError, channel_axis, to_rgb_float, to_rgb_uint8

CELL_PATCHES = 6  # patches a red cell should span
MAX_FACTOR = 4.0
MAX_PIXELS = 64_000_000  # the enlarged image's pixels: 8000 x 8000 (a 572 x 572 grid; ~1.5 GB peak with ViT-S)
MIN_COHERENCE = 0.5  # stain correlation two pixels apart below which the "stain" is noise
MAX_SIDE = 2048  # the check and the diameter read a strided view of larger images (as the segmenter does)
CELL_TYPES = ("rbc", "wbc", "cluster")  # what counts as a cell in a segmentation table


class NoCellsFound(InputError):
    """A blank or cell-free image: no overlay is made. The message is the line to show."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"no cells found in {name!r}: no overlay made ({reason})")
        self.name, self.reason = name, reason


class CellsSeen(NamedTuple):
    found: bool
    diameter: float  # red-cell diameter in px (the segmenter's default when it could not be measured)
    reason: str  # why no cells, '' when found


class CellGrid(NamedTuple):
    grid: np.ndarray  # (gh, gw, D) patch features of the enlarged image
    factor: tuple[float, float]  # enlarged size / image size, per axis (y, x)
    diameter: float
    note: str  # '' or why the factor is below the one asked for


def parse_resolution(value) -> float | str:
    """``"auto"`` (also 0 or None) or a factor from 1 to ``MAX_FACTOR`` (``"off"`` is 1)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return "auto"
    if isinstance(value, str) and value.strip().lower() == "off":
        return 1.0
    try:
        factor = float(value)
    except (TypeError, ValueError):
        factor = float("nan")
    if factor == 0:
        return "auto"
    if not 1 <= factor <= MAX_FACTOR:
        raise InputError(f"Received cell resolution {value!r}; accepted: auto, off, or an enlargement from 1 "
                         f"to {MAX_FACTOR:g} (1 = the model's own scale).")
    return factor


def look_for_cells(image, table=None) -> CellsSeen:
    """Whether ``image`` holds stained cells, and the red-cell diameter. ``table``: the image's segmentation
    (:func:`napari_reddino.segment.iter_segment_cells`; its ``attrs["diameter"]`` and object types are used)."""
    from napari_reddino.segment.threshold import (DEFAULT_DIAMETER, estimate_diameter, fill_holes,
                                                  nucleus_mask, optical_density, stain_stats)

    step = max(1, math.ceil(max(image_hw(image)) / MAX_SIDE))
    strided = image[::step, ::step] if channel_axis(image) != 0 else image[:, ::step, ::step]
    rgb = to_rgb_float(np.asarray(strided))
    stats = stain_stats(rgb)
    given = float(table.attrs["diameter"]) if table is not None and table.attrs.get("diameter") else None
    diameter = given or DEFAULT_DIAMETER
    if not np.isfinite(stats.threshold):
        return CellsSeen(False, diameter, "it is one flat colour, with no stain")
    od = optical_density(rgb, stats.background)  # the segmenter's smoothing
    stained = od[..., 1] > stats.threshold
    if stained.sum() * step ** 2 < math.pi * 4 ** 2:  # less than one 8 px cell (the smallest diameter)
        return CellsSeen(False, diameter, "nothing on it is stained: a bare slide")
    raw = optical_density(rgb, stats.background, sigma=0)[..., 1]
    if stain_coherence(raw, stained, lag=2 if step == 1 else 1) < MIN_COHERENCE:
        return CellsSeen(False, diameter, "its stain is speckle, as in noise, not cells")
    if table is not None and "type" in table.columns and not table["type"].isin(CELL_TYPES).any():
        return CellsSeen(False, diameter, "the segmentation found no red or white cells")
    if given is None:
        diameter = step * estimate_diameter(fill_holes(stained), default=DEFAULT_DIAMETER / step,
                                            exclude=nucleus_mask(od, stats.threshold))
    return CellsSeen(True, diameter, "")


def stain_coherence(density: np.ndarray, stained: np.ndarray, lag: int = 2) -> float:
    """Correlation of the optical density with itself ``lag`` pixels away (down and right), over the
    stained pixels and a 3 px margin around them (so a cell's edge counts, the far bare slide does not)."""
    import cv2

    near = cv2.dilate(stained.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    g = density - density[near].mean()
    num = den = 0.0
    for a, b, both in ((g[lag:], g[:-lag], near[lag:] & near[:-lag]),
                       (g[:, lag:], g[:, :-lag], near[:, lag:] & near[:, :-lag])):
        num += float((a[both] * b[both]).sum())
        den += 0.5 * float((a[both] ** 2).sum() + (b[both] ** 2).sum())
    return num / den if den > 0 else 0.0


def resolve_factor(resolution, image_hw, patch: int, diameter: float) -> tuple[float, str]:
    """The enlargement for ``resolution`` (``"auto"``: a red cell of ``diameter`` px spans ``CELL_PATCHES``
    patches), capped by ``MAX_PIXELS``; and a note when the cap lowered it ('' otherwise)."""
    wanted = parse_resolution(resolution)
    if wanted == "auto":
        wanted = float(np.clip(CELL_PATCHES * patch / max(float(diameter), 1.0), 1.0, MAX_FACTOR))
    h, w = int(image_hw[0]), int(image_hw[1])
    cap = math.sqrt(MAX_PIXELS / max(h * w, 1))
    factor = round(max(1.0, min(wanted, cap)), 2)
    note = "" if factor >= round(wanted, 2) else (
        f"enlarged {factor:g}x instead of {wanted:.2f}x, so that it stays within "
        f"{MAX_PIXELS / 1e6:.0f} million pixels")
    return factor, note


def enlarge(image, factor: float) -> tuple[np.ndarray, tuple[float, float]]:
    """``image`` as RGB uint8 resized by ``factor`` (bilinear) and the exact factor per axis (sizes are
    rounded to whole pixels)."""
    import cv2

    rgb = to_rgb_uint8(image) if not _is_rgb8(image) else np.asarray(image)
    h, w = rgb.shape[:2]
    if factor == 1:
        return rgb, (1.0, 1.0)
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    big = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return big, (size[0] / h, size[1] / w)


def _is_rgb8(image) -> bool:
    return isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3


def iter_cell_features(image, model, resolution="auto", *, table=None, name: str = "the image",
                       require_cells: bool = True, **feature_opts) -> "Steps[CellGrid]":
    """Patch features of ``image`` enlarged to ``resolution`` (progress generator; see
    :func:`napari_reddino.patch_features.iter_patch_features` for ``feature_opts``). Raises
    :class:`NoCellsFound` for a blank or cell-free image when ``require_cells``."""
    from napari_reddino.patch_features import iter_patch_features, model_patch_size

    wanted = parse_resolution(resolution)
    seen = None
    if require_cells or wanted == "auto":
        seen = look_for_cells(image, table)
        if require_cells and not seen.found:
            raise NoCellsFound(name, seen.reason)
    diameter = seen.diameter if seen else float("nan")
    hw = image_hw(image)
    factor, note = resolve_factor(wanted, hw, model_patch_size(model), diameter if seen else 1.0)
    big, factors = enlarge(image, factor)
    grid = yield from iter_patch_features(big, model, **feature_opts)
    return CellGrid(grid, factors, diameter, note)


def image_hw(image) -> tuple[int, int]:
    """Height and width of any image :mod:`napari_reddino.images` accepts (channel-first included)."""
    shape = np.shape(image)
    return tuple(shape[1:3]) if channel_axis(image) == 0 else tuple(shape[:2])
