"""Sample smears: a synthetic one with ground truth, and a real one from Chula-RBC-12.

The synthetic smear is rendered in optical density (Beer-Lambert): every object adds absorbance, so
overlapping cells are darker where they overlap, like on a slide. Ground-truth labels are painted in
drawing order (a cell drawn later covers the one below). Platelets are labelled too (class "platelet").
"""

from __future__ import annotations


import numpy as np

from napari_reddino.images import InputError

# ---------------------------------------------------------------------------------------------------
# synthetic smear
# ---------------------------------------------------------------------------------------------------

# absorbance (optical density) per unit thickness, R G B: eosin-pink red cells, purple nuclei
RBC_OD = np.array([0.14, 0.62, 0.48])
NUCLEUS_OD = np.array([0.95, 1.35, 0.45])
CYTOPLASM_OD = np.array([0.12, 0.16, 0.06])
RED_CELL_KINDS = ("normal", "spherocyte", "target", "elliptocyte")


def _grid(cy, cx, half, shape):
    """Integer window around (cy, cx) clipped to the image, and coordinates relative to the centre."""
    y0, y1 = max(int(cy - half), 0), min(int(cy + half) + 2, shape[0])
    x0, x1 = max(int(cx - half), 0), min(int(cx + half) + 2, shape[1])
    if y1 <= y0 or x1 <= x0:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return (slice(y0, y1), slice(x0, x1)), yy - cy, xx - cx


def _ellipse_rho(dy, dx, a, b, theta):
    """Normalised radius (1 on the edge) of an ellipse with semi-axes a (along theta) and b."""
    c, s = np.cos(theta), np.sin(theta)
    u, v = dx * c + dy * s, -dx * s + dy * c
    return np.sqrt((u / a) ** 2 + (v / b) ** 2)


def _soft_inside(rho, radius):
    """Anti-aliased coverage (about one pixel wide) of the region rho <= 1."""
    return np.clip((1.0 - rho) * radius + 0.5, 0.0, 1.0)


def _red_cell(kind, rng):
    """Shape and thickness profile of one red cell kind: (a, b, thickness(rho) function)."""
    r = rng.uniform(17.5, 21.5)
    pallor = rng.uniform(0.45, 0.65)
    width = rng.uniform(0.38, 0.5)
    if kind == "spherocyte":
        r = rng.uniform(13.0, 16.0)
        return r, r * rng.uniform(0.93, 1.0), lambda rho: 1.45 - 0.25 * rho ** 4
    if kind == "elliptocyte":
        return r * 1.15, r * rng.uniform(0.5, 0.65), lambda rho: 1.0 - 0.35 * np.exp(-(rho / 0.35) ** 2)
    if kind == "target":
        return r, r * rng.uniform(0.94, 1.0), lambda rho: (
            1.0 - 0.7 * np.exp(-(rho / 0.55) ** 2) + 0.75 * np.exp(-(rho / 0.2) ** 2))
    return r, r * rng.uniform(0.9, 1.0), lambda rho: 1.0 - pallor * np.exp(-(rho / width) ** 2)


def _paint(od, labels, window, inside, density, obj_od, label):
    """Add an object's absorbance (coverage x thickness x colour) and paint its label where it covers."""
    od[window] += (inside * density)[..., None] * obj_od
    labels[window][inside >= 0.5] = label


def _place(rng, shape, radii, touching_fraction):
    """Centres for cells of the given radii: mostly apart, some touching or overlapping a neighbour."""
    h, w = shape
    centres: list[tuple[float, float]] = []
    placed: list[int] = []  # indices of the cells that found room (the others keep a NaN centre)
    for r in radii:
        for _ in range(400):
            if placed and rng.random() < touching_fraction:
                j = placed[rng.integers(len(placed))]
                ang = rng.uniform(0, 2 * np.pi)
                dist = (r + radii[j]) * rng.uniform(0.72, 0.98)
                cy, cx = centres[j][0] + dist * np.sin(ang), centres[j][1] + dist * np.cos(ang)
                gap = 0.7
            else:
                cy, cx = rng.uniform(-0.3 * r, h + 0.3 * r), rng.uniform(-0.3 * r, w + 0.3 * r)
                gap = 1.08
            if not (-0.4 * r <= cy <= h + 0.4 * r and -0.4 * r <= cx <= w + 0.4 * r):
                continue
            d = [np.hypot(cy - centres[k][0], cx - centres[k][1]) / (r + radii[k]) for k in placed]
            if all(dk >= gap for dk in d):
                placed.append(len(centres))
                centres.append((cy, cx))
                break
        else:
            centres.append((np.nan, np.nan))  # no room left
    return centres


