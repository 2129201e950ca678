"""Cell segmentation: an image in, one integer label per cell out (0 = background).

Backends: ``"learned"`` (the default: the threshold pipeline with cell markers from a small shipped U-Net that
finds cell centres at the measured cell scale, :mod:`napari_reddino.segment.learned`), ``"threshold"`` (stain
colour + distance-transform watershed; no weights, no torch) and ``"cellpose"`` (Cellpose 4 /
Cellpose-SAM; see :mod:`napari_reddino.segment.cellpose`). Images larger than ``tile_size`` are cut into
overlapping tiles: each tile keeps the cells whose centre lies in its own core, so every cell is taken
whole from exactly one tile, and only one tile is in memory as float at a time (the input may be a
memory-mapped or dask array).
"""

from __future__ import annotations

import numpy as np

from napari_reddino.progress import Progress, run
from napari_reddino.images import InputError, channel_axis
from napari_reddino.slides.tiles import tile_starts  # noqa: F401 - its public name here since before the slides

BACKENDS = ("learned", "threshold", "cellpose")
DEFAULT_BACKEND = "learned"  # the benchmark's best on every source (README §1, benchmarks/results_segment.md)


def segment(image, backend: str = DEFAULT_BACKEND, **opts) -> np.ndarray:
    """Segment ``image`` and return int32 labels; see :func:`iter_segment` for the options."""
    return run(iter_segment(image, backend, **opts))


def iter_segment(image, backend: str = DEFAULT_BACKEND, tile_size: int = 2048, tile_overlap: int | None = None,
                 **opts):
    """Progress generator: yields :class:`Progress`, returns int32 labels of the image's height and width.

    Options are passed to the backend (see ``segment_threshold`` and ``CellposeSegmenter.segment``).
    ``diameter``: the red-cell diameter in px; ``"auto"`` (the threshold default) estimates it from the
    image; for Cellpose, None (its default) lets Cellpose-SAM choose and ``"auto"`` passes the estimate. An
    image without stained cells gives all-zero labels (no error).
    """
    labels, _, _ = yield from _iter_segment(image, backend, tile_size, tile_overlap, **opts)
    return labels


def _iter_segment(image, backend, tile_size=2048, tile_overlap=None, **opts):
    """:func:`iter_segment` returning ``(labels, red-cell diameter in px, stain statistics or None)``."""
    from napari_reddino.segment.threshold import estimate_image_diameter, is_auto, stain_stats, threshold_objects

    if backend not in BACKENDS:
        raise InputError(f"Received backend {backend!r}; accepted: {', '.join(BACKENDS)}.")
    h, w = _image_shape(image)
    yield Progress(0, 1, f"Segmenting ({backend})")
    big = max(h, w) > tile_size
    auto = is_auto(opts.get("diameter", "auto" if backend in ("threshold", "learned") else None))
    given = opts.get("diameter")
    stats = estimate = None
    align = 1
    if backend in ("threshold", "learned") and not big:
        # one image: the segmenter measures the stain once and, with "auto", the scale from the same optical
        # density it segments (measuring first and again inside cost a fifth of the time)
        from napari_reddino.images import to_rgb_float

        rgb = to_rgb_float(image)
        stats = opts.get("stats") or stain_stats(rgb, opts.get("threshold_scale", 0.7))
        opts = {**opts, "stats": stats, "diameter": None if auto or given is None else float(given)}
        if backend == "threshold":
            labels, diameter = threshold_objects(rgb, **opts)
        else:
            from napari_reddino.segment.learned import learned_objects

            labels, diameter = learned_objects(rgb, **opts)
        yield Progress(1, 1, f"Segmenting ({backend})")
        return np.asarray(labels, np.int32), diameter, stats
    if backend in ("threshold", "learned") or auto or big:
        # one threshold and one diameter for the whole image (and all its tiles)
        if big:
            from napari_reddino.segment.threshold import measure_large

            stats, estimate = measure_large([image], (1.0,), tile_size, opts.get("threshold_scale", 0.7))
        else:
            stats, estimate = estimate_image_diameter(image, opts.get("threshold_scale", 0.7))
    if backend == "threshold":
        from napari_reddino.segment.threshold import segment_threshold

        diameter = estimate if auto else float(given)
        opts = {"stats": stats, **opts, "diameter": diameter}  # stats measured once, not again per tile

        def one(tile):
            return segment_threshold(tile, **opts)
    elif backend == "learned":  # the same measured scale and stain, then the U-Net (segment/learned.py)
        from napari_reddino.segment.learned import segment_learned, tile_grid

        diameter = estimate if auto or given is None else float(given)
        if big:  # tiles on the network's grid: their centres are the whole image's
            diameter, align = tile_grid(diameter)
        opts = {"stats": stats, **opts, "diameter": diameter}

        def one(tile):
            return segment_learned(tile, **opts)
    else:
        from napari_reddino.segment.cellpose import get_segmenter, iter_resolve_weights

        model_opts = {k: opts.pop(k) for k in list(opts) if k in _CELLPOSE_MODEL_KEYS}
        weights = yield from iter_resolve_weights(model_opts.pop("model", None), model_opts.pop("weights", None),
                                                  model_opts.pop("download", False))
        segmenter = get_segmenter(weights=weights, **model_opts)
        opts["diameter"] = estimate if auto else (float(given) if given else None)
        diameter = opts["diameter"] or (estimate if big else None)

        def one(tile):
            return segmenter.segment(tile, **opts)

    if not big:
        labels = one(image)
        yield Progress(1, 1, f"Segmenting ({backend})")
        return np.asarray(labels, np.int32), diameter, stats
    labels = yield from _tiled(image, one, (h, w), tile_size, tile_overlap, diameter, backend, align)
    return labels, diameter, stats


