"""One place where any image napari can hold becomes RGB for the models, or is refused.

Accepted: 2D gray (H, W); RGB/RGBA with the channel last (H, W, 3|4); a channel-first stack (3|4, H, W);
dtypes uint8, uint16, other integers, bool and float. Everything else raises :class:`InputError` with one
line naming what was received and what is accepted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ACCEPTED = "a 2D gray image (H, W) or colour image (H, W, 3|4) or (3|4, H, W), integer or float"


class InputError(ValueError):
    """Bad user input; the message is one line, fit for a notification or a CLI error."""


class ReadError(InputError):
    """One input file that cannot be read as an image: a batch reports it and goes on with the others."""


def _describe(data) -> str:
    arr = np.asarray(data) if not hasattr(data, "shape") else data
    return f"shape {tuple(arr.shape)} dtype {arr.dtype}"


def channel_axis(data) -> int | None:
    """The colour axis of ``data`` (-1 or 0), None for gray; raises InputError otherwise."""
    shape = tuple(data.shape)
    if len(shape) == 2:
        return None
    if len(shape) == 3:
        if shape[-1] in (3, 4):
            return -1
        if shape[0] in (3, 4) and shape[-1] > 4:
            return 0
        if shape[-1] == 1:
            return -1
    raise InputError(f"Received an image with {_describe(data)}; accepted: {ACCEPTED}.")


def to_rgb_float(data) -> np.ndarray:
    """Return an (H, W, 3) float32 array in [0, 1]; refuse anything else with a one-line message."""
    if data is None:
        raise InputError(f"Received no image; accepted: {ACCEPTED}.")
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"Received an image with {_describe(arr)}; accepted: {ACCEPTED}.")
    if arr.size == 0:
        raise InputError(f"Received an empty image ({_describe(arr)}); accepted: {ACCEPTED}.")
    h, w = arr.shape[:2] if channel_axis(arr) != 0 else arr.shape[1:3]
    if min(h, w) < 2:
        raise InputError(f"Received an image of {w} x {h} pixels, too small to hold a cell; accepted: {ACCEPTED}, "
                         "at least 2 x 2 pixels.")
    axis = channel_axis(arr)
    if axis == 0:
        arr = np.moveaxis(arr, 0, -1)
    if axis is None:
        arr = arr[..., None]
    arr = arr[..., :3]  # drop alpha
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.dtype == np.uint8:  # the common case, in one pass
        return np.divide(arr, np.float32(255), dtype=np.float32)
    out = arr.astype(np.float32)
    if arr.dtype == bool:
        return out
    if arr.dtype.kind in "iu":
        hi = 255.0 if arr.dtype == np.uint8 or out.max() <= 255 else (
            65535.0 if arr.dtype == np.uint16 or out.max() <= 65535 else float(out.max()))
        lo = min(0.0, float(out.min()))
        return np.clip((out - lo) / (hi - lo), 0, 1)
    if not np.isfinite(out).all():
        out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(out.min()), float(out.max())
    if lo >= 0 and hi <= 1:
        return out
    if lo >= 0 and hi <= 255:
        return out / 255.0
    return (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)


def to_rgb_uint8(data) -> np.ndarray:
    """(H, W, 3) uint8 view of any accepted image (what crops and PIL-style code expect)."""
    return np.round(to_rgb_float(data) * 255).astype(np.uint8)


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}
ZARR_SUFFIX = ".zarr"  # an OME-Zarr image is a folder: expand_inputs lists it as one image
WHOLE_PIXELS = 100_000_000  # read_image reads a TIFF or OME-Zarr whole up to this many pixels (~300 MB as RGB)


def _is_ome_zarr(path: Path) -> bool:
    from napari_reddino.slides.ngff import is_ome_zarr

    return is_ome_zarr(path)


def read_image(path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB. Files are opened by content, not by suffix
    (some Chula images are PNG files named .jpg). An OME-Zarr folder or a TIFF (OME, pyramidal or plain)
    is read at full resolution when it has at most ``WHOLE_PIXELS`` pixels; a bigger one is refused with a
    pointer to ``napari-reddino slide`` (tile by tile)."""
    path = Path(path)
    if path.is_dir() and _is_ome_zarr(path):
        return _read_whole(path)
    if not path.is_file():
        raise ReadError(f"Received {str(path)!r}, which is not a file; accepted: an image file "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))}) or an OME-Zarr folder ({ZARR_SUFFIX}).")
    from PIL import Image, ImageOps

    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            data = _read_tiff(path)
        else:
            with Image.open(path) as im:
                # a camera's or phone's rotation flag: without it the smear is shown turned
                data = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except InputError as exc:
        raise ReadError(str(exc)) from None
    except Image.DecompressionBombError as exc:
        import re

        found = re.search(r"\((\d+) pixels\)", str(exc))
        n = int(found.group(1)) / 1e6 if found else 0
        mp = (f"{n:.0f} megapixels" if n >= 10 else f"{n:.1f} megapixels") if found else "too many pixels"
        raise ReadError(f"Received {str(path)!r} of {mp}, more than an image read whole can hold (about "
                        f"{Image.MAX_IMAGE_PIXELS * 2 / 1e6:.0f} megapixels); accepted: smaller fields (cut the "
                        "slide into tiles).") from None
    except MemoryError:
        raise ReadError(f"Received {str(path)!r}, which does not fit in this computer's memory; accepted: "
                        "smaller fields (cut the slide into tiles).") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is bad input
        raise ReadError(f"Could not read {str(path)!r} as an image ({type(exc).__name__}); accepted: "
                        f"{', '.join(sorted(IMAGE_SUFFIXES))}.") from None
    try:
        return to_rgb_uint8(data)
    except InputError as exc:
        raise ReadError(f"{str(path)!r}: {exc}") from None


