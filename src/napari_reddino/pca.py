"""Three-component PCA overlays of patch features (DINOv2's recipe, as in the RedDino paper's figures).

1. Patch tokens of one or more images (:mod:`napari_reddino.patch_features`).
2. A first PCA on a subsample of all patches; its first component is oriented so that most patches on
   the image borders fall below an Otsu threshold (background), and thresholded → foreground.
3. PCA(3) on the foreground patches only, each component scaled by its 1st–99th percentile to [0, 1].
4. Background black (RGB) or transparent (RGBA); optional upsampling to the image's resolution.

By default the image is first enlarged so that a red cell spans about 6 patches, and a blank or cell-free
image gives no overlay (:mod:`napari_reddino.pca_resolution`).

A :class:`PatchPCA` fitted on a set of images can be saved (``.npz``, no pickle) and applied to other
images so colours mean the same across slides.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np

from napari_reddino.progress import Steps, run
from napari_reddino.images import InputError
from napari_reddino.patch_features import (grid_shape, iter_patch_features, model_patch_size,
                                           patch_features)
from napari_reddino.pca_resolution import NoCellsFound, image_hw, iter_cell_features

__all__ = ["PatchPCA", "fit_pca", "iter_patch_features", "patch_features", "iter_pca_overlay",
           "pca_overlay", "upsample_overlay", "overlay_scale_translate", "Overlay", "NoCellsFound"]

BACKGROUNDS = ("black", "transparent")


@dataclass
class PatchPCA:
    """A fitted overlay: foreground axis + threshold, 3 components and their display ranges."""

    fg_mean: np.ndarray      # (D,)
    fg_axis: np.ndarray      # (D,) first component of all patches, oriented: foreground is high
    fg_threshold: float      # foreground = (x - fg_mean) @ fg_axis > fg_threshold
    mean: np.ndarray         # (D,) mean of the foreground patches
    components: np.ndarray   # (3, D)
    lo: np.ndarray           # (3,) 1st percentile of each component on the foreground
    hi: np.ndarray           # (3,) 99th percentile
    clip_lo: np.ndarray      # (D,) features are clipped to their 0.5th-99.5th percentiles per dimension,
    clip_hi: np.ndarray      # (D,) so a few extreme tokens (DINOv2's high-norm patches) can't take a component
    use_foreground: bool = True
    meta: dict = field(default_factory=dict)

    def first_component(self, features) -> np.ndarray:
        """The oriented first component of every patch, ``(gh, gw)``."""
        return _project(features, self.fg_mean, self.fg_axis[None], self.clip_lo, self.clip_hi)[..., 0]

    def foreground(self, features) -> np.ndarray:
        """Boolean ``(gh, gw)`` mask of foreground patches (all True when thresholding is off)."""
        if not self.use_foreground:
            return np.ones(np.shape(features)[:2], dtype=bool)
        return self.first_component(features) > self.fg_threshold

    def transform(self, features, background: str = "black") -> np.ndarray:
        """``(gh, gw, 3)`` float32 RGB in [0, 1] (background black), or ``(gh, gw, 4)`` RGBA with a
        transparent background."""
        if background not in BACKGROUNDS:
            raise InputError(f"Received background {background!r}; accepted: {', '.join(BACKGROUNDS)}.")
        _check_features(features, self.mean.shape[0])
        proj = _project(features, self.mean, self.components, self.clip_lo, self.clip_hi)
        span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0).astype(np.float32)
        rgb = np.clip((proj - self.lo.astype(np.float32)) / span, 0.0, 1.0)
        mask = self.foreground(features)
        if background == "transparent":
            return np.concatenate([rgb, mask[..., None].astype(np.float32)], axis=-1)
        rgb[~mask] = 0.0
        return rgb

    def save(self, path) -> None:
        """Write the fit (atomically: a kill leaves the previous file or none, never half of one)."""
        from napari_reddino.atomic import atomic_path

        arrays = {k: np.asarray(v) for k, v in asdict(self).items() if k != "meta"}
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a handle: np.savez would append .npz to a name
            np.savez(fh, **arrays, meta=np.array(json.dumps(self.meta)))

    @classmethod
    def load(cls, path) -> "PatchPCA":
        import zipfile

        try:
            with np.load(path, allow_pickle=False) as z:
                kw = {k: z[k] for k in z.files if k != "meta"}
                meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
            kw["fg_threshold"] = float(kw["fg_threshold"])
            kw["use_foreground"] = bool(kw["use_foreground"])
            return cls(**kw, meta=meta)
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, AttributeError) as exc:
            raise InputError(f"Could not read a PCA fit from {str(path)!r} ({type(exc).__name__}); "
                             "accepted: an .npz written by PatchPCA.save / --save-fit.") from None


def _check_features(features, dim=None):
    shape = np.shape(features)
    if len(shape) != 3 or (dim is not None and shape[-1] != dim):
        want = f"(gh, gw, {dim})" if dim else "(gh, gw, D)"
        raise InputError(f"Received patch features of shape {shape}; accepted: {want}"
                         + (" (features from the model the PCA was fitted with)." if dim else "."))


def _project(features, mean, components, clip_lo, clip_hi, rows: int = 64) -> np.ndarray:
    """``(features - mean) @ components.T`` in row chunks, so float16 grids are never copied whole."""
    gh, gw, _ = np.shape(features)
    out = np.empty((gh, gw, components.shape[0]), dtype=np.float32)
    comp = components.T.astype(np.float32)
    m = mean.astype(np.float32)
    for r in range(0, gh, rows):
        chunk = np.clip(np.asarray(features[r:r + rows], dtype=np.float32), clip_lo, clip_hi)
        out[r:r + rows] = (chunk - m) @ comp
    return out


def _sample(features_list, max_samples: int, rng) -> np.ndarray:
    sizes = [f.shape[0] * f.shape[1] for f in features_list]
    total = sum(sizes)
    parts = []
    for f, n in zip(features_list, sizes):
        flat = f.reshape(n, f.shape[-1])
        if total <= max_samples:
            parts.append(np.asarray(flat, dtype=np.float32))
        else:
            k = max(1, round(max_samples * n / total))
            parts.append(np.asarray(flat[np.sort(rng.choice(n, size=k, replace=False))], dtype=np.float32))
    return np.concatenate(parts)


def _border(f) -> np.ndarray:
    return np.concatenate([f[0], f[-1], f[1:-1, 0], f[1:-1, -1]]).astype(np.float32)


def _top_components(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    xc = x - mean
    cov = (xc.T @ xc).astype(np.float64) / max(len(x) - 1, 1)
    vals, vecs = np.linalg.eigh(cov)
    comps = vecs[:, ::-1][:, :k].T.astype(np.float32)
    # a deterministic sign: each component's projections are skewed positive, so colours don't flip
    # between runs on the same data
    skew = ((xc @ comps.T) ** 3).mean(axis=0)
    comps *= np.where(skew < 0, -1.0, 1.0).astype(np.float32)[:, None]
    return mean.astype(np.float32), comps


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold computed exactly on the sorted values (no histogram: binned Otsu returns a bin
    centre, which can fall inside the background cluster when the classes are far apart); the result
    lies midway between the two classes' nearest values."""
    s = np.sort(np.asarray(values, dtype=np.float64))
    if s.size < 2 or s[0] == s[-1]:
        return float(s[-1]) if s.size else 0.0
    n = s.size
    k = np.arange(1, n)
    csum = np.cumsum(s)
    mu0 = csum[:-1] / k
    mu1 = (csum[-1] - csum[:-1]) / (n - k)
    between = k * (n - k) * (mu0 - mu1) ** 2
    between[s[1:] == s[:-1]] = -1  # split only between distinct values
    best = int(np.argmax(between))
    return float((s[best] + s[best + 1]) / 2)


