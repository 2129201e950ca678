"""Named morphology and colour measurements of segmented cells, comparable across labs and magnifications.

Sizes are relative to the image's red-cell diameter (``table.attrs["diameter"]`` from the segmentation, else
estimated from the stain) and to the smear's median red cell, never in pixels, so that a 120 px Raabin cell
is not a "macrocyte"; colour is optical density against the slide background
(:func:`napari_reddino.segment.threshold.optical_density`), so a brighter lamp or another camera does not
move it. The shipped classifier (:mod:`napari_reddino.classifier`) reads these features by name.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RINGS = 5  # radial profile: depth from the outline (0) to the deepest point (1) in equal steps
FEATURES = [
    "size", "size_rel_median", "major", "minor", "aspect_ratio", "eccentricity", "solidity", "extent",
    "circularity", "radius_cv", "radius_max", "radius_min", "radius_skew", "defect_depth", "defects",
    "hull_perimeter_ratio",
    "od", "od_rel_median", "od_red_ratio", "od_blue_ratio", "od_cv", "od_rim",
    *[f"od_ring{k}" for k in range(RINGS)], "pallor_depth", "pallor_fraction", "centre_spot",
]


def measure_cells(image, labels, table: pd.DataFrame | None = None, label_ids=None,
                  diameter: float | None = None, stats=None) -> pd.DataFrame:
    """``label`` + :data:`FEATURES` for each id in ``label_ids`` (default: the table's red cells, else every
    label), in that order. ``diameter``: the red-cell diameter in px (default ``table.attrs["diameter"]``,
    else the segmenter's estimate); ``stats``: the image's stain statistics when already measured."""
    from scipy import ndimage

    from napari_reddino.cells import check_labels
    from napari_reddino.images import to_rgb_float
    from napari_reddino.segment.threshold import estimate_image_diameter, optical_density, stain_stats

    rgb = to_rgb_float(image)
    labels = check_labels(labels, rgb.shape)
    if label_ids is None:
        if table is not None and "type" in table.columns:
            label_ids = table["label"].to_numpy()[table["type"].to_numpy() == "rbc"]
        elif table is not None:
            label_ids = table["label"].to_numpy()
        else:
            label_ids = np.unique(labels[labels > 0])
    ids = np.asarray(label_ids, np.int64)
    if diameter is None and table is not None:
        diameter = table.attrs.get("diameter")
    if not diameter:
        stats, diameter = estimate_image_diameter(rgb)
    stats = stats or stain_stats(rgb)
    od = optical_density(rgb, stats.background)
    slices = ndimage.find_objects(labels)
    rows = np.full((len(ids), len(FEATURES)), np.nan, np.float32)
    for i, lab in enumerate(ids):
        sl = slices[lab - 1] if 0 < lab <= len(slices) else None
        if sl is None:
            continue
        (y0, y1), (x0, x1) = (sl[0].start, sl[0].stop), (sl[1].start, sl[1].stop)
        # one pixel of margin so that the outline and the distance to it are whole
        y0, x0 = max(y0 - 1, 0), max(x0 - 1, 0)
        mask = labels[y0:y1 + 1, x0:x1 + 1] == lab
        rows[i] = _one_cell(mask, od[y0:y1 + 1, x0:x1 + 1], float(diameter))
    out = pd.DataFrame(rows, columns=FEATURES)
    # relative to the smear's median red cell: the same cell is "large" among small ones
    for col, base in (("size_rel_median", "size"), ("od_rel_median", "od")):
        med = np.nanmedian(out[base]) if len(out) and np.isfinite(out[base]).any() else np.nan
        out[col] = out[base] / med if med and np.isfinite(med) else 1.0
    out.insert(0, "label", ids)
    return out


def _one_cell(mask: np.ndarray, od: np.ndarray, diameter: float) -> np.ndarray:
    import cv2

    f = dict.fromkeys(FEATURES, np.nan)
    area = float(mask.sum())
    if area < 5:
        return np.array([f[k] for k in FEATURES], np.float32)
    yy, xx = np.nonzero(mask)
    cy, cx = yy.mean(), xx.mean()
    cov = np.cov(np.stack([yy, xx]).astype(np.float64)) if area > 1 else np.eye(2)
    ev = np.sort(np.maximum(np.linalg.eigvalsh(cov), 1e-6))[::-1]
    major, minor = 4 * np.sqrt(ev[0]), 4 * np.sqrt(ev[1])
    m8 = mask.astype(np.uint8)
    contours, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=len)
    perim = cv2.arcLength(contour, True)
    hull = cv2.convexHull(contour)
    hull_area = max(cv2.contourArea(hull), 1.0)  # both areas between pixel centres, so solidity <= 1
    pts = contour[:, 0, :].astype(np.float64)
    radii = np.hypot(pts[:, 1] - cy, pts[:, 0] - cx)
    rmean = max(radii.mean(), 1e-3)
    depth = 0.0
    n_def = 0
    if len(contour) > 4:
        try:
            defects = cv2.convexityDefects(contour, cv2.convexHull(contour, returnPoints=False))
        except cv2.error:  # a self-touching outline: no defects measured
            defects = None
        if defects is not None and len(defects):
            d = defects.reshape(-1, 4)[:, 3] / 256.0 / diameter
            depth, n_def = float(d.max()), int((d > 0.03).sum())
    f.update(
        size=np.sqrt(4 * area / np.pi) / diameter, major=major / diameter, minor=minor / diameter,
        aspect_ratio=major / max(minor, 1e-3), eccentricity=np.sqrt(max(0.0, 1 - ev[1] / ev[0])),
        solidity=cv2.contourArea(contour) / hull_area, extent=area / mask.size, circularity=4 * np.pi * area / max(perim, 1) ** 2,
        radius_cv=radii.std() / rmean, radius_max=radii.max() / rmean, radius_min=radii.min() / rmean,
        radius_skew=float(np.mean(((radii - rmean) / max(radii.std(), 1e-3)) ** 3)),
        defect_depth=depth, defects=n_def, hull_perimeter_ratio=perim / max(cv2.arcLength(hull, True), 1),
    )
    g = od[..., 1][mask]
    mean_g = max(float(g.mean()), 1e-3)
    rim = max(float(np.percentile(g, 80)), 1e-3)
    dist = cv2.distanceTransform(np.pad(m8, 1), cv2.DIST_L2, 3)[1:-1, 1:-1][mask]
    rel = dist / max(dist.max(), 1e-3)  # 0 at the outline, 1 at the deepest point
    ring = np.minimum((rel * RINGS).astype(int), RINGS - 1)
    prof = np.array([g[ring == k].mean() if (ring == k).any() else np.nan for k in range(RINGS)]) / mean_g
    prof = np.where(np.isfinite(prof), prof, 1.0)
    centre = g[rel >= 0.6]
    f.update(
        od=mean_g, od_red_ratio=float(od[..., 0][mask].mean()) / mean_g,
        od_blue_ratio=float(od[..., 2][mask].mean()) / mean_g, od_cv=float(g.std()) / mean_g, od_rim=rim / mean_g,
        **{f"od_ring{k}": prof[k] for k in range(RINGS)},
        pallor_depth=1 - (float(centre.mean()) if len(centre) else rim) / rim,
        pallor_fraction=float((g < 0.6 * rim).mean()),
        centre_spot=prof[-1] - prof[-2],
    )
    return np.array([f[k] for k in FEATURES], np.float32)
