"""Build a training set from folders of smear images: non-overlapping patches and/or single-cell crops.

Output folder: ``manifest.csv`` (one row per sample, :data:`MANIFEST_COLUMNS`) and the samples as PNG files
under ``patches/<source>/`` and ``cells/<source>/``. ``source`` is the name of the SRC folder given (one row
per dataset), ``image`` the source image's path relative to it. Images are read by content (some Chula
images are PNG files named .jpg) and always as RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino.progress import Progress
from napari_reddino.atomic import atomic_path
from napari_reddino.cells import padded_crop
from napari_reddino.images import InputError, expand_inputs, read_image
from napari_reddino.segment import BACKENDS

MANIFEST_COLUMNS = ["path", "source", "image", "kind", "y0", "x0", "y1", "x1", "label", "class", "foreground"]
CELL_BACKENDS = BACKENDS  # the plugin's own segmentation backends
# Optical density (log10 of local background / pixel, largest over R, G, B) above which a pixel is stained:
# 0.06 = 13% less light. Looked at on the development data: above JPEG noise and uneven illumination, below
# the rims of the palest (thalassaemic) cells.
STAIN_OD = 0.06
DARK_OD = 1.0  # 10x darker than the image's glass: outside the field of view (black corners), not a cell


def local_background(rgb: np.ndarray) -> np.ndarray:
    """The glass behind every pixel (H, W, 3) float32: brightfield glass transmits the most light, so the
    brightest colour in a window larger than a cell (a quarter of the short side), smoothed. Local rather than
    global because illumination is uneven (vignetting) across many smears."""
    import cv2

    h, w = rgb.shape[:2]
    f = max(1, min(h, w) // 120)  # work at ~120 px on the short side: fast, and averages out pixel noise
    small = cv2.resize(rgb, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA).astype(np.float32)
    win = max(3, min(small.shape[:2]) // 4)
    bg = cv2.dilate(small, np.ones((win, win), np.uint8), borderType=cv2.BORDER_REPLICATE)
    bg = cv2.blur(bg, (win, win), borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)


def stain_density(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel optical density relative to the local background, the largest over R, G, B: (H, W) float32."""
    ratio = (local_background(rgb) + 1.0) / (rgb.astype(np.float32) + 1.0)
    return np.log10(ratio.max(axis=-1))  # log after the max: monotone, and a third of the work


def iter_patch_boxes(rgb: np.ndarray, size: int, min_foreground: float):
    """Yield ``(y0, x0, foreground_fraction)`` for the non-overlapping size x size patches worth keeping:
    at least ``min_foreground`` stained pixels and at most half of them outside the field of view."""
    od = stain_density(rgb)
    lum = rgb.max(axis=-1)
    dark = lum < (np.percentile(lum[::4, ::4], 90) + 1.0) / 10**DARK_OD - 1.0
    h, w = od.shape
    for y0 in range(0, h - size + 1, size):
        for x0 in range(0, w - size + 1, size):
            fg = float(np.mean(od[y0:y0 + size, x0:x0 + size] > STAIN_OD))
            if fg >= min_foreground and np.mean(dark[y0:y0 + size, x0:x0 + size]) <= 0.5:
                yield y0, x0, fg


def cell_boxes(labels: np.ndarray):
    """``(label, y0, x0, y1, x1)`` of every cell not touching the image border (cut cells are partial)."""
    from scipy import ndimage

    from napari_reddino.cells import drop_border_cells

    labels = drop_border_cells(labels)
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is not None:
            yield i, sl[0].start, sl[1].start, sl[0].stop, sl[1].stop


def point_classes(image_path: Path) -> np.ndarray | None:
    """Chula-style labels beside ``images/``: ``labels/<stem>.txt`` with ``x y class`` per line, else None."""
    txt = image_path.parent.parent / "labels" / f"{image_path.stem}.txt"
    if image_path.parent.name != "images" or not txt.is_file():
        return None
    rows = [line.split() for line in txt.read_text().splitlines() if line.strip()]
    return np.array([[float(v) for v in r[:3]] for r in rows if len(r) >= 3]).reshape(-1, 3)


def _class_of_cells(labels: np.ndarray, points: np.ndarray | None) -> dict[int, int]:
    """label -> class id for each cell holding exactly one labelled centre."""
    if points is None or not len(points):
        return {}
    h, w = labels.shape
    xs = np.clip(points[:, 0].round().astype(int), 0, w - 1)
    ys = np.clip(points[:, 1].round().astype(int), 0, h - 1)
    hit = labels[ys, xs]
    ids, counts = np.unique(hit[hit > 0], return_counts=True)
    once = set(ids[counts == 1].tolist())
    return {int(lab): int(c) for lab, c in zip(hit, points[:, 2]) if lab in once}


def _save_png(array: np.ndarray, path: Path):
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, compress_level=3)


def _pick(items: list, k: int | None, rng) -> list:
    if k is None or len(items) <= k:
        return items
    return [items[i] for i in sorted(rng.choice(len(items), size=k, replace=False))]


