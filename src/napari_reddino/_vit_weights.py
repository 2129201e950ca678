"""Reading ViT weights safely and rebuilding the timm DINOv2 architecture they belong to.

Weights are read with safetensors or ``torch.load(weights_only=True)`` only. The geometry (embedding
size, depth, patch size, input size from the position embedding, MLP ratio, LayerScale, register tokens)
is read from the tensors themselves, so a checkpoint trained at 224 is built at 224 and never resampled.
The head count cannot be read from tensors: a config's ``num_heads`` wins, else DINOv2's 64-d heads.
"""

from __future__ import annotations

import json
import math
import pickle
import re
from pathlib import Path

from napari_reddino.images import InputError

# the normalisation of timm's and DINOv2's ViTs, the one the RedDino checkpoints were trained with
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
REQUIRED_KEYS = ("patch_embed.proj.weight", "pos_embed", "cls_token", "blocks.0.norm1.weight", "norm.weight")
DINOV2_HEAD_DIM = 64
# What a config naming only the architecture (like RedDino's pushed configs) implies about the tensors.
KNOWN_DIMS = {
    "vit_small_patch14_dinov2": {"embed_dim": 384, "depth": 12, "patch_size": 14},
    "vit_base_patch14_dinov2": {"embed_dim": 768, "depth": 12, "patch_size": 14},
    "vit_large_patch14_dinov2": {"embed_dim": 1024, "depth": 24, "patch_size": 14},
    "vit_giant_patch14_dinov2": {"embed_dim": 1536, "depth": 40, "patch_size": 14},
}


class ModelLoadError(InputError):
    """A model spec, folder or weights file that cannot be loaded; one line: expected vs found."""