def _read_whole(path: Path) -> np.ndarray:
    """An OME-Zarr image's full resolution, when it fits ``WHOLE_PIXELS``."""
    from napari_reddino.slides.read import open_slide

    try:
        with open_slide(path) as slide:
            _check_whole(path, *slide.shape(0))
            return np.asarray(slide.data.compute())
    except ReadError:
        raise
    except InputError as exc:
        raise ReadError(str(exc)) from None


def _check_whole(path: Path, h: int, w: int) -> None:
    if h * w > WHOLE_PIXELS:
        raise ReadError(f"Received {str(path)!r}, a slide of {w} x {h} pixels ({h * w / 1e6:.0f} megapixels), "
                        f"more than a step reads whole (at most {WHOLE_PIXELS / 1e6:.0f} megapixels); accepted: "
                        "a smaller image, or this slide with `napari-reddino slide`, which works tile by tile.")


def _read_tiff(path: Path) -> np.ndarray:
    """A TIFF's first image; a stack of grey planes (3 of them look like a channel-first colour image) is
    refused rather than shown as false colour, and one over ``WHOLE_PIXELS`` is refused before it is read."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        yx = [n for a, n in zip(series.axes, series.shape) if a in "YX"]
        if len(yx) == 2:
            _check_whole(path, *yx)
        axes = series.axes
        if len(series.shape) > 2 and not (axes.endswith("S") or axes[0] in "SC"):
            raise ReadError(f"Received {str(path)!r}, a stack of {series.shape[0]} grey images (axes {axes}), "
                            "not one image; accepted: one grey or colour image per file (save the plane you "
                            "want to analyse).")
        return series.asarray()


def expand_inputs(paths) -> list[Path]:
    """Files and folders (searched for images, sorted) → list of image paths; InputError if none."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and _is_ome_zarr(p):
            out.append(p)
        elif p.is_dir():
            out += sorted(_images_under(p))
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"Received {str(p)!r}, which does not exist; accepted: image files or folders.")
    if not out:
        raise InputError(f"Found no images in {[str(p) for p in paths]}; accepted: "
                         f"{', '.join(sorted(IMAGE_SUFFIXES))} files, OME-Zarr ({ZARR_SUFFIX}) folders, or "
                         "folders holding them.")
    return out


def _images_under(folder: Path):
    """Image files and OME-Zarr folders under ``folder``; a ``.zarr`` folder's chunk files are not images."""
    import os

    for root, dirs, files in os.walk(folder):
        here = Path(root)
        for d in list(dirs):
            if d.lower().endswith(ZARR_SUFFIX) or _is_ome_zarr(here / d):
                dirs.remove(d)
                if _is_ome_zarr(here / d):
                    yield here / d
        yield from (here / f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES)
