"""A whole slide segmented tile by tile, out of core, resumable.

1. The stain statistics and the red-cell diameter are measured once, from a coarse level (or a strided view).
2. Each tile is a *unit* (:class:`TileUnit`, picklable, no argument): it reads its window, segments it (any
   backend), keeps the cells whose centroid lies in its core (:mod:`napari_reddino.slides.tiles`), measures
   them in slide coordinates (the cell table, type, border flag against the *slide* border), optionally embeds
   them with RedDino, optionally classifies its red cells (a shipped classifier), and writes
   ``<stem>.tiles/<row>_<col>.parquet``, ``<row>_<col>.geojsonl`` (the kept cells' outlines, QuPath GeoJSON
   features in level-0 pixels) then ``<row>_<col>.npz`` (the kept cells' tile-local labels, cropped), each
   atomically. A unit whose ``.npz`` exists is skipped on a re-run
   (``<stem>.tiles/run.json`` holds the settings, checked as ``outputs.RunRecord`` does).
3. Assembly: global label ids in tile order; the labels a lazy dask array whose every chunk reads only the
   tiles over it (an earlier tile wins a pixel two kept cells claim), written as OME-Zarr; the cell table and
   the features streamed into Parquet, the outlines into ``<stem>_cells.geojson``, a tile at a time.

Peak memory is a tile's work (and a few label chunks), whatever the slide's size
(``benchmarks/results_slide.md``).
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino.images import InputError
from napari_reddino.progress import Progress
from napari_reddino.slides.tiles import Tile, TilePlan, plan_tiles, segment_tile


# --- reading ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def open_levels(path: str, level: int = 0) -> tuple:
    """``(levels from ``level`` down, each a lazy (y, x, 3) uint8 array; their size factors against the first)``
    of any slide ``slides.read.open_slide`` opens (OME-Zarr, OME-TIFF / pyramidal TIFF, TIFF, PNG/JPEG)."""
    from napari_reddino.slides.read import open_slide

    slide = open_slide(path, level)
    base = slide.downsample(level)
    levels = slide.levels[level:]
    return tuple(levels), tuple(slide.downsample(k) / base for k in range(level, len(slide.levels)))


def _window(data, y0, y1, x0, x1) -> np.ndarray:
    from napari_reddino.images import to_rgb_uint8

    return to_rgb_uint8(np.asarray(data[y0:y1, x0:x1, :3]))


def measure_slide(levels, factors, tile: int, threshold_scale: float = 0.7):
    """``(stain statistics, red-cell diameter in px)`` measured once for the slide, as ``segment`` does for a
    large image (``threshold.measure_large``)."""
    from napari_reddino.segment.threshold import estimate_image_diameter, measure_large

    h, w = levels[0].shape[:2]
    if max(h, w) <= tile:
        return estimate_image_diameter(_window(levels[0], 0, None, 0, None), threshold_scale)
    return measure_large(levels, factors, tile, threshold_scale)


# --- one tile -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """What shapes a tile's result (all of it goes into ``run.json``)."""
    backend: str
    opts: dict
    stats: object  # threshold.StainStats
    diameter: float
    model: str | None = None  # RedDino features when set
    cell_types: tuple = ("rbc",)
    embed_opts: dict = field(default_factory=dict)
    classifier: str | None = None  # a shipped classifier's name: every red cell's prediction and confidence

    def record(self) -> dict:
        return {"backend": self.backend, "opts": self.opts, "diameter": self.diameter, "model": self.model,
                "background": [round(float(v), 9) for v in self.stats.background],
                "threshold": float(self.stats.threshold), "cell_types": list(self.cell_types),
                "embed_opts": self.embed_opts} | ({"classifier": self.classifier} if self.classifier else {})


def segment_pixels(rgb: np.ndarray, s: Settings) -> np.ndarray:
    """One window's labels with the slide's stain statistics and diameter."""
    if s.backend == "threshold":
        from napari_reddino.segment.threshold import segment_threshold

        return segment_threshold(rgb, stats=s.stats, diameter=s.diameter, **s.opts)
    if s.backend == "learned":
        from napari_reddino.segment.learned import segment_learned

        return segment_learned(rgb, stats=s.stats, diameter=s.diameter, **s.opts)
    from napari_reddino.segment.cellpose import get_segmenter

    model_keys = ("weights", "device", "precision")
    segmenter = get_segmenter(**{k: s.opts[k] for k in model_keys if k in s.opts})
    return segmenter.segment(rgb, **{k: v for k, v in s.opts.items() if k not in model_keys})


@functools.lru_cache(maxsize=1)
def _model(spec: str, device: str):
    from napari_reddino.models import load_model
    from napari_reddino.runtime import resolve_device

    return load_model(spec, device=resolve_device(device))