def fit_pca(features_list, *, foreground: bool = True, max_samples: int = 100_000, seed: int = 0,
            percentiles=(1.0, 99.0)) -> PatchPCA:
    """Fit the overlay on one ``(gh, gw, D)`` grid or a list of them (one colour scheme for all).

    At most ``max_samples`` patches (drawn evenly across the images) are used, so fitting costs the same
    on a huge smear as on a small one. ``foreground=False`` skips the background threshold."""
    if isinstance(features_list, np.ndarray):
        features_list = [features_list]
    if not features_list:
        raise InputError("Received no patch features; accepted: one or more (gh, gw, D) grids.")
    dim = np.shape(features_list[0])[-1]
    for f in features_list:
        _check_features(f, dim)
    rng = np.random.default_rng(seed)
    x = _sample(features_list, int(max_samples), rng)
    if len(x) < 4:
        raise InputError(f"Received {len(x)} patches; accepted: at least 4 (an image of 2 x 2 patches).")
    clip_lo, clip_hi = np.percentile(x, (0.5, 99.5), axis=0).astype(np.float32)
    x = np.clip(x, clip_lo, clip_hi, out=x)
    fg_mean, fg_axis = _top_components(x, 1)
    fg_axis = fg_axis[0]
    v = (x - fg_mean) @ fg_axis
    thr = _otsu(v)
    border = np.concatenate([(np.clip(_border(f), clip_lo, clip_hi) - fg_mean) @ fg_axis
                             for f in features_list])
    if np.mean(border > thr) > 0.5:  # most of the border above: the high side is background, flip
        fg_axis, v, thr = -fg_axis, -v, -thr
    fg = v > thr if foreground else np.ones(len(x), dtype=bool)
    if fg.sum() < 4:  # nothing stands out from the background: show everything
        fg = np.ones(len(x), dtype=bool)
    mean, comps = _top_components(x[fg], 3)
    if comps.shape[0] < 3:
        comps = np.vstack([comps, np.zeros((3 - comps.shape[0], dim), np.float32)])
    proj = (x[fg] - mean) @ comps.T
    lo, hi = np.percentile(proj, percentiles, axis=0).astype(np.float32)
    return PatchPCA(fg_mean=fg_mean, fg_axis=fg_axis.astype(np.float32), fg_threshold=float(thr), mean=mean,
                    components=comps, lo=lo, hi=hi, clip_lo=clip_lo, clip_hi=clip_hi,
                    use_foreground=bool(foreground),
                    meta={"n_images": len(features_list), "n_samples": int(len(x)),
                          "foreground_fraction": float(fg.mean()), "dim": int(dim)})


