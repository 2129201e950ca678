"""Multi-crop augmentation (RedDino or DINOv2) built from a config dict where every parameter is written out.

A config (``configs/augmentation_<name>.yaml``) has ``global_crops`` and ``local_crops`` views, each with an
optional ``resize`` (squash to size x size first, as RedDino does), a ``crop`` (RandomResizedCrop arguments),
``transforms`` (applied to every crop of the view) and ``per_crop`` (extra transforms for the i-th crop); and a
``normalize`` block. A transform is a one-key mapping ``{ClassName: {argument: value}}`` handed to
albumentations; nested ``transforms`` (SomeOf, OneOf) are built recursively.
"""

from __future__ import annotations

import random
import time
import warnings

import numpy as np

from napari_reddino.images import InputError, to_rgb_uint8
from napari_reddino.models import IMAGENET_MEAN, IMAGENET_STD

COMPOSES = ("SomeOf", "OneOf", "Sequential", "OneOrOther", "Compose")
INTERPOLATIONS = {"nearest": 0, "linear": 1, "cubic": 2, "area": 3, "lanczos4": 4, "linear_exact": 5,
                  "nearest_exact": 6}  # cv2.INTER_* values


def _interpolation(value):
    if isinstance(value, str):
        if value not in INTERPOLATIONS:
            raise InputError(f"Received interpolation {value!r}; accepted: {', '.join(INTERPOLATIONS)}.")
        return INTERPOLATIONS[value]
    return value


