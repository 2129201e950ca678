"""Export a run's teacher backbone as a timm Hugging Face folder (config.json + model.safetensors), the format of
``Snarcy/RedDino-*``, which the plugin loads with ``local-dir:DIR``."""

from __future__ import annotations

from pathlib import Path

from napari_reddino.images import InputError

from .config import read_saved_config
from .train.checkpoint import CHECKPOINT, load_checkpoint


def teacher_backbone(run_dir):
    """The run's teacher backbone (timm ViT, eval mode) with the checkpoint's weights."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / CHECKPOINT).is_file():
        raise InputError(f"Received run folder {str(run_dir)!r} without config.yaml and {CHECKPOINT}; accepted: "
                         "the --out folder of `reddino-train train` after at least one checkpoint.")
    cfg = read_saved_config(run_dir / "config.yaml")
    state = load_checkpoint(run_dir)["teacher"]
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    mc = cfg["model"]
    size = int(mc["img_size"])
    embed_dim = backbone["cls_token"].shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in backbone if k.startswith("blocks."))
    num_heads = mc.get("num_heads") or {384: 6, 768: 12, 1024: 16, 1536: 24}.get(embed_dim)
    arch = mc["arch"]  # all vit_*_patch14_dinov2 share one class; the dimensions come from the weights
    mlp_ratio = backbone["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim
    from napari_reddino.models import create_model

    model = create_model(arch, img_size=size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                         mlp_ratio=mlp_ratio)
    try:
        model.load_state_dict(backbone)
    except RuntimeError as exc:
        detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), "")[:160]
        raise InputError(f"Received run folder {str(run_dir)!r} whose config.yaml does not describe its checkpoint "
                         f"({detail}); accepted: the run folder as `reddino-train train` left it.") from None
    model.pretrained_cfg = dict(model.pretrained_cfg, tag="reddino-train")  # not timm's LVD-142M weights
    if str(mc.get("init") or "scratch") == "scratch":  # timm's licence entry is DINOv2's; none of its weights used
        model.pretrained_cfg.pop("license", None)
    return model.eval()


def export(run_dir, out_dir) -> Path:
    from napari_reddino.models import save_local_dir

    return save_local_dir(teacher_backbone(run_dir), Path(out_dir))
