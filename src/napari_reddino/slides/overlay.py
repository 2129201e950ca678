"""The PCA overlay of a whole slide, tile by tile: the same recipe as :mod:`napari_reddino.pca`, out of core.

The slide is enlarged so a red cell spans about six patches, as for one field (``pca_resolution``), but by
an exact ratio ``patch / q`` (``q`` whole slide pixels per patch), so every tile is enlarged with the same
arithmetic wherever it lies (:func:`enlarge_exact`) and the model's windows fall on one grid over the whole
slide: tile by tile gives the same overlay as one piece (the test), with no seams. The three components are
fitted once on a few tiles that hold cells (``<stem>_pca_fit.npz``), each tile's overlay is written as one
unit (``<stem>.pca_tiles/<row>_<col>.npz``, atomically: a re-run skips the tiles done), and the tiles are
assembled chunk by chunk into a multiscale OME-Zarr image (``<stem>_pca.zarr``, RGB on black, one pixel per
patch, placed on the slide by its scale and translation).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from napari_reddino.images import InputError
from napari_reddino.progress import Progress
from napari_reddino.slides import ngff

TILE_WINDOWS = 8  # model windows per tile side: 8 x 224 px enlarged, about 900 slide px at 2x
SAMPLE_TILES = 4  # tiles the three components are fitted on


@dataclass(frozen=True)
class OverlayPlan:
    """Where the overlay's grid lies on a slide of ``shape`` (y, x) pixels."""
    shape: tuple[int, int]
    q: int  # slide pixels per patch after enlargement (the enlargement is patch / q)
    patch: int
    window: int  # the model's input, in enlarged pixels (a multiple of patch)
    tile_windows: int = TILE_WINDOWS

    @property
    def factor(self) -> float:
        return self.patch / self.q

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(-(-s // self.q) for s in self.shape)

    def edges(self, axis: int) -> list[int]:
        """Tile boundaries along ``axis`` in grid cells: whole windows per tile, so no window straddles two
        tiles; a remainder shorter than one window joins the tile before it, where the window flush with the
        slide's end (``patch_features``' last window) lies in one piece too."""
        n = self.window // self.patch
        per_tile, cells = self.tile_windows * n, self.grid[axis]
        edges = list(range(0, cells, per_tile)) + [cells]
        if len(edges) > 2 and edges[-1] - edges[-2] < n:
            del edges[-2]
        return edges

    def tiles(self) -> list[tuple[int, int]]:
        return [(r, c) for r in range(len(self.edges(0)) - 1) for c in range(len(self.edges(1)) - 1)]

    def bounds(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The tile's slide pixels ``y0, y1, x0, x1`` (the last tiles padded to whole patches past the edge)."""
        ey, ex = self.edges(0), self.edges(1)
        return ey[row] * self.q, ey[row + 1] * self.q, ex[col] * self.q, ex[col + 1] * self.q

    def scale_translate(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The overlay pixel's size and the first one's centre on the slide (pixel centres at integers)."""
        return (float(self.q), float(self.q)), ((self.q - 1) / 2, (self.q - 1) / 2)


def plan_overlay(shape, patch: int, window: int, diameter: float, resolution="auto",
                 tile_windows: int = TILE_WINDOWS) -> OverlayPlan:
    """The plan for a slide of ``shape`` whose red cells are ``diameter`` px: ``resolution`` as
    :func:`napari_reddino.pca_resolution.parse_resolution` (auto: a red cell spans about 6 patches)."""
    from napari_reddino.pca_resolution import CELL_PATCHES, MAX_FACTOR, parse_resolution

    wanted = parse_resolution(resolution)
    if wanted == "auto":
        wanted = float(np.clip(CELL_PATCHES * patch / max(float(diameter), 1.0), 1.0, MAX_FACTOR))
    q = int(np.clip(round(patch / wanted), math.ceil(patch / MAX_FACTOR), patch))
    return OverlayPlan((int(shape[0]), int(shape[1])), q, int(patch), int(window), int(tile_windows))


def _phases(q: int, patch: int):
    """For enlarging by patch / q with bilinear weights (pixel centres aligned, as OpenCV's): the source
    pixel and the weight of the next one for each of the ``patch`` outputs of one period of ``q`` inputs."""
    pos = (np.arange(patch) + 0.5) * q / patch - 0.5
    base = np.floor(pos).astype(np.int64)
    return base, (pos - base).astype(np.float32)


def enlarge_exact(crop: np.ndarray, q: int, patch: int, lead: int = 0) -> np.ndarray:
    """Enlarge ``crop`` ((h, w, 3) uint8, h and w multiples of ``q``) by ``patch / q`` along both axes.
    The weights repeat every ``q`` input pixels, so a crop cut anywhere on that grid enlarges to the same
    pixels as the whole image (pixels beyond the crop are taken as its edge: read a margin of ``q``)."""
    base, w = _phases(q, patch)
    out = crop.astype(np.float32)
    for axis in (0, 1):
        n = out.shape[axis] // q
        src = (np.arange(n)[:, None] * q + base[None, :]).ravel()
        weight = np.tile(w, n)
        lo = np.clip(src, 0, out.shape[axis] - 1)
        hi = np.clip(src + 1, 0, out.shape[axis] - 1)
        shape = [1, 1, 1]
        shape[axis] = -1
        weight = weight.reshape(shape)
        out = np.take(out, lo, axis=axis) * (1 - weight) + np.take(out, hi, axis=axis) * weight
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def tile_grid(slide, plan: OverlayPlan, row: int, col: int, model, batch_size: int = 8,
              precision: str = "auto") -> np.ndarray:
    """Patch features ``(gh, gw, D)`` float16 of one tile, read with a margin of one patch so that its
    enlargement is the one the whole slide would get."""
    from napari_reddino.patch_features import patch_features

    y0, y1, x0, x1 = plan.bounds(row, col)
    h, w = plan.shape
    q = plan.q
    a, b = max(0, y0 - q), y1 + q if y1 < h else y1
    c, d = max(0, x0 - q), x1 + q if x1 < w else x1
    crop = np.asarray(slide[a:min(b, h), c:min(d, w)])
    crop = np.pad(crop, ((0, b - a - crop.shape[0]), (0, d - c - crop.shape[1]), (0, 0)), mode="edge")
    big = enlarge_exact(crop, q, plan.patch)
    p = plan.patch
    ya, xa = (y0 - a) // q * p, (x0 - c) // q * p
    big = big[ya:ya + (y1 - y0) // q * p, xa:xa + (x1 - x0) // q * p]
    return patch_features(big, model, tile=plan.window, batch_size=batch_size, precision=precision)


@dataclass(frozen=True)
class Source:
    """A slide a unit can open in its own process: a file or OME-Zarr folder and level (``slides.read``), or
    an array in memory."""
    path: str | None = None
    level: int = 0
    array: object = None

    def open(self):
        from napari_reddino.slides.read import open_slide

        return self.array if self.array is not None else open_slide(self.path, self.level).data


@dataclass(frozen=True)
class OverlayTile:
    """One tile's overlay, written to ``<tiles>/<row>_<col>.npz`` (skipped when it is there)."""
    source: Source
    plan: OverlayPlan
    row: int
    col: int
    fit_path: str
    tiles_dir: str
    model: str
    device: str = "cpu"
    precision: str = "auto"
    batch_size: int = 8

    @property
    def name(self) -> str:
        return f"overlay tile {self.row},{self.col}"

    @property
    def path(self) -> Path:
        return Path(self.tiles_dir) / f"{self.row}_{self.col}.npz"

    def __call__(self) -> Path:
        from napari_reddino.atomic import atomic_path
        from napari_reddino.models import load_model
        from napari_reddino.pca import PatchPCA

        if self.path.is_file():
            return self.path
        model = load_model(self.model, device=self.device)
        grid = tile_grid(self.source.open(), self.plan, self.row, self.col, model, self.batch_size, self.precision)
        rgb = PatchPCA.load(self.fit_path).transform(grid)
        with atomic_path(self.path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, rgb=np.rint(rgb * 255).astype(np.uint8))
        return self.path


def sample_tiles(plan: OverlayPlan, n: int = SAMPLE_TILES, slide=None) -> list[tuple[int, int]]:
    """``n`` tiles spread over the slide (evenly along the tile order), preferring ones that hold cells."""
    from napari_reddino.pca_resolution import look_for_cells

    tiles = plan.tiles()
    order = [tiles[int(i)] for i in np.linspace(0, len(tiles) - 1, min(len(tiles), 4 * n)).round()]
    order = list(dict.fromkeys(order))
    if slide is None:
        return order[:n]
    with_cells = []
    for row, col in order:
        y0, y1, x0, x1 = plan.bounds(row, col)
        if look_for_cells(np.asarray(slide[y0:y1, x0:x1])).found:
            with_cells.append((row, col))
        if len(with_cells) == n:
            break
    return with_cells or order[:n]


def iter_slide_overlay(source: Source, model_spec: str, out_dir, stem: str, *, diameter: float | None = None,
                       resolution="auto", tile_windows: int = TILE_WINDOWS, device: str = "cpu",
                       precision: str = "auto", batch_size: int = 8, workers: int = 1, scheduler: str | None = None,
                       chunk: int = ngff.CHUNK):
    """The slide's PCA overlay written as ``<out_dir>/<stem>_pca.zarr`` (progress generator; returns the path).
    ``diameter``: the red-cell diameter in slide pixels (measured from a strided view when None); the tiles
    run where ``workers``/``scheduler`` say (:func:`napari_reddino.distribute.iter_map_units`)."""
    from napari_reddino.atomic import atomic_path
    from napari_reddino.distribute import UnitFailed, iter_map_units
    from napari_reddino.models import load_model
    from napari_reddino.patch_features import model_patch_size, model_square_input
    from napari_reddino.pca import fit_pca
    from napari_reddino.pca_resolution import look_for_cells

    slide = source.open()
    out = Path(out_dir)
    h, w = slide.shape[:2]
    if diameter is None:
        step = max(1, int(np.ceil(max(h, w) / 2048)))
        seen = look_for_cells(np.asarray(slide[::step, ::step]))
        if not seen.found:
            from napari_reddino.pca_resolution import NoCellsFound

            raise NoCellsFound(stem, seen.reason)
        if step > 1:  # in a strided view of a big slide a cell is a few pixels: measured where it is stained
            from napari_reddino.slides.tiled import measure_slide

            diameter = measure_slide((slide,), (1.0,), 2048)[1]
        else:
            diameter = seen.diameter
    model = load_model(model_spec, device=device)
    plan = plan_overlay((h, w), model_patch_size(model), model_square_input(model), diameter, resolution,
                        tile_windows)
    tiles_dir = out / f"{stem}.pca_tiles"
    settings = {"plan": asdict(plan), "model": str(model_spec), "precision": precision, "source": source.path,
                "level": source.level}
    _check_settings(tiles_dir, settings)
    fit_path = out / f"{stem}_pca_fit.npz"
    if not fit_path.is_file():
        picked = sample_tiles(plan, slide=slide)
        grids = []
        for k, (row, col) in enumerate(picked):
            grids.append(tile_grid(slide, plan, row, col, model, batch_size, precision))
            yield Progress(k + 1, len(picked), "PCA overlay: fitting the colours")
        fit = fit_pca(grids)
        fit.meta.update({"tiles": [list(t) for t in picked]})
        fit.save(fit_path)
        del grids
    units = [OverlayTile(source, plan, r, c, str(fit_path), str(tiles_dir), str(model_spec), device, precision,
                         batch_size) for r, c in plan.tiles()]
    results = yield from iter_map_units(units, workers, scheduler, what="PCA overlay tiles")
    failed = [r for r in results if isinstance(r, UnitFailed)]
    if failed:
        raise InputError(f"PCA overlay of {stem!r}: {len(failed)} of {len(units)} tiles failed ({failed[0].name}: "
                         f"{failed[0].why}); run it again to redo only those.")
    target = out / f"{stem}_pca.zarr"
    scale, translate = plan.scale_translate()
    yield Progress(0, 1, "PCA overlay: writing")
    ngff.write_image(target, assembled(plan, tiles_dir, chunk), chunk=chunk, name=f"{stem} PCA", scale=scale,
                     translate=translate)
    with atomic_path(tiles_dir / "done.json") as tmp:
        tmp.write_text(json.dumps({"overlay": target.name}), encoding="utf-8")
    yield Progress(1, 1, "PCA overlay: writing")
    return target


def _check_settings(tiles_dir: Path, settings: dict) -> None:
    from napari_reddino.atomic import atomic_path

    path = tiles_dir / "settings.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != json.loads(json.dumps(settings)):
            raise InputError(f"Received a folder whose overlay tiles ({tiles_dir.name}) were made with other settings; "
                             "accepted: the same settings, or remove that folder and its _pca_fit.npz to start again.")
        return
    tiles_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(settings, indent=1), encoding="utf-8")


def assembled(plan: OverlayPlan, tiles_dir, chunk: int = ngff.CHUNK):
    """The overlay's grid as a lazy (gh, gw, 3) uint8 dask array; each chunk reads only the tiles under it."""
    import dask.array as da

    gh, gw = plan.grid
    ey, ex = np.array(plan.edges(0)), np.array(plan.edges(1))
    tiles_dir = Path(tiles_dir)

    def block(block_info=None):
        (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
        out = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        for r in range(np.searchsorted(ey, y0, "right") - 1, np.searchsorted(ey, y1 - 1, "right")):
            for c in range(np.searchsorted(ex, x0, "right") - 1, np.searchsorted(ex, x1 - 1, "right")):
                with np.load(tiles_dir / f"{r}_{c}.npz") as z:
                    rgb = z["rgb"]
                ty, tx = ey[r], ex[c]
                sy0, sy1 = max(y0, ty), min(y1, ty + rgb.shape[0])
                sx0, sx1 = max(x0, tx), min(x1, tx + rgb.shape[1])
                out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0 - ty:sy1 - ty, sx0 - tx:sx1 - tx]
        return out

    chunks = (ngff.chunk_splits(gh, chunk), ngff.chunk_splits(gw, chunk), (3,))
    return da.map_blocks(block, chunks=chunks, dtype=np.uint8)