def _background(rng, shape):
    """Slide background: pale, with a smooth illumination gradient and blotchy stain variation."""
    from scipy import ndimage

    h, w = shape
    t = rng.uniform(0, 1)  # from a pink-white to a blue-grey slide, as microscopes differ
    base = (1 - t) * np.array([236.0, 226.0, 232.0]) + t * np.array([185.0, 205.0, 212.0]) + rng.uniform(-8, 8, 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gy, gx = rng.uniform(-0.08, 0.08, 2)
    illum = 1.0 + gy * (yy / h - 0.5) + gx * (xx / w - 0.5)
    blotch = ndimage.gaussian_filter(rng.normal(0, 1, (h // 8 + 1, w // 8 + 1)), 3)
    blotch = np.kron(blotch, np.ones((8, 8)))[:h, :w]
    illum = illum * (1.0 + 0.04 * blotch / (np.abs(blotch).max() + 1e-6))
    return base[None, None, :] * illum[..., None]


def synthetic_smear(seed: int = 0, shape=(480, 640), n_cells: int | None = None, n_white: int = 2,
                    n_platelets: int = 8, touching_fraction: float = 0.25, noise: float = 3.0):
    """A synthetic thin blood smear with its ground truth.

    Returns ``(image, labels, classes)``: ``image`` (H, W, 3) uint8 RGB, ``labels`` (H, W) int32 (0 =
    background, one id per object), ``classes`` dict label -> "normal" | "spherocyte" | "target" |
    "elliptocyte" | "white_cell" | "platelet". Red cells are 26-48 px across (like Chula-RBC-12).
    The same seed always gives the same smear.
    """
    from scipy import ndimage

    h, w = int(shape[0]), int(shape[1])
    if h < 32 or w < 32:
        raise InputError(f"Received shape {tuple(shape)}; accepted: a smear of at least 32x32 pixels.")
    rng = np.random.default_rng(seed)
    if n_cells is None:
        n_cells = max(1, int(round(h * w / 3800)))  # ~80 red cells on 480x640, Chula-like density
    stain = rng.uniform(0.8, 1.2) * np.array([1.0, 1.0, 1.0]) + rng.uniform(-0.08, 0.08, 3)

    kinds = [str(k) for k in rng.choice(RED_CELL_KINDS, size=n_cells, p=[0.55, 0.17, 0.15, 0.13])]
    shapes = [_red_cell(k, rng) for k in kinds]
    white_r = [rng.uniform(24, 30) for _ in range(n_white)]
    radii = [max(a, b) for a, b, _ in shapes] + white_r
    centres = _place(rng, (h, w), radii, touching_fraction)

    od = np.zeros((h, w, 3), np.float32)
    labels = np.zeros((h, w), np.int32)
    classes: dict[int, str] = {}
    order = rng.permutation(len(radii))  # white and red cells drawn in random z-order
    for idx in order:
        cy, cx = centres[idx]
        if np.isnan(cy):
            continue
        label = len(classes) + 1
        if idx < n_cells:
            a, b, thick = shapes[idx]
            g = _grid(cy, cx, a + 2, (h, w))
            if g is None:
                continue
            rho = _ellipse_rho(g[1], g[2], a, b, rng.uniform(0, np.pi))
            cover, density = _soft_inside(rho, b), thick(np.minimum(rho, 1.0))
            cell_od = RBC_OD * stain * rng.uniform(0.85, 1.15)
            kind = kinds[idx]
        else:
            r = white_r[idx - n_cells]
            g = _grid(cy, cx, r + 2, (h, w))
            if g is None:
                continue
            rho = np.hypot(g[1], g[2]) / r
            cover, density = _soft_inside(rho, r), 1.0
            nucleus = np.zeros_like(cover)
            for _ in range(rng.integers(2, 5)):  # a lobed nucleus
                ly, lx = rng.uniform(-0.35 * r, 0.35 * r, 2)
                lr = rng.uniform(0.3, 0.45) * r
                nucleus = np.maximum(nucleus, _soft_inside(np.hypot(g[1] - ly, g[2] - lx) / lr, lr))
            od[g[0]] += nucleus[..., None] * NUCLEUS_OD * stain
            cell_od, kind = CYTOPLASM_OD * stain, "white_cell"
        if not (cover > 0.5).any():
            continue
        _paint(od, labels, g[0], cover, density, cell_od, label)
        classes[label] = kind

    for _ in range(n_platelets):
        cy, cx = rng.uniform(5, h - 5), rng.uniform(5, w - 5)
        r = rng.uniform(2.0, 3.8)
        g = _grid(cy, cx, r + 2, (h, w))
        if (labels[g[0]] > 0).any():  # keep platelets on the background, where they are countable
            continue
        rho = _ellipse_rho(g[1], g[2], r, r * rng.uniform(0.6, 1.0), rng.uniform(0, np.pi))
        label = len(classes) + 1
        _paint(od, labels, g[0], _soft_inside(rho, r), 1.0, NUCLEUS_OD * 0.7 * stain, label)
        classes[label] = "platelet"

    od = ndimage.gaussian_filter(od, sigma=(0.8, 0.8, 0))  # optics blur
    image = _background(rng, (h, w)) * np.exp(-od)
    image += rng.normal(0, noise, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), labels, classes


def synthetic_smear_layers():
    """npe2 sample data: the synthetic smear and its ground-truth labels."""
    image, labels, classes = synthetic_smear()
    ids = np.array(sorted(classes), dtype=np.int64)
    features = {"label": ids, "class": [classes[i] for i in ids]}
    return [
        (image, {"name": "synthetic smear", "rgb": True}, "image"),
        (labels, {"name": "synthetic smear ground truth", "features": features, "visible": False,
                  "opacity": 0.4}, "labels"),
    ]


# ---------------------------------------------------------------------------------------------------
# real smear: Chula-RBC-12
# ---------------------------------------------------------------------------------------------------

def chula_smear_layers():
    """npe2 sample data: a real Chula-RBC-12 smear and its labelled cell centres as points."""
    from napari_reddino.chula import CLASSES, smear

    image, centres, class_ids = smear()
    names = [CLASSES[i] if 0 <= i < len(CLASSES) else str(i) for i in class_ids]
    return [
        (image, {"name": "chula-rbc-12 1", "rgb": True}, "image"),
        (centres, {"name": "chula-rbc-12 1 labelled centres", "features": {"class": names}, "size": 6,
                   "face_color": "yellow", "visible": False}, "points"),
    ]