@dataclass(frozen=True)
class TileDone:
    name: str
    cells: int
    reaching: int  # 1 when a kept cell's clump still reached an inner window edge
    skipped: bool = False


@dataclass(frozen=True)
class TileUnit:
    """One tile's work, picklable and called without arguments (for ``distribute.iter_map_units``)."""
    path: str
    level: int
    plan: TilePlan
    tile: Tile
    settings: Settings
    folder: str
    scale: float = 1.0  # level-0 pixels per pixel of the level segmented (the outlines are in level-0 pixels)

    @property
    def name(self) -> str:
        return self.tile.name

    def __call__(self) -> TileDone:
        return run_tile(self)


def tile_files(folder, tile: Tile) -> tuple[Path, Path]:
    return Path(folder) / f"{tile.name}.parquet", Path(folder) / f"{tile.name}.npz"


def outlines_file(folder, tile: Tile) -> Path:
    """The tile's cells as GeoJSON features, one a line, labelled 1..N as in its ``.parquet``."""
    return Path(folder) / f"{tile.name}.geojsonl"


def run_tile(unit: TileUnit) -> TileDone:
    from napari_reddino.atomic import atomic_path

    table_file, labels_file = tile_files(unit.folder, unit.tile)
    if labels_file.is_file() and table_file.is_file() and outlines_file(unit.folder, unit.tile).is_file():
        with np.load(labels_file) as done:
            return TileDone(unit.name, int(done["cells"]), int(done["reaching"]), skipped=True)
    data = open_levels(unit.path, unit.level)[0][0]
    s = unit.settings
    labels, window, keep, reaching, rgb = segment_tile(
        unit.tile, unit.plan, lambda *w: _window(data, *w), lambda px: segment_pixels(px, s))
    table = measure_kept(rgb, labels, keep, window, unit.plan.shape, s)
    if s.model and len(keep):
        table = _with_features(table, rgb, labels, keep, s)
    if s.classifier:
        table = _with_predictions(table, rgb, labels, keep, s)
    with atomic_path(table_file) as tmp:
        table.to_parquet(tmp, index=False)
    lut = np.zeros(int(labels.max(initial=0)) + 1, np.uint32)
    lut[keep] = np.arange(1, len(keep) + 1)
    local = lut[labels]
    box = _box(local, window)
    crop = local[box[0] - window[0]:box[1] - window[0], box[2] - window[2]:box[3] - window[2]]
    _write_outlines(outlines_file(unit.folder, unit.tile), table, crop, box, unit.scale)
    with atomic_path(labels_file) as tmp:  # last: the tile is done when its .npz is there
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, labels=crop, box=np.asarray(box, np.int64), cells=len(keep), reaching=reaching)
    return TileDone(unit.name, len(keep), reaching)


def _write_outlines(path, table: pd.DataFrame, crop: np.ndarray, box, scale: float) -> None:
    """The kept cells' outlines (``exports.cell_outlines``, along their pixels' edges) as QuPath GeoJSON
    features in level-0 slide pixels, one a line, written atomically."""
    import json

    from napari_reddino.atomic import atomic_path
    from napari_reddino.exports import cell_outlines, geojson_features
    from napari_reddino.formats import FEATURE_PREFIX

    table = table[[c for c in table.columns if not str(c).startswith(FEATURE_PREFIX)]]  # measurements, not features
    outlines = cell_outlines(crop) if len(table) else {}
    origin = np.array([box[2], box[0]], np.int64)  # x, y of the crop's corner in the level's pixels
    scale = int(scale) if float(scale).is_integer() else float(scale)
    outlines = {k: [(ring + origin) * scale for ring in rings] for k, rings in outlines.items()}
    lines = [json.dumps(f, separators=(",", ":")) + "\n" for f in geojson_features(table, outlines)]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines), encoding="utf-8")


def _box(local: np.ndarray, window) -> tuple[int, int, int, int]:
    """The kept cells' bounding box in slide pixels (empty at the window's corner when none is kept)."""
    rows, cols = np.flatnonzero(local.any(1)), np.flatnonzero(local.any(0))
    if not len(rows):
        return window[0], window[0], window[2], window[2]
    return (window[0] + int(rows[0]), window[0] + int(rows[-1]) + 1,
            window[2] + int(cols[0]), window[2] + int(cols[-1]) + 1)


