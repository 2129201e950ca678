"""Which tile owns a cell: the one home of the tile plan, for the in-memory tiled segmentation
(``segment._tiled``) and the out-of-core slide engine (:mod:`napari_reddino.slides.tiled`) alike.

Tiles of ``tile`` px overlap by ``overlap`` px (3 red-cell diameters by default: a cell near a core's edge is
seen whole, with its neighbours, by the tile that keeps it). The tiles' *cores* partition the slide: the
border between two neighbouring cores is the middle of their shared strip, so a cell's centroid lies in
exactly one core and the cell is taken, whole, from that tile only (a cell on a tile corner too).

A segmenter sees a clump of touching cells as a whole (its area, its markers, its watershed): a kept cell in a
clump that runs out of the tile's window would be split differently than in one piece. So a tile whose kept
cells' clump reaches an inner edge of its window is segmented again with the window grown by the overlap on
that side (``MAX_GROW`` times at most, which bounds a tile's memory). A clump already longer than the growth
could hold (a crowded field, where touching cells make one web) is not chased: those tiles are counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OVERLAP_DIAMETERS = 3.0  # default overlap, in red-cell diameters
DEFAULT_DIAMETER = 40.0  # px, when no diameter is known
MAX_GROW = 2  # times a window may grow by the overlap on each side
EDGE_BAND = 4  # px: a clump this close to an inner window edge reaches it (the stain's smoothing differs there)


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap`` shared, spread
    evenly (the last tile is not pushed back over its neighbour), each a multiple of ``align`` (then the last
    tile runs on to the end: up to ``align - 1`` px longer)."""
    if length <= tile:
        return [0]
    last = (length - tile) // align * align
    step = (tile - overlap) // align * align
    if last == 0:
        return [0]
    if align > 1 and step < 2 * align:
        from napari_reddino.images import InputError

        raise InputError(f"Received tiles of {tile} px for cells that need {overlap} px of overlap; accepted: tiles "
                         f"of at least {overlap + 2 * align} px.")
    n = int(np.ceil(last / (step - (align if align > 1 else 0)))) + 1
    return sorted({align * int(i * last / (n - 1) / align + (0.5 if align == 1 else 0)) for i in range(n)})


