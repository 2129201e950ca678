"""Open any image the plugin accepts as a lazy slide: its levels as (y, x, 3) uint8 dask arrays.

Nothing is read until a caller slices a level and computes it, and then only the chunks under the slice:

- OME-Zarr (a ``.zarr`` folder, NGFF 0.4/0.5): through ``ngff.read_multiscales``, one level per dataset;
- TIFF, OME-TIFF and pyramidal TIFF (SVS, NDPI... whatever tifffile reads as a series with levels): through
  tifffile's zarr store, one level per level of the first series; a plain TIFF has one level, chunked by its
  tiles or strips (a TIFF written in one strip is read whole);
- PNG, JPEG, BMP: one lazy chunk, because these formats cannot be decoded in part: the first slice reads the
  whole file (``Slide.partial`` is False for them).

Colour follows ``images.to_rgb_uint8``: gray becomes three equal channels, RGBA loses alpha, other dtypes are
scaled to 0..255 by the same rule, chunk by chunk. That rule takes its range from the image's minimum and
maximum, which a lazy slide cannot know without reading it all: here they come from the coarsest level (read
whole; a single-level image is its own coarsest level, so a small one converts exactly as ``read_image``
does). When even the coarsest level is over ``STATS_PIXELS``, the range is the dtype's (integers: their
whole range; floats: 0..1), and values outside it are clipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_reddino.images import IMAGE_SUFFIXES, InputError

STATS_PIXELS = 4_000_000  # the largest coarsest level read whole to find an image's range (uint16, float)
ACCEPTED = ("an OME-Zarr folder (.zarr), a TIFF / OME-TIFF / pyramidal TIFF, or a PNG, JPEG or BMP image "
            "of one 2-D gray or colour plane")
_PIL_SUFFIXES = IMAGE_SUFFIXES - {".tif", ".tiff"}
_UM_PER_UNIT = {"µm": 1.0, "um": 1.0, "micron": 1.0, "micrometer": 1.0, "\\u00B5m": 1.0, "nm": 1e-3,
                "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3}


@dataclass
class Slide:
    """A lazily opened image: ``levels[k]`` is (y, x, 3) uint8, each coarser than the one before (level 0 is
    the full resolution); ``data`` is ``levels[level]``, the one chosen when opened."""
    path: Path
    name: str
    format: str  # "ome-zarr", "ome-tiff", "tiff" or "png" (PIL-read files)
    levels: list
    level: int = 0
    pixel_size_um: float | None = None  # level 0's, when the file says it
    partial: bool = True  # False: the file is decoded whole on the first read (PNG, JPEG, BMP)
    _keep: list = field(default_factory=list, repr=False)  # open file handles behind the levels

    @property
    def data(self):
        return self.levels[self.level]

    def shape(self, level: int | None = None) -> tuple[int, int]:
        """(height, width) of ``level`` (default: the chosen one)."""
        return tuple(int(s) for s in self.levels[self.level if level is None else level].shape[:2])

    def downsample(self, level: int) -> float:
        """How many level-0 pixels one pixel of ``level`` spans (2 for the usual halving pyramid's level 1)."""
        return self.shape(0)[1] / self.shape(level)[1]

    def pixel_size(self, level: int | None = None) -> float | None:
        """Micrometres per pixel at ``level`` (default: the chosen one), None when the file does not say."""
        if self.pixel_size_um is None:
            return None
        return self.pixel_size_um * self.downsample(self.level if level is None else level)

    def close(self) -> None:
        for handle in self._keep:
            handle.close()
        self._keep.clear()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def choose_level(slide: Slide, max_pixels: float) -> int:
    """The finest level of ``slide`` with at most ``max_pixels`` pixels (the coarsest when none is)."""
    for k in range(len(slide.levels)):
        h, w = slide.shape(k)
        if h * w <= max_pixels:
            return k
    return len(slide.levels) - 1


def slide_name(path) -> str:
    """The image's name: the file or folder name without its suffixes (.ome.tif, .ome.zarr, .zarr, .tif...)."""
    name = Path(path).name
    return re.sub(r"(\.ome)?\.(zarr|tiff?|png|jpe?g|bmp)$", "", name, flags=re.IGNORECASE) or name


def open_slide(path, level: int | None = None) -> Slide:
    """Open ``path`` lazily (see the module's notes); ``level`` picks ``Slide.data`` (default 0, the full
    resolution). Refuses what it cannot open with one line (``InputError``)."""
    from napari_reddino.slides import ngff

    path = Path(path)
    if not path.exists():
        raise InputError(f"Received {str(path)!r}, which does not exist; accepted: {ACCEPTED}.")
    if path.is_dir():
        if not ngff.is_ome_zarr(path):
            raise InputError(f"Received the folder {str(path)!r}, which is not an OME-Zarr image (no NGFF "
                             f"'multiscales' metadata); accepted: {ACCEPTED}.")
        slide = _open_ome_zarr(path)
    elif path.suffix.lower() in (".tif", ".tiff"):
        slide = _open_tiff(path)
    elif path.suffix.lower() in _PIL_SUFFIXES:
        slide = _open_pil(path)
    else:
        raise InputError(f"Received {str(path)!r}, a {path.suffix or 'suffix-less'} file; accepted: {ACCEPTED}.")
    if level is not None:
        if not 0 <= int(level) < len(slide.levels):
            slide.close()
            raise InputError(f"Received level {level} of {slide.name!r}, which has levels 0 to "
                             f"{len(slide.levels) - 1}; accepted: one of those (0 is the full resolution).")
        slide.level = int(level)
    return slide


# --- formats ----------------------------------------------------------------------------------------------
def _open_ome_zarr(path: Path) -> Slide:
    from napari_reddino.slides import ngff

    ms = ngff.read_multiscales(path)
    if ngff.is_label_image(ms):
        raise InputError(f"Received {str(path)!r}, a label image (cells), not a smear; accepted: {ACCEPTED}.")
    raw = [ms.yx(k) for k in range(len(ms.levels))]
    return Slide(path, slide_name(path), "ome-zarr", _as_rgb_levels(raw, path), pixel_size_um=ms.pixel_size(0))


def _open_tiff(path: Path) -> Slide:
    import dask.array as da
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is bad input
        raise InputError(f"Could not read {str(path)!r} as a TIFF ({type(exc).__name__}); accepted: "
                         f"{ACCEPTED}.") from None
    try:
        series = tif.series[0]
        axes = series.axes
        handle = _TiffLevels(path, tif)
        stamp = f"{path.resolve()}-{path.stat().st_mtime_ns}"
        raw = [_tiff_yxc(da.from_array(_TiffLevel(handle, k), chunks=handle.arrays()[k].chunks, name=f"tiff-{k}-{stamp}",
                                       inline_array=True), axes, path) for k in range(len(series.levels))]
        pixel = _tiff_pixel_um(tif)
        fmt = "ome-tiff" if tif.is_ome else "tiff"
    except InputError:
        tif.close()
        raise
    except Exception as exc:  # noqa: BLE001 - a TIFF that tifffile cannot map to an array
        tif.close()
        raise InputError(f"Could not read {str(path)!r} as a TIFF ({type(exc).__name__}: {exc}); accepted: "
                         f"{ACCEPTED}.") from None
    return Slide(path, slide_name(path), fmt, _as_rgb_levels(raw, path), pixel_size_um=pixel, _keep=[handle])


class _TiffLevels:
    """The zarr arrays of a TIFF's first series (one per level, through tifffile's zarr store), opened in the
    process that reads them: pickled (to a Dask worker) it carries the path only, and reopens the file there."""

    def __init__(self, path: Path, tif=None):
        self.path, self._tif, self._arrays = Path(path), tif, None

    def arrays(self) -> list:
        if self._arrays is None:
            import tifffile
            import zarr

            self._tif = self._tif or tifffile.TiffFile(self.path)
            series = self._tif.series[0]
            store = series.aszarr()  # one zarr array, or a group of levels "0", "1", ... for a pyramid
            if len(series.levels) == 1:
                self._arrays = [zarr.open_array(store, mode="r")]
            else:
                group = zarr.open_group(store, mode="r")
                self._arrays = [group[str(k)] for k in range(len(series.levels))]
        return self._arrays

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()
        self._tif, self._arrays = None, None

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])


