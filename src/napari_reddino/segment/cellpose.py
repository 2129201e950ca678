"""Cellpose 4 (Cellpose-SAM) backend, done so that it never surprises the user.

- The model is a cellpose name (``cpsam``, ``cpsam_v2``, ...) found in cellpose's model folder, or a local
  weights file. An unknown name is refused here: cellpose itself would silently download ``cpsam_v2``.
- Nothing is downloaded unless asked (``download=True``); offline, the error names the missing file and
  the folder (``CELLPOSE_LOCAL_MODELS_PATH``) where it can be put.
- The network is built once per (weights, device, dtype) and kept.
- The network output (flows and cell probability) is kept for the last few images, so changing the flow
  or cell-probability threshold only re-runs ``cellpose.dynamics``, not the network.
- bf16 only where the hardware runs it natively (see ``napari_reddino.runtime.resolve_precision``).
- Weights are tensors only: cellpose reads the file with ``torch.load``, once without ``weights_only``
  (so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` would let a crafted file run code); every load it does for us
  runs with tensors-only loading forced, and a file that needs more is refused.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from napari_reddino.images import InputError, to_rgb_uint8

DEFAULT_MODEL = "cpsam"
MODEL_URL = "https://huggingface.co/mouseland/cellpose-sam/resolve/main/"
_SEGMENTERS: dict[tuple, "CellposeSegmenter"] = {}
_FLOW_CACHE_SIZE = 4


def model_dir() -> Path:
    """Cellpose's model folder: ``$CELLPOSE_LOCAL_MODELS_PATH`` or ``~/.cellpose/models``."""
    env = os.environ.get("CELLPOSE_LOCAL_MODELS_PATH")
    return Path(env) if env else Path.home() / ".cellpose" / "models"