def upsample_overlay(rgb: np.ndarray, patch: int, image_shape, mode: str = "nearest", factor=1.0) -> np.ndarray:
    """Patch-grid overlay → image resolution ``(H, W, C)``: each patch fills the image pixels it covers
    (``nearest``) or colours blend between patch centres (``bilinear``). ``factor``: the enlargement the
    grid was computed at (one number or per axis), so a patch covers ``patch / factor`` image pixels."""
    if mode not in ("nearest", "bilinear"):
        raise InputError(f"Received upsampling mode {mode!r}; accepted: nearest, bilinear.")
    fy, fx = np.broadcast_to(np.asarray(factor, dtype=float), (2,))
    out = np.asarray(rgb)
    for axis, (n, f) in enumerate(zip((int(image_shape[0]), int(image_shape[1])), (fy, fx))):
        # image pixel k's centre, in grid units (patch centres at integers)
        pos = (np.arange(n) + 0.5) * f / patch - 0.5
        size = out.shape[axis]
        if mode == "nearest":
            out = np.take(out, np.clip(np.floor(pos + 0.5).astype(int), 0, size - 1), axis=axis)
            continue
        pos = np.clip(pos, 0, size - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, size - 1)
        w = (pos - lo).astype(np.float32).reshape((-1, 1) if axis == 0 else (1, -1))[..., None]
        out = np.take(out, lo, axis=axis) * (1 - w) + np.take(out, hi, axis=axis) * w
    return out.astype(rgb.dtype, copy=False)