def list_sources(sources, limit: int | None = None) -> list[tuple[str, Path, Path]]:
    """``(source name, source folder, image path)`` for every image; ``limit`` = at most that many images per
    source, evenly spaced over its sorted list (so a quick set still spans the whole folder)."""
    from napari_reddino.outputs import unique_names

    out = []
    roots = [Path(src) if Path(src).is_dir() else Path(src).parent for src in sources]
    # siteA/images and siteB/images: sources "siteA__images" and "siteB__images", not one "images"
    names = [n.replace("/", "__") for n in unique_names([r.resolve() for r in roots])]
    for src, root, name in zip(map(Path, sources), roots, names):
        images = expand_inputs([src])
        if limit is not None and len(images) > limit:
            images = [images[i] for i in np.linspace(0, len(images) - 1, limit).round().astype(int)]
        out += [(name, root, p) for p in images]
    return out


def iter_prepare(sources, out, patches: bool = True, cells: str | None = None, patch_size: int = 224,
                 min_foreground: float = 0.05, max_per_image: int | None = None, limit: int | None = None,
                 seed: int = 0, segment_options: dict | None = None, append: bool = False,
                 cell_size: int | None = None):
    """Progress generator (one step per source image) that writes the training set and returns the manifest.
    Cell crops are the bounding box (RedDino) or, with ``cell_size``, a square of that many pixels centred on
    the cell, neighbours included and padded with the image's median colour, so that cell size and shape survive
    the resize to the model input. ``append`` keeps the rows of an existing manifest in ``out`` (a set built in
    several runs, each with its own options); rows for the same file are replaced."""
    if not patches and cells is None:
        raise InputError("Received neither patches nor cells; accepted: --patches and/or --cells "
                         f"{'|'.join(CELL_BACKENDS)}.")
    if cells is not None and cells not in CELL_BACKENDS:
        raise InputError(f"Received cells backend {cells!r}; accepted: {', '.join(CELL_BACKENDS)}.")
    if patch_size < 14 or not 0 <= min_foreground <= 1:
        raise InputError(f"Received patch size {patch_size}, min foreground {min_foreground}; accepted: a patch "
                         "size >= 14 and a foreground fraction in [0, 1].")
    if any(v is not None and v < 1 for v in (max_per_image, limit, cell_size)):
        raise InputError(f"Received max_per_image={max_per_image}, limit={limit}, cell_size={cell_size}; "
                         "accepted: positive integers.")
    from napari_reddino.images import ReadError
    from napari_reddino.outputs import Failures, output_stems

    out = Path(out)
    items = list_sources(sources, limit)
    rels = [path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
            for _, root, path in items]
    stems = {}  # 1.jpg beside 1.png: 1_jpg_*, 1_png_* (one stem would keep half the samples)
    for source in dict.fromkeys(s for s, _, _ in items):
        mine = [i for i, (s, _, _) in enumerate(items) if s == source]
        stems.update(zip(mine, output_stems([rels[i] for i in mine])))
    rng = np.random.default_rng(seed)
    rows, failures = [], Failures()
    if cells is not None:
        from napari_reddino.segment import segment  # heavy (cellpose): only when cells are asked for
    for done, (source, _, path) in enumerate(items):
        yield Progress(done, len(items), f"{source}: {path.name}")
        try:
            rgb = read_image(path)
        except (ReadError, MemoryError) as exc:  # reported in failed.csv; the others go on
            failures.add(f"{source}/{rels[done]}", exc)
            continue
        rel, stem = rels[done], stems[done]
        if patches:
            boxes = _pick(list(iter_patch_boxes(rgb, patch_size, min_foreground)), max_per_image, rng)
            for y0, x0, fg in boxes:
                name = f"patches/{source}/{stem}_y{y0}_x{x0}.png"
                _save_png(rgb[y0:y0 + patch_size, x0:x0 + patch_size], out / name)
                rows.append((name, source, rel, "patch", y0, x0, y0 + patch_size, x0 + patch_size, 0, -1, fg))
        if cells is not None:
            labels = np.asarray(segment(rgb, backend=cells, **(segment_options or {})), dtype=np.int32)
            classes = _class_of_cells(labels, point_classes(path))
            fill = np.median(rgb.reshape(-1, 3), axis=0).astype(np.uint8)
            for lab, y0, x0, y1, x1 in _pick(list(cell_boxes(labels)), max_per_image, rng):
                name = f"cells/{source}/{stem}_c{lab}.png"
                if cell_size:
                    y0, x0 = (y0 + y1 - cell_size) // 2, (x0 + x1 - cell_size) // 2
                    y1, x1 = y0 + cell_size, x0 + cell_size
                _save_png(padded_crop(rgb, y0, x0, y1, x1, fill=fill), out / name)
                rows.append((name, source, rel, "cell", y0, x0, y1, x1, lab, classes.get(lab, -1), np.nan))
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    if append and (out / "manifest.csv").is_file():
        old = pd.read_csv(out / "manifest.csv")
        manifest = pd.concat([old[~old["path"].isin(manifest["path"])], manifest], ignore_index=True)
    with atomic_path(out / "manifest.csv") as tmp:
        manifest.to_csv(tmp, index=False)
    failures.write(out / "failed.csv")
    manifest.attrs["failed"] = failures.rows
    yield Progress(len(items), len(items), "done")
    return manifest