def read_tensors(path) -> dict:
    """All tensors of a ``.safetensors`` file, or the object of a torch checkpoint read weights-only."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"Received {str(path)!r}, which is not a file; expected a weights file "
                             f"({', '.join(WEIGHT_SUFFIXES)}).")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - corrupt header or truncated file
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
            raise ModelLoadError(f"Could not read {path.name} as safetensors ({why}); expected a valid "
                                 ".safetensors file.") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickles with code, corrupt zips, other formats
        why = ("it holds objects other than tensors, or is not a torch file"
               if isinstance(exc, pickle.UnpicklingError) else f"{type(exc).__name__}: {str(exc)[:100]}")
        raise ModelLoadError(f"Could not read {path.name} as a weights-only torch checkpoint ({why}); "
                             "expected tensors only (a state dict, or DINOv2's {'teacher': {...}}).") from None


def backbone_state_dict(obj) -> dict:
    """The ViT backbone tensors of a DINOv2-style checkpoint, a bare state dict or a timm export.

    Unwraps ``teacher``/``model``/``state_dict``; keeps only ``[teacher.]backbone.*`` when present (dropping
    ``dino_head``/``ibot_head``); strips ``module.``/``_orig_mod.``; un-chunks FSDP block chunks
    (``blocks.C.I.`` → ``blocks.I.``); drops ``mask_token`` and any classifier ``head.*``.
    """
    import torch

    for key in ("teacher", "model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise ModelLoadError(f"Found a {type(obj).__name__} in the checkpoint; expected a dict of tensors "
                             "(a ViT state dict or DINOv2's {'teacher': {'backbone.…': tensor}}).")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    sd = {re.sub(r"^(module\.|_orig_mod\.)+", "", k): v for k, v in sd.items()}
    for prefix in ("teacher.backbone.", "backbone."):
        if any(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            break
    if any(re.match(r"blocks\.\d+\.\d+\.", k) for k in sd):
        sd = {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k): v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if k != "mask_token" and not k.startswith("head.")}
    if "register_tokens" in sd and "pos_embed" in sd and "cls_token" in sd:
        # DINOv2 adds pos_embed[0] to CLS and none to registers; timm keeps both out of pos_embed
        sd["reg_token"] = sd.pop("register_tokens")
        sd["cls_token"] = sd["cls_token"] + sd["pos_embed"][:, :1]
        sd["pos_embed"] = sd["pos_embed"][:, 1:]
    # DINOv2's SwiGLU names → timm's packed GLU MLP
    rename = {r"\.mlp\.w12\.": ".mlp.fc1.", r"\.mlp\.w3\.": ".mlp.fc2."}
    for old, new in rename.items():
        sd = {re.sub(old, new, k): v for k, v in sd.items()}
    return sd


def infer_architecture(sd: dict, num_heads: int | None = None) -> dict:
    """timm ``create_model`` arguments for the backbone whose tensors are ``sd``."""
    missing = [k for k in REQUIRED_KEYS if k not in sd]
    if missing:
        found = f"tensors named {', '.join(sorted(sd)[:3])}…" if sd else "no tensors"
        raise ModelLoadError(f"Found {found}; expected a DINOv2/timm ViT backbone "
                             f"(missing {', '.join(missing)}).")
    dim, chans, ph, pw = sd["patch_embed.proj.weight"].shape
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    n_reg = sd["reg_token"].shape[1] if "reg_token" in sd else 0
    pos_prefix = 0 if n_reg else 1  # timm's register models keep CLS out of pos_embed (no_embed_class)
    n_patches = sd["pos_embed"].shape[1] - pos_prefix
    grid = math.isqrt(max(n_patches, 0))
    if grid * grid != n_patches:
        raise ModelLoadError(f"Found a position embedding of {sd['pos_embed'].shape[1]} tokens; expected "
                             "1 + a square number of patches (257 for 224 px at patch 14).")
    fc1, fc2 = sd.get("blocks.0.mlp.fc1.weight"), sd.get("blocks.0.mlp.fc2.weight")
    if fc1 is None or fc2 is None:
        raise ModelLoadError("Found blocks without mlp.fc1/fc2 (or w12/w3) weights; expected a DINOv2 ViT "
                             "(MLP or SwiGLU feed-forward).")
    swiglu = fc2.shape[1] * 2 == fc1.shape[0]  # packed GLU: fc1 emits gate and value halves
    heads = num_heads or max(1, dim // DINOV2_HEAD_DIM)
    if dim % heads:
        raise ModelLoadError(f"Found embedding size {dim} with {heads} heads; expected a size divisible by the "
                             "head count.")
    args = dict(img_size=grid * ph, patch_size=ph, in_chans=chans, embed_dim=dim, depth=depth,
                num_heads=heads, mlp_ratio=fc1.shape[0] / dim,
                init_values=1e-5 if "blocks.0.ls1.gamma" in sd else None, num_classes=0)
    if n_reg:
        args.update(reg_tokens=n_reg, no_embed_class=True)
    base = "vit_giant_patch14_dinov2" if swiglu else "vit_small_patch14_dinov2"
    return {"architecture": base, "model_args": args}


def read_folder_config(folder: Path) -> dict:
    """``config.json`` of a timm Hugging Face folder, split like timm does (architecture, model_args,
    pretrained_cfg); legacy single-dict configs accepted."""
    cfg_file = Path(folder) / "config.json"
    try:
        cfg = json.loads(cfg_file.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"Found no config.json in {str(folder)!r}; expected a timm model folder "
                             "(config.json + model.safetensors, as timm's save_for_hf writes).") from None
    except (ValueError, OSError) as exc:
        raise ModelLoadError(f"Could not read {str(cfg_file)!r} as JSON ({type(exc).__name__}); expected "
                             "timm's config.json.") from None
    if not isinstance(cfg, dict) or "architecture" not in cfg:
        raise ModelLoadError(f"Found no 'architecture' in {str(cfg_file)!r}; expected timm's config.json.")
    pretrained = cfg.get("pretrained_cfg") or {k: v for k, v in cfg.items() if k not in ("architecture",)}
    return {"architecture": cfg["architecture"], "model_args": dict(cfg.get("model_args") or {}),
            "pretrained_cfg": dict(pretrained)}


def folder_weights(folder: Path) -> Path:
    """The weights file of a timm folder: safetensors first, then a torch file (read weights-only)."""
    for name in ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth"):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    raise ModelLoadError(f"Found no weights in {str(folder)!r}; expected model.safetensors "
                         "(or pytorch_model.bin) beside config.json.")


def build_model(sd: dict, config: dict | None = None, source: str = "weights"):
    """A timm ViT (``num_classes=0``, eval mode) holding ``sd``; ``config`` is a folder config whose
    architecture and head count are checked against / used with the tensors."""
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    config = config or {}
    cfg_args = config.get("model_args", {})
    inferred = infer_architecture(sd, num_heads=cfg_args.get("num_heads"))
    args = inferred["model_args"]
    arch = config.get("architecture") or inferred["architecture"]
    expected = {}
    if config.get("architecture"):  # a config's claims must agree with the tensors
        expected = dict(KNOWN_DIMS.get(arch, {}),
                        **{k: cfg_args[k] for k in ("embed_dim", "depth", "patch_size") if k in cfg_args})
    for key, value in expected.items():
        found = args[key]
        if (tuple(value) if isinstance(value, list) else value) not in (found, (found, found)):
            raise ModelLoadError(f"{source}: config expects {arch} with {key}={value} but the weights have "
                                 f"{key}={found}; expected matching config and weights.")
    if not timm.is_model(arch):
        raise ModelLoadError(f"{source}: config names architecture {arch!r}; expected a timm model name "
                             "such as vit_small_patch14_dinov2.")
    try:
        model = timm.create_model(arch, pretrained=False, **args)
        sd = checkpoint_filter_fn(dict(sd), model)
        result = model.load_state_dict(sd, strict=False)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - shape mismatches and the like
        raise ModelLoadError(f"{source}: weights do not fit a {arch} built from them ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:160]}).") from None
    if result.missing_keys or result.unexpected_keys:
        raise ModelLoadError(f"{source}: expected the tensors of a {arch}; missing {len(result.missing_keys)} "
                             f"({', '.join(result.missing_keys[:3])}), unexpected {len(result.unexpected_keys)} "
                             f"({', '.join(result.unexpected_keys[:3])}).")
    pcfg = dict(model.pretrained_cfg)
    pcfg.update(config.get("pretrained_cfg", {}))
    pcfg.update(input_size=(args["in_chans"], args["img_size"], args["img_size"]), num_classes=0,
                architecture=arch, source=source)
    pcfg.setdefault("mean", IMAGENET_MEAN)
    pcfg.setdefault("std", IMAGENET_STD)
    model.pretrained_cfg = pcfg
    return model.eval()