def segment_cells(image, backend: str = DEFAULT_BACKEND, drop_border: bool = False, **opts):
    """Non-generator :func:`iter_segment_cells`."""
    return run(iter_segment_cells(image, backend, drop_border, **opts))


def iter_segment_cells(image, backend: str = DEFAULT_BACKEND, drop_border: bool = False, **opts):
    """Segmentation as the dock, the CLI and the pipeline want it (progress generator): returns ``(labels,
    table)`` with border cells optionally dropped (labels renumbered 1..N) and the per-cell table of
    :func:`napari_reddino.cells.cell_table` plus each object's ``type`` and ``border`` flag
    (:mod:`napari_reddino.segment.types`). ``table.attrs["diameter"]`` is the red-cell diameter used (px)."""
    from napari_reddino.cells import cell_table, drop_border_cells
    from napari_reddino.images import to_rgb_uint8
    from napari_reddino.segment.threshold import estimate_image_diameter, relabel
    from napari_reddino.segment.types import object_types

    labels, diameter, stats = yield from _iter_segment(image, backend, **opts)
    yield Progress(0, 1, "measuring cells")
    if drop_border:
        labels = relabel(drop_border_cells(labels))
    rgb = to_rgb_uint8(image)
    if not diameter:  # Cellpose chose its own scale: the types still need the red-cell size
        diameter = estimate_image_diameter(rgb)[1]
    table = cell_table(labels, rgb)
    types = object_types(rgb, labels, diameter, table["label"].to_numpy(), stats=stats)
    table["type"] = types["type"].to_numpy()
    table["border"] = types["border"].to_numpy()
    table.attrs["diameter"] = float(diameter)
    yield Progress(1, 1, "measuring cells")
    return labels, table


_CELLPOSE_MODEL_KEYS = ("model", "weights", "device", "precision", "download")


def _image_shape(image) -> tuple[int, int]:
    if image is None or not hasattr(image, "shape"):
        image = np.asarray(image)
    axis = channel_axis(image)
    shape = tuple(image.shape)
    return (shape[1], shape[2]) if axis == 0 else (shape[0], shape[1])


def _tiled(image, one, shape, tile_size, overlap, diameter, backend, align=1):
    """Run ``one`` on overlapping tiles; keep from each tile the cells whose centroid is in its core
    (:mod:`napari_reddino.slides.tiles`, the plan the out-of-core slide engine uses too)."""
    from napari_reddino.segment.threshold import relabel
    from napari_reddino.slides.tiles import paint, plan_tiles, segment_tile

    plan = plan_tiles(shape, tile_size, diameter, overlap, align)
    out = np.zeros(shape, np.int32)
    first, next_id = channel_axis(image) != 0, 1

    def read(y0, y1, x0, x1):
        return np.asarray(image[y0:y1, x0:x1] if first else image[:, y0:y1, x0:x1])

    for n_done, tile in enumerate(plan.tiles, 1):
        labels, (y0, y1, x0, x1), keep, _, _ = segment_tile(tile, plan, read, one)
        lut = np.zeros(labels.max(initial=0) + 1, np.int32)
        lut[keep] = np.arange(next_id, next_id + len(keep))
        next_id += len(keep)
        paint(out[y0:y1, x0:x1], lut[labels])
        yield Progress(n_done, len(plan), f"Segmenting ({backend}) tile")
    return relabel(out)
