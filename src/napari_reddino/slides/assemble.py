"""A slide's tiles put together: global label ids in tile order, the labels as a lazy dask array written as
OME-Zarr chunk by chunk, the cell table and the features streamed into Parquet a tile at a time."""

from __future__ import annotations

import functools
from contextlib import ExitStack

import numpy as np
import pandas as pd

from napari_reddino.slides import ngff
from napari_reddino.slides.tiles import TilePlan, paint


def tile_boxes(folder, plan: TilePlan):
    """``(boxes (T, 4) y0 y1 x0 x1 of each tile's kept cells, first global id of each tile, total cells)``."""
    from napari_reddino.slides.tiled import tile_files

    boxes, counts = [], []
    for tile in plan.tiles:
        with np.load(tile_files(folder, tile)[1]) as f:
            boxes.append(f["box"])
            counts.append(int(f["cells"]))
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return np.asarray(boxes, np.int64).reshape(-1, 4), offsets, int(sum(counts))


def lazy_labels(folder, plan: TilePlan, chunk: int = 1024):
    """The slide's labels (int32) as a dask array; each chunk reads only the tiles whose kept cells lie over it
    and paints them in tile order (an earlier tile wins a pixel two kept cells claim)."""
    import dask.array as da

    from napari_reddino.slides.tiled import tile_files

    boxes, offsets, total = tile_boxes(folder, plan)
    if total >= 2 ** 31:
        raise ValueError(f"{total} cells do not fit int32 labels")
    files = [str(tile_files(folder, t)[1]) for t in plan.tiles]

    @functools.lru_cache(maxsize=8)
    def load(i):
        with np.load(files[i]) as f:
            return f["labels"]

    def block(block_info=None):
        (y0, y1), (x0, x1) = block_info[None]["array-location"]
        out = np.zeros((y1 - y0, x1 - x0), np.int32)
        over = np.flatnonzero((boxes[:, 0] < y1) & (boxes[:, 1] > y0) & (boxes[:, 2] < x1) & (boxes[:, 3] > x0))
        for i in over:
            by0, by1, bx0, bx1 = boxes[i]
            sy0, sy1, sx0, sx1 = max(y0, by0), min(y1, by1), max(x0, bx0), min(x1, bx1)
            local = load(i)[sy0 - by0:sy1 - by0, sx0 - bx0:sx1 - bx0].astype(np.int32)
            paint(out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0], np.where(local > 0, local + offsets[i], 0))
        return out

    h, w = plan.shape
    chunks = tuple(ngff.chunk_splits(n, chunk) for n in (h, w))
    return da.map_blocks(block, chunks=chunks, dtype=np.int32)


CELL_SCHEMA = {"type": "string", "border": "bool"}


def stream_tables(folder, plan: TilePlan, cells_path, features_path=None, image: str = "", predicted: bool = False):
    """Write the cell table (``<stem>_cells.parquet``; with ``predicted``, the tiles' ``prediction`` and
    ``confidence`` too) and, when the tiles hold features, the features table (``formats.features_frame``'s
    columns) one tile at a time; returns ``(cells, features rows)``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from napari_reddino.atomic import atomic_path
    from napari_reddino.cells import TABLE_COLUMNS
    from napari_reddino.formats import FEATURE_PREFIX
    from napari_reddino.slides.tiled import tile_files

    _, offsets, _ = tile_boxes(folder, plan)
    columns = TABLE_COLUMNS + ["type", "border"] + (["prediction", "confidence"] if predicted else [])
    cell_schema = pa.schema([(c, pa.int64() if c == "label" or c.startswith("bbox") else pa.float64())
                             for c in TABLE_COLUMNS] + [("type", pa.string()), ("border", pa.bool_())]
                            + ([("prediction", pa.string()), ("confidence", pa.float32())] if predicted else []))
    n_cells = n_feats = 0
    with ExitStack() as stack:
        cells_writer = stack.enter_context(pq.ParquetWriter(stack.enter_context(atomic_path(cells_path)),
                                                            cell_schema))
        feats_tmp = stack.enter_context(atomic_path(features_path)) if features_path else None
        feat_writer = None
        for tile, offset in zip(plan.tiles, offsets):
            frame = pd.read_parquet(tile_files(folder, tile)[0])
            frame["label"] = frame["label"].astype(np.int64) + offset
            cells_writer.write_table(pa.Table.from_pandas(frame[columns], cell_schema, preserve_index=False))
            n_cells += len(frame)
            emb = [c for c in frame.columns if str(c).startswith(FEATURE_PREFIX)]
            if feats_tmp is None or not emb:
                continue
            rows = frame[np.isfinite(frame[emb[0]].to_numpy())]
            feats = pd.concat([pd.DataFrame({"image": image, "label": rows["label"].to_numpy(np.int64),
                                             "centroid_x": rows["centroid_x"].to_numpy(),
                                             "centroid_y": rows["centroid_y"].to_numpy()}),
                               rows[emb].reset_index(drop=True).astype(np.float32)], axis=1)
            if feat_writer is None:
                schema = pa.schema([("image", pa.string()), ("label", pa.int64()), ("centroid_x", pa.float64()),
                                    ("centroid_y", pa.float64())] + [(c, pa.float32()) for c in emb])
                feat_writer = stack.enter_context(pq.ParquetWriter(feats_tmp, schema))
            feat_writer.write_table(pa.Table.from_pandas(feats, schema, preserve_index=False))
            n_feats += len(feats)
        if feats_tmp is not None and feat_writer is None:  # no cell embedded: an empty table says so
            pd.DataFrame(columns=["image", "label", "centroid_x", "centroid_y"]).to_parquet(feats_tmp, index=False)
    return n_cells, n_feats


def stream_geojson(folder, plan: TilePlan, path, image: str = "") -> int:
    """The tiles' outlines (``tiled.outlines_file``) streamed into one QuPath ``FeatureCollection`` at ``path``
    (written atomically), a feature at a time, with the slide's labels (as ``stream_tables`` numbers them) and
    its name; returns the number of features."""
    import json

    from napari_reddino.atomic import atomic_path
    from napari_reddino.slides.tiled import outlines_file

    _, offsets, _ = tile_boxes(folder, plan)
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write('{"type":"FeatureCollection","features":[')
        for tile, offset in zip(plan.tiles, offsets):
            with open(outlines_file(folder, tile), encoding="utf-8") as lines:
                for line in lines:
                    feature = json.loads(line)
                    props = feature["properties"]
                    props["label"] = label = props["label"] + int(offset)
                    props["measurements"]["label"] = float(label)
                    if image:
                        props["image"] = image
                    fh.write(("," if n else "") + json.dumps(feature, separators=(",", ":")))
                    n += 1
        fh.write("]}")
    return n