def _argument(key: str, value):
    """YAML lists → tuples (albumentations' ranges); interpolation names → cv2 flags."""
    if key == "interpolation":
        return _interpolation(value)
    if key == "interpolation_pair" and isinstance(value, dict):
        return {k: _interpolation(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(value)
    return value


def build_transform(spec):
    """``{ClassName: {argument: value}}`` → an albumentations transform; bad specs raise InputError."""
    import albumentations as A

    if not isinstance(spec, dict) or len(spec) != 1:
        raise InputError(f"Received augmentation step {spec!r}; accepted: a one-key mapping "
                         "{ClassName: {argument: value}}.")
    name, params = next(iter(spec.items()))
    cls = getattr(A, str(name), None)
    if not isinstance(cls, type):
        raise InputError(f"Received augmentation {name!r}; accepted: an albumentations {A.__version__} transform name.")
    params = dict(params or {})
    if name in COMPOSES:
        params["transforms"] = [build_transform(t) for t in params.get("transforms", [])]
    kwargs = {k: (v if k == "transforms" else _argument(k, v)) for k, v in params.items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            transform = cls(**kwargs)
        except Exception as exc:  # noqa: BLE001 - albumentations validates with pydantic/TypeError/ValueError
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"Received {name} arguments {params}: {first}; accepted: albumentations "
                             f"{A.__version__} arguments.") from None
    for w in caught:  # albumentations only warns about unknown arguments: refuse them, nothing silently ignored
        if "not valid" in str(w.message) or "deprecated" in str(w.message).lower():
            raise InputError(f"Received {name} arguments {sorted(params)}: {str(w.message).splitlines()[0]}; "
                             f"accepted: albumentations {A.__version__} arguments.")
    return transform


def _view_pipeline(view: dict, size: int, index: int, normalize: dict):
    import albumentations as A

    steps = []
    if view.get("resize"):
        steps.append(A.Resize(height=size, width=size, p=1.0,
                              **{k: _argument(k, v) for k, v in view["resize"].items()}))
    crop = dict(view.get("crop") or {})
    steps.append(A.RandomResizedCrop(size=(size, size), p=1.0, **{k: _argument(k, v) for k, v in crop.items()}))
    steps += [build_transform(t) for t in view.get("transforms") or []]
    per_crop = view.get("per_crop") or []
    if per_crop:
        steps += [build_transform(t) for t in per_crop[index % len(per_crop)]]
    steps.append(A.Normalize(mean=tuple(normalize.get("mean", IMAGENET_MEAN)),
                             std=tuple(normalize.get("std", IMAGENET_STD)),
                             max_pixel_value=float(normalize.get("max_pixel_value", 255.0)), p=1.0))
    return A.Compose(steps, p=1.0, save_applied_params=True)


def _worker_seed():
    """The torch DataLoader worker's seed, None in the main process."""
    import torch.utils.data

    info = torch.utils.data.get_worker_info()
    return None if info is None else info.seed


class MultiCropAugmentation:
    """``aug(rgb_uint8 HxWx3) -> {"global_crops": [Tensor 3xSxS], "local_crops": [Tensor 3xsxs]}``.

    All crops draw from one shared random stream (albumentations' own ``seed=`` would give every transform an
    identical stream, so flips and rotations would always fire together). In a DataLoader worker the stream is
    re-seeded from the worker's torch seed (plus ``seed``), so workers never repeat each other's crops.
    """

    def __init__(self, global_pipes, local_pipes, seed=None, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.global_pipes, self.local_pipes = list(global_pipes), list(local_pipes)
        self.seed, self.mean, self.std = seed, tuple(mean), tuple(std)
        self.reseed(seed)

    def reseed(self, seed=None):
        """Restart the random stream from ``seed`` (int, SeedSequence, or None = fresh entropy). An explicit
        reseed inside a DataLoader worker is kept (the once-per-worker reseed does not override it)."""
        gen = np.random.default_rng(seed)
        py = random.Random(int(gen.integers(2**63)))
        for pipe in self.global_pipes + self.local_pipes:
            pipe.set_random_state(gen, py)
        self._worker_seed = _worker_seed()
        # No cv2.setNumThreads here: called in a forked worker after the parent used OpenCV's thread pool, it
        # can hang (seen with opencv 5.0). To limit OpenCV threads, set them in the parent before forking.

    def _check_worker(self):
        seed = _worker_seed()
        if seed is not None and seed != self._worker_seed:
            extra = [] if self.seed is None else [int(self.seed)]
            self.reseed(np.random.SeedSequence([int(seed) % 2**63] + extra))

    def applied(self, image) -> dict:
        """Like ``__call__`` but also returns, per crop, the names of the transforms that fired."""
        return self._run(image, record=True)

    def __call__(self, image) -> dict:
        return self._run(image, record=False)

    def _run(self, image, record: bool) -> dict:
        import torch

        image = np.asarray(image)
        if not (image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3):
            image = to_rgb_uint8(image)  # anything else accepted by the plugin, or a one-line InputError
        self._check_worker()
        out = {}
        for key, pipes in (("global_crops", self.global_pipes), ("local_crops", self.local_pipes)):
            crops, names = [], []
            for pipe in pipes:
                res = pipe(image=image)
                crops.append(torch.from_numpy(np.ascontiguousarray(res["image"].transpose(2, 0, 1))))
                if record:
                    names.append([n for n, _ in res.get("applied_transforms", [])
                                  if n not in ("Resize", "RandomResizedCrop", "Normalize")])
            out[key] = crops
            if record:
                out[key.replace("crops", "applied")] = names
        return out


def build_augmentation(aug_cfg: dict, n_global: int = 2, n_local: int = 0, global_size: int = 224,
                       local_size: int = 98, seed: int | None = None) -> MultiCropAugmentation:
    """The multi-crop callable for a config dict (see the module docstring); ``seed`` makes it repeatable."""
    if not isinstance(aug_cfg, dict) or "global_crops" not in aug_cfg:
        raise InputError(f"Received augmentation config {str(aug_cfg)[:80]!r}; accepted: a mapping with "
                         "global_crops / local_crops / normalize (configs/augmentation_reddino.yaml).")
    if n_global < 1 or n_local < 0:
        raise InputError(f"Received n_global={n_global}, n_local={n_local}; accepted: n_global >= 1, n_local >= 0.")
    if n_local and not aug_cfg.get("local_crops"):
        raise InputError(f"Received n_local={n_local} with a config without local_crops; accepted: a config "
                         "with a local_crops view, or n_local=0.")
    norm = aug_cfg.get("normalize") or {}
    globals_ = [_view_pipeline(aug_cfg["global_crops"], int(global_size), i, norm) for i in range(n_global)]
    locals_ = [_view_pipeline(aug_cfg["local_crops"], int(local_size), i, norm) for i in range(n_local)]
    return MultiCropAugmentation(globals_, locals_, seed=seed, mean=norm.get("mean", IMAGENET_MEAN),
                                 std=norm.get("std", IMAGENET_STD))


def measure_throughput(aug, images, seconds: float = 10.0) -> float:
    """Input images per second through ``aug`` (each makes n_global + n_local crops), cycling ``images``."""
    images = list(images)
    if not images:
        raise InputError("Received no images to measure augmentation throughput on; accepted: a non-empty list.")
    aug(images[0])  # warm-up (imports, first allocations)
    done, start = 0, time.perf_counter()
    while True:
        aug(images[done % len(images)])
        done += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed
