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


def read_image(path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB. Files are opened by content, not by suffix
    (some Chula images are PNG files named .jpg)."""
    path = Path(path)
    if not path.is_file():
        raise ReadError(f"Received {str(path)!r}, which is not a file; accepted: an image file "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))}).")
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


def _read_tiff(path: Path) -> np.ndarray:
    """A TIFF's first image; a stack of grey planes (3 of them look like a channel-first colour image) is
    refused rather than shown as false colour."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
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
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"Received {str(p)!r}, which does not exist; accepted: image files or folders.")
    if not out:
        raise InputError(f"Found no images in {[str(p) for p in paths]}; accepted: "
                         f"{', '.join(sorted(IMAGE_SUFFIXES))} files or folders holding them.")
    return out
