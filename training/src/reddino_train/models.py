"""Student and EMA teacher for DINOv2/iBOT: a timm ``vit_*_patch14_dinov2`` backbone with a mask token, and the
DINO head (3-layer MLP → bottleneck → L2 norm → weight-normalised prototypes with the norm fixed at 1)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from napari_reddino.images import InputError


def _trunc_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class Prototypes(nn.Module):
    """``weight_norm(Linear(bottleneck, K, bias=False))`` with weight_g fixed to 1: each prototype row is used
    as ``v / ||v||``, so only the direction is learned."""

    def __init__(self, in_dim: int, n_prototypes: int):
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(n_prototypes, in_dim))
        nn.init.trunc_normal_(self.weight_v, std=0.02)

    def forward(self, x):
        return F.linear(x, F.normalize(self.weight_v, dim=1))


class DINOHead(nn.Module):
    def __init__(self, in_dim: int, n_prototypes: int, hidden_dim=2048, bottleneck_dim=256, n_layers=3):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (max(n_layers, 1) - 1) + [bottleneck_dim]
        layers = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.mlp.apply(_trunc_init)
        self.last_layer = Prototypes(bottleneck_dim, n_prototypes)

    def forward(self, x):
        x = self.mlp(x)
        x = F.normalize(x.float(), dim=-1, eps=1e-6).to(x.dtype)
        return self.last_layer(x)


def vit_tokens(vit, images, masks=None, mask_token=None):
    """All tokens (CLS first) after the final norm, like ``vit.forward_features``, but with masked patches
    replaced by the mask token and the pos_embed resampled for crops of another size (local crops)."""
    from timm.layers import resample_abs_pos_embed

    x = vit.patch_embed.proj(images)
    h, w = x.shape[-2:]
    x = vit.patch_embed.norm(x.flatten(2).transpose(1, 2))
    if masks is not None:
        x = torch.where(masks.flatten(1).unsqueeze(-1), mask_token.to(x.dtype), x)
    pos = vit.pos_embed
    if (h, w) != tuple(vit.patch_embed.grid_size):
        pos = resample_abs_pos_embed(pos, new_size=(h, w), old_size=vit.patch_embed.grid_size,
                                     num_prefix_tokens=vit.num_prefix_tokens)
    x = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + pos
    x = vit.norm_pre(vit.pos_drop(x))
    x = vit.blocks(x)
    return vit.norm(x)


class SSLNet(nn.Module):
    """Backbone + mask token + heads. ``forward`` returns what the losses need, in one call (one DDP forward)."""

    def __init__(self, backbone, head_cfg: dict):
        super().__init__()
        self.backbone = backbone
        dim = backbone.embed_dim
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        kw = dict(hidden_dim=head_cfg["hidden_dim"], bottleneck_dim=head_cfg["bottleneck_dim"],
                  n_layers=head_cfg["n_layers"])
        self.dino_head = DINOHead(dim, head_cfg["n_prototypes"], **kw)
        self.ibot_head = None if head_cfg.get("shared_ibot_head", True) else DINOHead(
            dim, head_cfg["ibot_n_prototypes"], **kw)

    def forward(self, global_crops, masks=None, local_crops=None, mask_input=True):
        """global_crops (n_g*B, 3, S, S) ordered crop-major; masks (n_g*B, gh, gw) bool or None.
        Returns cls (n_g*B, D), cls_logits (n_g*B, K), patch_logits (M, K') for the M masked patches, and
        local_logits (n_l*B, K) or None. The teacher passes ``mask_input=False``: it sees the whole image and
        gives targets at the masked positions."""
        tokens = vit_tokens(self.backbone, global_crops, masks if mask_input else None, self.mask_token)
        cls = tokens[:, 0]
        ibot_head = self.ibot_head or self.dino_head
        patches = tokens[:, 1:][masks.flatten(1)] if masks is not None else tokens[:0, 0]
        if self.ibot_head is None:  # one pass through the shared head for CLS and patches
            logits = self.dino_head(torch.cat([cls, patches]))
            cls_logits, patch_logits = logits[: len(cls)], logits[len(cls):]
        else:
            cls_logits, patch_logits = self.dino_head(cls), ibot_head(patches)
        local_logits = None
        if local_crops is not None and len(local_crops):
            local_logits = self.dino_head(vit_tokens(self.backbone, local_crops)[:, 0])
        return {"cls": cls, "cls_logits": cls_logits, "patch_logits": patch_logits, "local_logits": local_logits}


def _custom_args(model_cfg: dict) -> dict:
    return {k: model_cfg[k] for k in ("embed_dim", "depth", "num_heads") if model_cfg.get(k) is not None}


def _plugin_spec(init: str) -> str:
    """A timm name with pretrained weights (``vit_small_patch14_dinov2.lvd142m``) → its ``hf-hub:`` spec; any
    other spec (``hf-hub:``, ``local-dir:``, a DINOv2 ``.pth``/``.safetensors``) goes to the plugin as is."""
    import timm

    if init.startswith(("hf-hub:", "hf_hub:", "local-dir:")) or Path(init).exists():
        return init
    pretrained = timm.models.get_pretrained_cfg(init) if "." in init else None
    if pretrained is None or not pretrained.hf_hub_id:
        raise InputError(f"Received model.init {init!r}; accepted: scratch, hf-hub:ID, local-dir:PATH, a DINOv2 "
                         ".pth/.safetensors file or a timm name with hub weights (vit_small_patch14_dinov2.lvd142m).")
    return f"hf-hub:{pretrained.hf_hub_id}"


def build_backbone(model_cfg: dict):
    """A timm DINOv2 ViT at ``img_size``: from scratch, or initialised through the plugin's loader (no download
    unless ``model.download``) with the pos_embed resampled to the training grid (continued pretraining)."""
    import timm

    init = str(model_cfg.get("init") or "scratch")
    size = int(model_cfg["img_size"])
    if init == "scratch":
        return timm.create_model(model_cfg["arch"], pretrained=False, img_size=size, num_classes=0,
                                 drop_path_rate=model_cfg.get("drop_path_rate", 0.0),
                                 init_values=float(model_cfg.get("layer_scale_init", 1e-5)), **_custom_args(model_cfg))
    from napari_reddino.models import load_model

    # a copy: the plugin caches loaded models, and this one is about to be resized and trained
    vit = copy.deepcopy(load_model(_plugin_spec(init), device="cpu", download=bool(model_cfg.get("download"))))
    vit.reset_classifier(0)
    vit.set_input_size(img_size=(size, size))
    for p in vit.parameters():
        p.requires_grad_(True)
    return vit.train()


def build_student_teacher(cfg: dict):
    """(student, teacher): the teacher starts as an exact copy and is never trained by the optimiser."""
    student = SSLNet(build_backbone(cfg["model"]), cfg["head"])
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return student, teacher


@torch.no_grad()
def ema_update(student: nn.Module, teacher: nn.Module, momentum: float) -> None:
    """teacher = m · teacher + (1 − m) · student, parameter by parameter (shard by shard under FSDP, where both
    nets are sharded alike)."""
    def local(p):
        return p.to_local() if hasattr(p, "to_local") else p

    s_params = [local(p.detach()) for p in student.parameters()]
    t_params = [local(p) for p in teacher.parameters()]
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)