def measure_kept(rgb, labels, keep, window, shape, s: Settings) -> pd.DataFrame:
    """The kept cells' rows (``cell_table`` + type + border), numbered 1..N in ``keep`` order, in slide
    coordinates; measured on the whole window (a cell's neighbours shape its type, as in one piece)."""
    from napari_reddino.cells import TABLE_COLUMNS, cell_table
    from napari_reddino.segment.types import object_types

    table = cell_table(labels, rgb)
    table = table[table["label"].isin(keep)].reset_index(drop=True)
    types = object_types(rgb, labels, s.diameter, keep, stats=s.stats)
    table["type"] = types["type"].to_numpy(dtype=object).astype(str)
    table["label"] = np.arange(1, len(table) + 1, dtype=np.int64)
    y0, x0 = window[0], window[2]
    for col, off in (("centroid_y", y0), ("centroid_x", x0), ("bbox_y0", y0), ("bbox_y1", y0), ("bbox_x0", x0),
                     ("bbox_x1", x0)):
        table[col] = table[col] + off
    h, w = shape
    table["border"] = ((table["bbox_y0"] == 0) | (table["bbox_x0"] == 0) | (table["bbox_y1"] == h)
                       | (table["bbox_x1"] == w)).to_numpy(bool)
    return table[TABLE_COLUMNS + ["type", "border"]]


def _with_features(table, rgb, labels, keep, s: Settings) -> pd.DataFrame:
    from napari_reddino.embed import iter_embed_cells
    from napari_reddino.formats import FEATURE_PREFIX
    from napari_reddino.progress import run

    from napari_reddino.segment.types import select_cells

    chosen = select_cells(table, s.cell_types)
    opts = {k: v for k, v in s.embed_opts.items() if k != "device"}
    if not chosen.any():
        return table
    _, emb = run(iter_embed_cells(rgb, labels, _model(s.model, s.embed_opts.get("device", "cpu")),
                                  label_ids=np.asarray(keep)[chosen], **opts))
    full = np.full((len(table), emb.shape[1]), np.nan, np.float32)
    full[chosen] = emb
    feats = pd.DataFrame(full, columns=[f"{FEATURE_PREFIX}{i}" for i in range(emb.shape[1])])
    return pd.concat([table, feats], axis=1)


def _with_predictions(table, rgb, labels, keep, s: Settings) -> pd.DataFrame:
    """``prediction`` and ``confidence`` of the shipped classifier ``s.classifier`` for every red cell ('' and
    NaN for the other objects), as ``pipeline.predict_cells``; measured on the tile's window (sizes relative to
    the slide's red-cell diameter and the tile's median red cell), with the cells' features when the classifier
    takes them (else from morphology alone, as ``classifier.choose`` says)."""
    from napari_reddino.classifier import classify_smear
    from napari_reddino.formats import FEATURE_PREFIX

    red = (table["type"] == "rbc").to_numpy()
    table["prediction"] = ""
    table["confidence"] = np.full(len(table), np.nan, np.float32)
    if not red.any():
        return table
    emb = table.loc[red, [c for c in table.columns if str(c).startswith(FEATURE_PREFIX)]].to_numpy(np.float32)
    emb = emb if emb.shape[1] and np.isfinite(emb).all() else None
    sizes = pd.DataFrame({"label": np.asarray(keep)[red]})
    sizes.attrs["diameter"] = s.diameter
    got, _ = classify_smear(rgb, labels, sizes, sizes["label"].to_numpy(), emb, s.model if emb is not None else None,
                            s.classifier, stats=s.stats)
    table.loc[red, "prediction"] = got["prediction"].to_numpy(object)
    table.loc[red, "confidence"] = got["confidence"].to_numpy(np.float32)
    return table


# --- running the units (the lead swaps in distribute.iter_map_units) -----------------------------------------
@dataclass(frozen=True)
class UnitFailed:
    name: str
    error: str


