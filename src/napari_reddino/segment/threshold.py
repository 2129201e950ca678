"""Offline, CPU-fast segmentation of stained smears: no weights, and no setting to tune per lab.

Everything is found from the image itself:

1. Stain: optical density (OD) of each channel against the slide background. Red cells absorb green;
   nuclei and platelets ("purple") absorb green strongly and blue little.
2. Foreground: a fraction of the Otsu threshold of the green OD, taken over the pixels that are *not*
   purple and clipped at a high percentile, so a dark white cell, platelets, stain precipitate or a
   scale bar cannot pull the threshold above the pale red cells. Never below a floor, so an empty slide
   gives no cells instead of segmented noise.
3. Scale: the red-cell diameter from the isolated, convex, non-purple objects (or the curvature of the
   clumps' outlines in a crowded field). Every size below is a fraction of it.
4. Central pallor filled (an open one too, and a pale cell, where the learned segmenter found a centre:
   :mod:`napari_reddino.segment.at_centres`); small purple
   objects at a cell's edge (platelets) cut off as their own objects.
5. Touching cells split by a watershed on the distance transform, one marker per expected cell (a
   distance-transform peak, or a centre the learned segmenter found); a white cell's nucleus is one marker;
   an isolated convex cell is never split.

What each object is (red cell, white cell, platelet, cluster, artefact) is decided afterwards, from colour
and shape, by :mod:`napari_reddino.segment.types` for any backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_reddino.images import to_rgb_float

DEFAULT_DIAMETER = 38.0  # px; used only when an image holds too few cells to measure (Chula at 1000x)
MIN_DENSITY = 0.05  # green OD below which nothing counts as stained (about 5% absorbance)
TOWARD_CENTRES = 1.0  # weight of the distance to the learned centres in the watershed (chosen on the training half:
# 0.7-2 tie on hits with the 8-connected flood; 1.0 gave the closest outlines, bench_segment --offset 1)
MIN_DIAMETER, MAX_DIAMETER = 8.0, 400.0  # px; estimates outside are clipped


@dataclass
class StainStats:
    """Whole-image statistics, computed once so that tiles of a large image share them."""

    background: np.ndarray  # (3,) RGB in [0, 1]
    threshold: float  # green-OD threshold for the foreground


def estimate_background(rgb: np.ndarray) -> np.ndarray:
    """Slide colour: the median of the brightest 30% of pixels (cells absorb, so the slide is bright;
    a crowded field still shows 30% slide)."""
    flat = rgb.reshape(-1, 3)
    if len(flat) > 100_000:  # a sample is as good and much faster
        flat = flat[:: len(flat) // 100_000]
    gray = flat.mean(1)
    bright = flat[gray >= np.percentile(gray, 70)]
    return np.median(bright, axis=0)


def optical_density(rgb: np.ndarray, background, sigma: float = 1.0) -> np.ndarray:
    """(H, W, 3) float32 OD per channel against the background, lightly smoothed."""
    import cv2  # opencv comes with cellpose; its filters are several times faster than scipy's

    bg = np.maximum(np.asarray(background, np.float32), 1 / 255)
    od = -np.log(np.maximum(rgb, 1 / 255) / bg).astype(np.float32)
    return cv2.GaussianBlur(od, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) if sigma else od


def stain_density(rgb: np.ndarray, background) -> np.ndarray:
    """Green-channel OD (red cells' eosin absorbs green), lightly smoothed."""
    return optical_density(rgb, background)[..., 1]


def purple_mask(od: np.ndarray, threshold: float = MIN_DENSITY) -> np.ndarray:
    """Nuclei, platelets and basophilic stain: strong green absorption with little blue absorption (eosin
    red cells absorb blue at about half their green OD or more), and darker than a red cell's rim can be
    (2.5 times the foreground ``threshold``: a dark rim is not a platelet)."""
    g = od[..., 1]
    return (g > max(0.3, 2.5 * threshold)) & (od[..., 2] < 0.35 * g) & (od[..., 0] > 0.2 * g)


NUCLEUS_DARKNESS = 4.0  # nuclei: purple and at least this many times the foreground threshold


def nucleus_mask(od: np.ndarray, threshold: float = MIN_DENSITY, purple: np.ndarray | None = None) -> np.ndarray:
    """White-cell nuclei: purple and darker than any red cell. In some stains (Raabin-WBC) up to a fifth of
    a red cell reads purple at 2.5-3.8 times the threshold; nuclei measured on BCCD, PBC and Raabin are
    at 5 times or more (platelets lie between, and stay :func:`purple_mask`)."""
    purple = purple_mask(od, threshold) if purple is None else purple
    return purple & (od[..., 1] > NUCLEUS_DARKNESS * threshold)


def label_max(values: np.ndarray, labels: np.ndarray, ids) -> np.ndarray:
    """Largest of ``values`` within each label in ``ids`` (0 for an id that is absent); several times faster
    than ``ndimage.maximum``, which sorts."""
    inside = labels > 0
    out = np.zeros(int(labels.max(initial=0)) + 1, np.float64)
    np.maximum.at(out, labels[inside], values[inside].astype(np.float64, copy=False))
    return out[np.asarray(ids, np.int64)]


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
    od = optical_density(sample, background)
    g = od[..., 1][~purple_mask(od)]  # without the threshold yet: any dark purple is left out
    if g.size < 100 or np.ptp(g) <= 0:
        return StainStats(background, np.inf)
    # clip at the 99th percentile: dark debris or a stray purple rim must not move Otsu off the red cells
    g = np.minimum(g, np.percentile(g, 99))
    otsu = threshold_otsu(g) if np.ptp(g) > 0 else np.inf
    # a white cell whose cytoplasm fills a high-magnification field sets Otsu between itself and everything
    # else: then under a fifth of the slide is above the threshold while the part below splits again, above
    # the least density, into slide and pale red cells (PBC, Raabin-WBC fields: at least 3x the foreground)
    frac = float(np.mean(g > threshold_scale * otsu))
    lower = g[g < otsu]
    if frac < 0.2 and lower.size > 100 and np.ptp(lower) > 0:
        low = threshold_otsu(lower)
        if threshold_scale * low > MIN_DENSITY and np.mean(g > threshold_scale * low) >= 3 * frac:
            otsu = low
    return StainStats(background, float(max(threshold_scale * otsu, MIN_DENSITY)))


def estimate_diameter(foreground: np.ndarray, default: float = DEFAULT_DIAMETER, dist=None,
                      exclude: np.ndarray | None = None) -> float:
    """Red-cell diameter (px) from the foreground mask: the size of its isolated cells
    (:func:`_first_diameter`) or, in a crowded field with fewer than five, twice the median radius of
    curvature of the convex parts of the outlines (a clump's outline is arcs of its cells, where blob sizes
    and distance-transform peaks fail; an elliptocyte's ends would bias it low), measured over arcs sized from
    :func:`_first_diameter` and then from the estimate itself; that first guess when the outlines are
    too short to measure."""
    d, crowded = _first_diameter(foreground, default, dist, exclude)
    if not crowded:  # enough isolated cells: their sizes hold for elongated cells too, curvature does not
        return d
    for _ in range(2):  # again with arcs sized from the better estimate: long arcs span two cells
        radii = _outline_radii(foreground, exclude, d)
        if len(radii) < 10:
            break
        d = float(np.clip(2 * np.median(radii), MIN_DIAMETER, MAX_DIAMETER))
    return d


def _outline_radii(foreground, exclude, diameter):
    """Radius of the circle through three outline points an arc of 0.35 radii apart on either side, at
    the convex points of every outer outline; points at the image border or on ``exclude`` (nuclei) left
    out."""
    import cv2

    arc = int(np.clip(0.35 * diameter / 2, 4, 60))
    h, w = foreground.shape
    contours, _ = cv2.findContours(foreground.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    near_exclude = None if exclude is None else cv2.dilate(exclude.astype(np.uint8), np.ones((5, 5), np.uint8))
    radii = []
    for contour in contours:
        pts = contour[:, 0, :].astype(float)
        n = len(pts)
        if n < 4 * arc:
            continue
        i = np.arange(0, n, max(1, arc // 4))
        a, b, c = pts[(i - arc) % n], pts[i], pts[(i + arc) % n]
        cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        r = (np.linalg.norm(b - c, axis=1) * np.linalg.norm(a - c, axis=1) * np.linalg.norm(a - b, axis=1)
             / np.maximum(2 * np.abs(cross), 1e-9))
        orientation = np.sign(np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1]))
        keep = np.sign(cross) == orientation  # convex: turning the way the outline runs
        for q in (a, b, c):
            keep &= (q[:, 0] > 1) & (q[:, 1] > 1) & (q[:, 0] < w - 2) & (q[:, 1] < h - 2)
        if near_exclude is not None:
            keep &= near_exclude[b[:, 1].astype(int), b[:, 0].astype(int)] == 0
        radii.append(r[keep])
    radii = np.concatenate(radii) if radii else np.zeros(0)
    return radii[(radii > MIN_DIAMETER / 2) & (radii < MAX_DIAMETER / 2)]


def _first_diameter(foreground: np.ndarray, default: float = DEFAULT_DIAMETER, dist=None,
                    exclude: np.ndarray | None = None) -> tuple[float, bool]:
    """``(diameter in px, crowded)``: the red-cell diameter from blob sizes, and whether the field had too
    few isolated cells to measure it that way.

    Isolated cells: blobs whose distance-transform peak is close to the radius of a disc of the same area
    (merged cells have too much area for their peak), away from the border and not ``exclude``-d
    (white cells' nuclei); the area-weighted median of their equivalent diameters, then the median twice
    more so that debris smaller than a third of a cell's area does not count. In a crowded field with
    fewer than five such blobs: the median of those at least half of twice the upper quartile of the
    distance-transform peaks, or that value itself. ``default`` when there is nothing to measure.
    """
    import cv2
    from scipy import ndimage

    blobs, n = ndimage.label(foreground)
    if n == 0:
        return default, False
    if dist is None:
        dist = cv2.distanceTransform(foreground.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    ids = np.arange(1, n + 1)
    area = np.bincount(blobs.ravel(), minlength=n + 1)[1:].astype(float)
    peak = label_max(dist, blobs, ids)
    r_eq = np.sqrt(area / np.pi)
    edge = np.unique(np.concatenate([blobs[0], blobs[-1], blobs[:, 0], blobs[:, -1]]))
    not_white = (np.ones(n, bool) if exclude is None
                 else np.bincount(blobs[exclude], minlength=n + 1)[1:] < 0.05 * np.maximum(area, 1))
    ok = (area >= np.pi * (MIN_DIAMETER / 2) ** 2) & ~np.isin(ids, edge) & not_white
    single = ok & (peak >= 0.85 * r_eq)
    if single.sum() >= 5:
        # start from the area-weighted median: a slide with more specks of debris than cells must not
        # start (and, below, stay) at the specks' size
        d = 2 * _weighted_median(r_eq[single], area[single])
        for _ in range(2):
            big = single & (area >= 0.33 * np.pi * (d / 2) ** 2)
            if big.sum() >= 3:
                d = 2 * np.median(r_eq[big])
        # the "isolated cells" must not be the specks of a crowded field: there they hold a percent of the
        # stained area and clumps of many such "cells" nearly all of it (an elliptocytosis smear's cells are
        # not "isolated" either, being elongated, but its blobs are single cells)
        cell = np.pi * (d / 2) ** 2
        specks = (area[single & (area >= 0.33 * cell)].sum() < 0.1 * area[not_white].sum()
                  and area[not_white & (area > 4 * cell)].sum() >= 0.8 * area[not_white].sum())
        if not specks:
            return float(np.clip(d, MIN_DIAMETER, MAX_DIAMETER)), False
    # crowded: the cells' centres are the distance-transform maxima (necks between cells are saddles).
    # Maxima on nuclei do not count, but nuclei stay in the foreground: cutting dark pixels out leaves
    # holes in red cells whose small maxima halve the estimate. The upper quartile, because a cell's
    # pallor, a notch or an overlap only lowers its peak.
    local = (dist == cv2.dilate(dist, np.ones((15, 15), np.uint8))) & (dist >= MIN_DIAMETER / 2)
    if exclude is not None:
        local &= ~exclude
    heights = dist[local]
    if len(heights) < 3:
        return default, True
    heights = heights[heights >= 0.5 * np.percentile(heights, 90)]
    d = 2 * np.percentile(heights, 75)
    # the few isolated cells a crowded field has are the better first guess (a clump's peaks are too high
    # where cells overlap, too low where pallor or a notch dents them); specks far smaller are not cells.
    # estimate_diameter sizes its outline arcs from this guess.
    few = single & (2 * r_eq >= 0.5 * d)
    if few.any():
        d = 2 * np.median(r_eq[few])
    return float(np.clip(d, MIN_DIAMETER, MAX_DIAMETER)), True


def _weighted_median(values, weights):
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def segment_threshold(image, diameter: float | str | None = "auto", stats: StainStats | None = None,
                      threshold_scale: float = 0.7, min_area: float = 0.04, marker_distance: float = 0.4,
                      marker_height: float = 0.35) -> np.ndarray:
    """Label every object of a stained smear (red and white cells, platelets, clusters, artefacts);
    returns int32 labels (0 = background). :func:`threshold_objects` also returns the diameter used.

    ``diameter`` (px) is the red-cell diameter; ``"auto"`` or None estimates it from the image. Sizes are
    fractions of it: ``min_area`` the smallest object kept (dust), ``marker_distance`` and
    ``marker_height`` (of the radius) the splitting of touching cells.
    """
    return threshold_objects(image, diameter, stats, threshold_scale, min_area, marker_distance,
                             marker_height)[0]


def threshold_objects(image, diameter=None, stats=None, threshold_scale=0.7, min_area=0.04,
                      marker_distance=0.4, marker_height=0.35, centres=None) -> tuple[np.ndarray, float]:
    """:func:`segment_threshold`, returning ``(labels, diameter)``. ``centres``: a function
    ``(rgb, stats, diameter) -> (N, 2) (y, x)`` giving the cells' centres (the learned segmenter's), whose
    small discs replace the distance-transform peaks as the red cells' markers."""
    import cv2
    from scipy import ndimage

    rgb = to_rgb_float(image)
    stats = stats or stain_stats(rgb, threshold_scale)
    od = optical_density(rgb, stats.background)
    purple = purple_mask(od, stats.threshold)
    nucleus = nucleus_mask(od, stats.threshold, purple)
    stained = od[..., 1] > stats.threshold
    foreground = fill_holes(stained)
    empty = np.zeros(rgb.shape[:2], np.int32)
    if not foreground.any():
        return empty, DEFAULT_DIAMETER if diameter is None or is_auto(diameter) else float(diameter)
    if diameter is None or is_auto(diameter):
        diameter = estimate_diameter(foreground, exclude=nucleus)
    else:
        diameter = float(diameter)
    radius = diameter / 2
    cell_area = np.pi * radius ** 2

    foreground = _drop_small(foreground, min_area * cell_area)
    if not foreground.any():
        return empty, diameter
    found = None if centres is None else np.asarray(centres(rgb, stats, diameter), float).reshape(-1, 2)
    if found is not None:
        from napari_reddino.segment.at_centres import centre_discs, edge_pallors_at, pale_cells_at, pallor_at

        # a red cell's rim is never purple (nor the paler edge of a purple stroke): the gaps between a
        # scale bar and the strokes of its label are no cell's pallor
        purple_edge = cv2.dilate(purple.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        foreground |= edge_pallors_at(found, foreground, diameter)
        foreground |= pallor_at(found, foreground, diameter, rim=foreground & ~purple_edge)
        foreground |= pale_cells_at(found, od[..., 1], foreground, stats.threshold, diameter, purple_edge)

    # small purple objects at the edge of a cell (platelets) become objects of their own, and so does a grey
    # streak (a crease or fibre lying along cells: it would be cut into "cells" with them)
    platelets = _edge_platelets(purple & foreground, foreground, 0.35 * cell_area)
    streaks = grey_streaks(od, foreground & ~purple, diameter)
    if streaks.any():  # where a streak crosses a cell (cell on both sides of it) the cell keeps its pixels
        rest = (foreground & ~streaks).astype(np.uint8)
        streaks &= ~cv2.morphologyEx(rest, cv2.MORPH_CLOSE, _ellipse(0.25 * diameter)).astype(bool)
    apart = cv2.dilate((platelets | streaks).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    body = foreground & ~apart

    dist = cv2.distanceTransform(body.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    blobs, n = ndimage.label(body)
    # one marker per distance-transform peak (a plateau is one peak) far enough inside a cell, or per centre
    if centres is None:
        size = 2 * max(1, int(radius * marker_distance)) + 1
        peaks = (dist == cv2.dilate(dist, np.ones((size, size), np.uint8))) & (dist >= radius * marker_height)
    else:
        peaks = centre_discs(found, body.shape, 0.12 * diameter) & body
    # a white cell's nucleus is one marker: its lobes (up to 0.3 diameters apart) are one group, sized
    # together (each lobe of a neutrophil is smaller than the least nucleus), and no red-cell peak lies
    # within 0.35 diameters of it (the cytoplasm between lobes is a distance-transform peak too)
    kn = max(1, int(round(diameter / 8)))
    nuclei = cv2.morphologyEx((nucleus & body).astype(np.uint8), cv2.MORPH_CLOSE, _ellipse(kn)).astype(bool) & body
    groups, n_groups = ndimage.label(cv2.dilate(nuclei.astype(np.uint8), _ellipse(round(0.15 * diameter))))
    groups = np.where(nuclei, groups, 0)
    group_size = np.bincount(groups.ravel(), minlength=n_groups + 1)
    group_size[0] = 0
    groups[group_size[groups] < 0.12 * cell_area] = 0
    nuclei = groups > 0
    near_nucleus = cv2.dilate(nuclei.astype(np.uint8), _ellipse(round(0.35 * diameter))).astype(bool)
    peaks &= ~near_nucleus
    # a streak or fibre (long, thinner than a cell) is one object, not a row of cells
    peaks &= ~_streaks(blobs, n, dist, diameter)
    markers, n_peaks = ndimage.label(peaks, structure=np.ones((3, 3)))
    markers[nuclei] = groups[nuclei] + n_peaks
    # a convex blob of up to 1.4 cells' area is one cell, whatever its distance-transform peaks; learned
    # centres are trusted from 1.15 cells' area up (two heavily overlapping cells make a convex blob), and
    # split along the distance to them as well as the distance transform
    convex_cells = 1.4 if found is None else 1.15
    labels = _split(blobs, n, markers, dist, cell_area, nuclei, convex_cells,
                    TOWARD_CENTRES if found is not None else 0.0, learned=found is not None)
    labels = _resplit_large(labels, dist, radius, cell_area, marker_distance, marker_height)
    for apart in (platelets, streaks):
        if apart.any():
            pl, _ = ndimage.label(apart, structure=np.ones((3, 3)))
            labels[pl > 0] = pl[pl > 0] + labels.max()
    # watershed slivers are not objects
    sizes = np.bincount(labels.ravel())
    labels[sizes[labels] < min_area * cell_area] = 0
    return relabel(labels), diameter


def _ellipse(radius):
    import cv2

    r = max(1, int(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _drop_small(mask: np.ndarray, min_pixels: float) -> np.ndarray:
    from scipy import ndimage

    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = 0
    return sizes[lab] >= min_pixels


def _resplit_large(labels, dist, radius, cell_area, marker_distance, marker_height):
    """Pieces still over 1.8 cells' area are overlapping cells whose centres sit closer than the markers
    allow: split them again with markers half as far apart and lower (whatever stays large is typed
    ``cluster`` later)."""
    import cv2
    from scipy import ndimage

    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    big = sizes[labels] > 1.8 * cell_area
    if not big.any():
        return labels
    size = 2 * max(1, int(radius * marker_distance / 2)) + 1
    d = np.where(big, dist, 0)
    peaks = (d == cv2.dilate(d, np.ones((size, size), np.uint8))) & (d >= radius * marker_height * 0.7)
    markers, _ = ndimage.label(peaks, structure=np.ones((3, 3)))
    split = watershed_each(-d, markers, big)
    out = labels.copy()
    out[big] = np.where(split[big] > 0, split[big] + labels.max(), labels[big])  # no marker: stays whole
    return out


def _streaks(blobs, n, dist, diameter):
    """Pixels of blobs longer than 2.5 cell diameters yet thinner than 0.7 of one (a chain of touching cells
    is a full diameter thick at each cell)."""
    from napari_reddino.segment.types import _moments

    ids = np.arange(1, n + 1)
    if n == 0:
        return np.zeros(blobs.shape, bool)
    _, major, _ = _moments(blobs, ids)
    thin = (2 * label_max(dist, blobs, ids) < 0.7 * diameter) & (major > 2.5 * diameter)
    return np.concatenate([[False], thin])[blobs]


GREY = 0.85  # red over green OD at or above which a pixel is grey, not eosin red (red cells: about 0.6)


def grey_streaks(od: np.ndarray, foreground: np.ndarray, diameter: float) -> np.ndarray:
    """Pixels of grey (red OD about the green OD; eosin-stained red cells absorb green much more) parts of the
    foreground that are long and thin: over 2 cell diameters long, under 0.8 of one wide (creases, fibres,
    scratches). A grey-tinted red cell is round, and a clump of them wide, so neither is taken."""
    import cv2
    from scipy import ndimage

    from napari_reddino.segment.types import _moments

    grey = foreground & (od[..., 0] >= GREY * np.maximum(od[..., 1], 1e-3))
    grey = cv2.morphologyEx(grey.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    lab, n = ndimage.label(grey, structure=np.ones((3, 3)))
    if n == 0:
        return np.zeros(foreground.shape, bool)
    area, major, minor = _moments(lab, np.arange(1, n + 1))
    streak = (area >= 0.25 * np.pi * (diameter / 2) ** 2) & streak_shaped(major, minor, diameter)
    return np.concatenate([[False], streak])[lab]


def streak_shaped(major, minor, diameter):
    """Over 2 cell diameters long and under 0.8 of one wide (axes of the ellipse of the same moments)."""
    return (np.asarray(major) > 2 * diameter) & (np.asarray(minor) < 0.8 * diameter)


def _edge_platelets(purple_fg, foreground, max_pixels):
    """Purple components smaller than ``max_pixels`` that touch the slide (inclusions inside a cell do not),
    and belong to a larger stained blob (a free platelet is an object already)."""
    import cv2
    from scipy import ndimage

    lab, n = ndimage.label(purple_fg)
    if n == 0:
        return np.zeros_like(purple_fg)
    ids = np.arange(1, n + 1)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    slide = cv2.dilate((~foreground).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    touches = label_max(slide, lab, ids) > 0
    blobs, _ = ndimage.label(foreground)
    blob_of = label_max(blobs, lab, ids).astype(int)
    blob_size = np.bincount(blobs.ravel())[blob_of]
    keep = (sizes >= 6) & (sizes < max_pixels) & touches & (blob_size > 1.5 * sizes)
    lut = np.concatenate([[False], keep])
    return lut[lab]


def _split(blobs, n, markers, dist, cell_area, nuclei, convex_cells=1.4, toward_markers=0.0, learned=False):
    """Blobs with one marker stay whole; the others are split by a watershed on the distance transform
    (plus ``toward_markers`` times the distance to the nearest marker), except an isolated convex cell
    (solidity ≥ 0.95, at most ``convex_cells`` cells' area), which stays one. With ``learned`` centres a
    blob cut by the image edge is not protected (a cut cell and its neighbour can make a small convex blob;
    the distance-transform peaks, which pile up at the edge, need the protection there)."""

    has = markers > 0
    if not has.any():
        return blobs.astype(np.int32)
    ids_at = blobs[has].astype(np.int64)
    pairs = np.unique(ids_at * (int(markers.max()) + 1) + markers[has])  # one number per (blob, marker)
    per_blob = np.bincount(pairs // (int(markers.max()) + 1), minlength=n + 1)
    multi_ids = np.flatnonzero(per_blob >= 2)
    if len(multi_ids):
        from napari_reddino.cells import solidity

        with_nucleus = np.zeros(n + 1, bool)
        with_nucleus[np.unique(blobs[nuclei])] = True
        area = np.bincount(blobs.ravel(), minlength=n + 1)
        at_border = np.zeros(n + 1, bool)
        if learned:
            at_border[np.concatenate([blobs[0], blobs[-1], blobs[:, 0], blobs[:, -1]])] = True
        maybe = multi_ids[~with_nucleus[multi_ids] & ~at_border[multi_ids]
                          & (area[multi_ids] <= convex_cells * cell_area)]
        if len(maybe):
            per_blob[maybe[solidity(blobs, maybe, area[maybe]) >= 0.95]] = 1
    multi = per_blob[blobs] >= 2
    labels = np.where(~multi, blobs, 0).astype(np.int32)
    if multi.any():
        landscape = -dist
        if toward_markers:
            import cv2

            # a small cell over a large one's rim sits on the slope of the pair's distance transform:
            # alone, it let the large cell flood most of the small one
            landscape = landscape + toward_markers * cv2.distanceTransform((markers == 0).astype(np.uint8),
                                                                           cv2.DIST_L2, 5)
        # 8-connected: a 4-connected flood from markers off the landscape's minima meets in axis-aligned steps
        split = watershed_each(landscape, np.where(multi, markers, 0), multi, connectivity=2)
        labels[multi] = split[multi] + n  # ids above every blob id
    return labels


def watershed_each(landscape, markers, mask, connectivity: int = 1) -> np.ndarray:
    """skimage's ``watershed`` run on each connected piece of ``mask`` alone, in its bounding box. One call over
    the whole image breaks ties (pixels at the same level) by the order of its heap, which holds every piece's
    pixels: a cell's outline then depended on what else was in the image, and a tile of a slide gave other
    outlines than the whole image."""
    from scipy import ndimage
    from skimage.segmentation import watershed

    pieces, n = ndimage.label(mask, structure=np.ones((3, 3)) if connectivity == 2 else None)
    out = np.zeros(markers.shape, np.int32)
    for i, box in enumerate(ndimage.find_objects(pieces), 1):
        if box is None:
            continue
        piece = pieces[box] == i
        split = watershed(landscape[box], np.where(piece, markers[box], 0), mask=piece, connectivity=connectivity)
        out[box][piece] = split[piece]
    return out


def relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive ids 1..N, in the order of the input ids."""
    labels = np.asarray(labels)
    top = int(labels.max(initial=0))
    if labels.min(initial=0) < 0 or top > 4 * labels.size:  # sparse or odd ids: sort them instead
        from skimage.segmentation import relabel_sequential

        return relabel_sequential(labels.astype(np.int32, copy=False))[0].astype(np.int32)
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=top + 1)[1:]) + 1
    lut = np.zeros(top + 1, np.int32)
    lut[present] = np.arange(1, len(present) + 1, dtype=np.int32)
    return lut[labels]


def is_auto(diameter) -> bool:
    """True for the values that mean "estimate the diameter from the image"."""
    return isinstance(diameter, str) and diameter.strip().lower() == "auto" or diameter in (0, 0.0)


def estimate_image_diameter(image, threshold_scale: float = 0.7, step: int = 1) -> tuple[StainStats, float]:
    """``(stain statistics, red-cell diameter in px)`` of an image; ``step`` > 1 when ``image`` is a strided
    view of a larger one (the diameter is given at full resolution)."""
    rgb = to_rgb_float(image)
    stats = stain_stats(rgb, threshold_scale)
    od = optical_density(rgb, stats.background)
    foreground = fill_holes(od[..., 1] > stats.threshold)
    return stats, step * estimate_diameter(foreground, default=DEFAULT_DIAMETER / step, exclude=nucleus_mask(od, stats.threshold))


def measure_large(levels, factors=(1.0,), tile: int = 2048, threshold_scale: float = 0.7, windows: int = 4,
                  size: int = 1024) -> tuple[StainStats, float]:
    """``(stain statistics, red-cell diameter in px)`` of an image larger than a ``tile`` (``levels[0]``, any
    array sliced lazily; ``levels[k]`` ``factors[k]`` times smaller, when it has a pyramid), both from the
    ``windows`` full-resolution windows of ``size`` px where a view of the whole image (longest side about
    ``tile``, from the coarsest level that allows it) is most stained. Not from the view itself: there a cell
    of a 40,000 px slide is 2 px (no size can be measured), and the blank glass around a smear pulls the
    stain threshold down."""
    from napari_reddino.images import channel_axis

    first = channel_axis(levels[0]) != 0

    def pixels(arr, ys, xs):
        return to_rgb_float(np.asarray(arr[ys, xs] if first else arr[:, ys, xs]))

    shape = levels[0].shape[:2] if first else levels[0].shape[1:3]
    step = max(1, int(np.ceil(max(shape) / tile)))
    k = max(i for i, f in enumerate(factors) if f <= step)
    f = int(round(factors[k]))
    stride = max(1, step // f)
    view = pixels(levels[k], slice(None, None, stride), slice(None, None, stride))
    rough = stain_stats(view, threshold_scale)
    block = max(1, size // (f * stride))  # a window's side in view pixels
    stained = optical_density(view, rough.background)[..., 1] > rough.threshold
    hb, wb = stained.shape[0] // block, stained.shape[1] // block
    if hb == 0 or wb == 0 or not stained.any():
        return estimate_image_diameter(view, threshold_scale, step=f * stride)
    share = stained[:hb * block, :wb * block].reshape(hb, block, wb, block).mean(axis=(1, 3)).ravel()
    picked = [i for i in np.argsort(-share, kind="stable")[:windows] if share[i] > 0]
    rgbs = [pixels(levels[0], slice(y0, y0 + size), slice(x0, x0 + size))
            for y0, x0 in (((i // wb) * block * f * stride, (i % wb) * block * f * stride) for i in picked)]
    hh, ww = min(r.shape[0] for r in rgbs), min(r.shape[1] for r in rgbs)
    stats = stain_stats(np.concatenate([r[:hh, :ww] for r in rgbs], axis=1), threshold_scale)
    found = []
    for rgb in rgbs:
        od = optical_density(rgb, stats.background)
        found.append(estimate_diameter(fill_holes(od[..., 1] > stats.threshold), exclude=nucleus_mask(od, stats.threshold)))
    return stats, float(np.median(found))