def _borders(starts: list[int], ends: list[int], length: int) -> list[int]:
    """Core borders along one axis: 0, the middle of each shared strip, ``length``."""
    return [0] + [(b + end) // 2 for b, end in zip(starts[1:], ends)] + [length]


def _ends(starts: list[int], tile: int, length: int) -> list[int]:
    return [min(s + tile, length) for s in starts[:-1]] + [length]


@dataclass(frozen=True)
class Tile:
    """One tile: its place in the grid, its window and its core (slide pixels, end exclusive)."""
    row: int
    col: int
    window: tuple[int, int, int, int]  # y0, y1, x0, x1
    core: tuple[int, int, int, int]

    @property
    def name(self) -> str:
        return f"{self.row}_{self.col}"

    def core_ids(self, labels: np.ndarray) -> np.ndarray:
        """The ids of ``labels`` (this tile's window, segmented) whose centroid lies in the core."""
        ids, cents = centroids(labels)
        if not len(ids):
            return ids
        y = cents[:, 0] + self.window[0]
        x = cents[:, 1] + self.window[2]
        cy0, cy1, cx0, cx1 = self.core
        return ids[(y >= cy0) & (y < cy1) & (x >= cx0) & (x < cx1)]


@dataclass(frozen=True)
class TilePlan:
    shape: tuple[int, int]
    tile: int
    overlap: int
    tiles: tuple[Tile, ...]

    def __len__(self) -> int:
        return len(self.tiles)


def plan_tiles(shape, tile: int, diameter: float | None = None, overlap: int | None = None,
               align: int = 1) -> TilePlan:
    """Tiles of ``tile`` px over a (h, w) slide, overlapping by ``overlap`` px (default: 3 red-cell
    ``diameter``s, at most half a tile), in row-major order; windows start (and grow) by multiples of
    ``align`` px (the learned segmenter's network grid: ``segment.learned.tile_grid``)."""
    h, w = (int(s) for s in shape[:2])
    overlap = int(overlap or OVERLAP_DIAMETERS * (diameter or DEFAULT_DIAMETER))
    overlap = -(-min(overlap, tile // 2) // align) * align
    ys, xs = tile_starts(h, tile, overlap, align), tile_starts(w, tile, overlap, align)
    ye, xe = _ends(ys, tile, h), _ends(xs, tile, w)
    by, bx = _borders(ys, ye, h), _borders(xs, xe, w)
    tiles = tuple(Tile(r, c, (y0, ye[r], x0, xe[c]), (by[r], by[r + 1], bx[c], bx[c + 1]))
                  for r, y0 in enumerate(ys) for c, x0 in enumerate(xs))
    return TilePlan((h, w), int(tile), overlap, tiles)


def centroids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ids present, (N, 2) centroids (y, x))`` of a label image, from pixel sums."""
    flat = labels.ravel()
    inside = np.flatnonzero(flat)
    n = int(flat.max(initial=0)) + 1
    lab = flat[inside]
    count = np.bincount(lab, minlength=n)
    ids = np.flatnonzero(count[1:]) + 1
    y, x = np.divmod(inside, labels.shape[1])
    cy = np.bincount(lab, weights=y, minlength=n)[ids] / count[ids]
    cx = np.bincount(lab, weights=x, minlength=n)[ids] / count[ids]
    return ids, np.stack([cy, cx], axis=1)


def paint(region: np.ndarray, new: np.ndarray) -> None:
    """Put ``new``'s cells into ``region`` where it is still background: an earlier tile wins a pixel that
    two kept cells claim."""
    free = (new > 0) & (region == 0)
    region[free] = new[free]


def _reaching(labels: np.ndarray, keep: np.ndarray, inner: tuple[bool, bool, bool, bool]):
    """``(which inner edges (top, bottom, left, right) the clumps of the ``keep`` cells reach, the longest
    side of those clumps' boxes)``."""
    import cv2
    from scipy import ndimage

    if not len(keep) or not any(inner):
        return [False] * 4, 0
    near = cv2.dilate((labels > 0).astype(np.uint8), np.ones((3, 3), np.uint8))  # a dropped sliver still joins
    clumps, _ = ndimage.label(near, structure=np.ones((3, 3)))
    kept = np.zeros(int(labels.max()) + 1, bool)
    kept[keep] = True
    ours = np.unique(clumps[kept[labels]])
    b = EDGE_BAND
    bands = (clumps[:b], clumps[-b:], clumps[:, :b], clumps[:, -b:])
    ours = ours[ours > 0]
    reach = [bool(side and np.isin(band, ours).any()) for side, band in zip(inner, bands)]
    at_edge = np.unique(np.concatenate([band[np.isin(band, ours)] for side, band in zip(inner, bands) if side]))
    found = ndimage.find_objects(clumps)
    boxes = [found[i - 1] for i in at_edge if found[i - 1] is not None]
    longest = max((max(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes), default=0)
    return reach, longest


def segment_tile(tile: Tile, plan: TilePlan, read, segment):
    """Segment ``tile``: ``read(y0, y1, x0, x1)`` gives a window's pixels, ``segment(pixels)`` its labels.
    Returns ``(labels, window, keep, reaching, pixels)``: the labels of the window finally used, that window,
    the ids kept (centroid in the core), 1 if their clumps still reach an inner window edge, and its pixels."""
    h, w = plan.shape
    y0, y1, x0, x1 = tile.window
    for attempt in range(MAX_GROW + 1):
        pixels = read(y0, y1, x0, x1)
        labels = np.asarray(segment(pixels), np.int32)
        moved = Tile(tile.row, tile.col, (y0, y1, x0, x1), tile.core)
        keep = moved.core_ids(labels)
        reach, longest = _reaching(labels, keep, (y0 > 0, y1 < h, x0 > 0, x1 < w))
        if not any(reach) or attempt == MAX_GROW or longest > MAX_GROW * plan.overlap:
            break
        g = plan.overlap
        y0, y1 = (max(0, y0 - g) if reach[0] else y0), (min(h, y1 + g) if reach[1] else y1)
        x0, x1 = (max(0, x0 - g) if reach[2] else x0), (min(w, x1 + g) if reach[3] else x1)
    return labels, (y0, y1, x0, x1), keep, int(any(reach)), pixels
