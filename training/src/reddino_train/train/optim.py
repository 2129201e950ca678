"""AdamW parameter groups as in DINOv2: no weight decay on biases, norms and LayerScale; patch_embed lr × 0.2;
optional layer-wise lr decay; the prototypes flagged so they can be frozen for the first epochs."""

from __future__ import annotations

import torch


def _layer_id(name: str, n_blocks: int) -> int:
    if any(k in name for k in ("pos_embed", "patch_embed", "mask_token", "cls_token", "reg_token")):
        return 0
    if ".blocks." in name or name.startswith("blocks."):
        return int(name.split("blocks.")[1].split(".")[0]) + 1
    return n_blocks + 1  # final norm and heads


def param_groups(model: torch.nn.Module, patch_embed_lr_mult=0.2, layerwise_decay=1.0) -> list[dict]:
    n_blocks = len(getattr(getattr(model, "backbone", model), "blocks", []))
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = name.endswith(".bias") or "norm" in name or "gamma" in name
        lr_mult = layerwise_decay ** (n_blocks + 1 - _layer_id(name, n_blocks))
        if "patch_embed" in name:
            lr_mult *= patch_embed_lr_mult
        is_last = "last_layer" in name
        key = (lr_mult, 0.0 if no_decay else 1.0, is_last)
        g = groups.setdefault(key, {"params": [], "names": [], "lr_mult": lr_mult,
                                    "wd_mult": key[1], "is_last_layer": is_last})
        g["params"].append(p)
        g["names"].append(name)
    return list(groups.values())


def build_optimizer(model: torch.nn.Module, optim_cfg: dict) -> torch.optim.AdamW:
    groups = param_groups(model, float(optim_cfg["patch_embed_lr_mult"]), float(optim_cfg["layerwise_decay"]))
    betas = tuple(float(b) for b in optim_cfg["betas"])
    return torch.optim.AdamW(groups, lr=0.0, betas=betas, weight_decay=0.0)


def set_hyperparameters(optimizer: torch.optim.Optimizer, lr: float, wd: float, last_layer_frozen: bool) -> None:
    for g in optimizer.param_groups:
        g["lr"] = 0.0 if (last_layer_frozen and g["is_last_layer"]) else lr * g["lr_mult"]
        g["weight_decay"] = wd * g["wd_mult"]
