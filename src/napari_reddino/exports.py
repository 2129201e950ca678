"""Files other programs open: the analysed cells of a run as an AnnData ``cells.h5ad`` (scanpy), and per image
the cells as a QuPath GeoJSON of outlines (``<stem>_cells.geojson``) and as a Parquet table
(``<stem>_cells.parquet``). ``pipeline.write_pooled_outputs`` writes them for a run or a saved session;
``napari-reddino export RUN_DIR`` makes them from an existing run folder.

- ``cells.h5ad``: one row (``obs``) per analysed cell, i.e. per cell with RedDino features, in the order of
  ``cells.csv``; ``obs`` holds that table's columns (text as categoricals), index ``"<image>#<label>"``;
  ``obsm["X_reddino"]`` the features (float32), ``obsm["X_umap"]`` the map when there is one (NaN for a cell
  the map left out), ``uns["napari_reddino"]`` the model, steps, UMAP and run settings. Objects that were not
  embedded (white cells, platelets, ... by default) are left out, so the features hold no empty rows: they
  stay in ``cells.csv``, the Parquet tables and the GeoJSON. There is no ``X`` (0 variables): scanpy reads
  the features with ``use_rep="X_reddino"``. Written with h5py to anndata's on-disk format (0.8+,
  https://anndata.readthedocs.io/en/stable/fileformat-prose.html): anndata itself, for Python 3.11, needs
  pandas < 3.
- GeoJSON, as QuPath reads it (``qupath-core`` ``io/PathObjectTypeAdapters.java``: ``objectType``,
  ``classification`` {name, color}, ``measurements`` name -> number): a ``FeatureCollection`` with one
  feature per object. Coordinates are image pixels with QuPath's origin, the top-left corner of the image
  (QuPath docs, "Exporting annotations"): pixel (row r, column c) is the square [c, c+1] x [r, r+1], so a
  cell's ``centroid_x, centroid_y`` of ``cells.csv`` (pixel centres at whole numbers) is at ``x + 0.5,
  y + 0.5`` here. The outline runs along the cell's pixel edges, as QuPath's own Python library traces label
  images (qubalab ``ImageFeature.create_from_label_image``: 4-connected pieces of one label joined); a label
  in pieces that touch at most at a corner is a ``MultiPolygon``; holes are filled.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino.images import InputError

EXPORTS = ("h5ad", "geojson", "parquet")
H5AD_FILE = "cells.h5ad"
NOT_MEASUREMENTS = ("centroid_x", "centroid_y", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1")  # QuPath has its own
NOT_CELLS = ("cluster", "artefact")  # QuPath detections; the other objects are cells


def image_export_paths(out_dir, stem: str) -> dict[str, Path]:
    out = Path(out_dir)
    return {"geojson": out / f"{stem}_cells.geojson", "parquet": out / f"{stem}_cells.parquet"}


def write_exports(cells: pd.DataFrame, labels, features: dict, out_dir, stems: dict, info: dict | None = None,
                  to=EXPORTS) -> list[Path]:
    """Write ``to`` into ``out_dir``, each file atomically. ``cells``: the pooled cell table (``cells.csv``);
    ``labels(name)``: an image's label array or None; ``features``: image name -> (labels, (N, D) features);
    ``stems``: image name -> file stem; ``info``: what goes into ``uns["napari_reddino"]``."""
    from napari_reddino.atomic import atomic_path

    written: list[Path] = []
    images = cells["image"].astype(str) if len(cells) else pd.Series([], dtype=str)
    for name, stem in stems.items():
        table = cells[images.to_numpy() == name]
        paths = image_export_paths(out_dir, stem)
        if "parquet" in to:
            with atomic_path(paths["parquet"]) as tmp:
                table.to_parquet(tmp, index=False)
            written.append(paths["parquet"])
        lab = labels(name) if "geojson" in to else None
        if lab is not None:
            with atomic_path(paths["geojson"]) as tmp:
                tmp.write_text(json.dumps(cells_geojson(table, lab), separators=(",", ":")), encoding="utf-8")
            written.append(paths["geojson"])
    if "h5ad" in to and any(len(x) for _, x in features.values()):
        obs, obsm = h5ad_tables(cells, features)
        with atomic_path(Path(out_dir) / H5AD_FILE) as tmp:
            write_h5ad(tmp, obs, obsm, {"napari_reddino": dict(info or {}, left_out=int(len(cells) - len(obs)))})
        written.append(Path(out_dir) / H5AD_FILE)
    return written


# --- AnnData ----------------------------------------------------------------------------------------------
def h5ad_tables(cells: pd.DataFrame, features: dict) -> tuple[pd.DataFrame, dict]:
    """(obs, obsm) of the cells with features, in the order of ``cells``."""
    keys, rows = [], []
    for name, (ids, X) in features.items():
        if len(X):
            keys += [(str(name), int(i)) for i in ids]
            rows.append(np.asarray(X, np.float32))
    dims = {r.shape[1] for r in rows}
    if len(dims) > 1:
        raise InputError(f"Received features of {sorted(dims)} dimensions in one run; accepted: one model's "
                         "features for every image.")
    X = np.concatenate(rows)
    where = pd.Series(np.arange(len(keys)), index=pd.MultiIndex.from_tuples(keys, names=["image", "label"]))
    key = pd.MultiIndex.from_arrays([cells["image"].astype(str), cells["label"].astype(np.int64)])
    found = key.isin(where.index)
    obs = cells[found].reset_index(drop=True)
    obs.index = [f"{i}#{lbl}" for i, lbl in zip(obs["image"].astype(str), obs["label"].astype(np.int64))]
    obsm = {"X_reddino": X[where.loc[key[found]].to_numpy()]}
    if {"umap_x", "umap_y"} <= set(obs.columns) and obs[["umap_x", "umap_y"]].notna().any().all():
        obsm["X_umap"] = obs[["umap_x", "umap_y"]].to_numpy(np.float32)
    return obs, obsm


def write_h5ad(path, obs: pd.DataFrame, obsm: dict, uns: dict) -> Path:
    """An ``.h5ad`` of ``obs``, ``obsm`` and ``uns`` (no ``X``), in anndata's on-disk format 0.1.0 (elements
    as its specification says: dataframe 0.2.0, categorical 0.2.0, string-array 0.2.0, array 0.2.0, dict
    0.1.0). An ``obsm`` value may be :class:`Rows`, written batch by batch."""
    import h5py

    with h5py.File(path, "w") as f:
        _encode(f, "anndata", "0.1.0")
        _dataframe(f, "obs", obs)
        _dataframe(f, "var", pd.DataFrame(index=pd.Index([], dtype=object)))
        for group, items in (("obsm", obsm), ("varm", {}), ("obsp", {}), ("varp", {}), ("layers", {})):
            _mapping(f, group, items)
        _mapping(f, "uns", uns)
    return Path(path)


@dataclass(frozen=True)
class Rows:
    """An (n, d) array too large to hold, for :func:`write_h5ad`'s ``obsm``: ``batches`` yields its rows in
    order, a few thousand at a time, and each batch is written as it comes."""
    n: int
    d: int
    batches: Iterable
    dtype: str = "float32"

    def write(self, group, name: str):
        data = group.create_dataset(name, (self.n, self.d), self.dtype, chunks=(max(1, min(self.n, 4096)), self.d))
        at = 0
        for batch in self.batches:
            data[at:at + len(batch)] = batch
            at += len(batch)
        if at != self.n:
            raise ValueError(f"{name}: {at} rows written of {self.n}")
        return data


def _encode(obj, kind: str, version: str = "0.2.0") -> None:
    obj.attrs["encoding-type"] = kind
    obj.attrs["encoding-version"] = version


def _strings(group, key, values) -> None:
    import h5py

    data = np.array([str(v) for v in values], dtype=object)
    _encode(group.create_dataset(key, data=data, dtype=h5py.string_dtype("utf-8")), "string-array")


def _dataframe(f, key, df: pd.DataFrame) -> None:
    group = f.create_group(key)
    _encode(group, "dataframe")
    group.attrs["_index"] = "_index"
    group.attrs["column-order"] = [str(c) for c in df.columns]
    _strings(group, "_index", df.index)
    for col in df.columns:
        values = df[col].to_numpy()
        if values.dtype.kind in "biuf":
            _encode(group.create_dataset(str(col), data=values), "array")
        else:  # text (and anything else) as a categorical; missing or '' (as a CSV reads back) is code -1
            cat = pd.Categorical([_text(v) or None for v in values])
            sub = group.create_group(str(col))
            _encode(sub, "categorical")
            sub.attrs["ordered"] = False
            _encode(sub.create_dataset("codes", data=np.asarray(cat.codes)), "array")
            _strings(sub, "categories", cat.categories)


def _mapping(f, key, items: dict) -> None:
    """A dict as anndata stores ``uns``: text, numbers, lists of either, dicts; None is left out."""
    import h5py

    group = f.create_group(key)
    _encode(group, "dict", "0.1.0")
    for name, value in items.items():
        name = str(name)
        if value is None:
            continue
        if isinstance(value, Rows):
            _encode(value.write(group, name), "array")
        elif isinstance(value, dict):
            _mapping(group, name, value)
        elif isinstance(value, (bool, int, float, np.number, np.bool_)):
            _encode(group.create_dataset(name, data=value), "numeric-scalar")
        elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            _encode(group.create_dataset(name, data=value), "array")
        elif isinstance(value, (list, tuple)) and value and all(_number(v) for v in value):
            _encode(group.create_dataset(name, data=np.asarray(value)), "array")
        elif isinstance(value, (list, tuple)):
            _strings(group, name, value)
        else:
            _encode(group.create_dataset(name, data=str(value), dtype=h5py.string_dtype("utf-8")), "string")


# --- QuPath GeoJSON ---------------------------------------------------------------------------------------
def cells_geojson(table: pd.DataFrame, labels: np.ndarray) -> dict:
    """A ``FeatureCollection`` with one feature per row of ``table`` (one image's rows of the cell table)
    whose label is in ``labels``."""
    return {"type": "FeatureCollection", "features": geojson_features(table, cell_outlines(labels))}


def geojson_features(table: pd.DataFrame, outlines: dict) -> list[dict]:
    """One GeoJSON feature per row of ``table`` whose label has rings in ``outlines`` (label -> rings, as
    :func:`cell_outlines` gives, in any coordinates: a slide's tile gives them in level-0 slide pixels)."""
    colors = _class_colors()
    features = []
    for row in table.to_dict("records"):
        rings = outlines.get(int(row["label"]))
        if rings is None or not len(rings):
            continue
        polygons = [[ring.tolist()] for ring in rings]
        geometry = ({"type": "Polygon", "coordinates": polygons[0]} if len(polygons) == 1
                    else {"type": "MultiPolygon", "coordinates": polygons})
        kind = _text(row.get("type"))
        name = _text(row.get("class")) or _text(row.get("prediction")) or _type_name(kind)
        classification = {"name": name} | ({"color": colors[name]} if name in colors else {})
        measurements = {k: float(v) for k, v in row.items() if k not in NOT_MEASUREMENTS and _number(v)}
        properties = {"objectType": "detection" if kind in NOT_CELLS else "cell", "classification": classification,
                      "measurements": measurements, "label": int(row["label"]), "type": kind}
        properties |= {k: _text(row.get(k)) for k in ("image", "class", "prediction") if _text(row.get(k))}
        properties |= {k: bool(row[k]) for k in ("border", "analysed", "verified")
                       if k in row and isinstance(row[k], (bool, np.bool_))}
        features.append({"type": "Feature", "geometry": geometry, "properties": properties})
    return features


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)) \
        and bool(np.isfinite(value))


