"""RedDino models: which exist, where their weights are, loading them, and at what precision to run them.

Specs: ``hf-hub:Snarcy/RedDino-small|base|large`` (Hugging Face cache; downloaded only by
:func:`download`, an explicit user action), ``local-dir:PATH`` (timm's Hugging Face folder: config.json +
model.safetensors, what :func:`save_local_dir` and ``reddino-train`` export), ``demo`` (the project's own
small weights, shipped in ``demo_model/`` once trained) and a path to a DINOv2-format checkpoint (``.pth``
with a ``teacher`` dict of ``backbone.*`` tensors, a bare backbone state dict, or ``.safetensors``).
"""

from __future__ import annotations

import os
from pathlib import Path

from napari_reddino._vit_weights import (IMAGENET_MEAN, IMAGENET_STD, WEIGHT_SUFFIXES, ModelLoadError, backbone_state_dict, build_model,
                                         folder_weights, read_folder_config, read_tensors)
from napari_reddino.images import InputError
from napari_reddino.runtime import is_offline, resolve_device

__all__ = ["MODEL_SPECS", "ModelLoadError", "load_model", "download", "is_cached", "default_spec",
           "save_local_dir", "create_model", "model_from_weights",
           "model_input_size", "model_mean_std", "clear_cache", "IMAGENET_MEAN", "IMAGENET_STD"]

MODEL_SPECS = {
    "hf-hub:Snarcy/RedDino-small": {"architecture": "vit_small_patch14_dinov2", "dim": 384, "params": "21.6M"},
    "hf-hub:Snarcy/RedDino-base": {"architecture": "vit_base_patch14_dinov2", "dim": 768, "params": "85.7M"},
    "hf-hub:Snarcy/RedDino-large": {"architecture": "vit_large_patch14_dinov2", "dim": 1024, "params": "303M"},
    "demo": {"architecture": "shipped in napari_reddino/demo_model", "dim": None, "params": "small"},
}
DEMO_DIR = Path(__file__).resolve().parent / "demo_model"
HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
ACCEPTED_SPECS = ("hf-hub:Snarcy/RedDino-small|base|large, local-dir:FOLDER, demo, or a .pth/.safetensors "
                  "checkpoint path")
_LOADED: dict = {}


def _download_hint(spec: str) -> str:
    return (f"run `napari-reddino models download {spec}` or press the widget's Download weights button "
            "(needs internet)")


def parse_spec(spec) -> tuple[str, str]:
    """``(kind, target)`` with kind one of hub, dir, demo, file."""
    spec = str(spec).strip()
    for prefix in ("hf-hub:", "hf_hub:"):
        if spec.startswith(prefix) and "/" in spec[len(prefix):]:
            return "hub", spec[len(prefix):]
    if spec.startswith("local-dir:"):
        return "dir", os.path.expanduser(spec[len("local-dir:"):])
    if spec == "demo":
        return "demo", str(DEMO_DIR)
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        return "dir", str(path)
    if path.suffix.lower() in WEIGHT_SUFFIXES:
        return "file", str(path)
    raise ModelLoadError(f"Received model {spec!r}; accepted: {ACCEPTED_SPECS}.")


def _cached_hub_files(repo: str) -> tuple[Path, Path] | None:
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo, "config.json")
    if not isinstance(config, str):
        return None
    for name in HUB_WEIGHT_FILES:
        weights = try_to_load_from_cache(repo, name)
        if isinstance(weights, str):
            return Path(config), Path(weights)
    return None


def is_cached(spec) -> bool:
    """True when ``spec`` can be loaded without the network."""
    try:
        kind, target = parse_spec(spec)
    except ModelLoadError:
        return False
    if kind == "hub":
        return _cached_hub_files(target) is not None
    if kind in ("dir", "demo"):
        return (Path(target) / "config.json").is_file()
    return Path(target).is_file()


def default_spec() -> str:
    """A cached RedDino if any (small first), else ``demo`` when shipped, else RedDino-small (whose
    loading then explains how to download it)."""
    hub = [s for s in MODEL_SPECS if s.startswith("hf-hub:")]
    for spec in hub:
        if is_cached(spec):
            return spec
    return "demo" if is_cached("demo") else hub[0]


def download(spec, tqdm_class=None) -> Path:
    """Fetch a hub model's config and weights into the Hugging Face cache (explicit user action only).
    ``tqdm_class`` (e.g. ``napari.utils.progress``) shows the byte progress. Returns the weights path."""
    kind, repo = parse_spec(spec)
    if kind != "hub":
        if not is_cached(spec):
            raise ModelLoadError(f"Received {spec!r} to download; accepted: a hf-hub: spec (local models are "
                                 "not downloaded, and this one does not exist).")
        return Path(repo)
    if is_offline():
        raise ModelLoadError(f"Cannot download {spec}: offline mode is on (HF_HUB_OFFLINE or "
                             "NAPARI_REDDINO_OFFLINE); unset it on a machine with internet to download.")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    from napari_reddino.pins import check_or_record, hub_revision, pin

    key = f"hf-hub:{repo}"
    revision = pin(key)["revision"]  # the commit first trusted (or shipped); None: the latest, then recorded

    def fetch(name):
        path = Path(hf_hub_download(repo, name, revision=revision, tqdm_class=tqdm_class))
        check_or_record(key, path, hub_revision(path), name)
        return path

    try:
        fetch("config.json")
        for name in HUB_WEIGHT_FILES:
            try:
                return fetch(name)
            except EntryNotFoundError:
                continue
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: one line for the user
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise ModelLoadError(f"Could not download {spec} ({type(exc).__name__}: {msg}); expected the "
                             "Hugging Face Hub to be reachable.") from None
    raise ModelLoadError(f"Found no weights in {repo} on the Hub; expected one of {', '.join(HUB_WEIGHT_FILES)}.")


