"""OME-Zarr (NGFF) images and labels, read and written lazily: the one home of the format.

Written as NGFF 0.4 in zarr format 2 (what napari-ome-zarr, ome-zarr-py, QuPath and Fiji read): an image group
holds levels ``0, 1, ...`` each half the size of the one before (the mean for images, every second pixel for
labels), with axes ``c, y, x`` for colour (our arrays are ``(y, x, c)``: transposed on the way in and out) and
``y, x`` for gray images and labels. Labels of an image live in ``<image>/labels/<name>``, listed in
``<image>/labels/.zattrs``, as the specification puts them. Read: NGFF 0.4 (zarr 2) and 0.5 (zarr 3, the
metadata under ``"ome"``).

Nothing here holds a whole level in memory: levels are dask arrays written chunk by chunk, and the next level is
made from the one just written. A folder is written under ``<path>.partial`` and renamed when complete, so a
crash never leaves a half-written image where a finished one is expected.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_reddino.images import InputError

VERSION = "0.4"
CHUNK = 1024
LABELS_GROUP = "labels"


@dataclass
class Multiscales:
    """One NGFF multiscale group: ``levels[k]`` is a dask array in the stored axis order ``axes`` (e.g. "cyx"),
    ``scales[k]`` its size per pixel along each axis (level 0's pixel size, times 2**k in y and x)."""
    path: Path
    levels: list
    axes: str
    scales: list[tuple[float, ...]]
    labels: list[str] = field(default_factory=list)  # the label images beside it (``<path>/labels/<name>``)
    attrs: dict = field(default_factory=dict)
    translations: list[tuple[float, ...]] = field(default_factory=list)  # each level's offset (0 when none)

    def yx(self, level: int = 0):
        """Level ``level`` as ``(y, x, c)`` (colour) or ``(y, x)`` (gray, labels), singleton t/z axes dropped."""
        return as_yxc(self.levels[level], self.axes)

    def pixel_size(self, level: int = 0) -> float | None:
        """Micrometres per pixel in x at ``level`` when the file says so (unit micrometer), else None."""
        return self.attrs.get("_pixel_um", [None])[level] if self.attrs.get("_pixel_um") else None


def chunk_splits(length: int, chunk: int = CHUNK) -> tuple[int, ...]:
    """Dask chunk sizes along an axis of ``length``: whole ``chunk``s, then the remainder (the zarr grid)."""
    return tuple([chunk] * (length // chunk) + ([length % chunk] if length % chunk else []))


def as_yxc(array, axes: str):
    """A lazy view of ``array`` (stored with ``axes``) as (y, x, c) or (y, x); refuses what is not a 2-D image."""
    import dask.array as da

    arr = array if hasattr(array, "dask") else da.from_array(array, chunks=getattr(array, "chunks", "auto"))
    index, kept = [], []
    for i, name in enumerate(axes):
        if name in "tz":
            if arr.shape[i] != 1:
                raise InputError(f"Received an OME-Zarr image with {arr.shape[i]} {'time points' if name == 't' else 'z planes'}; "
                                 "accepted: one 2-D smear (a single time point and plane).")
            index.append(0)
        else:
            index.append(slice(None))
            kept.append(name)
    arr = arr[tuple(index)]
    if "c" in kept:
        arr = da.moveaxis(arr, kept.index("c"), -1)
    return arr


def _level_count(shape_yx, chunk: int, levels: int | None) -> int:
    if levels:
        return int(levels)
    n, longest = 1, max(shape_yx)
    while longest > chunk:
        longest = (longest + 1) // 2
        n += 1
    return n


def _open_new_group(path: Path):
    import zarr

    partial = path.with_name(path.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    return partial, zarr.open_group(str(partial), mode="w", zarr_format=2)


def _finish(partial: Path, path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    os.replace(partial, path)
    return path


def _create(group, name: str, shape, chunks, dtype):
    import numcodecs

    return group.create_array(name, shape=tuple(int(s) for s in shape), chunks=tuple(int(c) for c in chunks),
                              dtype=dtype, fill_value=0,
                              compressors=numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE),
                              chunk_key_encoding={"name": "v2", "separator": "/"})


def _downsample(level, kind: str, colour: bool):
    """Half the size in y and x: the mean of 2 x 2 pixels (images; an odd last row/column kept as it is) or
    every second pixel (labels: no invented label values)."""
    import dask.array as da

    if kind == "labels":
        return level[::2, ::2]
    h, w = level.shape[:2]
    even = level[: h - h % 2, : w - w % 2].astype(np.float32)
    axes = {0: 2, 1: 2, 2: 1} if colour else {0: 2, 1: 2}
    small = da.coarsen(np.mean, even, axes, trim_excess=True)
    if h % 2 or w % 2:  # pad by the edge pixels so the level is ceil(h/2) x ceil(w/2), as stride would give
        pad = ((0, h % 2), (0, w % 2)) + (((0, 0),) if colour else ())
        small = da.pad(small, pad, mode="edge")
    return da.round(small).astype(level.dtype) if np.issubdtype(level.dtype, np.integer) else small.astype(level.dtype)


def _write_levels(group, data, kind: str, chunk: int, levels: int | None, pixel_um: float | None,
                  progress=None, scale=(1.0, 1.0), translate=(0.0, 0.0)) -> dict:
    """Write ``data`` (y, x[, c]) and its smaller levels into ``group``; return the multiscales metadata.
    ``scale``/``translate``: level 0's pixel size and offset (y, x) in the slide's pixels (an overlay on a
    coarser grid), times the pixel size in micrometres when given."""
    import dask.array as da

    arr = data if hasattr(data, "dask") else da.from_array(data, chunks=(chunk, chunk) + data.shape[2:])
    colour = arr.ndim == 3
    if arr.ndim not in (2, 3):
        raise InputError(f"Received an array of shape {tuple(arr.shape)} to write as OME-Zarr; accepted: (y, x) or "
                         "(y, x, c).")
    n = _level_count(arr.shape[:2], chunk, levels)
    datasets, level = [], arr
    for k in range(n):
        stored = da.moveaxis(level, -1, 0) if colour else level
        chunks = ((1, chunk, chunk) if colour else (chunk, chunk))
        target = _create(group, str(k), stored.shape, chunks, stored.dtype)
        # store, not da.to_zarr: to_zarr rechunks to dask's 128 MiB "auto" chunks (a whole row of a slide)
        stored.rechunk(chunks).store(target, lock=False)
        if progress:
            progress(k + 1, n)
        unit = pixel_um or 1.0
        size = [float(2 ** k * s * unit) for s in scale]
        # a mean of 2**k x 2**k pixels is centred between them; every second label pixel is the pixel itself
        shift = [float((t + (s * (2 ** k - 1) / 2 if kind == "image" else 0.0)) * unit) for s, t in zip(scale, translate)]
        transforms = [{"type": "scale", "scale": ([1.0] if colour else []) + size}]
        if any(shift):
            transforms.append({"type": "translation", "translation": ([0.0] if colour else []) + shift})
        datasets.append({"path": str(k), "coordinateTransformations": transforms})
        if k + 1 < n:  # the next level from the one just written (its chunks, not the graph above it)
            written = da.from_zarr(target)
            written = da.moveaxis(written, 0, -1) if colour else written
            level = _downsample(written, kind, colour)
    unit = {"unit": "micrometer"} if pixel_um else {}
    axes = ([{"name": "c", "type": "channel"}] if colour else []) + [
        {"name": "y", "type": "space", **unit}, {"name": "x", "type": "space", **unit}]
    return {"version": VERSION, "axes": axes, "datasets": datasets,
            "type": "nearest" if kind == "labels" else "mean"}


def write_image(path, data, *, chunk: int = CHUNK, levels: int | None = None, pixel_size_um: float | None = None,
                name: str | None = None, progress=None, scale=(1.0, 1.0), translate=(0.0, 0.0)) -> Path:
    """Write ``data`` ((y, x, 3) RGB or (y, x) gray; numpy, zarr or dask) as an OME-Zarr image at ``path``;
    levels halve until the longest side fits in one ``chunk`` (or ``levels`` of them). ``scale``,
    ``translate``: where level 0's pixels lie on the slide, in slide pixels (y, x) (an overlay's grid)."""
    path = Path(path)
    partial, group = _open_new_group(path)
    meta = _write_levels(group, data, "image", chunk, levels, pixel_size_um, progress, scale, translate)
    attrs = {"multiscales": [dict(meta, name=name or path.stem)]}
    if len(meta["axes"]) == 3:
        attrs["omero"] = {"rdefs": {"model": "color"}, "channels": [
            {"label": c, "color": colour, "window": {"start": 0, "end": 255, "min": 0, "max": 255}, "active": True}
            for c, colour in (("red", "FF0000"), ("green", "00FF00"), ("blue", "0000FF"))]}
    group.attrs.update(attrs)
    return _finish(partial, path)


def write_labels(image_path, name: str, labels, *, chunk: int = CHUNK, levels: int | None = None,
                 progress=None) -> Path:
    """Write integer ``labels`` (y, x) as the NGFF label image ``<image_path>/labels/<name>`` of the OME-Zarr
    image at ``image_path`` (it must exist), and list it there. Returns the labels' folder."""
    import zarr

    image_path = Path(image_path)
    image = read_multiscales(image_path)
    if tuple(image.yx(0).shape[:2]) != tuple(labels.shape[:2]):
        raise InputError(f"Received labels of {labels.shape[1]} x {labels.shape[0]} pixels for an image of "
                         f"{image.yx(0).shape[1]} x {image.yx(0).shape[0]}; accepted: the image's own size.")
    root = zarr.open_group(str(image_path / LABELS_GROUP), mode="a", zarr_format=2)
    target = image_path / LABELS_GROUP / name
    partial, group = _open_new_group(target)
    meta = _write_levels(group, labels, "labels", chunk, levels, None, progress)
    group.attrs.update({"multiscales": [dict(meta, name=name)],
                        "image-label": {"version": VERSION, "source": {"image": "../../"}}})
    _finish(partial, target)
    listed = list(root.attrs.asdict().get("labels", []))
    root.attrs.update({"labels": listed + [name] if name not in listed else listed})
    return target


def write_label_image(path, labels, *, chunk: int = CHUNK, levels: int | None = None, progress=None) -> Path:
    """Labels with no image beside them (the input was not OME-Zarr): an NGFF multiscale of the labels alone
    at ``path`` (opens in napari-ome-zarr as an image; ``read_multiscales`` marks it ``kind == "labels"``)."""
    path = Path(path)
    partial, group = _open_new_group(path)
    meta = _write_levels(group, labels, "labels", chunk, levels, None, progress)
    group.attrs.update({"multiscales": [dict(meta, name=path.stem, metadata={"napari_reddino": "labels"})]})
    return _finish(partial, path)


def is_ome_zarr(path) -> bool:
    """True for a folder holding an NGFF multiscale group (0.4 or 0.5)."""
    path = Path(path)
    if not path.is_dir():
        return False
    for meta in (".zattrs", "zarr.json"):
        if (path / meta).is_file() and "multiscales" in (path / meta).read_text(encoding="utf-8", errors="replace"):
            return True
    return False


def read_multiscales(path) -> Multiscales:
    """The NGFF multiscale group at ``path`` (an image or a label image), each level a dask array; refuses
    anything else with one line."""
    import dask.array as da
    import zarr

    path = Path(path)
    if not is_ome_zarr(path):
        raise InputError(f"Received {path}, which is not an OME-Zarr image; accepted: a .zarr folder with NGFF "
                         "'multiscales' metadata (OME-Zarr 0.4 or 0.5).")
    group = zarr.open_group(str(path), mode="r")
    attrs = group.attrs.asdict()
    attrs = attrs.get("ome", attrs)  # 0.5 puts the metadata under "ome"
    meta = attrs["multiscales"][0]
    axes = "".join(a["name"] if isinstance(a, dict) else a for a in meta.get("axes", ["y", "x"]))
    levels, scales, shifts, pixel_um = [], [], [], []
    for ds in meta["datasets"]:
        levels.append(da.from_zarr(group[ds["path"]]))
        transforms = ds.get("coordinateTransformations", [])
        scale = next((t["scale"] for t in transforms if t.get("type") == "scale"), [1.0] * len(axes))
        shift = next((t["translation"] for t in transforms if t.get("type") == "translation"), [0.0] * len(axes))
        scales.append(tuple(float(s) for s in scale))
        shifts.append(tuple(float(t) for t in shift))
        units = [a.get("unit") for a in meta.get("axes", []) if isinstance(a, dict)]
        pixel_um.append(float(scale[-1]) if units and units[-1] in ("micrometer", "µm") else None)
    labels = []
    if LABELS_GROUP in group:
        labels_attrs = group[LABELS_GROUP].attrs.asdict()
        labels = list(labels_attrs.get("ome", labels_attrs).get("labels", []))
    extra = {"_pixel_um": pixel_um} if any(p is not None for p in pixel_um) else {}
    return Multiscales(path, levels, axes, scales, labels, {**attrs, **extra}, shifts)


def is_label_image(ms: Multiscales) -> bool:
    meta = ms.attrs.get("multiscales", [{}])[0]
    return "image-label" in ms.attrs or meta.get("metadata", {}).get("napari_reddino") == "labels"