def _type_name(kind: str) -> str:
    from napari_reddino.style import TYPE_NAMES

    return TYPE_NAMES.get(kind, kind or "red cell")


def _class_colors() -> dict[str, list[int]]:
    """Classification name -> [r, g, b] 0-255: the annotation classes' colours, the object types' (style.py)."""
    from matplotlib.colors import to_rgb

    from napari_reddino.annotate import default_classes
    from napari_reddino.style import TYPE_COLORS, TYPE_NAMES, UNANNOTATED_COLOR

    named = {TYPE_NAMES[k]: c for k, c in TYPE_COLORS.items()} | {TYPE_NAMES["rbc"]: UNANNOTATED_COLOR}
    named |= {c.name: c.color for c in default_classes()}
    return {name: [round(255 * v) for v in to_rgb(c)] for name, c in named.items()}


def cell_outlines(labels: np.ndarray) -> dict[int, list[np.ndarray]]:
    """label -> its outlines, largest first: closed (n, 2) int arrays of x, y along the edges of its pixels
    (pixel corners at whole numbers), one per 4-connected piece, holes filled. Rings run counter-clockwise
    in x, y numbers (RFC 7946's rule for outer rings; on screen, with y down, they look clockwise)."""
    lab = np.pad(np.asarray(labels), 1)
    core = lab[1:-1, 1:-1]
    h, w = core.shape
    # each pixel edge between a cell and something else, walked with the cell on its right (y down): the
    # top edge left to right, the right edge downwards, the bottom edge right to left, the left edge upwards
    sides = (((slice(0, h), slice(1, w + 1)), (0, 0, 1, 0)), ((slice(1, h + 1), slice(2, w + 2)), (1, 0, 1, 1)),
             ((slice(2, h + 2), slice(1, w + 1)), (1, 1, 0, 1)), ((slice(1, h + 1), slice(0, w)), (0, 1, 0, 0)))
    parts = []
    for k, (neighbour, (ax, ay, bx, by)) in enumerate(sides):
        r, c = np.nonzero((core != lab[neighbour]) & (core != 0))
        # straight runs of edges become one segment (no other edge of the label leaves between them): the
        # rings are traced over a few segments a cell instead of every pixel edge
        label, fixed, moving = (core[r, c], r, c) if k % 2 == 0 else (core[r, c], c, r)
        order = np.lexsort((moving, fixed, label))
        label, fixed, moving, r, c = label[order], fixed[order], moving[order], r[order], c[order]
        new_run = np.ones(len(label), bool)
        new_run[1:] = (np.diff(label) != 0) | (np.diff(fixed) != 0) | (np.diff(moving) != 1)
        first = np.flatnonzero(new_run)
        last = np.append(first[1:], len(label)) - 1 if len(first) else first  # (no cell: no edge)
        if k in (2, 3):  # walked towards smaller x (bottom) or y (left): starts at the run's far end
            first, last = last, first
        parts.append(np.stack([label[first], c[first] + ax, r[first] + ay, c[last] + bx, r[last] + by],
                              axis=1).astype(np.int64))
    edges = np.concatenate(parts)
    edges = edges[np.argsort(edges[:, 0], kind="stable")]
    bounds = np.flatnonzero(np.diff(edges[:, 0])) + 1
    return {int(group[0, 0]): _label_rings(group[:, 1:], w + 1) for group in np.split(edges, bounds) if len(group)}


