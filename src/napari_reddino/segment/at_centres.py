"""Cells recovered at the centres the learned segmenter found, where the threshold foreground has none: a
central pallor open to the slide, a pale red cell below the threshold (or with only a crescent of its rim
above it), and the small discs that mark each centre for the watershed. Used by
:func:`napari_reddino.segment.threshold.threshold_objects` when it is given centres."""

from __future__ import annotations

import numpy as np

from napari_reddino.segment.threshold import _ellipse as ellipse


def pallor_at(yx, foreground, diameter, rays: int = 24, rim=None) -> np.ndarray:
    """The central pallors at the centres that lie on slide yet are ringed by stain (at least 60% of the
    rays cast from the centre that stay in the image meet stain within 0.7 diameters): a pallor whose rim
    is open on one side, which :func:`fill_holes` cannot fill. Each is filled up to where its rays met the
    rim (the median distance across the gaps; to the image edge where a ray left the image). ``rim``: the stain the rays may meet (default ``foreground``)."""
    import cv2

    h, w = foreground.shape
    rim = foreground if rim is None else rim
    out = np.zeros((h, w), np.uint8)
    reach = max(3, int(round(0.7 * diameter)))
    angles = np.linspace(0, 2 * np.pi, rays, endpoint=False)
    steps = np.arange(1, reach + 1)
    dy, dx = np.sin(angles)[:, None] * steps, np.cos(angles)[:, None] * steps
    for y, x in np.round(np.asarray(yx, float).reshape(-1, 2)).astype(int):
        if not (0 <= y < h and 0 <= x < w) or foreground[y, x] or out[y, x]:
            continue
        ys, xs = np.round(y + dy).astype(int), np.round(x + dx).astype(int)
        inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        stain = np.zeros(ys.shape, bool)
        stain[inside] = rim[ys[inside], xs[inside]]
        met = stain.any(1)
        # a ray that leaves the image before meeting stain says nothing (a cell cut by the image edge
        # has its pallor open there); its fill runs to the edge
        left = ~met & ~inside.all(1)
        if met.sum() < 0.3 * rays or met.sum() < 0.6 * (~left).sum():
            continue
        dist = np.where(met, steps[stain.argmax(1)], 0).astype(float)
        dist[~met & ~left] = np.median(dist[met])
        dist[left] = steps[inside[left].argmin(1)]
        poly = np.stack([x + np.cos(angles) * dist, y + np.sin(angles) * dist], 1)
        cv2.fillPoly(out, [np.round(poly).astype(np.int32)], 1)
    return out.astype(bool)


def edge_pallors_at(yx, foreground, diameter) -> np.ndarray:
    """The pallors of cells cut by the image edge: slide that touches the edge, is smaller than a quarter
    of a cell and lies within 0.3 diameters of a centre. Such a pallor is open to the edge, so neither
    :func:`fill_holes` nor :func:`pallor_at` (the centre sits on the cell's rim beside it) fills it, and
    the distance transform then puts the cell's marker next to slide: the neighbour took the cell."""
    from scipy import ndimage

    h, w = foreground.shape
    slide, n = ndimage.label(~foreground)
    if n == 0:
        return np.zeros((h, w), bool)
    sizes = np.bincount(slide.ravel(), minlength=n + 1)
    at_edge = np.zeros(n + 1, bool)
    at_edge[np.concatenate([slide[0], slide[-1], slide[:, 0], slide[:, -1]])] = True
    near = np.zeros(n + 1, bool)
    near[np.unique(slide[centre_discs(yx, (h, w), 0.3 * diameter)])] = True
    keep = at_edge & near & (sizes < 0.25 * np.pi * (diameter / 2) ** 2)
    keep[0] = False
    return keep[slide]


PALE_FRACTION = 0.4  # of the foreground threshold: the rim of a pale red cell the network found


def pale_cells_at(yx, green, foreground, threshold, diameter, purple=None) -> np.ndarray:
    """Pale red cells at the centres that lie on slide, where the threshold found none or only a piece of
    one (a crescent of its rim, under 0.7 of a cell and holding no centre): within 0.7 diameters of the
    centre, the convex hull of those pieces and the pixels stained above ``PALE_FRACTION`` of the threshold,
    away from the other cells; kept when it holds the centre and is 0.35 to 1.6 cells' area (BCCD's cells
    are up to 1.15 of the measured diameter across). Nothing ``purple`` (nuclei, platelets, a scale bar)
    is part of one."""
    import cv2
    from scipy import ndimage

    h, w = foreground.shape
    r = max(2, int(round(0.7 * diameter)))
    cell_area = np.pi * (diameter / 2) ** 2
    yx = np.round(np.asarray(yx, float).reshape(-1, 2)).astype(int)
    yx = yx[(yx[:, 0] >= 0) & (yx[:, 0] < h) & (yx[:, 1] >= 0) & (yx[:, 1] < w)]
    todo = yx[~foreground[yx[:, 0], yx[:, 1]]]
    if not len(todo):
        return np.zeros((h, w), bool)
    blobs, n = ndimage.label(foreground)
    sizes = np.bincount(blobs.ravel(), minlength=n + 1)
    has_centre = np.zeros(n + 1, bool)
    has_centre[blobs[yx[:, 0], yx[:, 1]]] = True
    purple = np.zeros((h, w), bool) if purple is None else purple
    has_centre[np.unique(blobs[purple])] = True  # a piece holding purple is no crescent of a pale rim
    piece = ((sizes < 0.7 * cell_area) & ~has_centre)[blobs] & foreground
    near = cv2.dilate((foreground & ~piece).astype(np.uint8), ellipse(max(1, round(0.08 * diameter)))).astype(bool)
    smooth = cv2.GaussianBlur(green, (0, 0), max(1.0, 0.05 * diameter))
    low = ((smooth > PALE_FRACTION * threshold) | piece) & ~near
    disc = ellipse(r).astype(bool)
    out = np.zeros((h, w), bool)
    for y, x in todo:
        if near[y, x] or out[y, x]:
            continue
        y0, x0, y1, x1 = max(0, y - r), max(0, x - r), min(h, y + r + 1), min(w, x + r + 1)
        win = low[y0:y1, x0:x1] & disc[r - (y - y0):r + (y1 - y), r - (x - x0):r + (x1 - x)]
        pts = np.argwhere(win)
        if len(pts) < 0.2 * cell_area:
            continue
        hull = np.zeros(win.shape, np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(pts[:, ::-1].astype(np.int32)), 1)
        hull = hull.astype(bool) & ~near[y0:y1, x0:x1]
        if hull[y - y0, x - x0] and 0.35 * cell_area <= hull.sum() <= 1.6 * cell_area:
            out[y0:y1, x0:x1] |= hull
    return out


def centre_discs(yx, shape, radius) -> np.ndarray:
    import cv2

    out = np.zeros(shape, np.uint8)
    for y, x in np.round(np.asarray(yx, float).reshape(-1, 2)).astype(int):
        if 0 <= y < shape[0] and 0 <= x < shape[1]:
            cv2.circle(out, (int(x), int(y)), max(1, int(radius)), 1, -1)
    return out.astype(bool)
