"""Training fields for the learned segmenter's centre network, from labelled smears.

Each image is measured as the plugin will measure it (the threshold module's stain statistics and red-cell
diameter, errors included), resized so that a red cell is ``TARGET_DIAMETER`` px across, and turned into:

- ``x``: the network input (stain optical density);
- ``heat``: the target, a Gaussian peak (``CENTRE_SIGMA`` diameters wide) at every labelled red- and
  white-cell centre (box centres for BCCD and TXL-PBC);
- ``weight``: where the target is known: inside labelled cells (BCCD labels only some of its red cells, so a
  cell without a label teaches nothing either way), inside platelet boxes (not a centre), and on bare slide.
"""

from __future__ import annotations

import numpy as np

from napari_reddino.segment.learned import CENTRE_SIGMA, TARGET_DIAMETER


def labelled_field(image, centres=None, boxes=None) -> dict:
    """One training field from an image (array or path) and its labels (see :mod:`reddino_train.data.smears`)."""
    import cv2

    from napari_reddino.images import read_image, to_rgb_float
    from napari_reddino.segment.learned import OD_SCALE, network_input, to_network_scale
    from napari_reddino.segment.threshold import estimate_image_diameter

    rgb = to_rgb_float(read_image(image) if not isinstance(image, np.ndarray) else image)
    stats, d = estimate_image_diameter(rgb)
    small, s = to_network_scale(rgb, d)
    h, w = small.shape[:2]
    known = np.zeros((h, w), np.uint8)
    pos = []
    if centres is not None:
        for y, x in np.asarray(centres["rbc"], float).reshape(-1, 2) * s:
            pos.append((y, x))
            cv2.circle(known, (int(round(x)), int(round(y))), int(TARGET_DIAMETER / 2), 1, -1)
    for kind in ("rbc", "wbc", "platelet"):
        for y0, x0, y1, x1 in (boxes or {}).get(kind, []):
            y0, x0, y1, x1 = y0 * s, x0 * s, y1 * s, x1 * s
            cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
            if kind != "platelet":
                pos.append((cy, cx))
            axes = (max(1, int(round((x1 - x0) / 2))), max(1, int(round((y1 - y0) / 2))))
            cv2.ellipse(known, (int(round(cx)), int(round(cy))), axes, 0, 0, 360, 1, -1)
    od = network_input(small, stats.background)
    green = od[1] / OD_SCALE
    stained = cv2.dilate((green > 0.5 * stats.threshold).astype(np.uint8), np.ones((5, 5), np.uint8))
    weight = np.maximum(known, 1 - stained)
    heat = centre_heat((h, w), pos)
    return {"x": od.astype(np.float16), "heat": heat.astype(np.float16), "weight": weight, "scale": s}


def centre_heat(shape, centres, sigma=CENTRE_SIGMA * TARGET_DIAMETER) -> np.ndarray:
    """The largest Gaussian of the ``centres`` (y, x) at every pixel."""
    yy, xx = np.indices(shape, dtype=np.float32)
    heat = np.zeros(shape, np.float32)
    r = int(np.ceil(3 * sigma))
    for cy, cx in centres:
        y0, y1 = max(0, int(cy) - r), min(shape[0], int(cy) + r + 2)
        x0, x1 = max(0, int(cx) - r), min(shape[1], int(cx) + r + 2)
        if y1 <= y0 or x1 <= x0:
            continue
        g = np.exp(-((yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2) / (2 * sigma ** 2))
        heat[y0:y1, x0:x1] = np.maximum(heat[y0:y1, x0:x1], g)
    return heat


def random_crop(field: dict, rng, size: int = 96):
    """``(x, heat, weight)`` float32 crops of ``size`` px, with scale (0.8-1.25x), flips, quarter turns and
    stain (OD gain) jitter; a field smaller than the crop is padded with unknown slide."""
    import cv2

    f = rng.uniform(0.8, 1.25)
    x = field["x"].astype(np.float32).transpose(1, 2, 0)
    h, w = x.shape[:2]
    dsize = (max(4, int(round(w * f))), max(4, int(round(h * f))))
    x = cv2.resize(x, dsize, interpolation=cv2.INTER_LINEAR)
    heat = cv2.resize(field["heat"].astype(np.float32), dsize, interpolation=cv2.INTER_LINEAR)
    weight = cv2.resize(field["weight"], dsize, interpolation=cv2.INTER_NEAREST).astype(np.float32)
    ph, pw = max(0, size - dsize[1]), max(0, size - dsize[0])
    if ph or pw:
        x = np.pad(x, ((0, ph), (0, pw), (0, 0)))
        heat, weight = np.pad(heat, ((0, ph), (0, pw))), np.pad(weight, ((0, ph), (0, pw)))
    y0 = int(rng.integers(0, x.shape[0] - size + 1))
    x0 = int(rng.integers(0, x.shape[1] - size + 1))
    sl = (slice(y0, y0 + size), slice(x0, x0 + size))
    x, heat, weight = x[sl], heat[sl], weight[sl]
    k = int(rng.integers(4))
    x, heat, weight = np.rot90(x, k), np.rot90(heat, k), np.rot90(weight, k)
    if rng.random() < 0.5:
        x, heat, weight = x[:, ::-1], heat[:, ::-1], weight[:, ::-1]
    x = x * (rng.uniform(0.75, 1.3) * rng.uniform(0.9, 1.1, 3))
    return (np.ascontiguousarray(x.transpose(2, 0, 1), np.float32), np.ascontiguousarray(heat, np.float32),
            np.ascontiguousarray(weight, np.float32))


def synthetic_field(rng, n=6, shape=(160, 200)) -> tuple[np.ndarray, dict]:
    """A generated smear of pale red discs with a pallor and its centres (a smoke run without data)."""
    r = float(rng.uniform(14, 20))
    yy, xx = np.indices(shape)
    od = np.zeros(shape)
    centres = []
    for _ in range(n):
        cy, cx = rng.uniform(r, shape[0] - r), rng.uniform(r, shape[1] - r)
        rr = np.hypot(yy - cy, xx - cx)
        od += np.where(rr < 0.45 * r, 0.2, 0.4) * (rr <= r)
        centres.append((cy, cx))
    rgb = np.array([0.9, 0.88, 0.85]) * np.exp(-od[..., None] * np.array([0.1, 1.0, 0.6]))
    return (rgb * 255).astype(np.uint8), {"rbc": np.array(centres)}
