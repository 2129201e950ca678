"""Whole-image patch features: tile a smear into model-sized windows and stitch the patch tokens.

The patch grid starts at the image's top-left pixel: patch ``(i, j)`` covers image pixels
``[i*p, (i+1)*p) x [j*p, (j+1)*p)``; the grid is ``ceil(H/p) x ceil(W/p)`` and the last row/column,
which reaches past the image, sees a reflection of it. Windows overlap by ``overlap`` patches; each grid
cell is written once, by the window whose centre is nearest along each axis, so there is no
accumulation buffer and the only large array is the ``(gh, gw, D)`` grid itself (float16 by default:
an 8000 x 8000 smear through ViT-S/14 is 572 x 572 x 384 x 2 B = 250 MB).
torch is imported inside functions so the core stays light to import.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np

from napari_reddino.progress import Progress, Steps, run
from napari_reddino.images import InputError, to_rgb_uint8
from napari_reddino.embed import to_model_input
from napari_reddino.models import model_input_size
from napari_reddino.runtime import resolve_precision

_DYNAMIC_LOCK = threading.Lock()


def model_patch_size(model) -> int:
    """The ViT's patch size in pixels, read from the model (14 for RedDino/DINOv2)."""
    try:
        ph, pw = _pair(model.patch_embed.patch_size)
    except AttributeError:
        raise InputError(f"Received a {type(model).__name__} without patch_embed.patch_size; accepted: a "
                         "timm ViT (e.g. vit_small_patch14_dinov2).") from None
    if ph != pw:
        raise InputError(f"Received a model with non-square patches {ph}x{pw}; accepted: square patches.")
    return int(ph)


def model_square_input(model) -> int:
    """The square input size the model's position embedding was built for (224 for RedDino)."""
    h, w = model_input_size(model)
    if h != w:
        raise InputError(f"Received a model with a non-square input {h}x{w}; accepted: square inputs.")
    return h


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def window_starts(grid: int, window: int, overlap: int) -> tuple[list[int], list[int]]:
    """Window starts along one axis (in patches) and the ownership bounds: window k writes grid cells
    ``bounds[k]:bounds[k+1]``. The last window is flush with the grid end, so it may overlap more."""
    if grid <= window:
        return [0], [0, grid]
    stride = window - overlap
    starts = list(range(0, grid - window, stride)) + [grid - window]
    bounds = [0] + [(starts[k - 1] + window + starts[k]) // 2 for k in range(1, len(starts))] + [grid]
    return starts, bounds


def grid_shape(image_shape, patch: int) -> tuple[int, int]:
    """``(gh, gw)`` of the patch grid covering an image of ``image_shape`` (ceil: edges are covered)."""
    h, w = image_shape[:2]
    return -(-int(h) // patch), -(-int(w) // patch)


def _as_uint8_rgb(image) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[-1] == 3:
        return arr  # no copy: an 8000 x 8000 smear stays 192 MB
    return to_rgb_uint8(arr)


def _window(image: np.ndarray, y0: int, x0: int, size: int) -> np.ndarray:
    """``size x size`` pixels from (y0, x0), reflected where the window runs past the image."""
    h, w = image.shape[:2]
    crop = image[y0:min(y0 + size, h), x0:min(x0 + size, w)]
    pad_y, pad_x = size - crop.shape[0], size - crop.shape[1]
    if pad_y or pad_x:
        mode = "reflect" if min(crop.shape[:2]) > 1 else "edge"
        crop = np.pad(crop, ((0, pad_y), (0, pad_x), (0, 0)), mode=mode)
    return crop


@contextmanager
def _dynamic_input(model, size: int):
    """Let a fixed-size timm ViT take ``size`` px inputs by switching on timm's own dynamic-size path
    (position embeddings resampled per call), restoring the model's flags afterwards."""
    if size == model_square_input(model) or getattr(model, "dynamic_img_size", False):
        yield
        return
    from timm.layers import Format

    pe = model.patch_embed
    if not hasattr(model, "dynamic_img_size") or not hasattr(pe, "strict_img_size"):
        raise InputError(f"Received tile size {size} for a {type(model).__name__} that only takes "
                         f"{model_square_input(model)} px; accepted: the model's input size.")
    with _DYNAMIC_LOCK:
        saved = (model.dynamic_img_size, pe.strict_img_size, pe.flatten, pe.output_fmt)
        model.dynamic_img_size, pe.strict_img_size, pe.flatten, pe.output_fmt = True, False, False, Format.NHWC
        try:
            yield
        finally:
            model.dynamic_img_size, pe.strict_img_size, pe.flatten, pe.output_fmt = saved


def iter_patch_features(image, model, *, tile: int | None = None, overlap: int = 0, batch_size: int = 8,
                        precision: str = "auto", dtype=np.float16) -> "Steps[np.ndarray]":
    """Patch tokens of the whole image as a ``(gh, gw, D)`` grid (progress generator; see ``run``).

    ``tile``: window size in pixels, a multiple of the model's patch size (default: the model's input
    size; other sizes use timm's dynamic image size). ``overlap``: patches shared by neighbouring windows
    (the border ``overlap/2`` patches of each window, which see less context, are discarded).
    """
    import torch

    patch = model_patch_size(model)
    tile = model_square_input(model) if tile is None else int(tile)
    if tile <= 0 or tile % patch:
        raise InputError(f"Received tile size {tile}; accepted: a positive multiple of the patch size {patch}.")
    n = tile // patch
    if not 0 <= int(overlap) < n:
        raise InputError(f"Received overlap {overlap} patches; accepted: 0 to {n - 1} for {tile} px windows.")
    if int(batch_size) < 1:
        raise InputError(f"Received batch size {batch_size}; accepted: a positive integer.")
    img = _as_uint8_rgb(image)
    gh, gw = grid_shape(img.shape, patch)
    ys, yb = window_starts(gh, n, int(overlap))
    xs, xb = window_starts(gw, n, int(overlap))
    jobs = [(ky, kx) for ky in range(len(ys)) for kx in range(len(xs))]

    param = next(model.parameters())
    device = param.device
    amp = resolve_precision(precision, device.type)
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    grid = None
    total = len(jobs)
    yield Progress(0, total, "patch features")
    with _dynamic_input(model, tile), torch.inference_mode():
        for b0 in range(0, total, int(batch_size)):
            batch = jobs[b0:b0 + int(batch_size)]
            tiles = np.stack([_window(img, ys[ky] * patch, xs[kx] * patch, tile) for ky, kx in batch])
            x = to_model_input(tiles, model, device).to(param.dtype)
            with torch.autocast(device.type, dtype=amp, enabled=amp != torch.float32):
                tokens = model.forward_features(x)
            tokens = tokens[:, prefix:].float().reshape(len(batch), n, n, -1).cpu().numpy()
            if grid is None:
                grid = np.empty((gh, gw, tokens.shape[-1]), dtype=dtype)
            for t, (ky, kx) in zip(tokens, batch):
                y0, y1, x0, x1 = yb[ky], yb[ky + 1], xb[kx], xb[kx + 1]
                grid[y0:y1, x0:x1] = t[y0 - ys[ky]:y1 - ys[ky], x0 - xs[kx]:x1 - xs[kx]]
            yield Progress(min(b0 + len(batch), total), total, "patch features")
    return grid


def patch_features(image, model, **kwargs) -> np.ndarray:
    """Non-generator :func:`iter_patch_features`."""
    return run(iter_patch_features(image, model, **kwargs))