def _load_folder(folder: Path, weights: Path | None, source: str):
    config = read_folder_config(folder)
    weights = weights or folder_weights(folder)
    return build_model(backbone_state_dict(read_tensors(weights)), config, source=source)


def _load_uncached(spec, download_missing: bool):
    kind, target = parse_spec(spec)
    if kind == "hub":
        files = _cached_hub_files(target)
        if files is None:
            if not download_missing:
                raise ModelLoadError(f"{spec} is not downloaded yet; {_download_hint(spec)}.")
            download(spec)
            files = _cached_hub_files(target)
            if files is None:  # pragma: no cover - the cache refused the files
                raise ModelLoadError(f"Downloaded {spec} but found it missing from the Hugging Face cache.")
        return _load_folder(files[0].parent, files[1], source=spec)
    if kind == "demo" and not (Path(target) / "config.json").is_file():
        raise ModelLoadError("Found no demo weights in napari_reddino/demo_model (not shipped in this version); "
                             f"accepted: {ACCEPTED_SPECS}.")
    if kind in ("dir", "demo"):
        if not Path(target).is_dir():
            raise ModelLoadError(f"Received {spec!r}, which is not a folder; expected a timm model folder "
                                 "(config.json + model.safetensors).")
        return _load_folder(Path(target), None, source=spec)
    return build_model(backbone_state_dict(read_tensors(target)), None, source=Path(target).name)


def _cache_key(spec, device: str):
    kind, target = parse_spec(spec)
    if kind == "hub":
        return (spec, device)
    path = Path(target)
    probe = path / "config.json" if path.is_dir() else path
    stamp = probe.stat().st_mtime_ns if probe.exists() else None
    weights = [p.stat().st_mtime_ns for p in path.glob("*") if p.is_file()] if path.is_dir() else []
    return (kind, str(path.resolve()), stamp, tuple(weights), device)


def load_model(spec, device="cpu", download: bool = False):
    """The timm ViT for ``spec`` in eval mode on ``device``, ``num_classes=0``: ``model(x)`` is the CLS
    token after the final norm and ``model.forward_features(x)[:, model.num_prefix_tokens:]`` the patch
    tokens. Loaded models are cached per spec and device (file models reload when the file changes).
    Hub weights are fetched only when ``download=True``."""
    device = resolve_device(device)
    key = _cache_key(spec, device)
    if key not in _LOADED:
        model = _load_uncached(spec, download).to(device)
        model.spec = str(spec)
        if len(_LOADED) >= 3:  # keep memory bounded: a large ViT is > 1 GB
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = model
    return _LOADED[key]


def clear_cache() -> None:
    _LOADED.clear()


def create_model(arch: str = "vit_small_patch14_dinov2", img_size: int = 224, **kwargs):
    """A random-init timm ViT (``num_classes=0``) whose ``pretrained_cfg`` states its real input size."""
    from napari_reddino.runtime import import_torch

    import_torch()
    import timm

    model = timm.create_model(arch, pretrained=False, img_size=img_size, num_classes=0, **kwargs)
    model.pretrained_cfg = dict(model.pretrained_cfg, input_size=(3, *model.patch_embed.img_size))
    return model


def model_from_weights(state_dict: dict, architecture: str | None = None, num_heads: int | None = None,
                       source: str = "weights"):
    """The timm ViT (eval mode) that holds ``state_dict``, its dimensions read from the tensors (the builder every
    checkpoint, Hub folder and ``reddino-train export`` goes through); ``architecture``/``num_heads`` when known."""
    from napari_reddino._vit_weights import infer_architecture

    found = infer_architecture(state_dict, num_heads=num_heads)["model_args"]
    # every vit_*_patch14_dinov2 is one class: a named architecture is built with the tensors' own dimensions
    config = {"model_args": {k: found[k] for k in ("embed_dim", "depth", "patch_size", "num_heads")}}
    if architecture:
        config["architecture"] = architecture
    return build_model(state_dict, config, source=source)


def save_local_dir(model, path) -> Path:
    """Write ``model`` as a timm Hugging Face folder (config.json + model.safetensors), loadable with
    ``local-dir:PATH``."""
    from timm.models import save_for_hf

    path = Path(path)
    save_for_hf(model, path, safe_serialization=True)
    return path


def model_input_size(model) -> tuple[int, int]:
    """(height, width) the model's position embedding was trained for."""
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if size is None:
        size = model.pretrained_cfg["input_size"][1:]
    return int(size[0]), int(size[1])


def model_mean_std(model) -> tuple[tuple[float, ...], tuple[float, ...]]:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return (tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)))