def overlay_scale_translate(patch: int, image_scale=(1.0, 1.0), image_translate=(0.0, 0.0),
                            upsampled: bool = False, factor=1.0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """napari ``scale``/``translate`` placing the overlay over an image layer with the given ones.

    napari puts data pixel k's centre at ``translate + k * scale``. On an image enlarged ``factor`` times
    patch i spans enlarged pixels i*p to i*p + p - 1, i.e. image coordinates i*q - 1/2 to (i+1)*q - 1/2
    with q = p / factor (pixel centres at integers): its centre is i*q + (q - 1)/2. So scale = q * image
    scale and the grid is shifted by (q - 1)/2 image pixels. An upsampled overlay has the image's own
    geometry."""
    s = np.asarray(image_scale, dtype=float)
    t = np.asarray(image_translate, dtype=float)
    if upsampled:
        return tuple(s.tolist()), tuple(t.tolist())
    q = patch / np.broadcast_to(np.asarray(factor, dtype=float), s.shape)
    return tuple((s * q).tolist()), tuple((t + s * (q - 1) / 2).tolist())


class Overlay(NamedTuple):
    rgb: np.ndarray        # (gh, gw, 3|4) or (H, W, 3|4) when upsampled, float32 in [0, 1]
    fit: PatchPCA
    patch: int
    upsampled: bool
    factor: tuple[float, float] = (1.0, 1.0)  # the enlargement the grid was computed at (y, x)
    note: str = ""  # why the enlargement is below the one asked for, or ''


def iter_pca_overlay(image, model, fit: PatchPCA | None = None, *, background: str = "black",
                     upsample: bool | str = False, foreground: bool = True, resolution="auto", cells=None,
                     require_cells: bool = True, name: str = "the image", tile: int | None = None,
                     overlap: int = 0, batch_size: int = 8, precision: str = "auto") -> "Steps[Overlay]":
    """Image → patch features → PCA(3) overlay (progress generator). ``fit=None`` fits on this image;
    pass a previous :class:`PatchPCA` to colour this image the same way. ``upsample``: False, True
    (nearest) or ``"bilinear"``. ``resolution``: ``"auto"`` (a red cell spans about 6 patches), ``"off"``/1
    (the model's own scale) or an enlargement factor; ``cells``: the image's segmentation table (its
    diameter and types). A blank or cell-free image raises :class:`NoCellsFound` (unless not
    ``require_cells``)."""
    if background not in BACKGROUNDS:
        raise InputError(f"Received background {background!r}; accepted: {', '.join(BACKGROUNDS)}.")
    found = yield from iter_cell_features(image, model, resolution, table=cells, name=name,
                                          require_cells=require_cells, tile=tile, overlap=overlap,
                                          batch_size=batch_size, precision=precision)
    feats = found.grid
    if fit is None:
        fit = fit_pca([feats], foreground=foreground)
    rgb = fit.transform(feats, background=background)
    patch = model_patch_size(model)
    if upsample:
        mode = upsample if isinstance(upsample, str) else "nearest"
        rgb = upsample_overlay(rgb, patch, image_hw(image), mode, factor=found.factor)
    return Overlay(rgb, fit, patch, bool(upsample), found.factor, found.note)


def pca_overlay(image, model, fit: PatchPCA | None = None, **kwargs) -> np.ndarray:
    """Non-generator :func:`iter_pca_overlay`; returns the overlay array only."""
    return run(iter_pca_overlay(image, model, fit, **kwargs)).rgb


def expected_grid_shape(image_shape, model) -> tuple[int, int]:
    """``(gh, gw)`` :func:`iter_patch_features` produces for an image of ``image_shape``."""
    return grid_shape(image_shape, model_patch_size(model))
