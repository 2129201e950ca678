"""The pooled file of a ``slide`` run: every slide's cells in one AnnData ``cells.h5ad`` (``exports.write_h5ad``'s
format), read back from the per-slide Parquet files.

``obs`` is each slide's ``<stem>_cells.parquet`` in order, with the slide's name in ``image`` (as ``run``'s
``cells.h5ad``) and index ``"<slide>#<label>"``; the centroid and box columns in level-0 slide pixels (the Parquet
holds the pixels of the level segmented; the measurements stay in those). With features, ``obs`` holds the cells
of ``<stem>_features.parquet`` (the embedded ones, in its order, as ``run`` leaves out objects that were not
embedded) and ``obsm["X_reddino"]`` their features, copied a few thousand rows at a time; ``obs`` itself is held
(about 200 bytes a cell). No ``obsm["X_umap"]``: a ``slide`` run makes no map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino.images import InputError

BATCH = 4096  # feature rows copied at a time
POSITION = ("centroid_x", "centroid_y", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1")


@dataclass(frozen=True)
class SlideCells:
    name: str  # the slide's name in the run (obs["image"])
    cells: Path  # <stem>_cells.parquet
    features: Path | None  # <stem>_features.parquet, with --features
    scale: float = 1.0  # level-0 pixels per pixel of the level segmented


def slide_obs(s: SlideCells) -> pd.DataFrame:
    """One slide's rows of ``obs``."""
    import pyarrow.parquet as pq

    cells = pd.read_parquet(s.cells)
    if s.features is not None:
        ids = pq.read_table(s.features, columns=["label"]).column("label").to_numpy()
        cells = cells.set_index("label").loc[ids].reset_index()
    cells.insert(0, "image", s.name)
    if s.scale != 1:
        for col in ("centroid_x", "centroid_y"):  # pixel centres at whole numbers, at either level
            cells[col] = (cells[col] + 0.5) * s.scale - 0.5
        for col in POSITION[2:]:  # pixel edges
            cells[col] = cells[col] * (int(s.scale) if float(s.scale).is_integer() else s.scale)
    cells.index = [f"{s.name}#{label}" for label in cells["label"].to_numpy()]
    return cells


def feature_columns(path) -> list[str]:
    import pyarrow.parquet as pq

    from napari_reddino.formats import FEATURE_PREFIX

    return [c for c in pq.read_schema(path).names if c.startswith(FEATURE_PREFIX)]


def feature_batches(slides, columns: dict):
    """The slides' feature rows in order, ``BATCH`` rows at a time, float32."""
    import pyarrow.parquet as pq

    for s in slides:
        if not columns[s.name]:
            continue
        for batch in pq.ParquetFile(s.features).iter_batches(batch_size=BATCH, columns=columns[s.name]):
            yield np.stack([batch.column(i).to_numpy(zero_copy_only=False) for i in range(batch.num_columns)],
                           axis=1).astype(np.float32, copy=False)


def write_slides_h5ad(path, slides: list[SlideCells], info: dict | None = None) -> int:
    """Write ``cells.h5ad`` of ``slides`` at ``path`` atomically; returns its number of cells."""
    from napari_reddino.atomic import atomic_path
    from napari_reddino.exports import Rows, write_h5ad

    parts = [slide_obs(s) for s in slides]
    obs = pd.concat(parts) if parts else pd.DataFrame()
    del parts  # obs alone is held while the file is written
    obsm = {}
    with_features = [s for s in slides if s.features is not None]
    if with_features:
        columns = {s.name: feature_columns(s.features) for s in with_features}
        dims = {len(c) for c in columns.values() if c}
        if len(dims) > 1:
            raise InputError(f"Received features of {sorted(dims)} dimensions in one run; accepted: one model's "
                             "features for every slide.")
        if dims:
            obsm["X_reddino"] = Rows(len(obs), dims.pop(), feature_batches(with_features, columns))
    uns = {"napari_reddino": dict(info or {}, slides=[s.name for s in slides],
                                  downsample=[float(s.scale) for s in slides])}
    with atomic_path(path) as tmp:
        write_h5ad(tmp, obs, obsm, uns)
    return len(obs)
