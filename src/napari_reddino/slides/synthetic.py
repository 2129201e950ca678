"""A whole slide of any size composed from smaller smears, written as OME-Zarr chunk by chunk.

For benchmarks and tests (no whole-slide scan can be downloaded here): the slide is a mosaic of the given
smears, each placed whole (``fields`` of them, picked by a seeded hash of its grid position, every second one
mirrored so seams do not repeat), computed per chunk, so writing a 40,000 x 40,000 slide holds a few chunks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_reddino.slides import ngff


def _field_index(ty: np.ndarray, tx: np.ndarray, n: int, seed: int) -> np.ndarray:
    h = (ty.astype(np.int64) * 73856093) ^ (tx.astype(np.int64) * 19349663) ^ (seed * 83492791)
    return np.abs(h) % n


def mosaic(fields: list[np.ndarray], shape: tuple[int, int], chunk: int = ngff.CHUNK, seed: int = 0):
    """A lazy (H, W, 3) uint8 dask array tiled with ``fields`` (each (h, w, 3) uint8, all the same size)."""
    import dask.array as da

    stack = np.stack([np.asarray(f, np.uint8) for f in fields])
    n, fh, fw = stack.shape[:3]
    flipped = stack[:, :, ::-1]

    def block(block_info=None):
        (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
        yy, xx = np.mgrid[y0:y1, x0:x1]
        ty, tx = yy // fh, xx // fw
        which = _field_index(ty, tx, n, seed)
        flip = (ty + tx) % 2 == 1
        src = np.where(flip[..., None], flipped[which, yy % fh, xx % fw], stack[which, yy % fh, xx % fw])
        return src.astype(np.uint8)

    h, w = shape
    chunks = (ngff.chunk_splits(h, chunk), ngff.chunk_splits(w, chunk), (3,))
    return da.map_blocks(block, chunks=chunks, dtype=np.uint8)


def compose_slide(path, fields: list[np.ndarray], size: int | tuple[int, int], chunk: int = ngff.CHUNK,
                  seed: int = 0, pixel_size_um: float | None = None, progress=None) -> Path:
    """Write a ``size`` (side, or (height, width)) slide tiled with ``fields`` as OME-Zarr at ``path``."""
    shape = (size, size) if np.isscalar(size) else tuple(size)
    return ngff.write_image(path, mosaic(fields, shape, chunk, seed), chunk=chunk, pixel_size_um=pixel_size_um,
                            name=Path(path).stem, progress=progress)