def known_model_names() -> list[str]:
    """Cellpose's own model names plus the user models cellpose lists in its folder."""
    from cellpose import models

    names = list(models.MODEL_NAMES)
    listing = model_dir() / "gui_models.txt"
    if listing.is_file():
        names += [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    return names


def _offline() -> bool:
    from napari_reddino.runtime import is_offline

    return is_offline()


def resolve_weights(model: str | None = None, weights=None, download: bool = False) -> Path:
    """The weights file to load: ``weights`` (a path) if given, else the named cellpose model's file."""
    from napari_reddino.progress import run

    return run(iter_resolve_weights(model, weights, download))


def iter_resolve_weights(model: str | None = None, weights=None, download: bool = False):
    """:func:`resolve_weights` as a progress generator: a download reports its megabytes (the dock and the
    CLI show them)."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InputError(f"Received Cellpose weights {str(path)!r}, which is not a file; accepted: a "
                             f"Cellpose 4 weights file or a model name ({', '.join(known_model_names())}).")
        return path
    name = model or DEFAULT_MODEL
    if Path(name).expanduser().is_file():
        return Path(name).expanduser()
    names = known_model_names()
    if name not in names:
        raise InputError(f"Received Cellpose model {name!r}; accepted: {', '.join(names)} or a weights file path.")
    path = model_dir() / name
    if path.is_file():
        return path
    if not download or _offline():
        why = "downloads are off (offline)" if download else "it is only downloaded when you ask"
        raise InputError(f"Cellpose weights {name!r} not found at {path} ({why}); put the file there (folder "
                         f"set by CELLPOSE_LOCAL_MODELS_PATH), pass a weights file, or download it explicitly.")
    from napari_reddino.pins import pin

    revision = pin(f"cellpose:{name}")["revision"]
    url = MODEL_URL.replace("/resolve/main/", f"/resolve/{revision}/") if revision else MODEL_URL
    yield from _iter_download(url + name, path, f"Downloading Cellpose {name} (MB)", key=f"cellpose:{name}")
    return path


def _iter_download(url: str, path: Path, message: str, chunk: int = 1 << 20, key: str | None = None):
    """Fetch ``url`` to ``path`` through ``path.part``, renamed only when complete and, with a pin ``key``,
    matching its pinned checksum (:mod:`napari_reddino.pins`): a failed, cancelled or changed download leaves
    no weights behind."""
    import urllib.request

    from napari_reddino.progress import Progress
    from napari_reddino.pins import check_or_record

    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            yield Progress(0, max(1, total >> 20), message)
            while block := response.read(chunk):
                out.write(block)
                done += len(block)
                yield Progress(done >> 20, max(1, total >> 20, done >> 20), message)
        if key:
            check_or_record(key, part, name=path.name)
        os.replace(part, path)
    except OSError as exc:
        raise InputError(f"Could not download Cellpose weights from {url} ({type(exc).__name__}); put the file "
                         f"at {path} instead.") from None
    finally:
        part.unlink(missing_ok=True)
    return path


def _check_precision(dtype, device: str):
    import torch

    from napari_reddino.runtime import cpu_supports_bf16

    if dtype == torch.bfloat16:
        ok = (device == "cpu" and cpu_supports_bf16()) or (
            device.startswith("cuda") and torch.cuda.is_bf16_supported())
        if not ok:
            raise InputError(f"Received precision bf16 on {device}, which has no native bf16; accepted: fp32 "
                             "or auto.")


@contextmanager
def tensors_only_loading():
    """Every ``torch.load`` inside reads tensors only (torch's weights-only unpickler), whatever the caller
    passes or the environment says (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set aside meanwhile)."""
    keys = ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    saved = {k: os.environ.pop(k, None) for k in keys}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class CellposeSegmenter:
    """A loaded Cellpose model plus a small cache of its network outputs."""

    def __init__(self, weights: Path, device: str = "cpu", dtype=None):
        import torch
        from cellpose import models

        self.weights, self.device, self.dtype = Path(weights), device, dtype or torch.float32
        self.flow_cache: OrderedDict = OrderedDict()
        self.network_runs = 0
        try:
            with tensors_only_loading():
                self.model = models.CellposeModel(pretrained_model=os.fspath(self.weights),
                                                  device=torch.device(device),
                                                  use_bfloat16=self.dtype == torch.bfloat16)
        except pickle.UnpicklingError:
            raise InputError(f"Refused Cellpose weights {str(self.weights)!r}: the file holds more than tensors "
                             "(loading it could run a program hidden in it); accepted: a Cellpose 4 weights file "
                             "of tensors only.") from None
        except (ValueError, RuntimeError, KeyError, OSError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"Could not load Cellpose weights {str(self.weights)!r} ({msg[:120]}); accepted: "
                             "a Cellpose 4 (Cellpose-SAM) weights file.") from None

    def flows(self, image, diameter: float | None = None):
        """(dP (2, H, W), cellprob (H, W)) for ``image``, from the cache when this image was seen."""
        rgb = to_rgb_uint8(image)
        key = (hashlib.blake2b(rgb.tobytes(), digest_size=16).hexdigest(), rgb.shape, diameter)
        if key in self.flow_cache:
            self.flow_cache.move_to_end(key)
            return self.flow_cache[key]
        _, flows, _ = self.model.eval(rgb, channel_axis=-1, diameter=diameter, compute_masks=False)
        self.network_runs += 1
        value = (np.asarray(flows[1], np.float32), np.asarray(flows[2], np.float32))
        self.flow_cache[key] = value
        while len(self.flow_cache) > _FLOW_CACHE_SIZE:
            self.flow_cache.popitem(last=False)
        return value

    def segment(self, image, diameter: float | None = None, flow_threshold: float = 0.4,
                cellprob_threshold: float = 0.0, min_size: int = 15, max_size_fraction: float = 0.4,
                **unused) -> np.ndarray:
        """Labels (int32) from the (cached) flows; only the mask dynamics depend on the thresholds."""
        import torch
        from cellpose import dynamics

        if unused:
            raise InputError(f"Received unknown Cellpose option(s) {sorted(unused)}; accepted: diameter, "
                             "flow_threshold, cellprob_threshold, min_size, max_size_fraction.")
        diameter = float(diameter) if diameter else None
        dP, cellprob = self.flows(image, diameter)
        # as in CellposeModel.eval: iterations scale with the diameter relative to Cellpose's 30 px
        niter = int(200 * diameter / 30) if diameter else 200
        masks = dynamics.resize_and_compute_masks(
            dP, cellprob, niter=niter, cellprob_threshold=cellprob_threshold, flow_threshold=flow_threshold,
            min_size=min_size, max_size_fraction=max_size_fraction, device=torch.device(self.device))
        return np.asarray(masks, np.int32)


def get_segmenter(model: str | None = None, weights=None, device="auto", precision="auto",
                  download: bool = False) -> CellposeSegmenter:
    """The cached :class:`CellposeSegmenter` for these weights, device and dtype (built on first use)."""
    from napari_reddino.runtime import resolve_device, resolve_precision

    path = resolve_weights(model, weights, download=download).resolve()
    device = resolve_device(device)
    dtype = resolve_precision(precision, device)
    _check_precision(dtype, device)
    stat = path.stat()
    key = (os.fspath(path), stat.st_size, stat.st_mtime_ns, device, str(dtype))
    if key not in _SEGMENTERS:
        _SEGMENTERS[key] = CellposeSegmenter(path, device, dtype)
    return _SEGMENTERS[key]


def clear_cache() -> None:
    _SEGMENTERS.clear()