class _TiffLevel:
    """One level, as the array-like that ``dask.array.from_array`` slices."""

    def __init__(self, levels: _TiffLevels, k: int):
        self.levels, self.k = levels, k
        arr = levels.arrays()[k]
        self.shape, self.dtype, self.ndim = tuple(arr.shape), arr.dtype, arr.ndim

    def __getitem__(self, key):
        return self.levels.arrays()[self.k][key]


def _tiff_yxc(arr, axes: str, path: Path):
    """A tifffile series level (its ``axes``, e.g. "YXS", "SYX", "CYX", "TZYX") as (y, x[, c])."""
    import dask.array as da

    index, kept = [], []
    for i, name in enumerate(axes):
        if name in "YX":
            index.append(slice(None))
            kept.append(name)
        elif name in "SC" and "c" not in kept:
            index.append(slice(None))
            kept.append("c")
        elif arr.shape[i] == 1:
            index.append(0)
        else:
            raise InputError(f"Received {str(path)!r}, a stack of {arr.shape[i]} planes along its {name} axis "
                             f"(axes {axes}); accepted: {ACCEPTED}.")
    arr = arr[tuple(index)]
    if "c" in kept:
        arr = da.moveaxis(arr, kept.index("c"), -1)
    if kept.index("Y") > kept.index("X"):
        arr = da.swapaxes(arr, 0, 1)
    return arr


def _tiff_pixel_um(tif) -> float | None:
    """Level 0's micrometres per pixel from OME metadata, an SVS header's MPP, or ImageJ's unit; else None
    (a plain TIFF's resolution tag is usually the scanner software's 72 dpi, not the smear's)."""
    try:
        if tif.is_ome and tif.ome_metadata:
            found = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
            unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
            if found:
                factor = _UM_PER_UNIT.get(unit.group(1) if unit else "µm")
                return float(found.group(1)) * factor if factor else None
        if tif.is_svs and tif.svs_metadata.get("MPP"):
            return float(tif.svs_metadata["MPP"])
        if tif.is_imagej and _UM_PER_UNIT.get(str(tif.imagej_metadata.get("unit", ""))) == 1.0:
            xres = tif.pages.first.tags.get("XResolution")
            if xres is not None:
                num, den = xres.value
                return den / num if num else None
    except Exception:  # noqa: BLE001 - metadata is a bonus: a file whose metadata is odd still opens
        return None
    return None


def _open_pil(path: Path) -> Slide:
    import dask
    import dask.array as da
    from PIL import Image

    from napari_reddino.images import read_image

    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # read_image turns it by its rotation flag
                w, h = h, w
    except Exception as exc:  # noqa: BLE001 - any decoder failure is bad input
        raise InputError(f"Could not read {str(path)!r} as an image ({type(exc).__name__}); accepted: "
                         f"{ACCEPTED}.") from None
    level = da.from_delayed(dask.delayed(read_image)(path), shape=(h, w, 3), dtype=np.uint8)
    return Slide(path, slide_name(path), "png", [level], partial=False)


# --- colour, chunk by chunk -----------------------------------------------------------------------------
def _as_rgb_levels(raw: list, path: Path) -> list:
    """Each level (y, x[, c]) as (y, x, 3) uint8, lazily, with one range for all levels (module notes)."""
    first = raw[0]
    if first.ndim == 3 and first.shape[-1] not in (1, 3, 4):
        raise InputError(f"Received {str(path)!r} with {first.shape[-1]} channels; accepted: {ACCEPTED} "
                         "(1, 3 or 4 channels).")
    if first.dtype.kind not in "biuf":
        raise InputError(f"Received {str(path)!r} of pixel type {first.dtype}; accepted: {ACCEPTED}, integer or "
                         "float pixels.")
    span = None if first.dtype == np.uint8 else _range(raw[-1])
    return [_rgb_uint8(level, span) for level in raw]


def _range(coarsest) -> tuple[float, float]:
    """(lo, hi) as ``images.to_rgb_float`` would choose them, from the coarsest level (or the dtype)."""
    dtype = coarsest.dtype
    if dtype == bool:
        return 0.0, 1.0
    if int(np.prod(coarsest.shape[:2])) > STATS_PIXELS:
        if dtype.kind in "iu":
            return float(min(0, np.iinfo(dtype).min)), float(np.iinfo(dtype).max)
        return 0.0, 1.0
    sample = np.asarray(coarsest[..., :3] if coarsest.ndim == 3 else coarsest).astype(np.float64)
    if dtype.kind == "f":
        sample = np.nan_to_num(sample, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(sample.min()), float(sample.max())
    if dtype.kind in "iu":
        top = 255.0 if hi <= 255 else (65535.0 if dtype == np.uint16 or hi <= 65535 else hi)
        return min(0.0, lo), top
    if lo >= 0 and hi <= 1:
        return 0.0, 1.0
    if lo >= 0 and hi <= 255:
        return 0.0, 255.0
    return lo, hi


def _rgb_uint8(level, span):
    """One level as (y, x, 3) uint8: channels made three, then each chunk scaled by ``span`` (None: uint8)."""
    import dask.array as da

    if level.ndim == 2:
        level = level[..., None]
    if level.chunks[-1] != (level.shape[-1],):
        level = level.rechunk({2: -1})  # the channels of a pixel in one chunk (OME-Zarr stores them apart)
    n = level.shape[-1]
    if n == 4:
        level = level[..., :3]

    def block(b):
        if n == 1:
            b = np.repeat(b, 3, axis=-1)
        if span is None:
            return np.asarray(b, np.uint8)
        lo, hi = span
        x = np.asarray(b, np.float32)
        if b.dtype.kind == "f":
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        if hi <= lo:
            return np.zeros(x.shape, np.uint8)
        return np.round(np.clip((x - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)

    chunks = level.chunks[:2] + ((3,),)
    return da.map_blocks(block, level, dtype=np.uint8, chunks=chunks)