def _label_rings(edges: np.ndarray, width: int) -> list[np.ndarray]:
    """The outer rings of one label from its directed segments along pixel edges (x0, y0, x1, y1)."""
    start = (edges[:, 1] * width + edges[:, 0]).tolist()
    end = (edges[:, 3] * width + edges[:, 2]).tolist()
    direction = list(zip(np.sign(edges[:, 2] - edges[:, 0]).tolist(), np.sign(edges[:, 3] - edges[:, 1]).tolist()))
    leaving: dict[int, list[int]] = {}
    for i, s in enumerate(start):
        leaving.setdefault(s, []).append(i)
    used = np.zeros(len(edges), bool)
    rings = []
    for first in range(len(edges)):
        if used[first]:
            continue
        ring, i = [], first
        while True:
            used[i] = True
            ring.append(i)
            nxt = leaving[end[i]]
            if len(nxt) > 1:  # two pieces meet at this corner: turn right, into the same piece (4-connected)
                dx, dy = direction[i]
                nxt = [j for j in nxt if direction[j] == (-dy, dx)]
            i = nxt[0]
            if i == first:
                break
        turns = [k for k in range(len(ring)) if direction[ring[k]] != direction[ring[k - 1]]]
        points = edges[[ring[k] for k in turns], :2]
        area = 0.5 * float(np.sum(points[:, 0] * np.roll(points[:, 1], -1) - np.roll(points[:, 0], -1) * points[:, 1]))
        if area > 0:  # an outer ring (a hole's ring runs the other way)
            dx, dy = direction[ring[0]]  # a point inside: the centre of the first edge's pixel
            inside = (edges[ring[0], 0] + (dx - dy) / 2, edges[ring[0], 1] + (dx + dy) / 2)
            rings.append((area, np.vstack([points, points[:1]]), inside))
    rings.sort(key=lambda r: -r[0])
    if len(rings) > 1:  # a piece inside another's hole is covered by it once holes are filled
        from matplotlib.path import Path as Outline

        rings = [r for k, r in enumerate(rings)
                 if not any(Outline(o[1]).contains_point(r[2]) for o in rings[:k])]
    return [r[1] for r in rings]


def write_result_exports(result, cells: pd.DataFrame, out_dir) -> list[Path]:
    """Every export of a pipeline result (``cells``: its pooled table) into ``out_dir``."""
    from napari_reddino.outputs import output_stems

    names = [s.name for s in result.smears]
    smears = dict(zip(names, result.smears))
    features = {s.name: (s.embedded, s.embeddings) for s in result.smears if s.embeddings is not None}
    info = {"model": result.model, "steps": list(result.steps), "umap": result.umap_params or None}
    return write_exports(cells, lambda name: smears[name].labels, features, out_dir,
                         dict(zip(names, output_stems(names))), run_info(out_dir, info))


def run_info(folder, info: dict) -> dict:
    """``info`` with the settings of ``run.json`` in ``folder`` (written by ``napari-reddino run``), if any."""
    from napari_reddino import __version__

    try:
        settings = json.loads((Path(folder) / "run.json").read_text()).get("settings")
    except (OSError, ValueError, AttributeError):
        settings = None
    return {"napari_reddino_version": __version__, **info, "settings": settings}