def _run_units(units, what: str = "tiles"):
    """Progress generator calling each unit in turn; returns each one's value, or a :class:`UnitFailed`, in
    unit order (the contract of ``distribute.iter_map_units``)."""
    values = []
    yield Progress(0, len(units), what)
    for i, unit in enumerate(units, 1):
        try:
            values.append(unit())
        except Exception as exc:  # noqa: BLE001 - a failed unit is reported; the others go on
            values.append(UnitFailed(unit.name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
        yield Progress(i, len(units), what)
    return values


# --- a whole slide ------------------------------------------------------------------------------------------
@dataclass
class SlideResult:
    cells: int
    features: int
    files: dict
    tiles: int
    reaching: int  # tiles where a kept cell's clump still reached an inner window edge
    skipped: int  # tiles done before (--resume)
    failed: list = field(default_factory=list)  # UnitFailed of the tiles that failed (nothing assembled)


def slide_files(out, stem: str) -> dict[str, Path]:
    out = Path(out)
    return {"labels": out / f"{stem}_labels.zarr", "cells": out / f"{stem}_cells.parquet",
            "features": out / f"{stem}_features.parquet", "geojson": out / f"{stem}_cells.geojson",
            "tiles": out / f"{stem}.tiles"}


def level_scale(path, level: int) -> float:
    """Level-0 pixels per pixel of ``level``: the pyramid's factor (2, 4, ...) when the sizes are within 1 % of
    it (a halving pyramid rounds odd sizes), else the ratio of the widths."""
    from napari_reddino.slides.read import open_slide

    slide = open_slide(str(path), level)
    try:
        ratio = float(slide.downsample(level))
    finally:
        slide.close()
    return float(round(ratio)) if abs(ratio - round(ratio)) <= 0.01 * ratio else ratio


def iter_segment_slide(path, out, stem: str, *, level: int = 0, tile: int = 2048, backend: str = "learned",
                       opts: dict | None = None, model: str | None = None, cell_types=("rbc",),
                       embed_opts: dict | None = None, resume: bool = False, keep_tiles: bool = False,
                       labels_beside: bool = False, image: str = "", classifier: str | None = None,
                       run_units=None):
    """Progress generator: segment (and optionally embed) the slide at ``path`` tile by tile into ``out``;
    returns a :class:`SlideResult`. ``run_units``: a progress generator over units (default the sequential
    :func:`_run_units`; ``distribute.iter_map_units`` has the same contract)."""
    from napari_reddino.outputs import RunRecord
    from napari_reddino.segment import BACKENDS
    from napari_reddino.segment.threshold import is_auto
    from napari_reddino.slides import assemble, ngff

    if backend not in BACKENDS:
        raise InputError(f"Received backend {backend!r}; accepted: {', '.join(BACKENDS)}.")
    if tile < 256:
        raise InputError(f"Received --tile {tile}; accepted: 256 pixels or more (2048 is the default).")
    path, opts = str(path), dict(opts or {})
    files = slide_files(out, stem)
    if labels_beside and (level or not ngff.is_ome_zarr(path)):
        raise InputError(f"Received --labels-beside for {path} at level {level}; accepted: an OME-Zarr slide "
                         "segmented at level 0 (its labels then live in <slide>/labels/cells).")
    yield Progress(0, 1, "measuring the stain")
    levels, factors = open_levels(path, level)
    stats, estimate = measure_slide(levels, factors, tile, opts.pop("threshold_scale", 0.7))
    given = opts.pop("diameter", None)
    diameter = estimate if given is None or is_auto(given) else float(given)
    if backend == "cellpose":  # Cellpose-SAM chooses its own scale unless told; the plan and types use ours
        from napari_reddino.segment.cellpose import resolve_weights

        opts["diameter"] = None if given is None else diameter
        opts["weights"] = str(resolve_weights(None, opts.get("weights")))  # a missing model: one line, before work
    elif backend == "learned" and opts.get("weights"):
        from napari_reddino.segment.learned import load_segmenter

        load_segmenter(opts["weights"])
    align = 1
    if backend == "learned":  # tiles on the network's grid: their centres are the whole slide's
        from napari_reddino.segment.learned import tile_grid

        diameter, align = tile_grid(diameter)
    plan = plan_tiles(levels[0].shape[:2], tile, diameter, align=align)
    settings = Settings(backend, opts, stats, float(diameter), model, tuple(cell_types), dict(embed_opts or {}),
                        classifier)
    folder = files["tiles"]
    if not resume and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    RunRecord(folder, "slide", {"slide": path, "level": level, "shape": list(plan.shape), "tile": plan.tile,
                                "overlap": plan.overlap, **settings.record()}).start(resume)
    scale = level_scale(path, level) if level else 1.0
    units = [TileUnit(path, level, plan, t, settings, str(folder), scale) for t in plan.tiles]
    values = yield from (run_units or _run_units)(units, what=f"{image or stem}: tiles")
    failed = [v for v in values if isinstance(v, UnitFailed)]
    done = [v for v in values if not isinstance(v, UnitFailed)]
    reaching, skipped = sum(v.reaching for v in done), sum(v.skipped for v in done)
    if failed:
        return SlideResult(0, 0, {}, len(plan), reaching, skipped, failed)
    yield Progress(0, 2, "writing the tables")
    n_cells, n_feats = assemble.stream_tables(folder, plan, files["cells"], files["features"] if model else None,
                                              image or stem, predicted=bool(classifier))
    assemble.stream_geojson(folder, plan, files["geojson"], image or stem)
    yield Progress(1, 2, "writing the labels")
    labels = assemble.lazy_labels(folder, plan)
    if labels_beside:
        written = ngff.write_labels(path, "cells", labels)
    else:
        written = ngff.write_label_image(files["labels"], labels)
    yield Progress(2, 2, "writing the labels")
    written_files = {"labels": written, "cells": files["cells"], "geojson": files["geojson"]}
    if model:
        written_files["features"] = files["features"]
    if not keep_tiles:
        shutil.rmtree(folder)
    return SlideResult(n_cells, n_feats, written_files, len(plan), reaching, skipped)
